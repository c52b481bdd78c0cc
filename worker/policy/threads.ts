/**
 * libuv thread-pool budget. Every blocking libvirt call runs on a pool
 * thread: a running migration holds one for its whole duration, its source
 * and destination connections each run one call at a time beside it, and the
 * libvirt event loop holds one for good. A pool too small for the worker's
 * concurrency starves the job-stats polls and, worse, the abort at
 * migration_destination_timeout. The pool size is fixed when Node starts
 * (UV_THREADPOOL_SIZE), so the worker can only fit its concurrency to it.
 */
export const THREADS_PER_MIGRATION = 3;
export const SHARED_THREADS = 1;

export function threadsNeeded(concurrency: number): number {
  return concurrency * THREADS_PER_MIGRATION + SHARED_THREADS;
}

/** The concurrency a pool of `poolSize` threads carries safely (at least 1). */
export function concurrencyFor(poolSize: number, wanted: number): number {
  return Math.max(1, Math.min(wanted, Math.floor((poolSize - SHARED_THREADS) / THREADS_PER_MIGRATION)));
}

/** libuv's own rule: UV_THREADPOOL_SIZE, default 4, clamped to 1..1024. */
export function poolSize(env: NodeJS.ProcessEnv): number {
  const n = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 1024) : 4;
}
