import { describe, expect, it } from 'vitest';
import { migrationError } from '../shared/errors.js';
import { decideOnFailure, isTransient } from '../worker/policy/retry.js';
import { progressFrom } from '../worker/policy/progress.js';
import { placementOf, type HostView } from '../worker/stages/placement.js';
import { shouldRestartOnSource } from '../worker/stages/recover.js';
import type { Checkpoint } from '../shared/job.js';

const vir = (code: number, message: string) => Object.assign(new Error(message), { name: 'VirError', code });

describe('transient faults', () => {
  it.each([
    [vir(38, 'unable to connect to server at 127.0.0.12:16509: Connection refused'), true],
    [vir(38, 'Cannot recv data: Connection reset by peer'), true],
    [vir(39, 'client socket is closed'), true],
    [vir(68, 'operation timed out'), true],
    [Object.assign(new Error('x'), { name: 'LibvirtTimeoutError' }), true],
    [Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), true],
    [migrationError('STAGE_TIMEOUT', { stage: 'check', ms: '1' }), true],
    [vir(38, 'Failed to open file: Permission denied'), false],
    [vir(42, 'Domain not found'), false],
    [vir(55, 'Requested operation is not valid: domain is not running'), false],
    [migrationError('PCI_PASSTHROUGH', { name: 'g', devices: 'pci' }), false],
    [new Error('boom'), false],
  ])('%s → %s', (err, want) => {
    expect(isTransient(err)).toBe(want);
  });
});

describe('what to do when a stage fails', () => {
  const refused = vir(38, 'Connection refused');
  const permanent = vir(9, 'operation failed: migration failed');
  it.each([
    ['check', refused, 1, 5, 'retry'],
    ['check', refused, 5, 5, 'fail'],
    ['check', permanent, 1, 5, 'fail'],
    ['connect', refused, 5, 5, 'fail'],
    ['prepare', permanent, 1, 5, 'fail'],
    ['migrate', refused, 2, 5, 'retry'],
    ['migrate', refused, 5, 5, 'recover'],
    ['migrate', permanent, 1, 5, 'recover'],
    ['finish', permanent, 1, 5, 'recover'],
    ['recover', refused, 3, 5, 'retry'],
    ['recover', refused, 5, 5, 'fail'],
    ['recover', permanent, 1, 5, 'fail'],
  ] as const)('%s, %s, attempt %i of %i → %s', (stage, err, attempt, max, want) => {
    expect(decideOnFailure(stage, err, attempt, max).kind).toBe(want);
  });
});

describe('progress from job stats', () => {
  it('computes percent from processed against remaining, under 100', () => {
    const p = progressFrom({ data_processed: 30, data_remaining: 70, data_total: 100, memory_bps: 1048576, memory_iteration: 1, time_elapsed: 900 }, 0);
    expect(p).toEqual({ percent: 30, dataTotal: 100, dataProcessed: 30, dataRemaining: 70, memoryBps: 1048576, iteration: 1, elapsedMs: 900, etaSeconds: 1 });
  });
  it('never goes backwards when a dirtying guest makes remaining grow', () => {
    const a = progressFrom({ data_processed: 60, data_remaining: 40 }, 0);
    const b = progressFrom({ data_processed: 70, data_remaining: 130 }, a.percent);
    expect(a.percent).toBe(60);
    expect(b.percent).toBe(60);
  });
  it('stays at 99 at most until the guest runs on the destination', () => {
    expect(progressFrom({ data_processed: 100, data_remaining: 0 }, 0).percent).toBe(99);
  });
  it('starts at 0 without numbers', () => {
    expect(progressFrom({}, 0).percent).toBe(0);
  });
});

describe('where the guest runs', () => {
  const v = (state: HostView['state']): HostView => ({ state, persistent: true, jobActive: false, uuid: 'u' });
  it.each([
    [v('running'), null, true, 'source'],
    [v('paused'), v('shutoff'), true, 'source'],
    [null, v('running'), true, 'destination'],
    [v('shutoff'), v('running'), true, 'destination'],
    [v('running'), v('paused'), true, 'both'],
    [v('shutoff'), null, true, 'nowhere'],
    [null, null, false, 'unknown'],
    [v('running'), null, false, 'source'],
  ] as const)('source %j, destination %j (known %s) → %s', (s, d, known, want) => {
    expect(placementOf(s, d, known)).toBe(want);
  });
});

describe('final progress', () => {
  it('is 100% with the real downtime and totals libvirt reported', async () => {
    const { finalProgress } = await import('../worker/policy/progress.js');
    expect(finalProgress({ data_processed: 5_000_000, data_remaining: 0, data_total: 67_000_000, downtime: 21, time_elapsed: 560, memory_iteration: 2 })).toEqual({
      percent: 100, dataTotal: 67_000_000, dataProcessed: 5_000_000, dataRemaining: 0, downtimeMs: 21, elapsedMs: 560, iteration: 2,
    });
  });
});

describe('a guest running nowhere is restarted on the source only when the migration caused it', () => {
  const cp = (pre: 'running' | 'paused' | undefined, started: boolean, outcome?: 'completed' | 'failed'): Checkpoint => ({
    step: 'recover',
    history: [],
    results: {
      ...(pre ? { prepare: { preState: pre, downtimeMs: 500, bandwidthMiBs: null } } : {}),
      ...(started ? { migrate: { startedAt: 't', ...(outcome ? { outcome } : {}) } } : {}),
    },
  });
  it.each([
    ['ran, migration started and failed', cp('running', true, 'failed'), false, true],
    ['was paused, migration interrupted', cp('paused', true), false, true],
    ['owner shut it down before the migration started', cp(undefined, false), false, false],
    ['prepared but no migration started', cp('running', false), false, false],
    ['the migration completed (it shut down on the destination since)', cp('running', true, 'completed'), false, false],
    ['the destination holds its definition', cp('running', true, 'failed'), true, false],
  ] as const)('%s → %s', (_what, checkpoint, destDefined, want) => {
    expect(shouldRestartOnSource(checkpoint, destDefined)).toBe(want);
  });
});

describe('thread-pool budget', async () => {
  const { concurrencyFor, poolSize, threadsNeeded } = await import('../worker/policy/threads.js');
  it.each([
    [4, 2, 1],
    [7, 2, 2],
    [16, 2, 2],
    [16, 8, 5],
    [1, 3, 1],
  ])('a pool of %i threads runs %i wanted migrations as %i', (pool, wanted, want) => {
    expect(concurrencyFor(pool, wanted)).toBe(want);
  });
  it('needs 3 threads per migration plus the event loop', () => {
    expect(threadsNeeded(2)).toBe(7);
  });
  it("reads libuv's variable with libuv's default", () => {
    expect(poolSize({})).toBe(4);
    expect(poolSize({ UV_THREADPOOL_SIZE: '16' })).toBe(16);
    expect(poolSize({ UV_THREADPOOL_SIZE: 'x' })).toBe(4);
  });
});

describe('ETA and the copying message', async () => {
  const { etaSeconds } = await import('../worker/policy/progress.js');
  const { copyingMessage } = await import('../shared/task.js');
  it.each([
    [100 * 2 ** 20, 50 * 2 ** 20, 25 * 2 ** 20, 4],
    [100 * 2 ** 20, 50 * 2 ** 20, 0, 2],
    [100 * 2 ** 20, 50 * 2 ** 20, 60 * 2 ** 20, null],
    [100 * 2 ** 20, 0, 0, null],
    [undefined, 50, 0, null],
  ])('remaining %s at %s B/s with %s B/s dirtied → %s s', (remaining, bps, dirty, want) => {
    expect(etaSeconds(remaining, bps, dirty)).toBe(want);
  });
  it('reads like a person wrote it', () => {
    expect(copyingMessage({ percent: 62.4, memoryBps: 48 * 2 ** 20, iteration: 3, etaSeconds: 4 })).toBe('copying memory: 62%, 48 MiB/s, iteration 3, about 4 s left');
    expect(copyingMessage({ percent: 40, memoryBps: 8 * 2 ** 20, dirtyRateBps: 16 * 2 ** 20, iteration: 2 })).toBe('copying memory: 40%, 8 MiB/s, iteration 2, not converging yet: the guest dirties 16 MiB/s');
  });
});

describe('the summary of a completed migration', async () => {
  const { summary } = await import('../worker/stages/migrate.js');
  it.each([
    [{ data_processed: 52_638_515, time_elapsed: 1980, downtime: 27 }, '50.2 MiB in 2.0 s, downtime 27 ms'],
    [{ data_total: 2 ** 20 }, '1.0 MiB'],
    [{ downtime: 5 }, 'downtime 5 ms'],
    [{}, ''],
  ])('%j → %s', (f, want) => {
    expect(summary(f)).toBe(want);
  });
});

describe('convergence evidence', async () => {
  const { converging, progressFrom } = await import('../worker/policy/progress.js');
  const floors = (xs: [number, number][]) => new Map(xs);
  it.each([
    [floors([]), 1, true],
    [floors([[1, 40]]), 2, true],
    [floors([[1, 40], [2, 30]]), 3, true],
    [floors([[1, 40], [2, 40]]), 3, false],
    [floors([[1, 40], [2, 39]]), 3, false], // 2.5% less is no real progress
    [floors([[1, 40], [2, 45], [3, 20]]), 4, true],
    [floors([[1, 40], [2, 45], [3, 50]]), 4, false],
  ])('%j at iteration %i → %s', (f, iteration, want) => {
    expect(converging(f, iteration)).toBe(want);
  });
  it('gives no ETA while the copy does not converge, whatever the dirty rate says', () => {
    const fields = { data_processed: 60, data_remaining: 40, memory_bps: 16 * 2 ** 20, memory_dirty_rate: 10, memory_page_size: 4096 };
    expect(progressFrom(fields, 0, true).etaSeconds).toBe(1);
    expect(progressFrom(fields, 0, false).etaSeconds).toBeUndefined();
    expect(progressFrom(fields, 0, false).converging).toBe(false);
  });
  it('says so in the message', async () => {
    const { copyingMessage } = await import('../shared/task.js');
    expect(copyingMessage({ percent: 80, memoryBps: 16 * 2 ** 20, iteration: 4, converging: false })).toBe('copying memory: 80%, 16 MiB/s, iteration 4, not converging yet: what is left does not shrink from pass to pass');
  });
});
