/**
 * Which progress samples a task's series keeps. Pure.
 *
 * At most one point per interval (a second to begin with). When the series
 * would outgrow its cap, every other point goes and the interval doubles: memory
 * stays bounded, and the points still cover the whole migration evenly from
 * its first second to its last, however long it ran. The last sample of a
 * migration (the final figures) is always kept; a sample taken before libvirt
 * measured anything is not.
 */
import type { SeriesPoint, SeriesState } from '../../shared/series.js';

export interface SamplingPolicy {
  /** Least time between two points at first, ms. */
  minIntervalMs: number;
  /** Most points a series holds; one more halves the series. At least 3. */
  maxPoints: number;
}

export const SERIES_SAMPLING: SamplingPolicy = { minIntervalMs: 1000, maxPoints: 600 };

export type SampleDecision =
  | { kind: 'skip'; reason: 'too soon' | 'not later than the last point' | 'nothing measured yet' }
  | { kind: 'append'; state: SeriesState }
  /** The series was thinned: write it whole. */
  | { kind: 'replace'; state: SeriesState };

/** Keeps the first point, every other one after it, and the last. */
export function thin(points: readonly SeriesPoint[]): SeriesPoint[] {
  return points.filter((_, i) => i % 2 === 0 || i === points.length - 1);
}

/**
 * What to do with a new sample. `final` marks the migration's last figures:
 * kept however soon after the point before it.
 */
export function samplePoint(state: SeriesState | null, point: SeriesPoint, policy: SamplingPolicy, final = false): SampleDecision {
  const intervalMs = Math.max(policy.minIntervalMs, state?.intervalMs ?? 0);
  const points = state?.points ?? [];
  const last = points.at(-1);
  if (last && point.t <= last.t) return { kind: 'skip', reason: 'not later than the last point' };
  // libvirt's job exists before it has sized the guest's memory: all zeros, a false "nothing left" on a plot.
  if (!final && point.dataTotal === 0) return { kind: 'skip', reason: 'nothing measured yet' };
  if (last && !final && point.t - last.t < intervalMs) return { kind: 'skip', reason: 'too soon' };
  const next = [...points, point];
  if (next.length <= Math.max(3, policy.maxPoints)) return { kind: 'append', state: { intervalMs, points: next } };
  return { kind: 'replace', state: { intervalMs: intervalMs * 2, points: thin(next) } };
}
