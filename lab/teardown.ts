/**
 * Taking the lab (or one host of it) apart, touching only what it made.
 *
 * "Ours" is proven, never assumed: a libvirtd whose command line names the
 * host's pid file, a qemu whose pid file is in a lab host's run dir, that is
 * a child of a lab host's reaper, or that carries a lab guest UUID, a loop
 * device recorded in the state and still backed by the lab's image file.
 * Mounts need no undoing in the caller's namespace (they only ever existed
 * inside the hosts' namespaces, which vanish with their last process); any
 * mount of a lab directory that did leak out is unmounted anyway.
 */
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { hostPaths, hostUri, LAB_GUESTS, labPaths, labUuid } from './config.js';
import { run, sleep, virshTry } from './exec.js';
import { liveDaemon, stopDaemon } from './hosts.js';
import { argAfter, isQemu, listProcs, liveProc, procRef, readProc, stopProc, type ProcInfo, type ProcRef } from './procs.js';
import type { LabState } from './state.js';
import { detachLoops, loopsBackedBy } from './storage.js';

export type Log = (msg: string) => void;

/** Destroy every domain of a live host, so qemu exits the clean way first. */
async function destroyAllDomains(name: string): Promise<void> {
  const r = await virshTry(hostUri(name), ['list', '--name'], 15_000);
  if (r.code !== 0) return;
  for (const dom of r.stdout.split('\n').map((s) => s.trim()).filter(Boolean)) {
    await virshTry(hostUri(name), ['destroy', dom], 30_000);
  }
}

function allReapers(state: LabState, name: string): ProcRef[] {
  const h = state.hosts[name];
  return [h?.reaper, ...(h?.formerReapers ?? [])].filter((r): r is ProcRef => r !== undefined);
}

/**
 * qemu processes of the given lab hosts: pid file in the host's run dir, or a
 * child of one of the host's reapers. With `anyLabGuest`, also every qemu
 * carrying a lab guest UUID, whichever host runs it (the final sweep of
 * teardown; never when stopping one host, the others' guests match too).
 */
export function labQemus(dir: string, state: LabState, names: string[], anyLabGuest = false): ProcInfo[] {
  const found = new Map<number, ProcInfo>();
  const reapers = new Set(names.flatMap((n) => allReapers(state, n).map((r) => r.pid)));
  const uuids = new Set(LAB_GUESTS.map((g) => labUuid(dir, `guest:${g}`)));
  for (const name of names) {
    const qemuRun = hostPaths(dir, name).qemuRun;
    if (!existsSync(qemuRun)) continue;
    for (const f of readdirSync(qemuRun).filter((f) => f.endsWith('.pid'))) {
      const pid = Number(readFileSync(path.join(qemuRun, f), 'utf8').trim());
      const p = pid > 0 ? readProc(pid) : null;
      if (p && p.state !== 'Z' && isQemu(p) && p.argv.some((a) => a.startsWith(`guest=${f.slice(0, -4)},`))) found.set(pid, p);
    }
  }
  for (const p of listProcs()) {
    if (!isQemu(p)) continue;
    const mine = reapers.has(p.ppid) || (anyLabGuest && uuids.has(argAfter(p, '-uuid') ?? ''));
    if (mine) found.set(p.pid, p);
  }
  return [...found.values()];
}

/** Stop one host completely: its domains, its daemon, its qemus, its reaper. */
export async function stopHostCompletely(dir: string, state: LabState, name: string, log: Log): Promise<void> {
  if (liveDaemon(dir, state, name)) {
    await destroyAllDomains(name);
    if (await stopDaemon(dir, state, name)) log(`${name}: stopped libvirtd ${state.hosts[name]?.libvirtd?.pid}`);
  }
  // a daemon the state lost track of, proven ours by its pid-file argument
  const hp = hostPaths(dir, name);
  if (existsSync(hp.pidfile)) {
    const pid = Number(readFileSync(hp.pidfile, 'utf8').trim());
    const ref = pid > 0 ? procRef(pid) : null;
    if (ref && (await stopProc(ref, hp.pidfile, 'SIGTERM'))) log(`${name}: stopped libvirtd ${pid} (from its pid file)`);
  }
  for (const q of labQemus(dir, state, [name])) {
    const ref = procRef(q.pid);
    if (ref && (await stopProc(ref, undefined, 'SIGTERM', 5_000))) log(`${name}: killed qemu ${q.pid} (${argAfter(q, '-name') ?? '?'})`);
  }
  // a reaper exits by itself once nothing is left below it
  const reapers = allReapers(state, name);
  for (let i = 0; i < 50 && reapers.some((r) => liveProc(r, hp.root)); i++) await sleep(100);
  for (const r of reapers) if (await stopProc(r, hp.root, 'SIGTERM', 5_000)) log(`${name}: stopped reaper ${r.pid}`);
  delete state.hosts[name];
}

/** Lab-dir mounts visible in our namespace (there should be none). */
function leakedMounts(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const root = f[3];
    const mountPoint = f[4];
    if (root && mountPoint && (root === dir || root.startsWith(`${dir}/`))) out.push(mountPoint);
  }
  return out.reverse();
}

/** Everything: hosts, leftover qemus, loops, leaked mounts, files, mount points. */
export async function teardown(dir: string, state: LabState, log: Log): Promise<void> {
  const p = labPaths(dir);
  const names = new Set(Object.keys(state.hosts));
  if (existsSync(p.hosts)) for (const n of readdirSync(p.hosts)) names.add(n);
  for (const name of names) await stopHostCompletely(dir, state, name, log);
  // qemus of lab guests no host directory accounts for any more
  for (const q of labQemus(dir, state, [], true)) {
    const ref = procRef(q.pid);
    if (ref && liveProc(ref) && (await stopProc(ref, undefined, 'SIGTERM', 5_000))) log(`killed stray lab qemu ${q.pid}`);
  }
  // attachments of the lab's own image files are ours even if the state lost them
  for (const img of existsSync(p.images) ? readdirSync(p.images) : []) {
    const file = path.join(p.images, img);
    for (const device of await loopsBackedBy(file)) {
      if (!state.loops.some((l) => l.device === device)) state.loops.push({ device, file });
    }
  }
  for (const dev of await detachLoops(state)) log(`detached ${dev}`);
  for (const mp of leakedMounts(dir)) {
    await run('umount', ['-l', mp]);
    log(`unmounted leaked ${mp}`);
  }
  for (const ent of existsSync(dir) ? readdirSync(dir) : []) {
    if (ent !== 'lock') rmSync(path.join(dir, ent), { recursive: true, force: true });
  }
  for (const d of state.createdDirs) {
    try {
      rmdirSync(d); // only when empty: something else may have put files there since
      log(`removed mount point ${d}`);
    } catch {
      log(`kept ${d} (not empty or already gone)`);
    }
  }
  state.createdDirs = [];
}
