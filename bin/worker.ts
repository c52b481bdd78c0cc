/**
 * Entry point of a worker process. The libuv pool size cannot change once
 * Node runs, so the worker fits its concurrency to the pool it was given and
 * says how to get more (the launchers in this repository set
 * UV_THREADPOOL_SIZE=16).
 */
import { concurrencyFor, poolSize, threadsNeeded } from '../worker/policy/threads.js';
import { configFromArgs } from './args.js';

const config = configFromArgs(process.argv.slice(2), 'kvm-migrate-worker', 'Runs a kvm-migrate worker: executes queued migrations stage by stage.\nStart it with UV_THREADPOOL_SIZE of at least 3 x concurrency + 1 (e.g. UV_THREADPOOL_SIZE=16).');
const pool = poolSize(process.env);
const wanted = config.worker.concurrency;
const fitted = concurrencyFor(pool, wanted);
if (fitted < wanted) {
  process.stderr.write(
    `kvm-migrate-worker: UV_THREADPOOL_SIZE=${pool} carries ${fitted} migration(s) at a time, not worker.concurrency=${wanted}; ` +
      `running ${fitted}. Start with UV_THREADPOOL_SIZE=${threadsNeeded(wanted)} or more for ${wanted}.\n`,
  );
}
const { runWorker } = await import('../worker/main.js');
await runWorker({ ...config, worker: { ...config.worker, concurrency: fitted } });
