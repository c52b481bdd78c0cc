/**
 * Wakes event streams (GET /tasks/:id/events) when BullMQ says their job
 * changed (progress, completed, failed, removed, delayed, active) instead of
 * leaving them to find out at their next look: a client learns a migration's
 * end and each progress sample as soon as Redis has it. Streams still look
 * every 100 ms, for what BullMQ has no event for (a stage's checkpoint saved
 * with updateData).
 *
 * One QueueEvents per API process (a blocking XREAD on the queue's event
 * stream, its own Redis connection), opened with the first stream and closed
 * with the API.
 */
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import { logOutages } from '../shared/queue.js';
import { atMost } from '../shared/timeout.js';

export interface TaskSignals {
  /**
   * Resolves at the next event for job `id` after this call, or after `ms`.
   * Call it before reading the task, so no event falls between the read and the wait.
   */
  next(id: string, ms: number): Promise<void>;
  close(): Promise<void>;
}

/** Which BullMQ queue events concern a job's task. */
export const TASK_EVENTS = ['progress', 'completed', 'failed', 'removed', 'delayed', 'active', 'waiting'] as const;

export function queueSignals(config: Config, log: { warn(o: object, m: string): void; info(o: object, m: string): void }): TaskSignals {
  const waiters = new Map<string, Set<() => void>>();
  let events: QueueEvents | null = null;
  let connection: Redis | null = null;
  let closed = false;
  const wake = ({ jobId }: { jobId: string }) => {
    const set = waiters.get(jobId);
    if (!set) return;
    waiters.delete(jobId);
    for (const w of set) w();
  };
  const start = () => {
    if (events || closed) return;
    // Blocking reads: no per-command timeout and no retry cap, unlike the API's request connection.
    connection = new Redis(config.redis.url, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 200, 2000) });
    // An outage is logged once when it starts and once when it ends, not at every reconnect attempt.
    logOutages(connection, log, 'event streams look at their task every 100 ms until it is back');
    events = new QueueEvents(config.redis.queue, { connection, prefix: config.redis.prefix });
    events.on('error', () => undefined);
    for (const name of TASK_EVENTS) events.on(name, wake as never);
  };
  return {
    next(id, ms) {
      start();
      return new Promise<void>((resolve) => {
        const set = waiters.get(id) ?? new Set();
        const done = () => {
          clearTimeout(timer);
          set.delete(done);
          if (set.size === 0 && waiters.get(id) === set) waiters.delete(id);
          resolve();
        };
        const timer = setTimeout(done, ms);
        set.add(done);
        waiters.set(id, set);
      });
    },
    async close() {
      closed = true;
      for (const set of waiters.values()) for (const w of set) w();
      waiters.clear();
      // BullMQ's close waits for a first connection that never comes while Redis is down: bounded.
      if (events) await atMost(events.close(), 1000);
      connection?.disconnect();
      events = null;
      connection = null;
    },
  };
}
