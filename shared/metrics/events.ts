/**
 * What a migration's checkpoint says should be counted. Pure.
 *
 * Everything is derived from the saved checkpoint (its append-only history
 * and final results), each event under a key that names it for good
 * ("started", "stage:<index of its done entry>", "retry:<index>", "end").
 * The recorder applies an event's increments only the first time it sees
 * the key for that task, so a worker that resumes a job, or repeats a
 * recording it is unsure of, never counts anything twice, and one that
 * replays the whole list fills in what a crashed worker left out.
 */
import type { ErrorJSON } from '../errors.js';
import type { Checkpoint, HistoryEntry, MigrationRequest } from '../job.js';
import type { MigrationProgress } from '../task.js';
import { migrationDurationMs } from '../duration.js';
import { METRICS } from './catalog.js';
import { counterInc, observation, type Inc } from './fields.js';
import { codeLabel, destinationHostLabel, outcomeOf, sourceHostLabel, stageLabel } from './labels.js';

export interface MetricEvent {
  key: string;
  incs: Inc[];
}

export const END_EVENT = 'end';

export interface HostLabels {
  source: string;
  destination: string;
}

export function hostLabels(request: Pick<MigrationRequest, 'sourceUri' | 'remoteHost'>): HostLabels {
  return { source: sourceHostLabel(request.sourceUri), destination: destinationHostLabel(request.remoteHost) };
}

const seconds = (from: string, to: string) => Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000) || 0;

/** The blocker codes of a migration the check stage refused, once each; none for any other end. */
export function checkFailureCodes(error: ErrorJSON | undefined, history: readonly HistoryEntry[]): string[] {
  if (!error) return [];
  const blockers = (error.details as { blockers?: unknown } | undefined)?.blockers;
  if (Array.isArray(blockers) && blockers.length > 0) {
    return [...new Set(blockers.map((b) => codeLabel((b as { code?: string })?.code)))];
  }
  // A check that threw (the guest vanished, a deadline): the job ended right there.
  const last = history.at(-1);
  return last?.stage === 'check' && last.event === 'error' ? [codeLabel(error.code)] : [];
}

/** Bytes libvirt moved: its final statistics when the copy completed, else the last sample the task showed. */
export function transferredBytes(cp: Checkpoint, progress: MigrationProgress | null): number {
  const stats = cp.results.migrate?.stats;
  const fromStats = typeof stats?.data_processed === 'number' ? stats.data_processed : undefined;
  const bytes = fromStats ?? progress?.dataProcessed ?? 0;
  return Number.isFinite(bytes) && bytes > 0 ? bytes : 0;
}

function endEvent(cp: Checkpoint, progress: MigrationProgress | null): MetricEvent {
  const outcome = outcomeOf(cp.error);
  const incs: Inc[] = [];
  if (outcome === 'failed') incs.push(counterInc(METRICS.failed, { code: codeLabel(cp.error?.code) }));
  else incs.push(counterInc(outcome === 'finished' ? METRICS.finished : METRICS.killed, {}));
  // The task's final figures show the same duration (shared/duration.ts).
  incs.push(...observation(METRICS.duration, { outcome }, (migrationDurationMs(cp.history) ?? 0) / 1000));
  const downtime = cp.results.migrate?.stats?.downtime;
  if (outcome === 'finished' && typeof downtime === 'number' && downtime >= 0) incs.push(...observation(METRICS.downtime, {}, downtime / 1000));
  const bytes = transferredBytes(cp, progress);
  if (bytes > 0) incs.push(counterInc(METRICS.bytes, {}, bytes));
  for (const code of checkFailureCodes(cp.error, cp.history)) incs.push(counterInc(METRICS.checkFailures, { code }));
  return { key: END_EVENT, incs };
}

/**
 * Every event the checkpoint holds so far, in history order. A migration
 * that never began a stage (cancelled before a worker started it) has none.
 */
export function metricEvents(cp: Checkpoint, progress: MigrationProgress | null): MetricEvent[] {
  const h = cp.history;
  const first = h.findIndex((e) => e.event === 'start');
  if (first < 0) return [];
  const out: MetricEvent[] = [{ key: 'started', incs: [counterInc(METRICS.started, {})] }];
  const lastStart = new Map<string, number>();
  h.forEach((e, i) => {
    if (e.event === 'start') lastStart.set(e.stage, i);
    else if (e.event === 'retry') out.push({ key: `retry:${i}`, incs: [counterInc(METRICS.retries, { stage: stageLabel(e.stage) })] });
    else if (e.event === 'done' && lastStart.has(e.stage)) {
      const s = h[lastStart.get(e.stage)!]!;
      lastStart.delete(e.stage);
      out.push({ key: `stage:${i}`, incs: observation(METRICS.stage, { stage: stageLabel(e.stage) }, seconds(s.at, e.at)) });
    }
  });
  if (cp.step === 'done') out.push(endEvent(cp, progress));
  return out;
}
