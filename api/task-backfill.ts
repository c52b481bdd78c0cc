/**
 * Enters in the task index the tasks kept from before it existed: versions
 * without the index wrote only jobs, and cancelled tasks' tombstones listed in
 * the `<prefix>:tombs` sorted set. Without this they would be missing from
 * every listing until the retention removed them.
 *
 * Runs once per Redis prefix, in the background of an API start: a marker key
 * says it is done, a lock lets one API replica at a time do it (another tries
 * again later, in case the one holding it died). Entering is idempotent (one
 * entry per id, the first kept), so a task entered twice, by this and by the
 * API enqueueing it, is listed once.
 *
 * Jobs are found by scanning for their hashes rather than paging through
 * BullMQ's states: a job moving between states while they are paged (a retry
 * from active back to delayed) could be missed, while SCAN returns every key
 * that exists from its start to its end.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { MigrationJobData } from '../shared/job.js';
import type { Task } from '../shared/task.js';
import { hostOfUri, normHost, TaskIndex, type IndexEntry } from './task-index.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const backfillKeys = (prefix: string) => ({ done: `${prefix}:tasks:backfilled`, lock: `${prefix}:tasks:backfill-lock`, tombs: `${prefix}:tombs` });

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

export interface BackfillDeps {
  client: Redis;
  queue: Queue<MigrationJobData>;
  prefix: string;
  now?: () => number;
}

export interface BackfillOptions {
  /** Keys a SCAN step looks at, and tombstones read at once. */
  batch?: number;
  /** How long the lock lasts without being extended (it is, after every step). */
  lockMs?: number;
  /** Asked between steps: true stops the run (the API is closing), without marking it done. */
  stopped?: () => boolean;
}

export type BackfillResult = { state: 'done'; jobs: number; tombstones: number } | { state: 'already' | 'busy' | 'stopped' };

/** A SCAN pattern matching `literal` exactly, then anything. */
const globPrefix = (literal: string) => `${literal.replace(/[*?[\]\\]/g, '\\$&')}*`;

/** The index entry of a stored job, or null for a job that is no task. */
function jobEntry(id: string, timestamp: string | null, rawData: string | null): IndexEntry | null {
  if (!UUID.test(id) || !rawData) return null;
  try {
    const r = (JSON.parse(rawData) as Partial<MigrationJobData>).request;
    if (!r || typeof r.vm !== 'string' || typeof r.sourceUri !== 'string' || typeof r.remoteHost !== 'string') return null;
    // The task's created_at (shared/task.ts): the job's timestamp, else the request's time.
    const createdMs = Number(timestamp) || Date.parse(r.requestedAt);
    if (!Number.isFinite(createdMs)) return null;
    return { id, createdMs, vm: r.vm, sourceHost: hostOfUri(r.sourceUri), destinationHost: normHost(r.remoteHost) };
  } catch {
    return null;
  }
}

function tombEntry(id: string, raw: string | null): IndexEntry | null {
  if (!UUID.test(id) || !raw) return null;
  try {
    const t = JSON.parse(raw) as Partial<Task>;
    const createdMs = Date.parse(t.created_at ?? '');
    if (!Number.isFinite(createdMs) || typeof t.vm !== 'string' || !t.source?.uri || !t.destination?.host) return null;
    // Listings find the tombstone by its created_at, which its entry must carry.
    return { id, createdMs, vm: t.vm, sourceHost: hostOfUri(t.source.uri), destinationHost: normHost(t.destination.host) };
  } catch {
    return null;
  }
}

/** One run: enters every job and old tombstone, then marks the prefix done. */
export async function backfillIndex(deps: BackfillDeps, opts: BackfillOptions = {}): Promise<BackfillResult> {
  const { client, queue, prefix } = deps;
  const batch = opts.batch ?? 1000;
  const lockMs = opts.lockMs ?? 60_000;
  const keys = backfillKeys(prefix);
  if (await client.exists(keys.done)) return { state: 'already' };
  const token = randomUUID();
  if ((await client.set(keys.lock, token, 'PX', lockMs, 'NX')) !== 'OK') return { state: 'busy' };
  const index = new TaskIndex(client, prefix);
  const stopped = opts.stopped ?? (() => false);
  const extend = async () => {
    if (!(await client.eval(EXTEND, 1, keys.lock, token, lockMs))) throw new Error('lost the task index backfill lock');
  };
  try {
    let jobs = 0;
    const jobKey = queue.toKey('');
    let cursor = '0';
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', globPrefix(jobKey), 'COUNT', batch);
      cursor = next;
      const ids = found.map((k) => k.slice(jobKey.length)).filter((id) => UUID.test(id));
      if (ids.length) {
        const p = client.pipeline();
        for (const id of ids) p.hmget(queue.toKey(id), 'timestamp', 'data');
        const rows = (await p.exec()) ?? [];
        const entries = ids.map((id, i) => {
          const [err, v] = rows[i] ?? [null, null];
          if (err) throw err;
          const [timestamp, data] = (v as (string | null)[] | null) ?? [null, null];
          return jobEntry(id, timestamp ?? null, data ?? null);
        });
        const real = entries.filter((e): e is IndexEntry => e !== null);
        await Promise.all(real.map((e) => index.add(e)));
        jobs += real.length;
      }
      if (stopped()) return { state: 'stopped' };
      await extend();
    } while (cursor !== '0');

    let tombstones = 0;
    for (let start = 0; ; start += batch) {
      const ids = await client.zrange(keys.tombs, start, start + batch - 1);
      if (!ids.length) break;
      const raws = await client.mget(...ids.map((id) => `${prefix}:tomb:${id}`));
      // A tombstone gone with the retention is no task any more.
      const real = ids.map((id, i) => tombEntry(id, raws[i] ?? null)).filter((e): e is IndexEntry => e !== null);
      await Promise.all(real.map((e) => index.add(e)));
      tombstones += real.length;
      if (stopped()) return { state: 'stopped' };
      await extend();
    }
    const now = deps.now ?? Date.now;
    await client.set(keys.done, JSON.stringify({ at: new Date(now()).toISOString(), jobs, tombstones }));
    return { state: 'done', jobs, tombstones };
  } finally {
    await client.eval(RELEASE, 1, keys.lock, token).catch(() => undefined);
  }
}

export interface BackfillRunner {
  /** Settles when the backfill is done here, found done, or stopped. */
  settled: Promise<void>;
  /** Settles after the first attempt, whatever it found (tests wait for it before reading Redis). */
  firstAttempt: Promise<void>;
  stop(): Promise<void>;
}

interface RunnerLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
}

/**
 * Runs the backfill in the background until it is done: once Redis is
 * connected, and again after `retryMs` while another replica holds the lock
 * or a run failed. Never awaited by the API's start.
 */
export function startBackfill(deps: BackfillDeps & { isReady: () => boolean; log: RunnerLog }, opts: BackfillOptions & { retryMs?: number; pollMs?: number } = {}): BackfillRunner {
  let stopped = false;
  let attempted: () => void = () => undefined;
  const firstAttempt = new Promise<void>((ok) => (attempted = ok));
  const wakers = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      wakers.add(done);
    });
  const run = async () => {
    while (!stopped) {
      if (!deps.isReady()) {
        await sleep(opts.pollMs ?? 100);
        continue;
      }
      try {
        const r = await backfillIndex(deps, { ...opts, stopped: () => stopped });
        if (r.state === 'done') deps.log.info({ jobs: r.jobs, tombstones: r.tombstones }, `task index: every task kept from before it is entered (${r.jobs} jobs and ${r.tombstones} tombstones read)`);
        if (r.state !== 'busy') return;
      } catch (e) {
        if (stopped) return;
        deps.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'task index: entering the tasks kept from before it failed; trying again');
      } finally {
        attempted();
      }
      await sleep(opts.retryMs ?? 30_000);
    }
  };
  const settled = run().finally(() => attempted());
  return {
    settled,
    firstAttempt,
    async stop() {
      stopped = true;
      for (const w of [...wakers]) w();
      await settled;
    },
  };
}
