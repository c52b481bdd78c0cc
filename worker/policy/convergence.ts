/**
 * Convergence: when the memory copy does not converge, raise the allowed
 * downtime step by step (VDSM's per-iteration schedule, Nova's ramp) instead
 * of waiting for the deadline. Pure: the worker applies what this decides and
 * records the reason in the task history.
 */

export interface ConvergencePolicy {
  /** Downtime in force when the migration starts (ms). */
  startMs: number;
  /** Never raise past this (ms). A start at or above it means: never raise. */
  ceilingMs: number;
  /** Steps from start to ceiling. */
  steps: number;
  /** Time per GiB of guest data between two steps (ms): big guests get longer per pass. */
  stepDelayPerGiBMs: number;
}

export interface ConvergenceSample {
  /** libvirt's memory_iteration: 1 during the first (bulk) pass. */
  iteration: number;
  elapsedMs: number;
  dataTotalBytes: number;
  /** Downtime in force now (ms). */
  currentMs: number;
  /** When the previous step was taken, if one was. */
  lastStep: { iteration: number; elapsedMs: number } | null;
}

export type ConvergenceAction = { kind: 'none'; reason: string } | { kind: 'raise'; downtimeMs: number; step: number; reason: string };

/**
 * The schedule: `steps` values rising geometrically from start to ceiling.
 * Geometric, because what matters is the ratio to the data still to copy.
 *
 *   downtimeSchedule({ startMs: 500, ceilingMs: 2000, steps: 4 }) -> [707, 1000, 1414, 2000]
 */
export function downtimeSchedule(p: Pick<ConvergencePolicy, 'startMs' | 'ceilingMs' | 'steps'>): number[] {
  if (p.steps <= 0 || p.ceilingMs <= p.startMs) return [];
  const ratio = p.ceilingMs / p.startMs;
  return Array.from({ length: p.steps }, (_, i) => Math.round(p.startMs * ratio ** ((i + 1) / p.steps)));
}

/** Time between two steps: at least a second, more for bigger guests. */
export function stepDelayMs(dataTotalBytes: number, perGiBMs: number): number {
  return Math.max(1000, Math.round((dataTotalBytes / 2 ** 30) * perGiBMs));
}

/**
 * Decides whether to raise the downtime now. The first pass copies
 * everything once and says nothing about convergence, so no step is taken
 * before iteration 2; after that at most one step per iteration, and never
 * sooner than the step delay after the previous step (or the start). The
 * step goes to the next scheduled value above what is in force, so an
 * operator's higher value is never lowered.
 */
export function decideConvergence(s: ConvergenceSample, p: ConvergencePolicy): ConvergenceAction {
  const schedule = downtimeSchedule(p);
  if (!schedule.length) return { kind: 'none', reason: 'no schedule: the start is at or above the ceiling' };
  if (s.iteration < 2) return { kind: 'none', reason: 'first pass' };
  if (s.lastStep && s.iteration <= s.lastStep.iteration) return { kind: 'none', reason: 'one step per iteration' };
  const delay = stepDelayMs(s.dataTotalBytes, p.stepDelayPerGiBMs);
  if (s.elapsedMs - (s.lastStep?.elapsedMs ?? 0) < delay) return { kind: 'none', reason: 'too early for a step' };
  const index = schedule.findIndex((v) => v > s.currentMs);
  if (index < 0) return { kind: 'none', reason: `already at ${s.currentMs} ms, the ceiling or above` };
  const target = schedule[index]!;
  return {
    kind: 'raise',
    downtimeMs: target,
    step: index + 1,
    reason: `iteration ${s.iteration} after ${(s.elapsedMs / 1000).toFixed(1)} s without converging: max downtime ${s.currentMs} → ${target} ms (step ${index + 1} of ${schedule.length})`,
  };
}
