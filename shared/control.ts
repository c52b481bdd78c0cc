/**
 * The control channel between API processes and workers, wherever they run:
 * a Redis pub/sub channel for "now", and keys for "whoever picks the job up
 * later" (a message published while no worker holds the job is not lost).
 * BullMQ's worker.cancelJob only reaches its own process; this reaches all.
 */
import type { Redis } from 'ioredis';

export type ControlMessage =
  | { type: 'cancel'; jobId: string }
  | { type: 'tune'; jobId: string; bandwidth?: number | 'unlimited'; maxDowntimeMs?: number };

export type Tuning = Omit<Extract<ControlMessage, { type: 'tune' }>, 'type' | 'jobId'>;

export const controlChannel = (prefix: string) => `${prefix}:control`;
export const cancelKey = (prefix: string, jobId: string) => `${prefix}:cancel:${jobId}`;
export const tuneKey = (prefix: string, jobId: string) => `${prefix}:tune:${jobId}`;

/** Marks the job cancelled (kept as long as finished tasks are) and tells every worker. */
export async function requestCancel(redis: Redis, prefix: string, jobId: string, keepSeconds: number): Promise<void> {
  await redis.set(cancelKey(prefix, jobId), '1', 'EX', keepSeconds);
  await redis.publish(controlChannel(prefix), JSON.stringify({ type: 'cancel', jobId } satisfies ControlMessage));
}

/** Records the latest requested tuning (merged with earlier requests) and tells every worker. */
export async function requestTune(redis: Redis, prefix: string, jobId: string, tuning: Tuning, keepSeconds: number): Promise<void> {
  const fields: Record<string, string> = {};
  if (tuning.bandwidth !== undefined) fields.bandwidth = String(tuning.bandwidth);
  if (tuning.maxDowntimeMs !== undefined) fields.maxDowntimeMs = String(tuning.maxDowntimeMs);
  await redis.multi().hset(tuneKey(prefix, jobId), fields).expire(tuneKey(prefix, jobId), keepSeconds).exec();
  await redis.publish(controlChannel(prefix), JSON.stringify({ type: 'tune', jobId, ...tuning } satisfies ControlMessage));
}

export async function readTune(redis: Redis, prefix: string, jobId: string): Promise<Tuning> {
  const h = await redis.hgetall(tuneKey(prefix, jobId));
  const out: Tuning = {};
  if (h.bandwidth) out.bandwidth = h.bandwidth === 'unlimited' ? 'unlimited' : Number(h.bandwidth);
  if (h.maxDowntimeMs) out.maxDowntimeMs = Number(h.maxDowntimeMs);
  return out;
}

export async function isCancelled(redis: Redis, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.exists(cancelKey(prefix, jobId))) === 1;
}

export function parseControl(raw: string): ControlMessage | null {
  try {
    const m = JSON.parse(raw) as ControlMessage;
    if (typeof m?.jobId !== 'string') return null;
    if (m.type === 'cancel' || m.type === 'tune') return m;
  } catch {
    /* not ours */
  }
  return null;
}
