/**
 * Builds a whole API (libvirt source, Redis, queue, task store, idempotency,
 * Express app) from config, for the API process and for in-process tests.
 */
import type { Config } from '../shared/config.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import { apiRedis, createQueue, logOutages } from '../shared/queue.js';
import type { Clock, Logger } from '../worker/stages/stage.js';
import { createApp } from './app.js';
import { createIdempotency } from './idempotency.js';
import { createSourceHost } from './source.js';
import { createTaskStore, guard } from './tasks.js';

export interface WiredApi {
  app: ReturnType<typeof createApp>;
  /** Resolves once Redis is connected, or after `ms` whatever happened (the API then answers 503 until it is). */
  redisReady(ms: number): Promise<boolean>;
  close(): Promise<void>;
}

export function wireApi(config: Config, log: Logger & { warn(o: object, m: string): void; info(o: object, m: string): void }, clock: Clock): WiredApi {
  const hypervisor = createHypervisor();
  const redis = apiRedis(config);
  logOutages(redis, log, 'the API answers 503 until it is back');
  const queue = createQueue(config, redis);
  queue.on('error', (e) => log.warn({ err: e.message }, 'queue'));
  const source = createSourceHost(config, hypervisor);
  const ready = () => redis.status === 'ready';
  const tasks = createTaskStore(config, queue, redis, ready);
  const idempotency = createIdempotency({ client: redis, prefix: config.redis.prefix, ttlSeconds: config.api.idempotency_ttl, redis: guard(ready), getTask: (id) => tasks.get(id) });
  const app = createApp({ config, hypervisor, source, tasks, idempotency, clock, log, redisReady: ready });
  return {
    app,
    redisReady(ms) {
      if (ready()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (v: boolean) => {
          clearTimeout(timer);
          redis.off('ready', onReady);
          resolve(v);
        };
        const onReady = () => done(true);
        const timer = setTimeout(() => done(ready()), ms);
        redis.on('ready', onReady);
      });
    },
    async close() {
      await queue.close().catch(() => undefined);
      redis.disconnect();
      await source.close();
    },
  };
}
