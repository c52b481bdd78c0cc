/**
 * The progress series: the sampling policy (table tests and long simulated
 * migrations), the final figures of a task, and the recorder against real
 * Redis (what is stored, its lifetime, a job picked up again continuing its
 * series, a failing store never failing the migration).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { finalFigures, pointOf, redisSeriesStore, SERIES_SLACK_SECONDS, seriesKey, type SeriesPoint, type SeriesState, type SeriesStore } from '../shared/series.js';
import type { Checkpoint, HistoryEntry } from '../shared/job.js';
import { METRICS } from '../shared/metrics/catalog.js';
import { END_EVENT, metricEvents } from '../shared/metrics/events.js';
import type { MigrationProgress, Task } from '../shared/task.js';
import { SERIES_SAMPLING, samplePoint, thin, type SamplingPolicy } from '../worker/policy/series.js';
import type { RunnableJob } from '../worker/runner.js';
import { SeriesRecorder, withSeries } from '../worker/series.js';

const P: SamplingPolicy = { minIntervalMs: 1000, maxPoints: 6 };
const pt = (t: number, extra: Partial<SeriesPoint> = {}): SeriesPoint => ({ t, percent: 0, ...extra });
const at = (...ts: number[]): SeriesState => ({ intervalMs: 1000, points: ts.map((t) => pt(t)) });

describe('sampling policy', () => {
  it.each([
    ['the first point', null, 5000, false, 'append', [5000], 1000],
    ['a point an interval after the last', at(0), 1000, false, 'append', [0, 1000], 1000],
    ['a point well after the last', at(0), 7300, false, 'append', [0, 7300], 1000],
    ['a point within the interval', at(0), 999, false, 'skip', [0], 1000],
    ['a final point within the interval (kept)', at(0), 200, true, 'append', [0, 200], 1000],
    ['a point at the same time as the last', at(0, 1000), 1000, false, 'skip', [0, 1000], 1000],
    ['a final point at the same time as the last', at(0, 1000), 1000, true, 'skip', [0, 1000], 1000],
    ['a point earlier than the last', at(0, 1000), 500, true, 'skip', [0, 1000], 1000],
    ['the point that fills the cap', at(0, 1000, 2000, 3000, 4000), 5000, false, 'append', [0, 1000, 2000, 3000, 4000, 5000], 1000],
    ['the point past the cap: halved, interval doubled', at(0, 1000, 2000, 3000, 4000, 5000), 6000, false, 'replace', [0, 2000, 4000, 6000], 2000],
    ['a final point past the cap: kept as the last', at(0, 1000, 2000, 3000, 4000, 5000), 5100, true, 'replace', [0, 2000, 4000, 5100], 2000],
    ['after thinning, a point within the doubled interval', { intervalMs: 2000, points: [0, 2000].map((t) => pt(t)) }, 3500, false, 'skip', [0, 2000], 2000],
    ['after thinning, a point the doubled interval later', { intervalMs: 2000, points: [0, 2000].map((t) => pt(t)) }, 4000, false, 'append', [0, 2000, 4000], 2000],
    ['the first point before libvirt measured anything (all zeros)', null, 500, false, 'skip', [], 1000],
    ['a point before libvirt measured anything, later on', at(0), 5000, false, 'skip', [0], 1000],
    ['a stored interval under the policy minimum counts as the minimum', { intervalMs: 0, points: [pt(0)] }, 500, false, 'skip', [0], 1000],
  ] as const)('%s', (what, state, t, final, kind, times, interval) => {
    const unmeasured = what.includes('before libvirt measured');
    const d = samplePoint(state as SeriesState | null, pt(t, unmeasured ? { dataTotal: 0, dataRemaining: 0, dataProcessed: 0 } : { dataTotal: 100 }), P, final);
    expect(d.kind).toBe(kind);
    const after = d.kind === 'skip' ? (state as SeriesState | null) : d.state;
    expect(after?.points.map((p) => p.t) ?? []).toEqual(times);
    if (d.kind !== 'skip') expect(d.state.intervalMs).toBe(interval);
  });

  it.each([
    [[], []],
    [[1], [1]],
    [[1, 2], [1, 2]],
    [[1, 2, 3], [1, 3]],
    [[1, 2, 3, 4], [1, 3, 4]],
    [[1, 2, 3, 4, 5, 6, 7], [1, 3, 5, 7]],
  ])('thinning %j keeps the first, every other and the last: %j', (ts, kept) => {
    expect(thin(ts.map((t) => pt(t))).map((p) => p.t)).toEqual(kept);
  });

  /** Feeds samples every `everyMs` for `durationMs`, then the final one; checks the bound at every step. */
  function simulate(durationMs: number, everyMs: number, policy = SERIES_SAMPLING) {
    let state: SeriesState | null = null;
    let most = 0;
    const start = 1_700_000_000_000;
    for (let e = 0; e <= durationMs; e += everyMs) {
      const d = samplePoint(state, pt(start + e, { elapsedMs: e, dataRemaining: durationMs - e }), policy);
      if (d.kind !== 'skip') state = d.state;
      most = Math.max(most, state?.points.length ?? 0);
    }
    const d = samplePoint(state, pt(start + durationMs + 300, { elapsedMs: durationMs + 300, percent: 100, dataRemaining: 0 }), policy, true);
    if (d.kind !== 'skip') state = d.state;
    return { state: state!, most: Math.max(most, state!.points.length), start };
  }

  it('a 3-hour migration sampled twice a second: at most 600 points, covering it from its first sample to its final figures', () => {
    const hours3 = 3 * 3600 * 1000;
    const { state, most, start } = simulate(hours3, 500);
    expect(most).toBeLessThanOrEqual(600);
    expect(state.points.length).toBeGreaterThanOrEqual(300);
    expect(state.points[0]!.t).toBe(start);
    expect(state.points.at(-1)).toMatchObject({ percent: 100, dataRemaining: 0 });
    const ts = state.points.map((p) => p.t);
    const gaps = ts.slice(1).map((t, i) => t - ts[i]!);
    expect(gaps.every((g) => g > 0)).toBe(true);
    // Evenly spread: no gap is more than twice the interval in force, so no stretch of the migration is missing.
    expect(Math.max(...gaps)).toBeLessThanOrEqual(2 * state.intervalMs);
    expect(state.intervalMs).toBeGreaterThanOrEqual(hours3 / 600);
  });

  it('a 30-second migration sampled twice a second: one point a second, nothing thinned', () => {
    const { state } = simulate(30_000, 500);
    expect(state.intervalMs).toBe(1000);
    expect(state.points.length).toBe(32);
    expect(state.points.slice(0, -1).every((p, i) => i === 0 || p.t - state.points[i - 1]!.t >= 1000)).toBe(true);
  });
});

describe('points and final figures', () => {
  it('a point keeps the figures that can be plotted and drops the rest', () => {
    const p: MigrationProgress = { percent: 41.5, dataTotal: 100, dataProcessed: 40, dataRemaining: 60, memoryBps: 7, iteration: 2, elapsedMs: 900, dirtyRateBps: 3, etaSeconds: 9, converging: true };
    expect(pointOf(p, 123)).toEqual({ t: 123, percent: 41.5, dataTotal: 100, dataProcessed: 40, dataRemaining: 60, memoryBps: 7, iteration: 2, elapsedMs: 900, dirtyRateBps: 3 });
    expect(pointOf({ percent: 0 }, 5)).toEqual({ t: 5, percent: 0 });
  });

  const task = (over: Partial<Task>): Task => ({
    id: 'x', status: 'finished', message: '', target_uri: '/vms/g', stage: 'done', vm: 'g', source: { uri: 'qemu+tcp://h1/system' }, destination: { host: 'h2', uri: 'qemu+tcp://h2/system' },
    queue_state: 'completed', attempts: 1, created_at: '2026-01-01T00:00:00.000Z', started_at: '2026-01-01T00:00:01.000Z', finished_at: '2026-01-01T00:00:11.500Z',
    progress: null, policy: { bandwidth: 'unlimited', max_downtime: 300, deadline: 60, deadline_action: 'abort', auto_converge: false, compression: 'none', in_force: null }, error: null, history: [], ...over,
  });

  // One pickup: the stages ran from 00:00:01.200 to 00:00:11.500.
  const h = (at: string, stage: string, event: HistoryEntry['event']): HistoryEntry => ({ at: `2026-01-01T${at}Z`, stage, event });
  const onePickup = [h('00:00:00.000', 'queue', 'queued'), h('00:00:01.200', 'check', 'start'), h('00:00:02.000', 'check', 'done'), h('00:00:04.000', 'migrate', 'start'), h('00:00:10.000', 'migrate', 'done'), h('00:00:11.500', 'finish', 'done')];

  it.each([
    ['running: none yet', task({ status: 'running', finished_at: null, history: onePickup.slice(0, 4) }), null],
    [
      'finished: the task\'s final progress',
      task({ history: onePickup, progress: { percent: 100, dataTotal: 134_000_000, dataProcessed: 60_000_000, dataRemaining: 0, iteration: 4, elapsedMs: 6000, downtimeMs: 42 } }),
      { status: 'finished', durationMs: 10_300, copyMs: 6000, downtimeMs: 42, dataProcessed: 60_000_000, dataTotal: 134_000_000, dataRemaining: 0, iterations: 4, averageBps: 10_000_000, percent: 100 },
    ],
    [
      'killed while queued: times, no figures',
      task({ status: 'killed', started_at: null, progress: null, history: [h('00:00:00.000', 'queue', 'queued'), h('00:00:09.000', 'queue', 'decision')] }),
      { status: 'killed', durationMs: null, copyMs: null, downtimeMs: null, dataProcessed: null, dataTotal: null, dataRemaining: null, iterations: null, averageBps: null, percent: null },
    ],
    [
      'failed mid-copy: what was copied until then',
      task({ status: 'failed', history: [...onePickup.slice(0, 4), h('00:00:07.000', 'migrate', 'error'), h('00:00:08.250', 'recover', 'done')], progress: { percent: 37, dataProcessed: 5000, dataRemaining: 9000, elapsedMs: 0 } }),
      { status: 'failed', durationMs: 7050, copyMs: 0, downtimeMs: null, dataProcessed: 5000, dataRemaining: 9000, averageBps: null, percent: 37 },
    ],
  ])('%s', (_what, t, want) => {
    const f = finalFigures(t);
    if (want === null) expect(f).toBeNull();
    else expect(f).toMatchObject({ ...want, started_at: t.started_at, finished_at: t.finished_at });
  });

  // started_at and finished_at are the last pickup's (BullMQ's processedOn starts again at each
  // one); the duration counts every stage since the first start, as the duration metric does.
  it.each([
    [
      'waited for a migration slot before its first stage: the wait is not migrating',
      '00:10:00.000', '00:10:20.000',
      [h('00:00:00.000', 'queue', 'queued'), h('00:00:01.000', 'queue', 'decision'), h('00:09:59.000', 'queue', 'decision'), h('00:10:00.100', 'check', 'start'), h('00:10:19.100', 'finish', 'done')],
      19_000,
    ],
    [
      'retried: a stage failed, waited out its backoff, and ran again',
      '00:01:30.000', '00:01:45.000',
      [h('00:00:00.000', 'queue', 'queued'), h('00:00:01.000', 'check', 'start'), h('00:00:02.000', 'check', 'done'), h('00:00:03.000', 'connect', 'start'), h('00:00:04.000', 'connect', 'retry'), h('00:01:30.050', 'connect', 'start'), h('00:01:31.000', 'connect', 'done'), h('00:01:44.000', 'finish', 'done')],
      103_000,
    ],
    [
      'resumed by another worker after the first died mid-copy',
      '00:05:00.000', '00:05:30.000',
      [h('00:00:00.000', 'queue', 'queued'), h('00:00:02.000', 'check', 'start'), h('00:00:03.000', 'check', 'done'), h('00:00:10.000', 'migrate', 'start'), h('00:05:00.500', 'migrate', 'resume'), h('00:05:20.000', 'migrate', 'done'), h('00:05:29.000', 'finish', 'done')],
      327_000,
    ],
    [
      'a clock that stepped back: no time, not a negative one',
      '00:00:01.000', '00:00:02.000',
      [h('00:00:05.000', 'check', 'start'), h('00:00:01.000', 'check', 'error')],
      0,
    ],
  ])('%s', (_what, started, finished, history, durationMs) => {
    const t = task({ started_at: `2026-01-01T${started}Z`, finished_at: `2026-01-01T${finished}Z`, history });
    const f = finalFigures(t)!;
    expect(f.durationMs).toBe(durationMs);
    expect(f.started_at).toBe(t.started_at);
    // The figure and the metric agree: the end event observes the same seconds.
    const cp: Checkpoint = { step: 'done', results: {}, history };
    const end = metricEvents(cp, null).find((e) => e.key === END_EVENT)!;
    expect(end.incs.find((i) => i.field.startsWith(`${METRICS.duration.name}\t`) && i.field.endsWith('\tsum'))!.by).toBe(durationMs / 1000);
  });
});

describe('recording a series in Redis', () => {
  const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
  const redis = new Redis(process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379');
  const keep = 3600;
  const store = redisSeriesStore(redis, prefix, keep);
  const quiet = { warn: () => undefined };
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('stores the kept points in order, expiring with the task\'s retention (plus slack), and thins in place', async () => {
    const id = randomUUID();
    let now = 1_000_000;
    const rec = new SeriesRecorder(id, store, { minIntervalMs: 1000, maxPoints: 5 }, () => now, quiet);
    for (let i = 0; i < 12; i++) {
      await rec.record({ percent: i * 5, dataRemaining: 1000 - i * 50, elapsedMs: i * 500 });
      now += 500;
    }
    await rec.record({ percent: 100, dataRemaining: 0, elapsedMs: 6100 });
    const stored = await store.load(id);
    expect(stored!.points.length).toBeLessThanOrEqual(5);
    expect(stored!.points[0]).toMatchObject({ t: 1_000_000, percent: 0, dataRemaining: 1000, elapsedMs: 0 });
    expect(stored!.points.at(-1)).toMatchObject({ percent: 100, dataRemaining: 0, elapsedMs: 6100 });
    const ts = stored!.points.map((p) => p.t);
    expect([...ts].sort((a, b) => a - b)).toEqual(ts);
    expect(stored!.intervalMs).toBeGreaterThan(1000);
    const ttl = await redis.ttl(seriesKey(prefix, id));
    expect(ttl).toBeGreaterThan(keep);
    expect(ttl).toBeLessThanOrEqual(keep + SERIES_SLACK_SECONDS);
  });

  it('a job picked up again (a new recorder) continues the stored series instead of starting over', async () => {
    const id = randomUUID();
    let now = 5_000_000;
    const first = new SeriesRecorder(id, store, SERIES_SAMPLING, () => now, quiet);
    await first.record({ percent: 10 });
    now += 1000;
    await first.record({ percent: 20 });
    now += 300;
    const second = new SeriesRecorder(id, store, SERIES_SAMPLING, () => now, quiet);
    await second.record({ percent: 25 }); // too soon after the stored last point
    now += 1000;
    await second.record({ percent: 30 });
    expect((await store.load(id))!.points.map((p) => p.percent)).toEqual([10, 20, 30]);
  });

  it('the job publishes its progress as before, and a store that fails costs the series, not the migration (one warning)', async () => {
    const broken: SeriesStore = {
      load: async () => null,
      append: async () => {
        throw new Error('READONLY You can\'t write against a read only replica.');
      },
      replace: async () => undefined,
    };
    const warnings: string[] = [];
    let now = 0;
    const rec = new SeriesRecorder('j', broken, SERIES_SAMPLING, () => (now += 2000), { warn: (_o, m) => warnings.push(String(m)) });
    const published: MigrationProgress[] = [];
    let data = { request: { vm: 'g' } };
    const job = {
      id: 'j',
      get data() {
        return data;
      },
      attemptsMade: 0,
      maxAttempts: 3,
      lastProgress: null,
      updateData: async (d: typeof data) => void (data = d),
      updateProgress: async (p: MigrationProgress) => void published.push(p),
    } as unknown as RunnableJob;
    const wrapped = withSeries(job, rec);
    await wrapped.updateProgress({ percent: 1 });
    await wrapped.updateProgress({ percent: 2 });
    expect(published.map((p) => p.percent)).toEqual([1, 2]);
    expect(warnings).toEqual(['cannot record the progress series; the migration goes on']);
    // Everything else is the job's own, read live.
    await wrapped.updateData({ request: { vm: 'h' } } as never);
    expect((wrapped.data as unknown as typeof data).request.vm).toBe('h');
    expect(wrapped.id).toBe('j');
    expect(wrapped.maxAttempts).toBe(3);
  });
});
