/**
 * The fault suite's rig: a private Redis with AOF that can be restarted, one
 * API process per lab host (each migrates the guests it hosts), workers that
 * can be started with a failpoint and killed, and the invariant checks run
 * after every trial (where does the guest run, is the task's end true).
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { hostUri } from '../../lab/lab.js';
import type { Hypervisor } from '../../shared/libvirt/types.js';
import { withConnection } from './guests.js';
import { AUTH_ENV, spawn, waitReady } from './service.js';

export const HOSTS = ['host1', 'host2'] as const;
export type Host = (typeof HOSTS)[number];

/** redis-server with AOF in a temporary directory, restartable on the same data. */
export class PrivateRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-faults-redis-'));
  private proc: ChildProcess | null = null;
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawnChild('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined); // refused until the server listens: expected here
    for (let i = 0; ; i++) {
      try {
        await probe.connect();
        await probe.ping();
        break;
      } catch {
        if (i > 100) throw new Error(`redis-server on ${this.port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    probe.disconnect();
    // Another server already on the port would answer the probe: this one must be the one running.
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`redis-server could not start on port ${this.port} (is another one there?)`);
  }
  /** A clean restart (SIGTERM: Redis flushes its AOF and exits), then up again on the same files. */
  async restart(downMs = 1000): Promise<void> {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }
  /** A crash: SIGKILL, no goodbye; with appendfsync everysec up to a second of writes may be gone. */
  async crash(downMs = 1000): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    }
    this.proc = null;
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise((r) => {
      p.once('exit', r);
      p.kill('SIGTERM');
    });
    this.proc = null;
  }
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Rig {
  prefix: string;
  env: NodeJS.ProcessEnv;
  api: Record<Host, string>;
  workers: ChildProcess[];
  /** A worker; with a failpoint ("migrate:done") it SIGKILLs itself there. */
  startWorker(failpoint?: string): Promise<ChildProcess>;
  /** Stops every worker (gracefully unless told to kill). */
  stopWorkers(signal?: NodeJS.Signals): Promise<void>;
  /** Kills the API of a host with SIGKILL and starts it again. */
  restartApi(host: Host): Promise<void>;
  stop(): Promise<void>;
}

const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null;
export function waitExit(c: ChildProcess): Promise<void> {
  return exited(c) ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
}

export async function startRig(redisUrl: string, extraEnv: Record<string, string>): Promise<Rig> {
  const prefix = `kmfault-${randomUUID().slice(0, 8)}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KVM_MIGRATE_REDIS_URL: redisUrl,
    KVM_MIGRATE_REDIS_PREFIX: prefix,
    KVM_MIGRATE_API_HOST: '127.0.0.1',
    KVM_MIGRATE_API_PORT: '0',
    KVM_MIGRATE_AUTH_TOKENS: AUTH_ENV,
    KVM_MIGRATE_LOG_LEVEL: 'info',
    KVM_MIGRATE_LIBVIRT_LOOKUP_TIMEOUT: '10000',
    UV_THREADPOOL_SIZE: '16',
    ...extraEnv,
  };
  const apis: Partial<Record<Host, ChildProcess>> = {};
  const api: Partial<Record<Host, string>> = {};
  const startApi = async (host: Host, port = '0') => {
    const child = spawn('api.ts', { ...env, KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri(host), KVM_MIGRATE_API_PORT: port });
    const ready = await waitReady(child, `API for ${host}`);
    apis[host] = child;
    api[host] = `http://127.0.0.1:${ready.address?.port}`;
  };
  for (const h of HOSTS) await startApi(h);
  const workers: ChildProcess[] = [];
  const rig: Rig = {
    prefix,
    env,
    api: api as Record<Host, string>,
    workers,
    async startWorker(failpoint) {
      const w = spawn('worker.ts', failpoint ? { ...env, KVM_MIGRATE_FAILPOINT: failpoint } : env);
      await waitReady(w, 'worker');
      workers.push(w);
      return w;
    },
    async stopWorkers(signal = 'SIGTERM') {
      const live = workers.splice(0).filter((w) => !exited(w));
      await Promise.all(
        live.map((w) => {
          const done = waitExit(w);
          w.kill(signal);
          setTimeout(() => w.kill('SIGKILL'), 5000).unref();
          return done;
        }),
      );
    },
    async restartApi(host) {
      const old = apis[host]!;
      old.kill('SIGKILL');
      await waitExit(old);
      // Same port, so clients that know the address keep working.
      await startApi(host, new URL(api[host]!).port);
    },
    async stop() {
      await rig.stopWorkers();
      for (const c of Object.values(apis)) {
        if (c && !exited(c)) {
          const done = waitExit(c);
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 8000).unref();
          await done;
        }
      }
    },
  };
  return rig;
}

export interface Placement {
  /** Hosts where the guest is active (running or paused), with its state. */
  active: { host: Host; state: string }[];
  /** Hosts that have a persistent definition of it. */
  defined: Host[];
}

export async function placement(hv: Hypervisor, guest: string): Promise<Placement> {
  const out: Placement = { active: [], defined: [] };
  for (const host of HOSTS) {
    await withConnection(hv, hostUri(host), async (c) => {
      const d = await c.lookupDomain(guest);
      if (!d) return;
      try {
        if (await d.isActive()) out.active.push({ host, state: (await d.state()).state });
        if (await d.isPersistent()) out.defined.push(host);
      } finally {
        d.free();
      }
    });
  }
  return out;
}
