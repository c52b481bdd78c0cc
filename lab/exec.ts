/**
 * Running the lab's external tools (virsh, losetup, nasm, useradd, ...).
 *
 * Every call has a deadline, so a wedged libvirtd makes the lab fail with a
 * message instead of hanging a test run. Errors carry the command line and
 * its stderr, because that is what a person debugging the lab needs first.
 */
import { spawn } from 'node:child_process';

/** A lab operation failed; the message says what and why. */
export class LabError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFail?: boolean;
}

const MAX_OUTPUT = 4 * 1024 * 1024;

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const line = [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new LabError(`cannot run ${cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res = { code, stdout, stderr };
      if (code === 0 || opts.allowFail) return resolve(res);
      const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exit ${code ?? signal}`;
      reject(new LabError(`${line}: ${why}: ${stderr.trim() || stdout.trim()}`));
    });
  });
}

/** virsh against one lab host; returns stdout. */
export async function virsh(uri: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run('virsh', ['-q', '-c', uri, ...args], { timeoutMs })).stdout;
}

/** virsh that may fail (lookups of things that may not exist). */
export function virshTry(uri: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return run('virsh', ['-q', '-c', uri, ...args], { timeoutMs, allowFail: true });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `probe` until it returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new LabError(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
