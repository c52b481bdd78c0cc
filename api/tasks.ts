/**
 * Tasks are BullMQ jobs seen through `toTask`. Enqueueing takes the per-VM
 * lock atomically with the add (BullMQ deduplication), so two concurrent
 * requests for one VM cannot both create a job. Every task is entered in the
 * task index (task-index.ts) before its job is added, so listings page
 * through the index instead of reading every job.
 */
import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import type { Config } from '../shared/config.js';
import { isMigrationError, migrationError } from '../shared/errors.js';
import { initialCheckpoint, type MigrationJobData, type MigrationRequest } from '../shared/job.js';
import { JOB_NAME, jobOptions, vmLockKey } from '../shared/queue.js';
import { stateClassesFor, toTask, type StateClass, type Task, type TaskStatus } from '../shared/task.js';
import { requestCancel, requestTune, type Tuning } from '../shared/control.js';
import type { Redis } from 'ioredis';
import { redisSeriesStore, type SeriesState } from '../shared/series.js';
import { withTimeout } from '../shared/timeout.js';
import { hostOfUri, normHost, parseMember, TaskIndex } from './task-index.js';
import { readPage, type Page, type TaskListQuery } from './task-list.js';
import { readTasks } from './task-read.js';

export interface TaskStore {
  get(id: string): Promise<Task | null>;
  /** One page of the listing (GET /tasks). */
  page(q: TaskListQuery): Promise<Page>;
  /** Every task, newest first, page after page: for tools and tests; requests page. */
  list(): Promise<Task[]>;
  /** The task's progress series, if the worker recorded one. */
  series(id: string): Promise<SeriesState | null>;
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

/** How often a listing removes index entries of tasks gone with the retention, and how many at most. */
const TRIM_EVERY_MS = 60_000;
const TRIM_BATCH = 500;

export interface TaskStoreOptions {
  /** The clock for the index's retention (default: the system's). */
  now?: () => number;
  /** Least time between two trims of the index (tests shorten it). */
  trimEveryMs?: number;
}

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

/**
 * Holds `client`'s writes until the next turn of the event loop, so commands
 * sent in this turn (and its microtasks) go out in one write(2). Returns the
 * function that schedules the release; ordering and replies are unchanged.
 */
function corkUntilNextTurn(client: Redis): () => void {
  const stream = client.status === 'ready' ? client.stream : undefined;
  if (!stream) return () => undefined;
  stream.cork();
  return () => void setImmediate(() => stream.uncork());
}

export function createTaskStore(config: Config, queue: Queue<MigrationJobData>, client: Redis, isReady: () => boolean, opts: TaskStoreOptions = {}): TaskStore {
  const redis = guard(isReady);
  const prefix = config.redis.prefix;
  const keep = config.tasks.keep_finished;
  const now = opts.now ?? Date.now;
  // A job removed from the queue by a cancel leaves a tombstone: its task, ended killed.
  const tombKey = (id: string) => `${prefix}:tomb:${id}`;
  // An entry goes only when neither its job nor its tombstone is there, checked as it goes.
  const index = new TaskIndex(client, prefix, (id) => [queue.toKey(id), tombKey(id)]);
  const seriesStore = redisSeriesStore(client, prefix, keep);
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
  const readKeys = {
    completed: queue.keys.completed!, failed: queue.keys.failed!, delayed: queue.keys.delayed!, prioritized: queue.keys.prioritized!,
    active: queue.keys.active!, waitingChildren: queue.keys['waiting-children']!, job: (id: string) => queue.toKey(id), tomb: tombKey,
  };
  /** Tasks by id (null for none): state, job and tombstone of all of them in one round trip (task-read.ts). */
  const getMany = async (ids: string[], classes?: readonly StateClass[]): Promise<(Task | null)[]> => {
    const valid = ids.filter((id) => UUID.test(id));
    const read = valid.length ? await redis(() => readTasks(client, readKeys, valid, classes)) : [];
    const byId = new Map(valid.map((id, i) => [id, read[i] ?? null]));
    return ids.map((id) => byId.get(id) ?? null);
  };
  const get = async (id: string): Promise<Task | null> => (await getMany([id]))[0] ?? null;
  const ended = (t: Task, what: string) => migrationError('TASK_ENDED', { id: t.id, status: t.status, what });

  // A task's job (or tombstone) is there until the retention removes it; its index entry goes after.
  const alive = async (ids: string[]): Promise<boolean[]> => {
    if (!ids.length) return [];
    const p = client.pipeline();
    for (const id of ids) p.exists(queue.toKey(id), tombKey(id));
    const res = (await p.exec()) ?? [];
    // An error or no answer counts as alive: an entry is never dropped on a doubt.
    return ids.map((_, i) => !res[i] || res[i]![0] !== null || Number(res[i]![1]) > 0);
  };
  let lastTrim = Number.NEGATIVE_INFINITY;
  const trim = async () => {
    const t = now();
    if (t - lastTrim < (opts.trimEveryMs ?? TRIM_EVERY_MS)) return;
    lastTrim = t;
    await redis(() => index.trim(t - keep * 1000, alive, TRIM_BATCH));
  };
  const source = {
    range: (...a: Parameters<TaskIndex['range']>) => redis(() => index.range(...a)),
    // An entry whose task is gone (removed with the retention, or never added) reads as null and
    // is skipped; so is one that is not the task's own (its creation time differs).
    rows: async (members: string[], statuses?: ReadonlySet<TaskStatus>) => {
      const parsed = members.map(parseMember);
      const tasks = await getMany(parsed.map((p) => p?.id ?? ''), statuses && stateClassesFor(statuses));
      return tasks.map((t, i) => (t && Date.parse(t.created_at) === parsed[i]?.createdMs ? t : null));
    },
  };
  const page = async (q: TaskListQuery) => {
    await trim();
    return readPage(source, q);
  };
  return {
    get,
    page,
    async list() {
      const out: Task[] = [];
      let after: string | null = null;
      do {
        const p: Page = await page({ limit: 500, after, params: {} });
        out.push(...p.tasks);
        after = p.next;
      } while (after);
      return out;
    },
    async series(id) {
      return redis(() => seriesStore.load(id));
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
          // Its index entry stays: listings find the tombstone through it.
          await redis(() => client.set(tombKey(id), JSON.stringify(killed), 'EX', keep));
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
    async enqueue(request, at, given) {
      // Only an Idempotency-Key's claim gives the id: a fresh one is nobody else's.
      const id = given ?? randomUUID();
      const data: MigrationJobData = { request, checkpoint: initialCheckpoint(at) };
      // Indexed first: an entry whose add then fails or is refused is merely skipped when
      // read, while a job added without its entry would be missing from every listing.
      const entry = { id, createdMs: at.getTime(), vm: request.vm, sourceHost: hostOfUri(request.sourceUri), destinationHost: normHost(request.remoteHost) };
      // The job's creation time is the entry's, so created_at and the listing's order agree.
      const add = (createdMs: number) => redis(() => queue.add(JOB_NAME, data, { ...jobOptions(config, id, vmLockKey(request.sourceUri, request.vm)), timestamp: createdMs }));
      let createdMs = entry.createdMs;
      let first: Job<MigrationJobData> | null = null;
      if (given === undefined) {
        // A fresh id is nobody else's, so its entry keeps this time: the entry and the add go out
        // together, one round trip instead of two, and Redis runs them in that order (one connection).
        // And in one write: the socket is corked until the next turn of the event loop, so the
        // entry and BullMQ's add (sent a few microtasks later) leave together. On loopback each
        // write costs the sender Redis's side of the delivery too (BENCHMARKS.md, figure 4).
        const uncork = corkUntilNextTurn(client);
        const both = Promise.allSettled([redis(() => index.add(entry)), add(createdMs)]);
        uncork();
        const [entered, added] = await both;
        if (entered.status === 'rejected') {
          // Never a job without its entry: entered again, or the job taken back out.
          const job = added.status === 'fulfilled' && added.value.id === id ? added.value : null;
          if (job) await redis(() => index.add(entry)).catch(async (e: unknown) => {
            await redis(() => job.remove()).catch(() => undefined);
            throw e;
          });
          else throw entered.reason;
        }
        if (added.status === 'rejected') throw added.reason;
        first = added.value;
      } else {
        createdMs = await redis(() => index.add(entry));
      }
      // The VM's running job can end or be cancelled between the refused add and reading it:
      // then the VM is free and the add is tried again.
      for (let round = 0; round < 3; round++) {
        const job = first ?? (await add(createdMs));
        first = null;
        const created = job.id === id;
        // Another request refused under this id (an Idempotency-Key claimed twice) may have removed
        // the entry after it was written and before the job was there; entering it again now that
        // the job is there puts it back, and from now on the job keeps it.
        if (created && given !== undefined) await redis(() => index.add({ ...entry, createdMs })).catch(() => undefined);
        // A job just created is waiting (no delay, no priority, a queue never paused): said so
        // without asking Redis, as it was when added.
        if (created) return { task: await snapshot(job, 'waiting'), created };
        const existing = await redis(() => queue.getJob(String(job.id)));
        if (!existing) continue;
        // Refused (the VM has its task): this id names no task, and leaves no entry, unless a
        // request repairing the same claim has added its job meanwhile (the removal checks).
        await redis(() => index.remove([id])).catch(() => undefined);
        return { task: await redis(() => snapshot(existing)), created };
      }
      await redis(() => index.remove([id])).catch(() => undefined);
      throw migrationError('QUEUE_UNAVAILABLE', { detail: 'the VM\'s running task kept changing while being read; try again' });
    },
  };
}
