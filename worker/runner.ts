/**
 * The stage runner: executes a job's stages from its checkpoint, saving the
 * checkpoint after every stage, enforcing each stage's deadline, applying
 * the retry policy, and taking the job's migration slots (concurrency limits)
 * before the stages that need them. It knows nothing of BullMQ: the job is a
 * small interface, so the runner can be driven by tests and by the BullMQ
 * processor alike.
 */
import type { Config } from '../shared/config.js';
import { errorJSON, isMigrationError, migrationError, type ErrorJSON } from '../shared/errors.js';
import { initialCheckpoint, type Checkpoint, type HistoryEntry, type MigrationJobData, type StageResults } from '../shared/job.js';
import type { Connection, Hypervisor } from '../shared/libvirt/types.js';
import type { StageName } from '../shared/stage.js';
import type { Slots } from '../shared/limits.js';
import { slotWaitMessage, type MigrationProgress } from '../shared/task.js';
import { renewEveryMs, type Leaving } from './policy/limits.js';
import type { Failpoint } from './failpoints.js';
import { decideOnFailure } from './policy/retry.js';
import { noControl, type JobControl } from './control.js';
import { JobSlots, SlotWait } from './slots.js';
import { tagged, type Clock, type Logger, type ResultsPatch, type Stage, type StageContext, type StageOutcome } from './stages/stage.js';
import { atMost } from '../shared/timeout.js';
import type { MetricsRecorder } from '../shared/metrics/store.js';
import { jobMetrics } from './metrics.js';

export interface RunnableJob {
  readonly id: string;
  readonly data: MigrationJobData;
  /** Attempts already made before this one (BullMQ's attemptsMade). */
  readonly attemptsMade: number;
  /** Attempts the job was queued with (BullMQ's opts.attempts): the queue's word, not this worker's config. */
  readonly maxAttempts: number;
  /** The task's progress when this attempt picked it up, so a resumed monitor never shows less. */
  readonly lastProgress: MigrationProgress | null;
  /** Aborted when this worker may no longer act on the job (lock lost, shutdown). */
  readonly signal?: AbortSignal;
  /** Cancel and tune requests from any API process. */
  readonly control?: JobControl;
  updateData(data: MigrationJobData): Promise<void>;
  updateProgress(p: MigrationProgress): Promise<void>;
}

export interface RunnerDeps {
  stages: Record<StageName, Stage>;
  hypervisor: Hypervisor;
  config: Config;
  clock: Clock;
  log: Logger;
  /** Grace for a stage past its deadline to stop (default 15 s). */
  settleMs?: number;
  /** Migration slots (concurrency limits); without them jobs run unlimited. */
  slots?: Slots;
  /** Fault-suite hook called at "stage:start" and "stage:done" (see failpoints.ts). */
  failpoint?: Failpoint;
  /** Migration metrics (Redis in workers); without it nothing is counted. */
  metrics?: MetricsRecorder;
}

/** Thrown to end the job for good; the worker turns it into BullMQ's UnrecoverableError. */
export class JobFailed extends Error {
  override name = 'JobFailed';
  constructor(readonly error: ErrorJSON) {
    super(error.reason);
  }
}

/** Lazily opened connection that is reopened when its transport died, and refused once closed. */
function lazyConnection(h: Hypervisor, uri: string, timeoutMs: number) {
  let conn: Connection | null = null;
  let closed = false;
  return {
    async get(): Promise<Connection> {
      if (closed) throw migrationError('INTERNAL', { detail: 'the job is over; its connections are closed' });
      if (conn && conn.isAlive()) return conn;
      if (conn) await conn.close().catch(() => undefined);
      conn = null;
      const opened = await h.open(uri, { timeoutMs });
      if (closed) {
        await opened.close().catch(() => undefined);
        throw migrationError('INTERNAL', { detail: 'the job is over; its connections are closed' });
      }
      conn = opened;
      return conn;
    },
    async close() {
      closed = true;
      await conn?.close().catch(() => undefined);
      conn = null;
    },
  };
}

class StageTimeout extends Error {
  override name = 'StageTimeout';
}

/** Longest the runner waits for its libvirt connections to close when the job leaves. */
const CLOSE_WITHIN_MS = 10_000;

/** How long a stage that missed its deadline gets to notice the abort before the runner moves on. */
const DEFAULT_SETTLE_MS = 15_000;

/**
 * Runs a stage under a deadline. On timeout the stage's signal is aborted and
 * the runner waits (bounded) for the stage to settle, so a retry or recovery
 * never runs alongside the stage it replaces.
 */
async function withDeadline<T>(ms: number, settleMs: number, outer: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onOuter = () => ac.abort();
  outer?.addEventListener('abort', onOuter);
  let timer: NodeJS.Timeout | undefined;
  const running = run(ac.signal);
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StageTimeout()), ms);
  });
  try {
    return await Promise.race([running, deadline]);
  } catch (e) {
    if (e instanceof StageTimeout) {
      ac.abort();
      let settle: NodeJS.Timeout | undefined;
      await Promise.race([running.catch(() => undefined), new Promise((r) => (settle = setTimeout(r, settleMs)))]);
      clearTimeout(settle);
    }
    throw e;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuter);
  }
}

/** The checkpoint without its slot wait: the job got its slot, or ends. */
function noWait(cp: Checkpoint): Checkpoint {
  const { slotWait: _, ...rest } = cp;
  return rest;
}

function mergeResults(results: StageResults, patch: ResultsPatch): StageResults {
  const out: Record<string, unknown> = { ...results };
  for (const [k, v] of Object.entries(patch)) out[k] = { ...((results as Record<string, object | undefined>)[k] ?? {}), ...v };
  return out as StageResults;
}

export async function runJob(job: RunnableJob, deps: RunnerDeps): Promise<Checkpoint> {
  const { request } = job.data;
  const { config, clock } = deps;
  // Every line about this migration says which one it is.
  const log = tagged(deps.log, { task: job.id, vm: request.vm });
  let cp: Checkpoint = job.data.checkpoint ?? initialCheckpoint(clock.now());
  const maxAttempts = job.maxAttempts;
  const attempt = job.attemptsMade + 1;
  const entry = (stage: string, e: Omit<HistoryEntry, 'at' | 'stage'>): HistoryEntry => ({ at: clock.now().toISOString(), stage, ...e });
  const metrics = jobMetrics(deps.metrics, job.id, request, log);
  // The last progress published: a failed copy's bytes are what its task last showed.
  let latest = job.lastProgress;
  // Counted where the checkpoint is saved, from what it holds: once per task, whoever saves it.
  const save = async (next: Checkpoint) => {
    cp = next;
    await job.updateData({ ...job.data, checkpoint: cp });
    await metrics.sync(cp, latest);
  };

  const source = lazyConnection(deps.hypervisor, request.sourceUri, config.libvirt.connect_timeout);
  const destination = lazyConnection(deps.hypervisor, request.destinationUri, config.libvirt.connect_timeout);
  // A job that already started a stage is being picked up again (retry or crashed worker);
  // one that merely woke to look for a migration slot again is not.
  if (cp.history.some((h) => h.event === 'start') && !cp.slotWait) await save({ ...cp, history: [...cp.history, entry(cp.step, { event: 'resume', detail: `attempt ${attempt}` })] });

  const control = job.control ?? noControl;
  const slots = new JobSlots(deps.slots, job.id, renewEveryMs(config), log);
  // A worker that lost the job stops renewing at once: the new owner may release the slots any moment.
  job.signal?.addEventListener('abort', () => slots.stop(), { once: true });
  // Records why the job waits (only when the reason changes: a job looks again every
  // limits.wait_poll) and hands it back to the queue.
  const waitForSlot = async (stage: string, reason: string) => {
    if (cp.slotWait?.reason !== reason) {
      const history = [...cp.history, entry(stage, { event: 'decision', detail: slotWaitMessage(reason) })];
      await save({ ...cp, history, slotWait: { reason, since: cp.slotWait?.since ?? clock.now().toISOString() } });
    }
    // A cancel that came meanwhile is acted on now, not after the next look.
    await control.refresh();
    if (!control.cancelled) throw new SlotWait(reason);
  };
  let leaving: Leaving | 'waiting' = 'retry';
  try {
    while (cp.step !== 'done') {
      const stage = deps.stages[cp.step];
      // Cancelled before anything changed: end here, nothing to recover. The migrate
      // stage handles a cancel itself (abort, then recovery); recover and finish run on.
      if (control.cancelled && !cp.error && (stage.name === 'check' || stage.name === 'connect' || stage.name === 'prepare')) {
        const error = migrationError('CANCELLED', { name: request.vm }).toJSON();
        await save({ ...noWait(cp), step: 'done', error, history: [...cp.history, entry(stage.name, { event: 'decision', detail: 'cancelled before the migration started' })] });
        break;
      }
      const slot = await slots.take(stage.name, request, cp.results);
      if (slot.kind === 'blocked') {
        const since = cp.slotWait ? Date.parse(cp.slotWait.since) : clock.now().getTime();
        const waitedS = (clock.now().getTime() - since) / 1000;
        // Nothing has moved yet: a job that waited too long ends failed, it does not sit in `running` for ever.
        if (waitedS >= config.limits.max_wait) {
          const error = migrationError('SLOT_WAIT_TIMEOUT', { name: request.vm, seconds: String(config.limits.max_wait), reason: slot.reason }).toJSON();
          await save({ ...noWait(cp), step: 'done', error, history: [...cp.history, entry(stage.name, { event: 'decision', detail: `gave up after waiting ${Math.round(waitedS)} s for a migration slot` })] });
          break;
        }
        await waitForSlot(stage.name, slot.reason);
        continue; // cancelled while waiting: the check above ends the job
      }
      const notes: HistoryEntry[] = [];
      if (cp.slotWait) notes.push(entry(stage.name, { event: 'decision', detail: `got a migration slot after ${(Math.max(0, clock.now().getTime() - Date.parse(cp.slotWait.since)) / 1000).toFixed(1)} s of waiting` }));
      if (slot.kind === 'acquired' && slot.over) {
        notes.push(entry(stage.name, { event: 'decision', detail: `resumed at stage ${stage.name}: took its migration slot although ${slot.over}; a copy may be running in libvirt, and leaving it unwatched is worse than being briefly over the limit` }));
      }
      if (cp.slotWait && stage.name === 'connect') {
        // What the checks saw may have changed while the job waited (memory on the destination,
        // a domain of that name): look again before anything moves.
        const detail = 'checking again after waiting for a migration slot';
        await save({ ...noWait(cp), step: 'check', history: [...cp.history, ...notes, entry('check', { event: 'decision', detail })] });
        continue;
      }
      const started = noWait(cp);
      await save({ ...started, history: [...cp.history, ...notes, entry(stage.name, { event: 'start' })] });
      deps.failpoint?.(`${stage.name}:start`);
      let outcome: StageOutcome;
      try {
        if (job.signal?.aborted) throw migrationError('TRANSIENT', { detail: 'this worker lost the job (lock expired or shutting down); another worker resumes it' });
        outcome = await withDeadline(stage.deadlineMs(config, request), deps.settleMs ?? DEFAULT_SETTLE_MS, job.signal, (signal) => {
          const ctx: StageContext = {
            request,
            checkpoint: started,
            hypervisor: deps.hypervisor,
            config,
            clock,
            log: tagged(log, { stage: stage.name }),
            signal,
            source: () => source.get(),
            destination: () => destination.get(),
            save: (patch: ResultsPatch, e) => save({ ...cp, results: mergeResults(cp.results, patch), history: e ? [...cp.history, entry(stage.name, e)] : cp.history }),
            progress: (p) => ((latest = p), job.updateProgress(p)),
            lastProgress: job.lastProgress,
            control,
            note: (stageName: string, detail: string) => save({ ...cp, history: [...cp.history, entry(stageName, { event: 'decision', detail })] }),
          };
          return stage.run(ctx);
        });
      } catch (err) {
        const e = err instanceof StageTimeout ? migrationError('STAGE_TIMEOUT', { stage: stage.name, ms: String(stage.deadlineMs(config, request)) }) : err;
        const action = decideOnFailure(stage.name, e, attempt, maxAttempts);
        const detail = (e as Error)?.message ?? String(e);
        const key = action.kind === 'retry' ? 'TRANSIENT' : stage.name === 'recover' ? 'RECOVERY_INCOMPLETE' : 'MIGRATION_FAILED';
        const json = errorJSON(isMigrationError(e) ? e : migrationError(key, { name: request.vm, detail }));
        log.warn({ stage: stage.name, action: action.kind, err: json.reason }, 'stage failed');
        if (action.kind === 'retry') {
          await save({ ...cp, history: [...cp.history, entry(stage.name, { event: 'retry', detail: `attempt ${attempt}/${maxAttempts}: ${json.reason}` })] });
          throw err;
        }
        const error = cp.error ?? json;
        const history = [...cp.history, entry(stage.name, { event: 'error', detail: json.reason })];
        if (action.kind === 'recover') {
          await save({ ...cp, step: 'recover', error, history });
          continue;
        }
        await save({ ...cp, step: 'done', error: stage.name === 'recover' && cp.error ? { ...cp.error, reason: `${cp.error.reason}; recovery: ${json.reason}` } : error, history });
        break;
      }
      // The stage's effects are real now, but not recorded yet: the hardest place to die.
      deps.failpoint?.(`${stage.name}:done`);
      const next: Checkpoint = {
        step: outcome.next,
        results: mergeResults(cp.results, outcome.results ?? {}),
        history: [...cp.history, entry(stage.name, { event: 'done', ...(outcome.detail ? { detail: outcome.detail } : {}) })],
      };
      const error = outcome.clearError ? undefined : (outcome.error ?? cp.error);
      await save(error ? { ...next, error } : next);
    }
    leaving = 'ended';
  } catch (e) {
    if (e instanceof SlotWait) leaving = 'waiting';
    throw e;
  } finally {
    // Slots first: a close can hang on a daemon that died mid-call, and a slot must not hang with it.
    // Waiting, the job holds nothing; a job this worker lost is its new owner's to release.
    if (leaving !== 'waiting') await slots.leave(job.signal?.aborted ? 'lost' : leaving, cp.step, request, cp.results);
    await atMost(Promise.all([source.close(), destination.close()]), CLOSE_WITHIN_MS);
  }
  // Also a job picked up at 'done' (its worker died right after saving the end).
  await metrics.sync(cp, latest);
  if (cp.error) throw new JobFailed(cp.error);
  return cp;
}
