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

const STATES = ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;

export interface TaskStore {
  get(id: string): Promise<Task | null>;
  list(): Promise<Task[]>;
  /** Creates the task, or returns the VM's running one with created = false. */
  enqueue(request: MigrationRequest, now: Date): Promise<{ task: Task; created: boolean }>;
}

/** Longest a request waits on Redis before it answers 503. */
const REDIS_DEADLINE_MS = 3000;

/**
 * Redis faults become 503s with a stable code, quickly: BullMQ waits for a
 * connection that may never come, so the store checks readiness first and
 * bounds every call.
 */
function guard(isReady: () => boolean) {
  return async function redis<T>(p: () => Promise<T>): Promise<T> {
    if (!isReady()) throw migrationError('QUEUE_UNAVAILABLE', { detail: 'not connected' });
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${REDIS_DEADLINE_MS} ms`)), REDIS_DEADLINE_MS);
        }),
      ]);
    } catch (e) {
      if (isMigrationError(e)) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw migrationError('QUEUE_UNAVAILABLE', { detail: msg.replace(/rediss?:\/\/\S*/g, 'redis://…') });
    } finally {
      clearTimeout(timer);
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

export function createTaskStore(config: Config, queue: Queue<MigrationJobData>, isReady: () => boolean): TaskStore {
  const redis = guard(isReady);
  return {
    async get(id) {
      if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) return null;
      const job = await redis(() => queue.getJob(id));
      return job ? redis(() => snapshot(job)) : null;
    },
    async list() {
      const out: Task[] = [];
      for (const state of STATES) {
        const jobs = await redis(() => queue.getJobs([state]));
        for (const j of jobs) if (j) out.push(await redis(() => snapshot(j, state)));
      }
      return out.sort((a, b) => b.created_at.localeCompare(a.created_at));
    },
    async enqueue(request, now) {
      const id = randomUUID();
      const data: MigrationJobData = { request, checkpoint: initialCheckpoint(now) };
      const job = await redis(() => queue.add(JOB_NAME, data, jobOptions(config, id, vmLockKey(request.sourceUri, request.vm))));
      const created = job.id === id;
      const existing = created ? job : await redis(() => queue.getJob(String(job.id)));
      if (!existing) throw migrationError('QUEUE_UNAVAILABLE', { detail: 'the running task vanished while being read' });
      return { task: await redis(() => snapshot(existing)), created };
    },
  };
}
