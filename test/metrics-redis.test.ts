/**
 * The migration metrics in real Redis (a private key prefix): each task's
 * event counted exactly once whoever records it and how often, host labels
 * capped, markers expiring; and GET /metrics on a real API (in this process)
 * reading them: authentication, content type, values, and a Redis that does
 * not answer.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetricsEndpoint, SCRAPE_REDIS_MS } from '../api/metrics.js';
import { wireApi } from '../api/wiring.js';
import { loadConfig } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { Checkpoint, HistoryEntry } from '../shared/job.js';
import { METRICS } from '../shared/metrics/catalog.js';
import { metricEvents } from '../shared/metrics/events.js';
import { counterSeries } from '../shared/metrics/fields.js';
import { memoryMetrics, onceTtl, redisMetrics } from '../shared/metrics/store.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, AUTH_ENV, TOKENS } from './helpers/service.js';
import { parseExposition } from './helpers/prom.js';

const url = process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const ttl = { ended: 3600, running: 7200 };
const clients: Redis[] = [];
const client = () => {
  const c = new Redis(url);
  clients.push(c);
  return c;
};

afterAll(async () => {
  const r = client();
  const keys = await r.keys(`${prefix}*`);
  if (keys.length) await r.del(...keys);
  for (const c of clients) c.disconnect();
});

const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
const e = (s: number, stage: string, event: HistoryEntry['event']): HistoryEntry => ({ at: at(s), stage, event });
const history = [e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(1.5, 'check', 'done'), e(1.5, 'connect', 'start'), e(1.75, 'connect', 'retry'), e(2, 'connect', 'start'), e(2.5, 'connect', 'done'), e(2.5, 'migrate', 'start'), e(9, 'migrate', 'done'), e(9, 'finish', 'start'), e(10, 'finish', 'done')];
const finished: Checkpoint = { step: 'done', history, results: { migrate: { startedAt: at(3), stats: { downtime: 42, data_processed: 123_456_789 } } } };
const hosts = { source: '127.0.0.11', destination: '127.0.0.12' };

describe('recording in Redis', () => {
  it('counts each event of a task once, when six workers record the whole list ten times at once', async () => {
    const p = `${prefix}-a`;
    const stores = Array.from({ length: 6 }, () => redisMetrics(client(), p, ttl));
    const events = metricEvents(finished, null);
    const applied = await Promise.all(Array.from({ length: 60 }, (_, i) => stores[i % 6]!.record('t1', hosts, events)));
    expect(applied.reduce((a, b) => a + b, 0)).toBe(events.length);
    const once = memoryMetrics();
    await once.record('t1', hosts, events);
    expect(await stores[0]!.read()).toEqual(once.values);
    expect(counterSeries(once.values, METRICS.started)).toEqual([{ labels: hosts, value: 1 }]);
  });

  it('a worker that records piecewise and one that replays everything later agree: no event twice, none lost', async () => {
    const p = `${prefix}-b`;
    const store = redisMetrics(client(), p, ttl);
    const running: Checkpoint = { step: 'migrate', results: {}, history: history.slice(0, 8) };
    await store.record('t1', hosts, metricEvents(running, null).slice(0, 2));
    await store.record('t1', hosts, metricEvents(running, null));
    await store.record('t1', hosts, metricEvents(finished, null));
    await store.record('t1', hosts, metricEvents(finished, null));
    const once = memoryMetrics();
    await once.record('t1', hosts, metricEvents(finished, null));
    expect(await store.read()).toEqual(once.values);
  });

  it('keeps markers while a task runs and for tasks.keep_finished plus a day after its end', async () => {
    const p = `${prefix}-c`;
    const r = client();
    const store = redisMetrics(r, p, onceTtl(loadConfig({ env: {} })));
    await store.record('t1', hosts, metricEvents({ ...finished, step: 'migrate' }, null));
    expect(await r.ttl(`${p}:migration-metrics:once:t1`)).toBeGreaterThan(59 * 86_400);
    await store.record('t1', hosts, metricEvents(finished, null));
    const t = await r.ttl(`${p}:migration-metrics:once:t1`);
    expect(t).toBeGreaterThan(7 * 86_400);
    expect(t).toBeLessThanOrEqual(8 * 86_400);
    expect(await r.ttl(`${p}:migration-metrics:values`)).toBe(-1);
  });

  it('caps host labels: past the limit a new host is "other", a known one stays itself, in Redis as in memory', async () => {
    const p = `${prefix}-d`;
    const store = redisMetrics(client(), p, ttl, 3);
    const mem = memoryMetrics(3);
    const started = metricEvents(finished, null).slice(0, 1);
    for (const [i, d] of ['b', 'c', 'd', 'e', 'b'].entries()) {
      await store.record(`t${i}`, { source: 'a', destination: d }, started);
      await mem.record(`t${i}`, { source: 'a', destination: d }, started);
    }
    const series = counterSeries(await store.read(), METRICS.started).map((s) => [s.labels.destination, s.value]).sort();
    expect(series).toEqual([['b', 2], ['c', 1], ['other', 2]]);
    expect(await store.read()).toEqual(mem.values);
  });
});

describe('GET /metrics', () => {
  let svc: InProc;
  beforeAll(async () => {
    svc = await startInProc();
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('refuses a request without a token (401) and one with a wrong token', async () => {
    for (const token of [null, 'not-a-known-token-000000']) {
      const r = await api(svc.url, 'GET', '/metrics', undefined, { token });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('KMIG0020E');
    }
  });

  it('answers a viewer with the metrics workers recorded in Redis, in the text format', async () => {
    const store = redisMetrics(svc.redis, svc.prefix, ttl);
    await store.record('t1', hosts, metricEvents(finished, null));
    const error = migrationError('DEST_UNREACHABLE', { uri: 'u', detail: 'refused' }).toJSON();
    const blocked: Checkpoint = { step: 'done', error: { ...error, details: { blockers: [error] } }, results: {}, history: [e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(1.25, 'check', 'done')] };
    await store.record('t2', { ...hosts, destination: '127.0.0.99' }, metricEvents(blocked, null));
    const r = await api(svc.url, 'GET', '/metrics', undefined, { token: TOKENS.viewer });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const x = parseExposition(r.body as string);
    expect(x.get('kvm_migrate_metrics_redis_up')).toBe(1);
    expect(x.get(METRICS.started.name, hosts)).toBe(1);
    expect(x.get(METRICS.finished.name, hosts)).toBe(1);
    expect(x.get(METRICS.failed.name, { ...hosts, destination: '127.0.0.99', code: 'KCHVM0090E' })).toBe(1);
    expect(x.get(METRICS.checkFailures.name, { code: 'KCHVM0090E' })).toBe(1);
    expect(x.get(METRICS.inFlight.name, hosts)).toBe(0);
    expect(x.get(`${METRICS.duration.name}_sum`, { ...hosts, outcome: 'finished' })).toBe(9);
    expect(x.get(`${METRICS.downtime.name}_sum`, hosts)).toBe(0.042);
    expect(x.get(METRICS.bytes.name, hosts)).toBe(123_456_789);
    expect(x.get(METRICS.retries.name, { stage: 'connect' })).toBe(1);
    expect(x.get(`${METRICS.stage.name}_count`, { stage: 'connect' })).toBe(1);
    expect(x.get(`${METRICS.stage.name}_sum`, { stage: 'connect' })).toBe(0.5);
    // BullMQ's own exposition of this API's queue.
    expect(x.get('bullmq_job_count', { queue: svc.config.redis.queue, state: 'waiting' })).toBe(0);
    expect(x.types.get('bullmq_job_completed_total')).toBe('counter');
    expect(x.get('process_start_time_seconds')).toBeGreaterThan(1_600_000_000);
  });

  it('with a Redis that accepts connections and never answers: 200 within the bound, redis_up 0, process metrics still there', async () => {
    const sockets: Socket[] = [];
    const mute: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const redisUrl = `redis://127.0.0.1:${(mute.address() as AddressInfo).port}`;
    try {
      // Through the API: its Redis client never becomes ready; the scrape waits at most SCRAPE_REDIS_MS.
      const config = loadConfig({ env: { KVM_MIGRATE_REDIS_URL: redisUrl, KVM_MIGRATE_REDIS_PREFIX: `${prefix}-m`, KVM_MIGRATE_LIBVIRT_SOURCE_URI: 'test:///default', KVM_MIGRATE_AUTH_TOKENS: AUTH_ENV } });
      const wired = wireApi(config, { info() {}, warn() {}, error() {}, debug() {} } as never, { now: () => new Date() });
      const server = wired.app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      try {
        const t0 = performance.now();
        const r = await api(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'GET', '/metrics', undefined, { token: TOKENS.viewer });
        expect(performance.now() - t0).toBeLessThan(SCRAPE_REDIS_MS + 1000);
        expect(r.status).toBe(200);
        const x = parseExposition(r.body as string);
        expect(x.get('kvm_migrate_metrics_redis_up')).toBe(0);
        expect(x.get(METRICS.started.name)).toBeUndefined();
        expect(x.get('process_resident_memory_bytes')).toBeGreaterThan(0);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await wired.close();
      }
      // A client that waits for answers (a connected socket that hangs): the scrape's own bound.
      const hung = new Redis(redisUrl, { enableReadyCheck: false, maxRetriesPerRequest: null });
      clients.push(hung);
      const ep = createMetricsEndpoint({ read: () => redisMetrics(hung, prefix, ttl).read(), queue: () => new Promise(() => {}) }, 500);
      const t0 = performance.now();
      const x = parseExposition(await ep.scrape());
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(x.get('kvm_migrate_metrics_redis_up')).toBe(0);
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });
});
