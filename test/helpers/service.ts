/**
 * Starts real kvm-migrate processes (one API, one or more workers) for
 * integration tests, each test file with its own Redis key prefix so suites
 * never see each other's jobs.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

const bin = (f: string) => new URL(`../../bin/${f}`, import.meta.url).pathname;

/** Tokens every test service accepts; api() sends the operator's unless told otherwise. */
export const TOKENS = {
  operator: 'test-operator-token-7f3a9c1e5b2d',
  viewer: 'test-viewer-token-2c8e4a6f0d1b',
  /** A second operator, for what is counted per client. */
  operator2: 'test-operator2-token-9d4b7e2a6c3f',
} as const;
export const AUTH_ENV = `ops:operator:${TOKENS.operator},dash:viewer:${TOKENS.viewer},ops2:operator:${TOKENS.operator2}`;

export interface Service {
  url: string;
  prefix: string;
  env: NodeJS.ProcessEnv;
  workers: ChildProcess[];
  startWorker(): Promise<ChildProcess>;
  stop(): Promise<void>;
}

export function waitReady(child: ChildProcess, what: string): Promise<{ address?: { port: number } }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 30 s`)), 30_000);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as { address?: { port: number } });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before it was ready`));
    });
  });
}

export function spawn(file: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = fork(bin(file), [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  // Keep the logs for a failing test, without flooding a passing run.
  const lines: string[] = [];
  const keep = (b: Buffer) => {
    lines.push(...b.toString().split('\n').filter(Boolean));
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  (child as ChildProcess & { logs: string[] }).logs = lines;
  return child;
}

export function logsOf(child: ChildProcess): string[] {
  return (child as ChildProcess & { logs?: string[] }).logs ?? [];
}

export async function startService(extraEnv: Record<string, string> = {}, workers = 1): Promise<Service> {
  const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379',
    KVM_MIGRATE_REDIS_PREFIX: prefix,
    KVM_MIGRATE_API_HOST: '127.0.0.1',
    KVM_MIGRATE_API_PORT: '0',
    KVM_MIGRATE_LOG_LEVEL: 'info',
    KVM_MIGRATE_AUTH_TOKENS: AUTH_ENV,
    KVM_MIGRATE_RETRY_BACKOFF: '200',
    UV_THREADPOOL_SIZE: '16',
    // Two cores shared with several TCG guests: give libvirt room before calling it unreachable.
    KVM_MIGRATE_LIBVIRT_LOOKUP_TIMEOUT: '10000',
    ...extraEnv,
  };
  const api = spawn('api.ts', env);
  const ready = await waitReady(api, 'API');
  const url = `http://127.0.0.1:${ready.address?.port}`;
  const ws: ChildProcess[] = [];
  const startWorker = async () => {
    const w = spawn('worker.ts', env);
    await waitReady(w, 'worker');
    ws.push(w);
    return w;
  };
  for (let i = 0; i < workers; i++) await startWorker();
  return {
    url,
    prefix,
    env,
    workers: ws,
    startWorker,
    async stop() {
      const all = [api, ...ws].filter((c) => c.exitCode === null && c.signalCode === null);
      await Promise.all(all.map((c) => new Promise((r) => { c.once('exit', r); c.kill('SIGTERM'); setTimeout(() => c.kill('SIGKILL'), 5000).unref(); })));
      // Remove this service's keys, if its Redis is there at all (some tests point at none).
      const redis = new Redis(env.KVM_MIGRATE_REDIS_URL as string, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
      try {
        await redis.connect();
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length) await redis.del(...keys);
      } catch {
        /* no Redis: nothing to clean */
      } finally {
        redis.disconnect();
      }
    },
  };
}

export interface Task {
  id: string;
  status: string;
  message: string;
  stage: string;
  target_uri: string;
  error: { code: string; reason: string; details?: { blockers?: { code: string }[] } } | null;
  history: { stage: string; event: string; detail?: string }[];
  progress: { percent: number } | null;
}

export interface ApiOptions {
  /** Bearer token to send; null sends none. Default: the operator's. */
  token?: string | null;
  headers?: Record<string, string>;
}

export async function api(url: string, method: string, path: string, body?: unknown, opts: ApiOptions = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const token = opts.token === undefined ? TOKENS.operator : opts.token;
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...opts.headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Polls a task until it leaves `running`, recording every status and stage it showed. */
export async function waitTask(url: string, id: string, timeoutMs = 120_000, seen: string[] = []): Promise<Task> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api(url, 'GET', `/tasks/${id}`);
    const t = body as Task;
    const mark = `${t.status}:${t.stage}`;
    if (seen.at(-1) !== mark) seen.push(mark);
    if (t.status !== 'running') return t;
    if (Date.now() > end) throw new Error(`task ${id} still running after ${timeoutMs} ms: ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
