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
import { toTask, type Task } from '../shared/task.js';

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

/** KEYS[1..6]: the state sets (active is a list); then, per id (ARGV[i]), its job hash and its tombstone. */
export const READ_TASKS = `
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  local hash = redis.call('HGETALL', KEYS[5 + 2 * i])
  if #hash == 0 then
    local tomb = redis.call('GET', KEYS[6 + 2 * i])
    if tomb then out[i] = {'tomb', tomb} else out[i] = {'none'} end
  else
    local s = 'waiting'
    if redis.call('ZSCORE', KEYS[1], id) then s = 'completed'
    elseif redis.call('ZSCORE', KEYS[2], id) then s = 'failed'
    elseif redis.call('ZSCORE', KEYS[3], id) then s = 'delayed'
    elseif redis.call('ZSCORE', KEYS[4], id) then s = 'prioritized'
    elseif redis.call('LPOS', KEYS[5], id) then s = 'active'
    elseif redis.call('ZSCORE', KEYS[6], id) then s = 'waiting-children' end
    out[i] = {'job', s, hash}
  end
end
return out`;

/** One id's answer from READ_TASKS. */
export type ReadReply = ['none'] | ['tomb', string] | ['job', string, string[]];

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

/** The tasks of `ids` (each already a valid task id), in order, in one round trip. */
export async function readTasks(client: Redis, k: ReadKeys, ids: readonly string[]): Promise<(Task | null)[]> {
  if (!ids.length) return [];
  const keys = [k.completed, k.failed, k.delayed, k.prioritized, k.active, k.waitingChildren];
  for (const id of ids) keys.push(k.job(id), k.tomb(id));
  const replies = (await client.eval(READ_TASKS, keys.length, ...keys, ...ids)) as ReadReply[];
  return ids.map((id, i) => taskOfReply(id, replies[i] ?? ['none']));
}
