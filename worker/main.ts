/** Wires a worker process: config, libvirt, Redis, BullMQ, signals. */
import type { Config } from '../shared/config.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import { ConnectionPool } from '../shared/libvirt/pool.js';
import { createLogger, systemClock } from '../shared/log.js';
import { logOutages, workerRedis } from '../shared/queue.js';
import { atMost } from '../shared/timeout.js';
import { ControlBus } from './control.js';
import { failpointsFrom } from './failpoints.js';
import { createMigrationWorker } from './worker.js';

export async function runWorker(config: Config): Promise<void> {
  const log = createLogger(config.log.level, 'worker');
  const connection = workerRedis(config);
  logOutages(connection, log, 'jobs wait in Redis until it is back');
  const control = new ControlBus(connection.duplicate(), connection, config.redis.prefix);
  await control.start();
  // Only the fault suite sets this: it makes the worker SIGKILL itself at a named place.
  const failpoint = failpointsFrom(process.env.KVM_MIGRATE_FAILPOINT);
  if (failpoint) log.warn({ failpoint: process.env.KVM_MIGRATE_FAILPOINT }, 'failpoints armed: this worker will kill itself there');
  // Each job takes at most two source connections and one destination connection at a time.
  const hypervisor = new ConnectionPool(createHypervisor(), { idleMs: config.libvirt.idle_connection_timeout, maxIdlePerUri: 2 * config.worker.concurrency });
  const worker = createMigrationWorker({ config, connection, control, hypervisor, clock: systemClock, log, ...(failpoint ? { failpoint } : {}) });
  const shutdown = async (sig: string) => {
    log.info({ sig }, 'worker stopping: running migrations are left to libvirt and resumed by the next worker');
    await worker.close(true).catch(() => undefined);
    await control.stop();
    // Bounded: a close can hang on a daemon that died.
    await atMost(hypervisor.close(), 5000);
    connection.disconnect();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  log.info({ concurrency: config.worker.concurrency, uvThreads: process.env.UV_THREADPOOL_SIZE }, 'kvm-migrate worker started');
  if (process.send) process.send({ ready: true });
  await worker.run();
}
