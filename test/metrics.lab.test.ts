/**
 * /metrics after real migrations: real API and worker processes, real Redis,
 * real libvirtd and QEMU in the lab. Every figure is checked against the
 * task the API shows for the same migration: a finished one, one refused by
 * a check, one cancelled mid-copy, and one finished by a second worker after
 * the first was killed mid-copy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { METRICS } from '../shared/metrics/catalog.js';
import { api, startService, waitFor, waitTask, type Service, type Task } from './helpers/service.js';
import { parseExposition, type Exposition } from './helpers/prom.js';
import { TOKENS } from './helpers/service.js';

let svc: Service;
const src = hostAddress('host1');
const dst = hostAddress('host2');
const UNREACHABLE = '127.0.0.99';

interface FullTask extends Task {
  started_at: string;
  finished_at: string;
  progress: { percent: number; dataProcessed?: number; downtimeMs?: number } | null;
  history: { at: string; stage: string; event: string; detail?: string }[];
}

beforeAll(async () => {
  await labUp();
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') });
});

afterAll(async () => {
  await svc?.stop();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
  await resetGuest(GUEST_TINY);
});

async function scrape(): Promise<Exposition> {
  const r = await api(svc.url, 'GET', '/metrics', undefined, { token: TOKENS.viewer });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(r.body as string);
}

async function migrate(vm: string, body: Record<string, unknown>): Promise<FullTask> {
  const post = await api(svc.url, 'POST', `/vms/${vm}/migrate`, body);
  expect(post.status, JSON.stringify(post.body)).toBe(202);
  return (await waitTask(svc.url, post.body.id, 120_000)) as FullTask;
}

/** Seconds from the start of the task's first stage to its last history entry: what the worker measured. */
const measured = (t: FullTask) => (Date.parse(t.history.at(-1)!.at) - Date.parse(t.history.find((h) => h.event === 'start')!.at)) / 1000;
const stagesDone = (t: FullTask) => t.history.filter((h) => h.event === 'done').map((h) => h.stage);
const tally = (stages: string[]) => stages.reduce<Record<string, number>>((a, s) => ((a[s] = (a[s] ?? 0) + 1), a), {});

const to = (destination: string) => ({ source: src, destination });
let tiny: FullTask;

describe('/metrics after lab migrations', () => {
  it('needs a token: 401 without one, 200 for a viewer', async () => {
    const r = await api(svc.url, 'GET', '/metrics', undefined, { token: null });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('KMIG0020E');
    const x = await scrape();
    expect(x.get('kvm_migrate_metrics_redis_up')).toBe(1);
    expect(x.get(METRICS.started.name)).toBeUndefined();
  });

  it('a finished migration of lab-tiny: counted once by host, its duration, real downtime, bytes and stages as the task shows them', async () => {
    await resetGuest(GUEST_TINY);
    tiny = await migrate(GUEST_TINY, { remote_host: dst });
    expect(tiny.status).toBe('finished');
    const x = await scrape();
    expect(x.get(METRICS.started.name, to(dst))).toBe(1);
    expect(x.get(METRICS.finished.name, to(dst))).toBe(1);
    expect(x.get(METRICS.inFlight.name, to(dst))).toBe(0);
    expect(x.sum(METRICS.failed.name)).toBe(0);
    expect(x.sum(METRICS.killed.name)).toBe(0);

    const d = { ...to(dst), outcome: 'finished' };
    expect(x.get(`${METRICS.duration.name}_count`, d)).toBe(1);
    expect(x.get(`${METRICS.duration.name}_sum`, d)).toBeCloseTo(measured(tiny), 6);
    // The task's own timestamps are BullMQ's (picked up, completed): a few ms around the stages.
    expect(Math.abs(x.get(`${METRICS.duration.name}_sum`, d)! - (Date.parse(tiny.finished_at) - Date.parse(tiny.started_at)) / 1000)).toBeLessThan(0.5);

    expect(tiny.progress?.downtimeMs).toBeGreaterThan(0);
    expect(x.get(`${METRICS.downtime.name}_count`, to(dst))).toBe(1);
    expect(x.get(`${METRICS.downtime.name}_sum`, to(dst))! * 1000).toBeCloseTo(tiny.progress!.downtimeMs!, 6);
    expect(tiny.progress?.dataProcessed).toBeGreaterThan(0);
    expect(x.get(METRICS.bytes.name, to(dst))).toBe(tiny.progress!.dataProcessed);

    const runs = tally(stagesDone(tiny));
    expect(Object.keys(runs).sort()).toEqual(['check', 'connect', 'finish', 'migrate', 'prepare']);
    for (const [stage, n] of Object.entries(runs)) expect(x.get(`${METRICS.stage.name}_count`, { stage }), stage).toBe(n);
    expect(x.get(`${METRICS.stage.name}_count`, { stage: 'recover' })).toBeUndefined();
    expect(x.sum(METRICS.retries.name)).toBe(tiny.history.filter((h) => h.event === 'retry').length);

    expect(x.get('bullmq_job_count', { state: 'completed' })).toBe(1);
    expect(x.get('bullmq_job_count', { state: 'active' })).toBe(0);
    expect(x.get('bullmq_job_completed_total')).toBe(1);
  });

  it('a migration refused by a check (unreachable destination): failed and a check failure, by code', async () => {
    await resetGuest(GUEST_TINY);
    const t = await migrate(GUEST_TINY, { remote_host: UNREACHABLE });
    expect(t.status).toBe('failed');
    expect(t.error?.code).toBe('KCHVM0090E');
    const x = await scrape();
    expect(x.get(METRICS.started.name, to(UNREACHABLE))).toBe(1);
    expect(x.get(METRICS.failed.name, { ...to(UNREACHABLE), code: 'KCHVM0090E' })).toBe(1);
    expect(x.sum(METRICS.failed.name)).toBe(1);
    expect(x.get(METRICS.checkFailures.name, { code: 'KCHVM0090E' })).toBe(1);
    expect(x.sum(METRICS.checkFailures.name)).toBe(1);
    expect(x.get(`${METRICS.duration.name}_sum`, { ...to(UNREACHABLE), outcome: 'failed' })).toBeCloseTo(measured(t), 6);
    expect(x.get(METRICS.inFlight.name, to(UNREACHABLE))).toBe(0);
    expect(x.get(`${METRICS.downtime.name}_count`, to(UNREACHABLE))).toBeUndefined();
    expect(x.get(METRICS.bytes.name, to(UNREACHABLE))).toBeUndefined();
    // The first migration's figures are still there, unchanged.
    expect(x.get(METRICS.finished.name, to(dst))).toBe(1);
    expect(x.get(`${METRICS.stage.name}_count`, { stage: 'check' })).toBe(2);
    expect(x.get('bullmq_job_count', { state: 'failed' })).toBe(1);
    expect(x.get('bullmq_job_failed_total')).toBe(1);
  });

  it('a migration cancelled mid-copy: killed, in flight while it copied, bytes as its task last showed them', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dst, bandwidth: 8, deadline: 120 });
    expect(post.status).toBe(202);
    const id = post.body.id as string;
    await waitFor('memory copy', async () => {
      const t: Task = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
      return t.stage === 'migrate' && (t.progress?.percent ?? 0) > 1;
    }, 60_000, 100);
    const during = await scrape();
    expect(during.get(METRICS.inFlight.name, to(dst))).toBe(1);
    expect(during.get(METRICS.started.name, to(dst))).toBe(2);
    expect(during.get('bullmq_job_count', { state: 'active' })).toBe(1);
    expect((await api(svc.url, 'DELETE', `/tasks/${id}`)).status).toBe(202);
    const t = (await waitTask(svc.url, id, 60_000)) as FullTask;
    expect(t.status).toBe('killed');

    const x = await scrape();
    expect(x.get(METRICS.killed.name, to(dst))).toBe(1);
    expect(x.get(METRICS.finished.name, to(dst))).toBe(1);
    expect(x.get(METRICS.inFlight.name, to(dst))).toBe(0);
    expect(x.get(`${METRICS.duration.name}_count`, { ...to(dst), outcome: 'killed' })).toBe(1);
    expect(x.get(`${METRICS.duration.name}_sum`, { ...to(dst), outcome: 'killed' })).toBeCloseTo(measured(t), 6);
    // Downtime only for finished migrations.
    expect(x.get(`${METRICS.downtime.name}_count`, to(dst))).toBe(1);
    expect(t.progress?.dataProcessed).toBeGreaterThan(0);
    expect(x.get(METRICS.bytes.name, to(dst))).toBe(tiny.progress!.dataProcessed! + t.progress!.dataProcessed!);
    expect(x.get(`${METRICS.stage.name}_count`, { stage: 'migrate' })).toBe(2);
    expect(x.get(`${METRICS.stage.name}_count`, { stage: 'recover' })).toBe(1);
    expect(x.sum(METRICS.checkFailures.name)).toBe(1);
    expect(x.get('bullmq_job_count', { state: 'failed' })).toBe(2);
  });
});

describe('/metrics when another worker finishes a migration', () => {
  it('a worker SIGKILLed mid-copy, the job resumed by another: started and finished once, one downtime, the resumed stage once', async () => {
    const other = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_WORKER_LOCK_DURATION: '4000', KVM_MIGRATE_WORKER_STALLED_INTERVAL: '1000' });
    try {
      await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 1 });
      const post = await api(other.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dst, bandwidth: 8 });
      expect(post.status).toBe(202);
      const id = post.body.id as string;
      await waitFor('memory copy under way', async () => {
        const t: Task = (await api(other.url, 'GET', `/tasks/${id}`)).body;
        return t.stage === 'migrate' && (t.progress?.percent ?? 0) > 5;
      }, 30_000, 100);
      const [first] = other.workers;
      first!.kill('SIGKILL');
      await new Promise((r) => first!.once('exit', r));
      await other.startWorker();
      const t = (await waitTask(other.url, id, 90_000)) as FullTask;
      expect(t.status).toBe('finished');
      expect(t.history.filter((h) => h.event === 'resume').map((h) => h.stage)).toEqual(['migrate']);
      // The resuming worker read libvirt's final figures from the destination: the task shows them too.
      expect(t.progress?.downtimeMs).toBeGreaterThan(0);
      expect(t.progress?.dataProcessed).toBeGreaterThan(0);

      const r = await api(other.url, 'GET', '/metrics', undefined, { token: TOKENS.viewer });
      const x = parseExposition(r.body as string);
      expect(x.get(METRICS.started.name, to(dst))).toBe(1);
      expect(x.get(METRICS.finished.name, to(dst))).toBe(1);
      expect(x.get(METRICS.inFlight.name, to(dst))).toBe(0);
      expect(x.get(`${METRICS.duration.name}_sum`, { ...to(dst), outcome: 'finished' })).toBeCloseTo(measured(t), 6);
      expect(x.get(`${METRICS.downtime.name}_count`, to(dst))).toBe(1);
      expect(x.get(`${METRICS.downtime.name}_sum`, to(dst))! * 1000).toBeCloseTo(t.progress!.downtimeMs!, 6);
      expect(x.get(METRICS.bytes.name, to(dst))).toBe(t.progress!.dataProcessed);
      // The killed worker's run of migrate never reached its end: only the resumed run counts.
      expect(x.get(`${METRICS.stage.name}_count`, { stage: 'migrate' })).toBe(1);
      expect(x.get(`${METRICS.stage.name}_count`, { stage: 'check' })).toBe(1);
      expect(x.get('bullmq_job_completed_total')).toBe(1);
    } finally {
      await other.stop();
    }
  });
});
