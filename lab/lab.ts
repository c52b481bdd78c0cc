/**
 * The lab: real libvirt hosts on this one machine, for integration tests and
 * the demo. This is the API tests import; lab/cli.ts is a thin wrapper.
 *
 *   labUp()      hosts host1..hostN (libvirtd each in its own mount
 *                namespace, TCP on 127.0.0.(10+N):16509), the shared pool
 *                `lab-shared` on every host, guests lab-tiny / lab-disk /
 *                lab-dirty running (on host1 when it starts them).
 *                Idempotent; repairs what is missing or dead.
 *   labDown()    removes everything the lab made, by recorded PIDs/devices.
 *   labStatus()  what is there now (read-only).
 *   killHost / startHost   crash and restart one host's libvirtd.
 *   resetGuest   put one guest back on host1 before a migration test.
 *
 * All mutating calls hold the lab lock (lab/state.ts), so test files that
 * call labUp() concurrently build one lab, not two.
 */
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import {
  DEFAULT_DIRTY_RATE_MIBS, DEFAULT_HOSTS, detectVirtType, DISK_VOLUME, GUEST_KINDS, hostAddress, hostIndex, hostName, hostPaths,
  hostUri, LAB_GUESTS, labDir, labPaths, labUuid, MAX_HOSTS, POOL_NAME, PRIVATE_MOUNTS, type GuestKind, type LabGuestName,
} from './config.js';
import { LabError } from './exec.js';
import { buildDirtyKernel, ensureGuest, listDomains, placeGuest } from './guests.js';
import { ensureAccounts, ensureMountPoints, hostUuidOf, liveDaemon, startDaemon, stopDaemon, writeHostConfig } from './hosts.js';
import { claimDir, readState, withLock, writeState, type LabState } from './state.js';
import { diskVolumePath, ensureDiskVolume, ensurePool, poolInfo } from './storage.js';
import { stopHostCompletely, teardown, type Log } from './teardown.js';

export {
  GUEST_DIRTY, GUEST_DISK, GUEST_TINY, LAB_GUESTS, POOL_NAME, DEFAULT_DIRTY_RATE_MIBS,
  hostAddress, hostUri, labDir, type LabGuestName,
} from './config.js';
export { LabError } from './exec.js';

export interface LabHostStatus {
  name: string;
  address: string;
  uri: string;
  /** As the daemon reports it; the configured one while the host is down. */
  hostUuid: string;
  /** libvirtd's PID, null when it is not running. */
  pid: number | null;
  /** The daemon answers on its URI. */
  running: boolean;
}

export interface LabStatus {
  /** Every host answers and has lab-shared active (guests may be anywhere). */
  up: boolean;
  dir: string;
  hosts: LabHostStatus[];
  pool: { name: string; path: string };
  guests: { name: string; kind: GuestKind; host: string | null; state: string | null }[];
}

export interface LabUpOptions {
  /** Number of hosts (1..20). Default: as many as the lab has now, else 2. */
  hosts?: number;
  /** lab-dirty's dirty rate in MiB/s. Default: the current one, else 64. Sticky. */
  dirtyRateMiBs?: number;
  /** Progress messages (the CLI prints them; tests usually do not). */
  log?: Log;
}

const quiet: Log = () => {};

function freshState(): LabState {
  return { version: 1, hostCount: DEFAULT_HOSTS, hosts: {}, loops: [], dirtyRateMiBs: DEFAULT_DIRTY_RATE_MIBS, virtType: 'qemu', createdDirs: [] };
}

function hostNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => hostName(i + 1));
}

function checkRate(rate: number | undefined): void {
  if (rate !== undefined && !(Number.isFinite(rate) && rate >= 0 && rate <= 4096)) {
    throw new LabError(`dirtyRateMiBs must be a number in 0..4096, got ${rate}`);
  }
}

/** State of a lab that must already be up (startHost, resetGuest, killHost). */
function requireState(dir: string): LabState {
  const state = readState(dir);
  if (!state) throw new LabError(`no lab in ${dir}; run \`npm run lab -- up\` (or labUp()) first`);
  return state;
}

function requireHost(state: LabState, name: string): void {
  hostIndex(name);
  if (!hostNames(state.hostCount).includes(name)) {
    throw new LabError(`${name} is not part of the lab (it has ${state.hostCount} hosts)`);
  }
}

/**
 * Bring the lab up, or repair it. Resolves when every host answers, the pool
 * is active everywhere and every lab guest runs exactly once: a guest already
 * running somewhere (say on host2 after a test migrated it) stays there;
 * a missing, stopped or stale one is (re)started on host1. Use resetGuest to
 * put a guest back on host1.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabStatus> {
  const log = opts.log ?? quiet;
  if (opts.hosts !== undefined && !(Number.isInteger(opts.hosts) && opts.hosts >= 1 && opts.hosts <= MAX_HOSTS)) {
    throw new LabError(`hosts must be an integer in 1..${MAX_HOSTS}, got ${opts.hosts}`);
  }
  checkRate(opts.dirtyRateMiBs);
  const dir = labDir();
  const shadowed = PRIVATE_MOUNTS.find(([, target]) => dir === target || dir.startsWith(`${target}/`));
  if (shadowed) throw new LabError(`the lab dir ${dir} must not be under ${shadowed[1]}: each host mounts its own copy there`);
  claimDir(dir);
  await withLock(dir, async () => {
    const state = readState(dir) ?? freshState();
    const save = () => writeState(dir, state);
    state.hostCount = opts.hosts ?? state.hostCount;
    if (opts.dirtyRateMiBs !== undefined) state.dirtyRateMiBs = opts.dirtyRateMiBs;
    state.virtType = detectVirtType();
    await ensureAccounts();
    ensureMountPoints(state);
    save();
    const names = hostNames(state.hostCount);
    for (const extra of Object.keys(state.hosts).filter((n) => !names.includes(n))) {
      log(`${extra}: not wanted any more, stopping it`);
      await stopHostCompletely(dir, state, extra, log);
      rmSync(hostPaths(dir, extra).root, { recursive: true, force: true });
      save();
    }
    const device = await ensureDiskVolume(dir, state, save);
    log(`shared volume ${POOL_NAME}/${DISK_VOLUME} -> ${device}`);
    await buildDirtyKernel(dir);
    // hosts start in parallel: the first start of each probes qemu (seconds)
    await Promise.all(names.map(async (name) => {
      if (writeHostConfig(dir, name) && liveDaemon(dir, state, name)) {
        log(`${name}: configuration changed, restarting libvirtd`);
        await stopDaemon(dir, state, name);
      }
      const outcome = await startDaemon(dir, state, name, save);
      log(`${name}: ${outcome}, ${hostUri(name)} (libvirtd ${state.hosts[name]?.libvirtd?.pid})`);
      await ensurePool(dir, name);
    }));
    const guestOpts = { virtType: state.virtType, dirtyRateMiBs: state.dirtyRateMiBs };
    for (const guest of LAB_GUESTS) {
      const where = await ensureGuest(dir, names, guest, guestOpts);
      log(`${guest}: running on ${where} (${state.virtType})`);
    }
  });
  return labStatus();
}

/** Remove everything the lab made. Safe to call when nothing is up. */
export async function labDown(opts: { log?: Log } = {}): Promise<void> {
  const log = opts.log ?? quiet;
  const dir = labDir();
  if (!existsSync(dir)) return;
  if (!existsSync(labPaths(dir).marker)) throw new LabError(`${dir} is not a lab directory (no .kvm-migrate-lab marker); not touching it`);
  await withLock(dir, async () => {
    const state = readState(dir) ?? freshState();
    await teardown(dir, state, log);
  });
  try {
    rmdirSync(dir);
  } catch {
    // another caller took the lock meanwhile and is building a new lab here
  }
}

/** What the lab looks like now. Never changes anything. */
export async function labStatus(): Promise<LabStatus> {
  const dir = labDir();
  const pool = { name: POOL_NAME, path: labPaths(dir).shared };
  const state = readState(dir);
  const names = state ? hostNames(state.hostCount) : [];
  const hosts = await Promise.all(names.map(async (name): Promise<LabHostStatus> => {
    const daemon = state ? liveDaemon(dir, state, name) : null;
    const uuid = daemon ? await hostUuidOf(name, 5_000) : null;
    return {
      name, address: hostAddress(name), uri: hostUri(name),
      hostUuid: uuid ?? labUuid(dir, `host:${name}`), pid: daemon?.pid ?? null, running: uuid !== null,
    };
  }));
  const running = hosts.filter((h) => h.running).map((h) => h.name);
  const pools = await Promise.all(running.map((n) => poolInfo(n)));
  const domains = await Promise.all(running.map(async (n) => [n, await listDomains(n)] as const));
  const rank = (s: string) => (s === 'running' ? 0 : s === 'paused' ? 1 : 2);
  const guests = LAB_GUESTS.map((g) => {
    const seen = domains.flatMap(([host, doms]) => (doms?.has(g) ? [{ host, state: doms.get(g) as string }] : []));
    seen.sort((a, b) => rank(a.state) - rank(b.state));
    return { name: g, kind: GUEST_KINDS[g], host: seen[0]?.host ?? null, state: seen[0]?.state ?? null };
  });
  const up = hosts.length > 0 && hosts.every((h) => h.running) && pools.every((p) => p?.state === 'running');
  return { up, dir, hosts, pool, guests };
}

/**
 * Crash a host: SIGKILL its libvirtd, leaving its guests' qemu running (as a
 * crashed daemon would). Returns false when the daemon was not running.
 */
export async function killHost(name: string): Promise<boolean> {
  const dir = labDir();
  return withLock(dir, async () => {
    const state = requireState(dir);
    requireHost(state, name);
    return stopDaemon(dir, state, name, 'SIGKILL');
  });
}

/** (Re)start a host's libvirtd in a fresh namespace with the same mounts. Idempotent. */
export async function startHost(name: string): Promise<void> {
  const dir = labDir();
  await withLock(dir, async () => {
    const state = requireState(dir);
    requireHost(state, name);
    writeHostConfig(dir, name);
    await startDaemon(dir, state, name, () => writeState(dir, state));
    await ensurePool(dir, name);
  });
}

/**
 * Make `name` defined, persistent and running on host1 and absent from every
 * other host. Starts any lab host that is down first. `dirtyRateMiBs` (for
 * lab-dirty) changes the lab's sticky rate and rebuilds the guest if needed.
 */
export async function resetGuest(name: string, opts: { dirtyRateMiBs?: number } = {}): Promise<void> {
  if (!(LAB_GUESTS as readonly string[]).includes(name)) {
    throw new LabError(`${name} is not a lab guest (${LAB_GUESTS.join(', ')})`);
  }
  checkRate(opts.dirtyRateMiBs);
  const dir = labDir();
  await withLock(dir, async () => {
    const state = requireState(dir);
    const save = () => writeState(dir, state);
    if (opts.dirtyRateMiBs !== undefined) state.dirtyRateMiBs = opts.dirtyRateMiBs;
    save();
    const names = hostNames(state.hostCount);
    for (const host of names) {
      if (!liveDaemon(dir, state, host)) {
        writeHostConfig(dir, host);
        await startDaemon(dir, state, host, save);
        await ensurePool(dir, host);
      }
    }
    if (name === 'lab-disk') await ensureDiskVolume(dir, state, save);
    await placeGuest(dir, names, name as LabGuestName, { virtType: state.virtType, dirtyRateMiBs: state.dirtyRateMiBs });
  });
}

/** The `<source dev>` of lab-disk: a lab-shared volume path on every host. */
export function labDiskPath(): string {
  return diskVolumePath(labDir());
}

/** The lab's host names, host1..hostN (from the state; default count when down). */
export function labHosts(): string[] {
  const state = readState(labDir());
  return hostNames(state?.hostCount ?? DEFAULT_HOSTS);
}
