/**
 * Entry point of a worker process. Sizes the libuv thread pool before
 * anything uses it: each running migration holds a pool thread for its whole
 * duration, and the stats polls must still find a free one.
 */
import { configFromArgs } from './args.js';

const config = configFromArgs(process.argv.slice(2), 'kvm-migrate-worker', 'Runs a kvm-migrate worker: executes queued migrations stage by stage.');
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, config.worker.concurrency * 3 + 2));
const { runWorker } = await import('../worker/main.js');
await runWorker(config);
