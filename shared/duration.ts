/**
 * How long a migration took, all stages, from its stage history. Pure.
 *
 * One definition for the task's final figures and for the duration metric,
 * so the two never disagree. It is read from the history, not from BullMQ's
 * processedOn, which a job gets anew at every pickup: a migration that
 * waited for a slot, was retried or was resumed by another worker would
 * otherwise count only its last pickup.
 */
import type { HistoryEntry } from './job.js';

/**
 * Milliseconds from the first stage start to the last history entry; null
 * for a migration that never started a stage (cancelled while queued).
 */
export function migrationDurationMs(history: readonly HistoryEntry[]): number | null {
  const first = history.find((e) => e.event === 'start');
  if (!first) return null;
  const last = history.at(-1)!;
  // A clock that stepped back, or an unreadable time, counts as no time rather than a negative one.
  return Math.max(0, Date.parse(last.at) - Date.parse(first.at)) || 0;
}
