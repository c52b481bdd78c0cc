/**
 * Processes the lab started, and only those.
 *
 * A PID alone is not an identity: PIDs are reused, and on machines whose
 * PID 1 does not reap orphans a dead daemon lingers as a zombie that
 * `kill(pid, 0)` still reports as alive. So the lab records (pid, start time)
 * and, before signalling, re-reads /proc and also requires a marker in the
 * command line that only the lab's own processes carry (the host's pid-file
 * path for libvirtd, the lab-derived `-uuid` for qemu).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { sleep } from './exec.js';

/** What the lab remembers about a process it started. */
export interface ProcRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
  startTime: string;
}

export interface ProcInfo extends ProcRef {
  comm: string;
  state: string;
  ppid: number;
  argv: string[];
}

export function readProc(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const rest = stat.slice(close + 2).split(' ');
    // rest[0] is field 3 (state); field N is rest[N - 3]
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
    return { pid, comm, state: rest[0] ?? '?', ppid: Number(rest[1]), startTime: rest[19] ?? '', argv };
  } catch {
    return null;
  }
}

/** Capture a reference to a live process (null when it is gone or a zombie). */
export function procRef(pid: number): ProcRef | null {
  const p = readProc(pid);
  return p && p.state !== 'Z' ? { pid, startTime: p.startTime } : null;
}

/**
 * The live process behind `ref`, if it is still that same process and its
 * command line contains `marker`.
 */
export function liveProc(ref: ProcRef | null | undefined, marker?: string): ProcInfo | null {
  if (!ref) return null;
  const p = readProc(ref.pid);
  if (!p || p.state === 'Z' || p.startTime !== ref.startTime) return null;
  if (marker !== undefined && !p.argv.some((a) => a.includes(marker))) return null;
  return p;
}

/**
 * Signal a verified process and wait for it to die. Escalates to SIGKILL
 * after `graceMs`. Returns false when there was nothing (of ours) to kill.
 */
export async function stopProc(ref: ProcRef, marker: string | undefined, signal: NodeJS.Signals, graceMs = 10_000): Promise<boolean> {
  if (!liveProc(ref, marker)) return false;
  process.kill(ref.pid, signal);
  const deadline = Date.now() + graceMs;
  while (liveProc(ref)) {
    if (Date.now() > deadline) {
      if (signal === 'SIGKILL') throw new Error(`pid ${ref.pid} survived SIGKILL`);
      process.kill(ref.pid, 'SIGKILL');
      return stopProc(ref, undefined, 'SIGKILL', 5_000).then(() => true);
    }
    await sleep(50);
  }
  return true;
}

/** All live processes (zombies excluded). */
export function listProcs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const ent of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(ent)) continue;
    const p = readProc(Number(ent));
    if (p && p.state !== 'Z') out.push(p);
  }
  return out;
}

/** Is this a qemu process (by binary name)? */
export function isQemu(p: ProcInfo): boolean {
  return p.comm.startsWith('qemu-system') || (p.argv[0] ?? '').includes('qemu-system');
}

/** The value following `flag` in argv (`-uuid X` -> X). */
export function argAfter(p: ProcInfo, flag: string): string | undefined {
  const i = p.argv.indexOf(flag);
  return i >= 0 ? p.argv[i + 1] : undefined;
}
