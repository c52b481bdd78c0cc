/**
 * Reading tasks: each job's state, its hash and (when the job is gone) its
 * tombstone, for any number of ids, in one Lua script: one round trip for
 * GET /tasks/:id and one for a listing's page.
 *
 * The state is found without BullMQ's getJobState: that finds a waiting job
 * by scanning the wait list (LPOS), which grows with the queue. Here a job in
 * no other state is waiting, so reading a task costs the same with 100,000
 * queued as with ten (only the active list is scanned: it holds the jobs
 * workers run, a few). One script rather than a pipeline: ioredis copies
 * every script BullMQ defined onto each pipeline it makes, which cost
 * GET /tasks/:id a quarter of its throughput (BENCHMARKS.md, figure 4). And
 * the state and the hash are read in the same atomic step, so a job that
 * ends meanwhile is never shown "finished" with data from before its end.
 */
import type { Redis } from 'ioredis';
import type { MigrationJobData } from '../shared/job.js';
import { toTask, type StateClass, type Task } from '../shared/task.js';

/** The keys the script reads: BullMQ's state sets, and per id its job hash and tombstone. */
export interface ReadKeys {
  completed: string;
  failed: string;
  delayed: string;
  prioritized: string;
  active: string;
  waitingChildren: string;
  job(id: string): string;
  tomb(id: string): string;
}

/**
 * KEYS[1..6]: the state sets (active is a list); then, per id, its job hash and
 * its tombstone. ARGV[1]: the state classes wanted ("completed", "failed",
 * "other", comma-separated; empty: all), ARGV[2..]: the ids. A job of a class
 * not wanted answers 'skip' without its hash: a listing filtered by status
 * does not carry the data of every task it passes over.
 */
export const READ_TASKS = `
local want = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local j = i - 1
  local jobKey = KEYS[5 + 2 * j]
  if redis.call('EXISTS', jobKey) == 0 then
    local tomb = redis.call('GET', KEYS[6 + 2 * j])
    if tomb then out[j] = {'tomb', tomb} else out[j] = {'none'} end
  else
    local s = 'waiting'
    if redis.call('ZSCORE', KEYS[1], id) then s = 'completed'
    elseif redis.call('ZSCORE', KEYS[2], id) then s = 'failed'
    elseif redis.call('ZSCORE', KEYS[3], id) then s = 'delayed'
    elseif redis.call('ZSCORE', KEYS[4], id) then s = 'prioritized'
    elseif redis.call('LPOS', KEYS[5], id) then s = 'active'
    elseif redis.call('ZSCORE', KEYS[6], id) then s = 'waiting-children' end
    local class = 'other'
    if s == 'completed' or s == 'failed' then class = s end
    if want ~= '' and not string.find(',' .. want .. ',', ',' .. class .. ',', 1, true) then
      out[j] = {'skip'}
    else
      out[j] = {'job', s, redis.call('HGETALL', jobKey)}
    end
  end
end
return out`;

/** One id's answer from READ_TASKS. */
export type ReadReply = ['none'] | ['skip'] | ['tomb', string] | ['job', string, string[]];

const int = (v: string | undefined): number | undefined => {
  if (v === undefined || v === '') return undefined;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : undefined;
};

function parseJson(v: string | undefined): unknown {
  if (v === undefined) return undefined;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

/**
 * A job hash (HGETALL's flat field, value list) as toTask sees it: the
 * fields are BullMQ's (data and progress as JSON, times as decimal ms,
 * attempts made as attemptsMade or atm), read the way BullMQ's Job.fromId
 * reads them; test/task-read.test.ts holds the two to the same task. null
 * when the hash is no migration job (no request in its data).
 */
export function taskFromHash(id: string, state: string, flat: readonly string[]): Task | null {
  const h: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]!] = flat[i + 1]!;
  const data = parseJson(h.data) as MigrationJobData | undefined;
  if (!data || typeof data !== 'object' || !data.request) return null;
  return toTask({
    id,
    state,
    data,
    failedReason: h.failedReason,
    progress: parseJson(h.progress || '0'),
    timestamp: int(h.timestamp) ?? 0,
    processedOn: int(h.processedOn) || undefined,
    finishedOn: int(h.finishedOn) || undefined,
    attemptsMade: int(h.attemptsMade || h.atm) ?? 0,
  });
}

/** One id's reply as a task: its job's, its tombstone's, or null. */
export function taskOfReply(id: string, reply: ReadReply): Task | null {
  if (reply[0] === 'job') return taskFromHash(id, reply[1], reply[2]);
  if (reply[0] === 'tomb') return JSON.parse(reply[1]) as Task;
  return null;
}

/**
 * The tasks of `ids` (each already a valid task id), in order, in one round
 * trip; with `classes`, a job of another class reads as null (tombstones
 * always read: they are small, and the caller's filter sees their status).
 */
export async function readTasks(client: Redis, k: ReadKeys, ids: readonly string[], classes?: readonly StateClass[]): Promise<(Task | null)[]> {
  if (!ids.length) return [];
  if (classes && classes.length === 0) return ids.map(() => null);
  const keys = [k.completed, k.failed, k.delayed, k.prioritized, k.active, k.waitingChildren];
  for (const id of ids) keys.push(k.job(id), k.tomb(id));
  const replies = (await client.eval(READ_TASKS, keys.length, ...keys, (classes ?? []).join(','), ...ids)) as ReadReply[];
  return ids.map((id, i) => taskOfReply(id, replies[i] ?? ['none']));
}
