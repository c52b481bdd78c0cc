/**
 * Turns libvirt job statistics into the task's progress. Pure.
 * The percentage never goes backwards and stays under 100 until the guest
 * runs on the destination: a dirtying guest makes "remaining" grow, and a bar
 * that runs backwards is the first thing operators stop trusting.
 */
import type { MigrationProgress } from '../../shared/task.js';

type Fields = Record<string, number | string>;
const num = (f: Fields, k: string): number | undefined => (typeof f[k] === 'number' ? (f[k] as number) : undefined);

export function progressFrom(fields: Fields, previousPercent: number, converging = true): MigrationProgress {
  const processed = num(fields, 'data_processed');
  const remaining = num(fields, 'data_remaining');
  const total = num(fields, 'data_total');
  let raw = 0;
  if (processed !== undefined && remaining !== undefined && processed + remaining > 0) raw = (processed / (processed + remaining)) * 100;
  else if (processed !== undefined && total) raw = (processed / total) * 100;
  const percent = Math.min(99, Math.max(previousPercent, Math.floor(raw * 10) / 10));
  const p: MigrationProgress = { percent };
  if (total !== undefined) p.dataTotal = total;
  if (processed !== undefined) p.dataProcessed = processed;
  if (remaining !== undefined) p.dataRemaining = remaining;
  const bps = num(fields, 'memory_bps');
  if (bps !== undefined) p.memoryBps = bps;
  const iteration = num(fields, 'memory_iteration');
  if (iteration !== undefined) p.iteration = iteration;
  const elapsed = num(fields, 'time_elapsed');
  if (elapsed !== undefined) p.elapsedMs = elapsed;
  const dirtyPages = num(fields, 'memory_dirty_rate');
  if (dirtyPages !== undefined) p.dirtyRateBps = dirtyPages * (num(fields, 'memory_page_size') ?? 4096);
  const eta = converging ? etaSeconds(remaining, bps, p.dirtyRateBps) : null;
  if (eta !== null) p.etaSeconds = eta;
  if (!converging || (bps && p.dirtyRateBps !== undefined && p.dirtyRateBps >= bps)) p.converging = false;
  return p;
}

/**
 * Seconds left, from measured throughput against the dirty rate: what is
 * left shrinks by (transfer - dirty) bytes a second. null while that is not
 * positive (the copy is not converging) or nothing is measured yet.
 */
export function etaSeconds(remaining: number | undefined, transferBps: number | undefined, dirtyBps: number | undefined): number | null {
  if (remaining === undefined || !transferBps) return null;
  const net = transferBps - (dirtyBps ?? 0);
  if (net <= 0) return null;
  return Math.ceil(remaining / net);
}

/** The figures a finished migration keeps: 100% only once the guest runs on the destination. */
export function finalProgress(fields: Fields): MigrationProgress {
  const p = progressFrom(fields, 0);
  const out: MigrationProgress = { ...p, percent: 100 };
  if (p.dataProcessed !== undefined) out.dataRemaining = 0;
  const downtime = num(fields, 'downtime');
  if (downtime !== undefined) out.downtimeMs = downtime;
  return out;
}

/** What is left after a pass must be under this share of the pass before to count as converging. */
export const CONVERGING_RATIO = 0.9;

/**
 * Whether the copy converges, judged by what is left at the end of each pass
 * (the lowest "remaining" seen in it): it must shrink from pass to pass.
 * libvirt's dirty rate alone is not enough: it counts distinct pages per pass,
 * so a guest rewriting a small region fast looks tame. `floors[i]` is the
 * lowest remaining seen in iteration i; the current, unfinished pass is not judged.
 */
export function converging(floors: ReadonlyMap<number, number>, iteration: number): boolean {
  const a = floors.get(iteration - 2);
  const b = floors.get(iteration - 1);
  if (a === undefined || b === undefined) return true; // not enough passes to judge yet
  // A pass that leaves almost as much as the one before is not progress worth an ETA.
  return b < a * CONVERGING_RATIO;
}
