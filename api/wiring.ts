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
import { createMetricsEndpoint, queueExposition } from './metrics.js';
import { redisMetrics, onceTtl } from '../shared/metrics/store.js';
import { createSessionStore } from './session.js';
import { advertisedHost, advertisedPort, PeerDirectory, slpAdvertiser, slpDiscover, type Advertiser, type Discover } from './peers.js';
import { createSourceHost } from './source.js';
import { startBackfill } from './task-backfill.js';
import { queueSignals } from './task-events.js';
import { createTaskStore, guard } from './tasks.js';

export interface WiredApi {
  app: ReturnType<typeof createApp>;
  /** Resolves once Redis is connected, or after `ms` whatever happened (the API then answers 503 until it is). */
  redisReady(ms: number): Promise<boolean>;
  /** The peer directory (empty and idle with federation off). */
  peers: PeerDirectory;
  /**
   * With federation on: advertise this API over SLP and start discovering
   * peers, once it listens on `port`. A failure to advertise is logged; the
   * API serves on. Off: does nothing.
   */
  startFederation(port: number): Promise<void>;
  /** Settles after the first attempt to enter tasks kept from before the task index (task-backfill.ts). */
  indexBackfilled: Promise<void>;
  close(): Promise<void>;
}

export interface WireOptions {
  /** Discovery instead of SLP (tests). */
  discover?: Discover;
  /** Advertising instead of an SLP service agent (tests); null: do not advertise. */
  advertiser?: (host: string, port: number) => Advertiser | null;
}

export function wireApi(config: Config, log: Logger & { warn(o: object, m: string): void; info(o: object, m: string): void }, clock: Clock, opts: WireOptions = {}): WiredApi {
  const hypervisor = createHypervisor();
  const redis = apiRedis(config);
  logOutages(redis, log, 'the API answers 503 until it is back');
  const queue = createQueue(config, redis);
  queue.on('error', (e) => log.warn({ err: e.message }, 'queue'));
  const source = createSourceHost(config, hypervisor);
  const ready = () => redis.status === 'ready';
  const tasks = createTaskStore(config, queue, redis, ready);
  // Tasks kept from before the task index are entered in it once, in the background.
  const backfill = startBackfill({ client: redis, queue, prefix: config.redis.prefix, isReady: ready, log });
  const idempotency = createIdempotency({ client: redis, prefix: config.redis.prefix, ttlSeconds: config.api.idempotency_ttl, redis: guard(ready), getTask: (id) => tasks.get(id) });
  const sessions = createSessionStore({ client: redis, prefix: config.redis.prefix, ttlSeconds: config.auth.session_ttl, redis: guard(ready) });
  const peers = new PeerDirectory({ config, log, discover: opts.discover ?? slpDiscover(config) });
  let advertiser: Advertiser | null = null;
  const probes = {
    redis: async () => void (await redis.ping()),
    libvirt: async () => void (await (await source.connection()).hostname()),
    workers: () => queue.getWorkersCount(),
  };
  const stored = redisMetrics(redis, config.redis.prefix, onceTtl(config));
  const metrics = createMetricsEndpoint({ read: () => stored.read(), queue: () => queueExposition(queue) });
  const signals = queueSignals(config, log);
  const app = createApp({ config, hypervisor, source, tasks, idempotency, clock, log, redisReady: ready, peers, probes, sessions, queue, metrics, signals });
  return {
    app,
    peers,
    indexBackfilled: backfill.firstAttempt,
    async startFederation(port) {
      if (!config.federation.enabled || advertiser) return;
      peers.start(port);
      const host = advertisedHost(config);
      const at = advertisedPort(config, port);
      advertiser = opts.advertiser ? opts.advertiser(host, at) : slpAdvertiser(config, host, at);
      try {
        await advertiser?.start();
        if (advertiser) log.info({ host, port: at }, 'advertising service:wokd and service:kvm-migrate over SLP');
      } catch (e) {
        log.warn({ reason: e instanceof Error ? e.message : String(e) }, 'cannot advertise this service over SLP; peers will not find it (GET /peers still works)');
      }
    },
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
      peers.close();
      await advertiser?.stop().catch(() => undefined);
      await backfill.stop();
      await signals.close();
      await queue.close().catch(() => undefined);
      redis.disconnect();
      await source.close();
    },
  };
}
