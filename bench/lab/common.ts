/**
 * Lab plumbing the lab benchmarks share: one kvm-migrate service per source
 * host (the API's source is fixed per process), a migration through the API
 * timed as a client sees it, the same migration through `virsh migrate` with
 * the flags and limits the service would use, and the job's checkpoint.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { hostAddress, hostUri } from '../../lab/lab.js';
import { effectiveDowntime, loadConfig, type Config } from '../../shared/config.js';
import type { Checkpoint, HistoryEntry, MigrationJobData } from '../../shared/job.js';
import { MigrateFlag, type Connection, type Hypervisor } from '../../shared/libvirt/types.js';
import type { Task } from '../../shared/task.js';
import { migrationFlags } from '../../worker/stages/connect.js';
import { api, startService, type Service } from '../../test/helpers/service.js';
import { readEvents } from '../../test/helpers/sse.js';

export type LabHost = 'host1' | 'host2';
export const HOSTS: readonly LabHost[] = ['host1', 'host2'];

/** Wall-clock milliseconds with sub-ms resolution, comparable with the services' ISO timestamps (same machine). */
export const wallNow = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface LabServices {
  /** The service whose source is `h`. */
  of(h: LabHost): Service;
  /** Its configuration as the service loads it (bandwidth, downtime, flags for virsh). */
  config: Config;
  stop(): Promise<void>;
}

/** Env every bench service gets: the rate limit is for abusive clients, not for a benchmark's loop. */
const BENCH_ENV = { KVM_MIGRATE_API_RATE_LIMIT: '1000000' };

/** One service (API + `workers` workers) per lab host as its source, sharing nothing (own Redis prefix each). */
export async function startLabServices(env: Record<string, string> = {}, workers = 1): Promise<LabServices> {
  const started: Partial<Record<LabHost, Service>> = {};
  try {
    for (const h of HOSTS) started[h] = await startService({ ...BENCH_ENV, ...env, KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri(h) }, workers);
  } catch (e) {
    await Promise.all(Object.values(started).map((s) => s.stop()));
    throw e;
  }
  const config = loadConfig({ env: started.host1!.env });
  return {
    of: (h) => started[h]!,
    config,
    stop: async () => void (await Promise.all(Object.values(started).map((s) => s.stop()))),
  };
}

export interface ApiRun {
  /** POST sent to the task seen `finished` by the client, ms. */
  ms: number;
  /** The POST's own round trip, ms. */
  postMs: number;
  /** Wall-clock ms when the POST was sent and when the client saw the end. */
  sentAt: number;
  seenAt: number;
  task: Task;
}

/** How a client follows its task: its event stream (pushed), or GET /tasks/:id every `pollMs`. */
export type Follow = 'events' | { pollMs: number };

/** POST /vms/:vm/migrate, then follow the task until it leaves `running`. */
export async function migrateByApi(svc: Service, vm: string, to: LabHost, opts: { follow: Follow; body?: Record<string, unknown> }): Promise<ApiRun> {
  const sentAt = wallNow();
  const post = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress(to), ...opts.body });
  const postMs = wallNow() - sentAt;
  if (post.status !== 202) throw new Error(`POST /vms/${vm}/migrate answered ${post.status}: ${JSON.stringify(post.body)}`);
  const id = (post.body as Task).id;
  const ended = (seenAt: number, task: Task): ApiRun => {
    if (task.status !== 'finished') throw new Error(`task ${id} (${vm} to ${to}) ended ${task.status}: ${task.message}`);
    return { ms: seenAt - sentAt, postMs, sentAt, seenAt, task };
  };
  if (opts.follow === 'events') {
    // The stream ends itself after the terminal event; the time is taken when that event arrives.
    let end: { at: number; task: Task } | null = null;
    await readEvents(`${svc.url}/tasks/${id}/events`, (e) => {
      const task = JSON.parse(e.data) as Task;
      if (!end && task.status !== 'running') end = { at: wallNow(), task };
    });
    const seen = end as { at: number; task: Task } | null;
    if (!seen) throw new Error(`task ${id}: its event stream ended without an end`);
    return ended(seen.at, seen.task);
  }
  for (;;) {
    const r = await api(svc.url, 'GET', `/tasks/${id}`);
    const task = r.body as Task;
    if (r.status === 200 && task.status !== 'running') return ended(wallNow(), task);
    await sleep(opts.follow.pollMs);
  }
}

/** The first history entry of `stage` with `event`, as wall-clock ms (the worker's clock, ms precision). */
export function historyAt(history: HistoryEntry[], stage: string, event: HistoryEntry['event']): number | null {
  const e = history.find((h) => h.stage === stage && h.event === event);
  return e ? Date.parse(e.at) : null;
}

/** `virsh migrate` options for the service's flags; a flag without an option here fails loudly rather than being dropped. */
export function virshFlagOptions(flags: number): string[] {
  const options: [number, string][] = [
    [MigrateFlag.LIVE, '--live'],
    [MigrateFlag.PEER2PEER, '--p2p'],
    [MigrateFlag.TUNNELLED, '--tunnelled'],
    [MigrateFlag.PERSIST_DEST, '--persistent'],
    [MigrateFlag.UNDEFINE_SOURCE, '--undefinesource'],
    [MigrateFlag.AUTO_CONVERGE, '--auto-converge'],
    [MigrateFlag.COMPRESSED, '--compressed'],
  ];
  const out: string[] = [];
  let left = flags;
  for (const [bit, opt] of options) {
    if (flags & bit) out.push(opt);
    left &= ~bit;
  }
  if (left) throw new Error(`no virsh option for migration flag bits ${left}`);
  return out;
}

export interface VirshPlan {
  flags: number;
  /** null: unlimited (libvirt's default), as the service sends no bandwidth parameter then. */
  bandwidthMiBs: number | null;
  /** null: libvirt's default, as the service leaves it. */
  maxDowntimeMs: number | null;
}

/** What the service would ask libvirt for, from its configuration (worker/stages/connect.ts, prepare.ts). */
export function virshPlan(config: Config, bandwidth: number | 'unlimited' = config.migration_max_bandwidth): VirshPlan {
  return {
    flags: migrationFlags(config.libvirt.keep_source_definition),
    bandwidthMiBs: bandwidth === 'unlimited' ? null : bandwidth,
    maxDowntimeMs: effectiveDowntime(config.migration_downtime),
  };
}

/**
 * `virsh migrate` from `from` to `to`, timed from process start to exit. Like
 * the service, it passes the guest's persistent definition (read beforehand,
 * not timed: one libvirt call) and sets the max downtime once the copy runs
 * (the service's monitor does it on its first sample or the first iteration
 * event, whichever comes first; here a listener on the bench's own connection
 * does it on the first iteration event, so perhaps a little later).
 */
export async function migrateByVirsh(conns: Record<LabHost, Connection>, vm: string, from: LabHost, to: LabHost, plan: VirshPlan): Promise<{ ms: number }> {
  const src = conns[from];
  const dom = await src.lookupDomain(vm);
  if (!dom) throw new Error(`${vm} is not on ${from}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kvm-migrate-bench-virsh-'));
  let off: (() => Promise<void>) | null = null;
  try {
    const args = ['-c', hostUri(from), 'migrate', vm, hostUri(to), ...virshFlagOptions(plan.flags)];
    if (plan.flags & MigrateFlag.PERSIST_DEST && (await dom.isPersistent())) {
      const file = path.join(dir, 'persistent.xml');
      writeFileSync(file, await dom.xml({ migratable: true, secure: true, inactive: true }));
      args.push('--persistent-xml', file);
    }
    if (plan.bandwidthMiBs !== null) args.push('--bandwidth', String(plan.bandwidthMiBs));
    const downtime = plan.maxDowntimeMs;
    if (downtime !== null) {
      let applied = false;
      off = await src.onMigrationEvents(dom, {
        iteration: () => {
          if (applied) return;
          applied = true;
          void dom.migrateSetMaxDowntime(downtime).catch(() => undefined);
        },
      });
    }
    const t0 = wallNow();
    await new Promise<void>((resolve, reject) => {
      const child = spawn('virsh', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`virsh ${args.join(' ')} exited ${code}: ${err.trim()}`))));
    });
    return { ms: wallNow() - t0 };
  } finally {
    await off?.().catch(() => undefined);
    dom.free();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Connections to both lab hosts from the bench process itself. */
export async function openHosts(hv: Hypervisor): Promise<Record<LabHost, Connection> & { close(): Promise<void> }> {
  const [host1, host2] = await Promise.all(HOSTS.map((h) => hv.open(hostUri(h), { timeoutMs: 10_000 })));
  return { host1: host1!, host2: host2!, close: async () => void (await Promise.all([host1!.close(), host2!.close()])) };
}

/** The job's checkpoint straight from Redis (the task JSON leaves the stage results out): `HGET <prefix>:<queue>:<id> data`. */
export async function checkpointOf(redis: Redis, svc: Service, config: Config, id: string): Promise<Checkpoint | null> {
  const raw = await redis.hget(`${svc.prefix}:${config.redis.queue}:${id}`, 'data');
  return raw ? ((JSON.parse(raw) as MigrationJobData).checkpoint ?? null) : null;
}
