/**
 * An API in this process (real Redis, a real libvirt connection to the
 * test:///default driver or a lab host), listening on a free port, with its
 * log lines captured so tests can search them.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import type { Advertiser, Discover, PeerDirectory } from '../../api/peers.js';
import { wireApi } from '../../api/wiring.js';
import { loadConfig, type Config } from '../../shared/config.js';
import { createLogger, systemClock } from '../../shared/log.js';
import { AUTH_ENV } from './service.js';

export interface InProc {
  url: string;
  config: Config;
  prefix: string;
  logs: string[];
  redis: Redis;
  /** The API's peer directory (idle unless federation is on). */
  peers: PeerDirectory;
  /** Every key of this API's prefix with its content, to prove a request changed nothing. */
  snapshot(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface InProcOptions {
  /** Peer discovery instead of SLP; with it, nothing is advertised unless `advertiser` says how. */
  discover?: Discover;
  advertiser?: (host: string, port: number) => Advertiser | null;
}

export async function startInProc(env: Record<string, string> = {}, opts: InProcOptions = {}): Promise<InProc> {
  const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
  const config = loadConfig({
    env: {
      KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379',
      KVM_MIGRATE_REDIS_PREFIX: prefix,
      KVM_MIGRATE_LIBVIRT_SOURCE_URI: 'test:///default',
      KVM_MIGRATE_AUTH_TOKENS: AUTH_ENV,
      ...env,
    },
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const wired = wireApi(
    config,
    createLogger('debug', 'api', sink),
    systemClock,
    opts.discover ? { discover: opts.discover, advertiser: opts.advertiser ?? (() => null) } : {},
  );
  const server = wired.app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await wired.startFederation((server.address() as AddressInfo).port);
  const redis = new Redis(config.redis.url);
  // Serve tests only once the API's own Redis connection is up (/health says so).
  for (let i = 0; (await fetch(`${url}/health`)).status !== 200; i++) {
    if (i > 100) throw new Error('the in-process API did not reach Redis in 5 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  // Its one background write (the task index backfill's marker) lands before any test reads Redis.
  await Promise.race([wired.indexBackfilled, new Promise((r) => setTimeout(r, 5000))]);
  const snapshot = async () => {
    const out: Record<string, unknown> = {};
    for (const k of (await redis.keys(`${prefix}:*`)).sort()) {
      const type = await redis.type(k);
      if (type === 'string') out[k] = await redis.get(k);
      else if (type === 'hash') out[k] = await redis.hgetall(k);
      else if (type === 'zset') out[k] = await redis.zrange(k, 0, -1, 'WITHSCORES');
      else if (type === 'list') out[k] = await redis.lrange(k, 0, -1);
      else if (type === 'set') out[k] = (await redis.smembers(k)).sort();
      else out[k] = type;
    }
    return out;
  };
  return {
    url,
    config,
    prefix,
    logs,
    redis,
    peers: wired.peers,
    snapshot,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await wired.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    },
  };
}
