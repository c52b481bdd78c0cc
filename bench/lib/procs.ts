/**
 * The processes a benchmark measures: an API, a worker, a baseline server,
 * each a real Node process of its own (the load generator must not share
 * their event loop), started the way production starts them (node --import
 * tsx), logging to a file so the harness spends nothing on their output.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;

/** A scratch directory under $TMPDIR for this run's logs and generated files. */
export function scratchDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'kvm-migrate-bench-'));
}

/** Runs `fn` with a scratch directory, removed when it succeeds and kept (with the services' logs) when it fails. */
export async function inScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = scratchDir();
  const out = await fn(dir);
  rmSync(dir, { recursive: true, force: true });
  return out;
}

export interface Proc {
  pid: number;
  /** Where the API or baseline listens (from its ready message). */
  url: string | null;
  logFile: string;
  child: ChildProcess;
  /** Peak (VmHWM) and current (VmRSS) resident memory, in KiB, from /proc. */
  memory(): { hwmKiB: number; rssKiB: number };
  stop(): Promise<void>;
}

export function memoryOf(pid: number): { hwmKiB: number; rssKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { hwmKiB: kib('VmHWM'), rssKiB: kib('VmRSS') };
}

/** CPU time (user + system) a process has used, in ms, from /proc (clock ticks of 10 ms). */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** CPU time Redis has used (INFO cpu), in ms: what a round cost the server, shared with anyone else using it. */
export async function redisCpuMs(client: { info(section: string): Promise<string> }): Promise<number> {
  const info = await client.info('cpu');
  const v = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return (v('used_cpu_user') + v('used_cpu_sys')) * 1000;
}

/**
 * Starts `file` (relative to the repository) and waits for its ready message
 * (process.send({ready, address})), as the service's entry points send it.
 */
export async function startProc(file: string, env: NodeJS.ProcessEnv, logDir: string, what: string): Promise<Proc> {
  const logFile = path.join(logDir, `${what}-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  // BENCH_CPU_PROF=<dir>: every process under measurement writes a V8 CPU profile there when it stops (to find where time goes).
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.join(process.env.BENCH_CPU_PROF, what)] : [];
  const child = fork(path.join(ROOT, file), [], { execArgv: ['--import', 'tsx', ...prof], env, stdio: ['ignore', fd, fd, 'ipc'] });
  closeSync(fd);
  const ready = await new Promise<{ address?: { port: number } }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 60 s; see ${logFile}`)), 60_000);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as { address?: { port: number } });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before it was ready; see ${logFile}`));
    });
  });
  const pid = child.pid!;
  return {
    pid,
    url: ready.address ? `http://127.0.0.1:${ready.address.port}` : null,
    logFile,
    child,
    memory: () => memoryOf(pid),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** A fresh operator token for one benchmark's services: nothing else knows it. */
export function benchToken(): { token: string; env: string } {
  const token = randomBytes(24).toString('hex');
  return { token, env: `bench:operator:${token}` };
}

export const redisUrl = () => process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The environment of a service under measurement: its own prefix, a free port, the bench's token, no brakes on load. */
export function serviceEnv(prefix: string, tokenEnv: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KVM_MIGRATE_REDIS_URL: redisUrl(),
    KVM_MIGRATE_REDIS_PREFIX: prefix,
    KVM_MIGRATE_API_HOST: '127.0.0.1',
    KVM_MIGRATE_API_PORT: '0',
    KVM_MIGRATE_AUTH_TOKENS: tokenEnv,
    // The write limit exists against one client's mistakes; the benchmark is that client on purpose.
    KVM_MIGRATE_API_RATE_LIMIT: '1000000000',
    KVM_MIGRATE_LOG_LEVEL: 'info',
    UV_THREADPOOL_SIZE: '16',
    ...extra,
  };
}

/** Waits until GET /health answers 200 (the API's Redis connection is up). */
export async function healthy(url: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
    if (ok) return;
    if (Date.now() > end) throw new Error(`${url}/health did not answer 200 in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
