/**
 * Tasks are BullMQ jobs seen through `toTask`. Enqueueing takes the per-VM
 * lock atomically with the add (BullMQ deduplication), so two concurrent
 * requests for one VM cannot both create a job.
 */
import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import type { Config } from '../shared/config.js';
import { isMigrationError, migrationError } from '../shared/errors.js';
import { initialCheckpoint, type MigrationJobData, type MigrationRequest } from '../shared/job.js';
import { JOB_NAME, jobOptions, vmLockKey } from '../shared/queue.js';
import { toTask, type Task } from '../shared/task.js';
import { requestCancel, requestTune, type Tuning } from '../shared/control.js';
import type { Redis } from 'ioredis';
import { withTimeout } from '../shared/timeout.js';

const STATES = ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;

export interface TaskStore {
  get(id: string): Promise<Task | null>;
  list(): Promise<Task[]>;
  /** Creates the task (with the id given, or a new one), or returns the VM's running one with created = false. */
  enqueue(request: MigrationRequest, now: Date, id?: string): Promise<{ task: Task; created: boolean }>;
  /** The id of the VM's queued or running migration, if any. */
  activeFor(sourceUri: string, vm: string): Promise<string | null>;
  /** Removes a queued job (task ends killed at once) or asks the worker running it to stop. */
  cancel(id: string, now: Date): Promise<Task>;
  /** Asks the worker running the job to change its limits; the task shows them once applied. */
  tune(id: string, tuning: Tuning): Promise<Task>;
}

const TERMINAL = new Set(['finished', 'failed', 'killed']);

/** Longest a request waits on Redis before it answers 503. */
const REDIS_DEADLINE_MS = 3000;

/**
 * Redis faults become 503s with a stable code, quickly: BullMQ waits for a
 * connection that may never come, so the store checks readiness first and
 * bounds every call.
 */
export function guard(isReady: () => boolean) {
  return async function redis<T>(p: () => Promise<T>): Promise<T> {
    if (!isReady()) throw migrationError('QUEUE_UNAVAILABLE', { detail: 'not connected' });
    try {
      return await withTimeout(p(), REDIS_DEADLINE_MS, () => new Error(`no answer within ${REDIS_DEADLINE_MS} ms`));
    } catch (e) {
      if (isMigrationError(e)) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw migrationError('QUEUE_UNAVAILABLE', { detail: msg.replace(/rediss?:\/\/\S*/g, 'redis://…') });
    }
  };
}

async function snapshot(job: Job<MigrationJobData>, state?: string): Promise<Task> {
  return toTask({
    id: String(job.id),
    state: state ?? (await job.getState()),
    data: job.data,
    failedReason: job.failedReason,
    progress: job.progress,
    timestamp: job.timestamp,
    processedOn: job.processedOn,
    finishedOn: job.finishedOn,
    attemptsMade: job.attemptsMade,
  });
}

export function createTaskStore(config: Config, queue: Queue<MigrationJobData>, client: Redis, isReady: () => boolean): TaskStore {
  const redis = guard(isReady);
  const prefix = config.redis.prefix;
  const keep = config.tasks.keep_finished;
  // A job removed from the queue by a cancel leaves a tombstone: its task, ended killed.
  const tombKey = (id: string) => `${prefix}:tomb:${id}`;
  const tombsKey = `${prefix}:tombs`;
  const tomb = async (id: string): Promise<Task | null> => {
    const raw = await redis(() => client.get(tombKey(id)));
    return raw ? (JSON.parse(raw) as Task) : null;
  };
  // Task ids are the UUIDs enqueue makes; anything else (BullMQ's own key names too) is no task.
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const jobOf = async (id: string) => {
    if (!UUID.test(id)) return null;
    const job = await redis(() => queue.getJob(id));
    return job?.data?.request ? job : null;
  };
  const get = async (id: string): Promise<Task | null> => {
    if (!UUID.test(id)) return null;
    // State first, then the job: a job that ends in between is shown running with its latest
    // data, never "finished" with data from before the end (attempts, final figures).
    const state = await redis(() => queue.getJobState(id));
    const job = await jobOf(id);
    if (job) return redis(() => snapshot(job, state === 'unknown' ? undefined : state));
    return tomb(id);
  };
  const ended = (t: Task, what: string) => migrationError('TASK_ENDED', { id: t.id, status: t.status, what });
  return {
    get,
    async list() {
      const out: Task[] = [];
      for (const state of STATES) {
        const jobs = await redis(() => queue.getJobs([state]));
        for (const j of jobs) if (j) out.push(await redis(() => snapshot(j, state)));
      }
      // Tombstones expire on their own; drop index entries older than the retention.
      await redis(() => client.zremrangebyscore(tombsKey, 0, Date.now() - keep * 1000));
      for (const id of await redis(() => client.zrange(tombsKey, 0, -1))) {
        const t = await tomb(id);
        if (t) out.push(t);
      }
      return out.sort((a, b) => b.created_at.localeCompare(a.created_at));
    },
    async activeFor(sourceUri, vm) {
      return redis(() => queue.getDeduplicationJobId(vmLockKey(sourceUri, vm)));
    },
    async cancel(id, now) {
      const job = await jobOf(id);
      if (!job) {
        const t = UUID.test(id) ? await tomb(id) : null;
        if (t) throw ended(t, 'cancel');
        throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      }
      const state = await redis(() => job.getState());
      const task = await redis(() => snapshot(job, state));
      if (TERMINAL.has(task.status)) throw ended(task, 'cancel');
      const cp = job.data.checkpoint;
      // Past the copy, a cancel cannot change the outcome; say so instead of promising "killed".
      if (cp?.step === 'recover' || cp?.step === 'finish') throw migrationError('CANCEL_TOO_LATE', { id, stage: cp.step });
      // Only a job that never started a stage may simply leave the queue. One that did
      // (a crashed worker's, or one waiting to retry) may have moved the guest: a worker
      // must pick it up, abort what runs and recover.
      const started = cp?.history.some((h) => h.event === 'start') ?? false;
      if (!started && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) {
        // Not started: take it out of the queue. A worker that grabbed it meanwhile holds
        // its lock and the removal fails; then it is cancelled like a running one.
        const removed = await redis(() => job.remove().then(() => true, () => false));
        if (removed) {
          const error = migrationError('CANCELLED', { name: job.data.request.vm }).toJSON();
          const history = [...(job.data.checkpoint?.history ?? []), { at: now.toISOString(), stage: 'queue', event: 'decision' as const, detail: 'cancelled while queued: removed from the queue' }];
          const killed = toTask({
            id: String(job.id), state: 'failed', data: { ...job.data, checkpoint: { step: 'done', results: {}, history, error } },
            timestamp: job.timestamp, finishedOn: now.getTime(), attemptsMade: job.attemptsMade,
          });
          await redis(() => client.multi().set(tombKey(id), JSON.stringify(killed), 'EX', keep).zadd(tombsKey, now.getTime(), id).exec());
          return killed;
        }
      }
      await redis(() => requestCancel(client, prefix, id, keep));
      // A job waiting out a retry delay is brought forward so the cancel is acted on now.
      if (state === 'delayed') await redis(() => job.promote()).catch(() => undefined);
      return task;
    },
    async tune(id, tuning) {
      const task = await get(id);
      if (!task) throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      if (TERMINAL.has(task.status)) throw ended(task, 'tune');
      await redis(() => requestTune(client, prefix, id, tuning, keep));
      return task;
    },
    async enqueue(request, now, id = randomUUID()) {
      const data: MigrationJobData = { request, checkpoint: initialCheckpoint(now) };
      // The VM's running job can end or be cancelled between the refused add and reading it:
      // then the VM is free and the add is tried again.
      for (let round = 0; round < 3; round++) {
        const job = await redis(() => queue.add(JOB_NAME, data, jobOptions(config, id, vmLockKey(request.sourceUri, request.vm))));
        const created = job.id === id;
        const existing = created ? job : await redis(() => queue.getJob(String(job.id)));
        if (existing) return { task: await redis(() => snapshot(existing)), created };
      }
      throw migrationError('QUEUE_UNAVAILABLE', { detail: 'the VM\'s running task kept changing while being read; try again' });
    },
  };
}
