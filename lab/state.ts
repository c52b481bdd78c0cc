/**
 * The lab's memory: what it created (PIDs, loop devices, directories), kept
 * in <labdir>/state.json, and a lock so that two test files (or a test and
 * the CLI) never build or tear down the lab at the same time.
 *
 * The state is written after every step that creates something, so a run
 * that dies half-way leaves a record that `down` can clean up and `up` can
 * repair.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { LabError, sleep } from './exec.js';
import { labPaths } from './config.js';
import { liveProc, procRef, type ProcRef } from './procs.js';

export interface HostRecord {
  /** The per-host subreaper (lab/reaper.mjs); libvirtd and its qemus are its descendants. */
  reaper?: ProcRef;
  /** Reapers of earlier daemons (after killHost) that still have qemus below them. */
  formerReapers?: ProcRef[];
  libvirtd?: ProcRef;
}

export interface LoopRecord {
  device: string;
  file: string;
}

export interface LabState {
  version: 1;
  hostCount: number;
  hosts: Record<string, HostRecord>;
  loops: LoopRecord[];
  dirtyRateMiBs: number;
  virtType: 'kvm' | 'qemu';
  /** Mount points the lab had to create outside its dir (removed on down if empty). */
  createdDirs: string[];
}

export function readState(dir: string): LabState | null {
  const file = labPaths(dir).state;
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState;
  } catch (err) {
    throw new LabError(`corrupt lab state ${file}: ${(err as Error).message}`);
  }
}

export function writeState(dir: string, state: LabState): void {
  const file = labPaths(dir).state;
  // rename is atomic: a crash never leaves half a state file behind
  writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
}

/**
 * Make sure `dir` is a lab directory. A non-empty directory without the
 * lab's marker is refused, because `down` deletes what is inside.
 */
export function claimDir(dir: string): void {
  const { marker } = labPaths(dir);
  if (existsSync(dir) && !existsSync(marker)) {
    if (readdirSync(dir).length > 0) {
      throw new LabError(`${dir} is not empty and has no .kvm-migrate-lab marker; refusing to use it as the lab dir`);
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(marker, 'kvm-migrate lab directory; `npm run lab -- down` removes it\n');
}

/**
 * Run `fn` holding the lab lock (a directory, created atomically). A lock
 * whose owner process is gone is taken over, so a killed `up` never blocks
 * the next one.
 */
export async function withLock<T>(dir: string, fn: () => Promise<T>, timeoutMs = 300_000): Promise<T> {
  const { lock } = labPaths(dir);
  mkdirSync(dir, { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(`${lock}/owner`, JSON.stringify(procRef(process.pid)));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (lockIsStale(lock)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new LabError(`lab lock ${lock} is held by another process`);
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function lockIsStale(lock: string): boolean {
  try {
    const owner = JSON.parse(readFileSync(`${lock}/owner`, 'utf8')) as ProcRef | null;
    return !liveProc(owner);
  } catch {
    // owner file not written yet (lock just taken) or unreadable: give it a moment
    try {
      return Date.now() - statSync(lock).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
}
