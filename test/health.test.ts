/**
 * /healthz and /readyz: the readiness verdict from its three checks (table,
 * with stand-in probes), and the real thing on an API in this process with
 * real Redis and libvirt's test driver: not ready without a worker, ready
 * once one is connected to the queue; no token needed for either.
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readiness, type Probes } from '../api/health.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api } from './helpers/service.js';

const ok = async () => undefined;
const fail = (msg: string) => async () => Promise.reject(new Error(msg));

describe('readiness()', () => {
  it.each([
    [{ redis: ok, libvirt: ok, workers: async () => 2 }, true, { redis: true, libvirt: true, workers: true }],
    [{ redis: fail('connect ECONNREFUSED redis://:secret@10.0.0.1:6379'), libvirt: ok, workers: async () => 2 }, false, { redis: false, libvirt: true, workers: true }],
    [{ redis: ok, libvirt: fail('Connection refused'), workers: async () => 1 }, false, { redis: true, libvirt: false, workers: true }],
    [{ redis: ok, libvirt: ok, workers: async () => 0 }, false, { redis: true, libvirt: true, workers: false }],
    [{ redis: ok, libvirt: () => new Promise<void>(() => undefined), workers: async () => 1 }, false, { redis: true, libvirt: false, workers: true }],
  ] as [Probes, boolean, Record<string, boolean>][])('%#: ready %s', async (probes, ready, oks) => {
    const r = await readiness(probes);
    expect(r.ready).toBe(ready);
    expect(Object.fromEntries(Object.entries(r.checks).map(([k, c]) => [k, c.ok]))).toEqual(oks);
    // A Redis URL in a failure never reaches the answer whole (it may carry a password).
    expect(JSON.stringify(r)).not.toContain('secret');
  }, 10_000);
});

let svc: InProc;
let worker: Worker | undefined;
let conn: Redis | undefined;
beforeAll(async () => {
  svc = await startInProc();
});
afterAll(async () => {
  await worker?.close();
  conn?.disconnect();
  await svc?.close();
});

describe('/healthz and /readyz on a real API', () => {
  it('answer without a token: alive; not ready until a worker is connected, then ready', async () => {
    const alive = await api(svc.url, 'GET', '/healthz', undefined, { token: null });
    expect(alive.status).toBe(200);
    expect(alive.body.status).toBe('alive');
    const before = await api(svc.url, 'GET', '/readyz', undefined, { token: null });
    expect(before.status).toBe(503);
    expect(before.body.checks).toMatchObject({ redis: { ok: true }, libvirt: { ok: true }, workers: { ok: false, detail: expect.stringMatching(/no worker/) } });
    conn = new Redis(svc.config.redis.url, { maxRetriesPerRequest: null });
    worker = new Worker(svc.config.redis.queue, async () => undefined, { connection: conn, prefix: svc.config.redis.prefix });
    await worker.waitUntilReady();
    let after = before;
    for (let i = 0; i < 30 && after.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 200));
      after = await api(svc.url, 'GET', '/readyz', undefined, { token: null });
    }
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ ready: true, checks: { workers: { ok: true, detail: '1 connected' } } });
  });
});
