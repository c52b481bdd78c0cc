/**
 * Redis and BullMQ wiring shared by the API and the workers: one place that
 * knows the queue name, prefix and job options.
 */
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from './config.js';
import type { MigrationJobData } from './job.js';

export const JOB_NAME = 'migrate';

/** Workers block on Redis: BullMQ needs maxRetriesPerRequest null there. */
export function workerRedis(config: Config): Redis {
  return new Redis(config.redis.url, { maxRetriesPerRequest: null });
}

/**
 * The API must answer 503 quickly when Redis is gone instead of queueing
 * commands in memory: no offline queue, short command timeout.
 */
export function apiRedis(config: Config): Redis {
  return new Redis(config.redis.url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    commandTimeout: 3000,
    connectTimeout: 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
}

export function createQueue(config: Config, connection: Redis): Queue<MigrationJobData> {
  return new Queue<MigrationJobData>(config.redis.queue, { connection, prefix: config.redis.prefix });
}

/** Job options: retries with exponential backoff, history kept for tasks.keep_finished. */
export function jobOptions(config: Config, jobId: string, lockKey: string): JobsOptions {
  const age = config.tasks.keep_finished;
  return {
    jobId,
    attempts: config.retry.attempts,
    backoff: { type: 'exponential', delay: config.retry.backoff },
    // One active migration per VM: BullMQ keeps the id until the job completes or fails.
    deduplication: { id: lockKey },
    removeOnComplete: { age },
    removeOnFail: { age },
  };
}

/** The per-VM lock key: a VM is identified by its source host and name. */
export function vmLockKey(sourceUri: string, vm: string): string {
  return `vm:${sourceUri}:${vm}`;
}

/** Logs a Redis outage once when it starts and once when it ends, not on every reconnect attempt. */
export function logOutages(redis: Redis, log: { warn(o: object, m: string): void; info(o: object, m: string): void }, what: string): void {
  let down = false;
  redis.on('error', (e: Error) => {
    if (!down) log.warn({ err: e.message }, `redis unreachable; ${what}`);
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info({}, 'redis reachable again');
    down = false;
  });
}
