/**
 * The pure parts of the migration metrics: buckets, label values, the Redis
 * field encoding and what it reads back as, and which events a checkpoint
 * holds (tables).
 */
import { describe, expect, it } from 'vitest';
import { migrationError } from '../shared/errors.js';
import type { Checkpoint, HistoryEntry } from '../shared/job.js';
import { bucketFor, DOWNTIME_BUCKETS, DURATION_BUCKETS, METRICS, STAGE_BUCKETS } from '../shared/metrics/catalog.js';
import { checkFailureCodes, metricEvents, transferredBytes } from '../shared/metrics/events.js';
import { counterInc, counterSeries, histogramSeries, inFlightSeries, observation, withHosts } from '../shared/metrics/fields.js';
import { codeLabel, destinationHostLabel, labelValue, outcomeOf, sourceHostLabel, stageLabel } from '../shared/metrics/labels.js';
import { endedByQueue } from '../worker/metrics.js';

describe('buckets', () => {
  it.each([
    [0.3, DURATION_BUCKETS, '0.5'],
    [0.5, DURATION_BUCKETS, '0.5'],
    [0.51, DURATION_BUCKETS, '1'],
    [7200, DURATION_BUCKETS, '7200'],
    [20_000, DURATION_BUCKETS, '+Inf'],
    [0, DOWNTIME_BUCKETS, '0.005'],
    [0.027, DOWNTIME_BUCKETS, '0.05'],
    [61, DOWNTIME_BUCKETS, '+Inf'],
    [0.01, STAGE_BUCKETS, '0.05'],
  ] as const)('%s s falls in le=%s', (v, buckets, le) => {
    expect(bucketFor(v, buckets)).toBe(le);
  });

  it('ascend, and span what migrations take: half a second to hours, downtime from 5 ms, stages from 50 ms', () => {
    for (const b of [DURATION_BUCKETS, DOWNTIME_BUCKETS, STAGE_BUCKETS]) expect([...b].sort((x, y) => x - y)).toEqual([...b]);
    expect([DURATION_BUCKETS[0], DURATION_BUCKETS.at(-1)! >= 7200]).toEqual([0.5, true]);
    expect([DOWNTIME_BUCKETS[0], STAGE_BUCKETS[0]]).toEqual([0.005, 0.05]);
  });

  it('every metric has a unit-suffixed name, help, and only bounded labels', () => {
    for (const d of Object.values(METRICS)) {
      expect(d.name).toMatch(/^kvm_migrate_[a-z_]+(_total|_seconds|_in_flight)$/);
      expect(d.help.length).toBeGreaterThan(20);
      for (const l of d.labels) expect(['source', 'destination', 'stage', 'outcome', 'code']).toContain(l);
      expect(d.type === 'histogram').toBe('buckets' in d);
    }
  });
});

describe('label values', () => {
  it.each([
    ['qemu+tcp://127.0.0.11/system', '127.0.0.11'],
    ['qemu+ssh://root@Host-A.example:22/system', 'host-a.example'],
    ['qemu+tcp://[::1]/system', '[::1]'],
    ['qemu:///system', 'localhost'],
    ['test:///default', 'localhost'],
    ['not a uri', 'unknown'],
  ])('source %s → %s', (uri, label) => expect(sourceHostLabel(uri)).toBe(label));

  it.each([
    ['127.0.0.12', '127.0.0.12'],
    ['Host2.Example.', 'host2.example'],
    ['a,b=c\td"e$f{g}', 'a_b_c_d_e_f_g_'],
    ['', 'unknown'],
    ['x'.repeat(300), 'x'.repeat(128)],
  ])('destination %j → %j', (host, label) => expect(destinationHostLabel(host)).toBe(label));

  it.each([
    ['KCHVM0090E', 'KCHVM0090E'],
    ['KMIG0204E', 'KMIG0204E'],
    ['KMIG0204', 'unknown'],
    ['vm-name', 'unknown'],
    [undefined, 'unknown'],
  ])('code %s → %s', (code, label) => expect(codeLabel(code)).toBe(label));

  it('stages are the six stage names, outcomes as the task status says', () => {
    expect(['check', 'migrate', 'queue', 'lab-tiny'].map(stageLabel)).toEqual(['check', 'migrate', 'unknown', 'unknown']);
    expect(outcomeOf(undefined)).toBe('finished');
    expect(outcomeOf(migrationError('CANCELLED', { name: 'g' }).toJSON())).toBe('killed');
    expect(outcomeOf(migrationError('MIGRATION_FAILED', { name: 'g', detail: 'x' }).toJSON())).toBe('failed');
    expect(labelValue('ok.host-1:[::]')).toBe('ok.host-1:[::]');
  });
});

describe('fields', () => {
  const hosts = { source: 'h1', destination: 'h2' };
  const fill = (incs: { field: string; by: number }[]) => {
    const m = new Map<string, number>();
    for (const i of incs) {
      const f = withHosts(i.field, hosts);
      m.set(f, (m.get(f) ?? 0) + i.by);
    }
    return m;
  };

  it('counters come back with their labels, hosts filled in', () => {
    const m = fill([counterInc(METRICS.failed, { code: 'KCHVM0090E' }), counterInc(METRICS.failed, { code: 'KCHVM0090E' }), counterInc(METRICS.bytes, {}, 5e9)]);
    expect(counterSeries(m, METRICS.failed)).toEqual([{ labels: { source: 'h1', destination: 'h2', code: 'KCHVM0090E' }, value: 2 }]);
    expect(counterSeries(m, METRICS.bytes)).toEqual([{ labels: { source: 'h1', destination: 'h2' }, value: 5e9 }]);
    expect([...m.keys()].some((k) => k.includes('$'))).toBe(false);
  });

  it('histograms come back cumulative, +Inf equal to the count, with the sum', () => {
    const m = fill([0.3, 0.7, 0.9, 50_000].flatMap((v) => observation(METRICS.duration, { outcome: 'finished' }, v)));
    const [s] = histogramSeries(m, METRICS.duration);
    expect(s!.labels).toEqual({ source: 'h1', destination: 'h2', outcome: 'finished' });
    expect(s!.buckets.slice(0, 3)).toEqual([{ le: '0.5', count: 1 }, { le: '1', count: 3 }, { le: '2', count: 3 }]);
    expect(s!.buckets.at(-2)).toEqual({ le: '14400', count: 3 });
    expect(s!.buckets.at(-1)).toEqual({ le: '+Inf', count: 4 });
    expect([s!.sum, s!.count]).toEqual([50_001.9, 4]);
  });

  it('a bucket from an older bucket list counts in the first current bucket that holds it', () => {
    const m = new Map([[`${METRICS.stage.name}\tstage=check\tle=0.3`, 2], [`${METRICS.stage.name}\tstage=check\tcount`, 2], [`${METRICS.stage.name}\tstage=check\tsum`, 0.5]]);
    const [s] = histogramSeries(m, METRICS.stage);
    expect(s!.buckets.find((b) => b.le === '0.25')!.count).toBe(0);
    expect(s!.buckets.find((b) => b.le === '0.5')!.count).toBe(2);
  });

  it('in flight is started minus ended per host pair, never below zero', () => {
    const m = new Map<string, number>([
      [`${METRICS.started.name}\tsource=a,destination=b\t`, 5],
      [`${METRICS.finished.name}\tsource=a,destination=b\t`, 2],
      [`${METRICS.failed.name}\tsource=a,destination=b,code=KCHVM0090E\t`, 1],
      [`${METRICS.killed.name}\tsource=a,destination=b\t`, 1],
      [`${METRICS.started.name}\tsource=a,destination=c\t`, 1],
      [`${METRICS.finished.name}\tsource=a,destination=c\t`, 3],
      ['garbage', 7],
    ]);
    expect(inFlightSeries(m)).toEqual([{ labels: { source: 'a', destination: 'b' }, value: 1 }, { labels: { source: 'a', destination: 'c' }, value: 0 }]);
  });
});

const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
const e = (s: number, stage: string, event: HistoryEntry['event'], detail?: string): HistoryEntry => ({ at: at(s), stage, event, ...(detail ? { detail } : {}) });
const keys = (cp: Checkpoint, p = null) => metricEvents(cp, p).map((x) => x.key);
const incsOf = (cp: Checkpoint, key: string, p: Parameters<typeof metricEvents>[1] = null) => new Map(metricEvents(cp, p).find((x) => x.key === key)!.incs.map((i) => [i.field, i.by]));

const happyHistory = [
  e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(1.5, 'check', 'done'), e(1.5, 'connect', 'start'), e(2, 'connect', 'done'),
  e(2, 'prepare', 'start'), e(2.1, 'prepare', 'done'), e(2.1, 'migrate', 'start'), e(2.2, 'migrate', 'step'), e(9.1, 'migrate', 'done'),
  e(9.1, 'finish', 'start'), e(9.6, 'finish', 'done'),
];
const finished: Checkpoint = { step: 'done', history: happyHistory, results: { migrate: { startedAt: at(2.2), stats: { downtime: 27, data_processed: 5_000_000 } } } };

describe('events a checkpoint holds', () => {
  it('a finished migration: started, each stage, and the end with duration, downtime and bytes', () => {
    expect(keys(finished)).toEqual(['started', 'stage:2', 'stage:4', 'stage:6', 'stage:9', 'stage:11', 'end']);
    const end = incsOf(finished, 'end');
    expect(end.get(`${METRICS.finished.name}\tsource=$source,destination=$destination\t`)).toBe(1);
    expect(end.get(`${METRICS.duration.name}\tsource=$source,destination=$destination,outcome=finished\tsum`)).toBeCloseTo(8.6, 9);
    expect(end.get(`${METRICS.downtime.name}\tsource=$source,destination=$destination\tsum`)).toBe(0.027);
    expect(end.get(`${METRICS.downtime.name}\tsource=$source,destination=$destination\tle=0.05`)).toBe(1);
    expect(end.get(`${METRICS.bytes.name}\tsource=$source,destination=$destination\t`)).toBe(5_000_000);
    expect(incsOf(finished, 'stage:9').get(`${METRICS.stage.name}\tstage=migrate\tsum`)).toBeCloseTo(7, 9);
  });

  it('a running one: started and the stages done so far, no end', () => {
    expect(keys({ step: 'migrate', results: {}, history: happyHistory.slice(0, 8) })).toEqual(['started', 'stage:2', 'stage:4', 'stage:6']);
  });

  it('a stage run again after a crash counts from its new start; retries count by index and stage', () => {
    const h = [e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(2, 'check', 'done'), e(2, 'connect', 'start'), e(3, 'connect', 'retry', 'attempt 1/5'), e(5, 'connect', 'resume'), e(5, 'connect', 'start'), e(5.25, 'connect', 'done')];
    const cp: Checkpoint = { step: 'prepare', results: {}, history: h };
    expect(keys(cp)).toEqual(['started', 'stage:2', 'retry:4', 'stage:7']);
    expect(incsOf(cp, 'stage:7').get(`${METRICS.stage.name}\tstage=connect\tsum`)).toBe(0.25);
    expect(incsOf(cp, 'retry:4').get(`${METRICS.retries.name}\tstage=connect\t`)).toBe(1);
  });

  it('nothing for a migration that never began a stage', () => {
    const error = migrationError('CANCELLED', { name: 'g' }).toJSON();
    expect(metricEvents({ step: 'done', error, results: {}, history: [e(0, 'queue', 'queued'), e(1, 'check', 'decision', 'cancelled before the migration started')] }, null)).toEqual([]);
  });

  it('a check that blocked: failed with the task code, a check failure per distinct blocker code', () => {
    const blockers = [migrationError('DEST_UNREACHABLE', { uri: 'u', detail: 'd' }).toJSON(), migrationError('DISK_NOT_SHARED', { target: 'a', path: 'p' }).toJSON(), migrationError('DISK_NOT_SHARED', { target: 'b', path: 'q' }).toJSON()];
    const error = { ...blockers[0]!, details: { blockers } };
    const cp: Checkpoint = { step: 'done', error, results: {}, history: [e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(1.4, 'check', 'done', '3 blocker(s)')] };
    const end = incsOf(cp, 'end');
    expect(end.get(`${METRICS.failed.name}\tsource=$source,destination=$destination,code=KCHVM0090E\t`)).toBe(1);
    expect(end.get(`${METRICS.checkFailures.name}\tcode=KCHVM0090E\t`)).toBe(1);
    expect(end.get(`${METRICS.checkFailures.name}\tcode=KMIG0102E\t`)).toBe(1);
    expect(end.get(`${METRICS.duration.name}\tsource=$source,destination=$destination,outcome=failed\tsum`)).toBeCloseTo(0.4, 9);
    expect([...end.keys()].some((k) => k.startsWith(METRICS.downtime.name) || k.startsWith(METRICS.bytes.name))).toBe(false);
  });

  it.each([
    ['a check that threw', [e(1, 'check', 'start'), e(2, 'check', 'error')], 'VM_NOT_FOUND', ['KCHVM0002E']],
    ['a slot wait that timed out after the check passed', [e(1, 'check', 'start'), e(2, 'check', 'done'), e(3, 'connect', 'decision')], 'SLOT_WAIT_TIMEOUT', []],
    ['a failed copy', [e(1, 'migrate', 'start'), e(2, 'migrate', 'done'), e(2, 'recover', 'start'), e(3, 'recover', 'done')], 'MIGRATION_FAILED', []],
  ] as const)('check failure codes: %s', (_what, h, key, codes) => {
    const error = migrationError(key, { name: 'g', detail: 'x', seconds: '1', reason: 'r' }).toJSON();
    expect(checkFailureCodes(error, h)).toEqual(codes);
  });

  it('a killed copy: killed, bytes from the last progress the task showed, no downtime', () => {
    const error = migrationError('CANCELLED', { name: 'g' }).toJSON();
    const cp: Checkpoint = { step: 'done', error, results: { migrate: { startedAt: at(1), outcome: 'failed', error } }, history: [e(1, 'migrate', 'start'), e(4, 'migrate', 'done'), e(4, 'recover', 'start'), e(5, 'recover', 'done')] };
    const end = incsOf(cp, 'end', { percent: 40, dataProcessed: 1234 });
    expect(end.get(`${METRICS.killed.name}\tsource=$source,destination=$destination\t`)).toBe(1);
    expect(end.get(`${METRICS.bytes.name}\tsource=$source,destination=$destination\t`)).toBe(1234);
    expect([...end.keys()].some((k) => k.startsWith(METRICS.downtime.name))).toBe(false);
    expect(transferredBytes(cp, null)).toBe(0);
    expect(transferredBytes(finished, { percent: 100, dataProcessed: 1 })).toBe(5_000_000);
  });
});

describe('a job BullMQ failed without the runner saving its end', () => {
  const running: Checkpoint = { step: 'connect', results: {}, history: [e(0, 'queue', 'queued'), e(1, 'check', 'start'), e(2, 'check', 'done')] };

  it('ends as its task shows it: KMIG0299E with the reason, at the time BullMQ finished it', () => {
    const cp = endedByQueue(running, Date.parse(at(7)), 'Redis went away')!;
    expect(cp.step).toBe('done');
    expect(cp.error).toMatchObject({ code: 'KMIG0299E', reason: 'KMIG0299E: Internal error: Redis went away' });
    expect(cp.history.at(-1)).toMatchObject({ at: at(7), stage: 'connect', event: 'error' });
    expect(keys(cp)).toEqual(['started', 'stage:2', 'end']);
  });

  it('not when the runner saved the end, nor for a job that never started a stage', () => {
    expect(endedByQueue(finished, Date.now(), 'x')).toBeNull();
    expect(endedByQueue({ step: 'check', results: {}, history: [e(0, 'queue', 'queued')] }, Date.now(), 'x')).toBeNull();
    expect(endedByQueue(undefined, Date.now(), 'x')).toBeNull();
  });
});
