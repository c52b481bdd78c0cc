/**
 * The runner's side of the migration metrics: after every checkpoint save,
 * the events the checkpoint now holds are handed to the recorder, which
 * counts each once per task whoever sends it. Recording is bounded and never
 * fails a migration: an event that could not be recorded is sent again with
 * the next save, or by the worker that resumes the job.
 */
import { migrationError } from '../shared/errors.js';
import type { Checkpoint, MigrationRequest } from '../shared/job.js';
import { hostLabels, metricEvents } from '../shared/metrics/events.js';
import type { MetricsRecorder } from '../shared/metrics/store.js';
import type { MigrationProgress } from '../shared/task.js';
import { withTimeout } from '../shared/timeout.js';
import type { Logger } from './stages/stage.js';

/** Longest a save waits for its metrics; the next save sends what did not get through. */
const RECORD_WITHIN_MS = 5000;

export interface JobMetrics {
  /** Records what `cp` holds that this run has not recorded yet. */
  sync(cp: Checkpoint, progress: MigrationProgress | null): Promise<void>;
}

export function jobMetrics(recorder: MetricsRecorder | undefined, task: string, request: MigrationRequest, log: Logger): JobMetrics {
  if (!recorder) return { sync: async () => undefined };
  const hosts = hostLabels(request);
  const sent = new Set<string>();
  return {
    async sync(cp, progress) {
      const events = metricEvents(cp, progress).filter((e) => !sent.has(e.key));
      if (events.length === 0) return;
      try {
        await withTimeout(recorder.record(task, hosts, events), RECORD_WITHIN_MS, () => new Error(`no answer within ${RECORD_WITHIN_MS} ms`));
        for (const e of events) sent.add(e.key);
      } catch (e) {
        log.warn({ err: e instanceof Error ? e.message : String(e), events: events.map((x) => x.key) }, 'could not record migration metrics; sent again with the next save');
      }
    },
  };
}

/**
 * The checkpoint of a job BullMQ failed for good without the runner saving
 * its end (an error outside any stage on the last attempt), ended as its
 * task shows it: the recorded error, else KMIG0299E with BullMQ's reason.
 * null when the runner did save the end, or the job never started a stage.
 */
export function endedByQueue(cp: Checkpoint | undefined, finishedOn: number, reason: string): Checkpoint | null {
  if (!cp || cp.step === 'done' || !cp.history.some((h) => h.event === 'start')) return null;
  const error = cp.error ?? migrationError('INTERNAL', { detail: reason }).toJSON();
  const at = new Date(Math.max(finishedOn, Date.parse(cp.history.at(-1)?.at ?? '') || 0)).toISOString();
  return { ...cp, step: 'done', error, history: [...cp.history, { at, stage: cp.step, event: 'error', detail: error.reason }] };
}
