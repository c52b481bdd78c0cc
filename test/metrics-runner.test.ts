/**
 * The runner records migration metrics where it saves the checkpoint, once
 * per task however often a job is picked up again (an in-memory recorder
 * with the Redis one's rules); and the API's exposition renders them, bounded
 * when the store does not answer.
 */
import { describe, expect, it } from 'vitest';
import { createMetricsEndpoint } from '../api/metrics.js';
import { loadConfig } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import { METRICS } from '../shared/metrics/catalog.js';
import { counterSeries, histogramSeries, inFlightSeries } from '../shared/metrics/fields.js';
import { memoryMetrics, type MetricsRecorder } from '../shared/metrics/store.js';
import { STAGES, type StageName } from '../shared/stage.js';
import { runJob, type RunnableJob } from '../worker/runner.js';
import type { Stage, StageOutcome } from '../worker/stages/stage.js';
import { parseExposition } from './helpers/prom.js';

const config = loadConfig({ overrides: { retry: { attempts: 3, backoff: 10 } } });
const silent = { info() {}, warn() {}, error() {}, debug() {} };
const noLibvirt: Hypervisor = { open: () => Promise.reject(new Error('no libvirt in this test')) };
/** Each reading of the clock is 100 ms after the one before, so stages take time. */
function ticking() {
  let t = Date.UTC(2026, 0, 1);
  return { now: () => new Date((t += 100)) };
}

function job(attemptsMade = 0, data?: MigrationJobData): RunnableJob & { data: MigrationJobData } {
  let d: MigrationJobData = data ?? {
    request: { vm: 'g', remoteHost: '127.0.0.12', sourceUri: 'qemu+tcp://127.0.0.11/system', destinationUri: 'qemu+tcp://127.0.0.12/system', requestedAt: '', bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 10, keepSourceDefinition: false },
  };
  return {
    id: 'task-1',
    get data() {
      return d;
    },
    attemptsMade,
    maxAttempts: 3,
    lastProgress: null,
    async updateData(n) {
      d = structuredClone(n);
    },
    async updateProgress() {},
  };
}

const next = { check: 'connect', connect: 'prepare', prepare: 'migrate', migrate: 'finish', finish: 'done', recover: 'done' } as const;
function stages(b: (n: StageName) => Promise<StageOutcome>): Record<StageName, Stage> {
  const out = {} as Record<StageName, Stage>;
  for (const name of STAGES) out[name] = { name, deadlineMs: () => 1000, run: () => b(name) };
  return out;
}
const completed: StageOutcome = { next: 'finish', results: { migrate: { startedAt: '', outcome: 'completed', stats: { downtime: 31, data_processed: 70_000_000 } } } };
const happy = async (n: StageName): Promise<StageOutcome> => (n === 'migrate' ? completed : { next: next[n] });
const deps = (st: Record<StageName, Stage>, metrics: MetricsRecorder) => ({ stages: st, hypervisor: noLibvirt, config, clock: ticking(), log: silent, settleMs: 50, metrics });

const pair = { source: '127.0.0.11', destination: '127.0.0.12' };
const count = (m: ReturnType<typeof memoryMetrics>, def: (typeof METRICS)[keyof typeof METRICS], labels: Record<string, string> = {}) =>
  counterSeries(m.values, def)
    .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);

describe('the runner records migration metrics', () => {
  it('a finished migration: started and finished once for its hosts, each stage, downtime and bytes; in flight while it runs, not after', async () => {
    const m = memoryMetrics();
    let inFlightDuringCopy: number | undefined;
    const st = stages(async (n) => {
      if (n === 'migrate') inFlightDuringCopy = inFlightSeries(m.values)[0]?.value;
      return happy(n);
    });
    await runJob(job(), deps(st, m));
    expect(inFlightDuringCopy).toBe(1);
    expect(count(m, METRICS.started, pair)).toBe(1);
    expect(count(m, METRICS.finished, pair)).toBe(1);
    expect(inFlightSeries(m.values)).toEqual([{ labels: pair, value: 0 }]);
    expect(histogramSeries(m.values, METRICS.stage).map((s) => [s.labels.stage, s.count]).sort()).toEqual([['check', 1], ['connect', 1], ['finish', 1], ['migrate', 1], ['prepare', 1]]);
    const [d] = histogramSeries(m.values, METRICS.duration);
    expect(d).toMatchObject({ labels: { ...pair, outcome: 'finished' }, count: 1 });
    expect(d!.sum).toBeGreaterThan(0.5);
    expect(histogramSeries(m.values, METRICS.downtime)[0]).toMatchObject({ sum: 0.031, count: 1 });
    expect(count(m, METRICS.bytes, pair)).toBe(70_000_000);
  });

  it('a job picked up again after its end was saved, or run twice, is counted once', async () => {
    const m = memoryMetrics();
    const j = job();
    await runJob(j, deps(stages(happy), m));
    const before = new Map(m.values);
    // Another worker resumes the same job at 'done' (the first died after saving it).
    await runJob(job(1, j.data), deps(stages(happy), m));
    expect(m.values).toEqual(before);
  });

  it('a retried stage counts a retry, and the job that resumes it counts started and finished once', async () => {
    const m = memoryMetrics();
    const transient = Object.assign(new Error('Connection refused'), { name: 'VirError', code: 38 });
    const j = job();
    await expect(runJob(j, deps(stages(async (n) => (n === 'connect' ? Promise.reject(transient) : happy(n))), m))).rejects.toBe(transient);
    expect(count(m, METRICS.retries, { stage: 'connect' })).toBe(1);
    expect(inFlightSeries(m.values)[0]!.value).toBe(1);
    await runJob(job(1, j.data), deps(stages(happy), m));
    expect([count(m, METRICS.started), count(m, METRICS.finished), count(m, METRICS.retries)]).toEqual([1, 1, 1]);
    expect(histogramSeries(m.values, METRICS.stage).find((s) => s.labels.stage === 'check')!.count).toBe(1);
    expect(histogramSeries(m.values, METRICS.stage).find((s) => s.labels.stage === 'connect')!.count).toBe(1);
  });

  it('a check that blocks: failed by code and a check failure; a cancelled copy: killed', async () => {
    const m = memoryMetrics();
    const blocker = migrationError('DEST_UNREACHABLE', { uri: 'u', detail: 'refused' }).toJSON();
    await runJob(job(), deps(stages(async (n) => (n === 'check' ? { next: 'done', error: { ...blocker, details: { blockers: [blocker] } } } : happy(n))), m)).catch(() => undefined);
    expect(count(m, METRICS.failed, { ...pair, code: 'KCHVM0090E' })).toBe(1);
    expect(count(m, METRICS.checkFailures, { code: 'KCHVM0090E' })).toBe(1);
    const cancelled = migrationError('CANCELLED', { name: 'g' }).toJSON();
    const other = Object.assign(job(), { id: 'task-2' });
    await runJob(other, deps(stages(async (n) => (n === 'migrate' ? { next: 'recover', error: cancelled } : happy(n))), m)).catch(() => undefined);
    expect(count(m, METRICS.killed, pair)).toBe(1);
    expect([count(m, METRICS.started), count(m, METRICS.checkFailures)]).toEqual([2, 1]);
    expect(inFlightSeries(m.values)[0]!.value).toBe(0);
  });

  it('a recorder that fails never fails the migration; what it missed is sent with the next save, or at the end', async () => {
    const m = memoryMetrics();
    let down = true;
    const flaky: MetricsRecorder = { record: (...a) => (down ? Promise.reject(new Error('Redis away')) : m.record(...a)) };
    const st = stages(async (n) => {
      if (n === 'finish') down = false;
      return happy(n);
    });
    await runJob(job(), deps(st, flaky));
    expect([count(m, METRICS.started), count(m, METRICS.finished)]).toEqual([1, 1]);
    expect(histogramSeries(m.values, METRICS.stage).map((s) => s.labels.stage).sort()).toEqual(['check', 'connect', 'finish', 'migrate', 'prepare']);
    await expect(runJob(Object.assign(job(), { id: 'task-3' }), deps(stages(happy), { record: () => Promise.reject(new Error('Redis away')) }))).resolves.toMatchObject({ step: 'done' });
  });
});

describe('the exposition', () => {
  async function recorded() {
    const m = memoryMetrics();
    await runJob(job(), deps(stages(happy), m));
    return m;
  }

  it('renders the recorded metrics with prom-client, the process metrics, redis_up 1 and the queue text', async () => {
    const m = await recorded();
    const ep = createMetricsEndpoint({ read: () => m.read(), queue: async () => '# HELP bullmq_job_count Number of jobs\n# TYPE bullmq_job_count gauge\nbullmq_job_count{queue="migrations", state="completed"} 1' });
    expect(ep.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const x = parseExposition(await ep.scrape());
    expect(x.get('kvm_migrate_metrics_redis_up')).toBe(1);
    expect(x.get(METRICS.started.name, pair)).toBe(1);
    expect(x.get(METRICS.finished.name, pair)).toBe(1);
    expect(x.get(METRICS.inFlight.name, pair)).toBe(0);
    expect(x.get(`${METRICS.duration.name}_count`, { ...pair, outcome: 'finished' })).toBe(1);
    expect(x.get(`${METRICS.duration.name}_bucket`, { ...pair, outcome: 'finished', le: '+Inf' })).toBe(1);
    expect(x.get(`${METRICS.downtime.name}_sum`, pair)).toBe(0.031);
    expect(x.get(`${METRICS.downtime.name}_bucket`, { ...pair, le: '0.025' })).toBe(0);
    expect(x.get(`${METRICS.downtime.name}_bucket`, { ...pair, le: '0.05' })).toBe(1);
    expect(x.get(METRICS.bytes.name, pair)).toBe(70_000_000);
    expect(x.sum(`${METRICS.stage.name}_count`)).toBe(5);
    expect(x.types.get(METRICS.stage.name)).toBe('histogram');
    expect(x.get('bullmq_job_count', { state: 'completed' })).toBe(1);
    expect(x.get('process_start_time_seconds')).toBeGreaterThan(1_600_000_000);
    expect(x.types.get('nodejs_heap_size_used_bytes')).toBe('gauge');
    // No VM names or task ids in any label.
    expect(x.samples.some((s) => Object.values(s.labels).some((v) => v === 'g' || v.startsWith('task-')))).toBe(false);
  });

  it.each([
    ['never answers', () => new Promise<Map<string, number>>(() => {})],
    ['fails', () => Promise.reject(new Error('ECONNREFUSED'))],
  ])('when the store %s: answers in time with redis_up 0 and the migration and queue metrics left out', async (_what, read) => {
    const ep = createMetricsEndpoint({ read, queue: () => new Promise(() => {}) }, 300);
    const t0 = performance.now();
    const x = parseExposition(await ep.scrape());
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(x.get('kvm_migrate_metrics_redis_up')).toBe(0);
    expect(x.samples.filter((s) => s.name.startsWith('kvm_migrate_') && s.name !== 'kvm_migrate_metrics_redis_up')).toEqual([]);
    expect(x.samples.some((s) => s.name.startsWith('bullmq_'))).toBe(false);
    expect(x.get('process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('overlapping scrapes share one read of the store', async () => {
    const m = await recorded();
    let reads = 0;
    const ep = createMetricsEndpoint({ read: () => (reads++, m.read()), queue: async () => '' });
    await Promise.all([ep.scrape(), ep.scrape()]);
    expect(reads).toBe(1);
    await ep.scrape();
    expect(reads).toBe(2);
  });
});
