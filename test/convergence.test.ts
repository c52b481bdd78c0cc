import { describe, expect, it } from 'vitest';
import { decideConvergence, downtimeSchedule, stepDelayMs, type ConvergencePolicy } from '../worker/policy/convergence.js';

const policy: ConvergencePolicy = { startMs: 500, ceilingMs: 2000, steps: 4, stepDelayPerGiBMs: 2000 };
const MiB = 2 ** 20;

describe('downtime schedule', () => {
  it('rises geometrically from start to ceiling (the docstring example)', () => {
    expect(downtimeSchedule({ startMs: 500, ceilingMs: 2000, steps: 4 })).toEqual([707, 1000, 1414, 2000]);
  });
  it.each([
    [{ startMs: 500, ceilingMs: 500, steps: 4 }, []],
    [{ startMs: 3000, ceilingMs: 2000, steps: 4 }, []],
    [{ startMs: 500, ceilingMs: 5000, steps: 0 }, []],
    [{ startMs: 100, ceilingMs: 800, steps: 3 }, [200, 400, 800]],
  ])('%j → %j', (p, want) => {
    expect(downtimeSchedule(p)).toEqual(want);
  });
  it('waits at least a second per step, longer for bigger guests', () => {
    expect(stepDelayMs(128 * MiB, 2000)).toBe(1000);
    expect(stepDelayMs(4 * 2 ** 30, 2000)).toBe(8000);
  });
});

describe('convergence decisions', () => {
  const step = (iteration: number, elapsedMs: number) => ({ iteration, elapsedMs });
  it.each([
    // iteration, elapsed ms, data, current, last step → action, target
    [1, 60_000, 128 * MiB, 500, null, 'none', undefined], // first pass
    [2, 500, 128 * MiB, 500, null, 'none', undefined], // too early: a second at least
    [2, 3_000, 128 * MiB, 500, null, 'raise', 707],
    [3, 3_000, 128 * MiB, 707, step(2, 3_000), 'none', undefined], // a second since the last step at least
    [3, 4_100, 128 * MiB, 707, step(2, 3_000), 'raise', 1000],
    [3, 9_000, 128 * MiB, 1000, step(3, 4_100), 'none', undefined], // one step per iteration
    [9, 60_000, 128 * MiB, 1414, step(8, 50_000), 'raise', 2000],
    [9, 60_000, 128 * MiB, 2000, step(8, 50_000), 'none', undefined], // at the ceiling
    [3, 7_000, 4 * 2 ** 30, 500, null, 'none', undefined], // 4 GiB: 8 s per step
    [3, 8_000, 4 * 2 ** 30, 500, null, 'raise', 707],
    [5, 20_000, 128 * MiB, 1200, step(4, 10_000), 'raise', 1414], // between steps: on to the next value above
    [3, 20_000, 128 * MiB, 2500, null, 'none', undefined], // above the schedule already: never lowered
  ] as const)('iteration %i at %i ms, %i bytes, %i ms in force, last step %j → %s %s', (iteration, elapsedMs, dataTotalBytes, currentMs, lastStep, kind, target) => {
    const a = decideConvergence({ iteration, elapsedMs, dataTotalBytes, currentMs, lastStep }, policy);
    expect(a.kind).toBe(kind);
    if (a.kind === 'raise') expect(a.downtimeMs).toBe(target);
  });
  it('says why, in words an operator reads', () => {
    const a = decideConvergence({ iteration: 3, elapsedMs: 6200, dataTotalBytes: 128 * MiB, currentMs: 707, lastStep: { iteration: 2, elapsedMs: 3000 } }, policy);
    expect(a.reason).toBe('iteration 3 after 6.2 s without converging: max downtime 707 → 1000 ms (step 2 of 4)');
  });
});
