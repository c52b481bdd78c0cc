/** Entry point of an API process. */
import { createApp } from '../api/app.js';
import { createSourceHost } from '../api/source.js';
import { createTaskStore } from '../api/tasks.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import { createLogger, systemClock } from '../shared/log.js';
import { apiRedis, createQueue, logOutages } from '../shared/queue.js';
import { configFromArgs } from './args.js';

const config = configFromArgs(process.argv.slice(2), 'kvm-migrate-api', 'Runs the kvm-migrate REST API (POST /vms/<name>/migrate, GET /tasks).');
const log = createLogger(config.log.level, 'api');
const hypervisor = createHypervisor();
const redis = apiRedis(config);
logOutages(redis, log, 'the API answers 503 until it is back');
const queue = createQueue(config, redis);
queue.on('error', (e) => log.warn({ err: e.message }, 'queue'));
const source = createSourceHost(config, hypervisor);
const app = createApp({ config, hypervisor, source, tasks: createTaskStore(config, queue, redis, () => redis.status === 'ready'), clock: systemClock, log, redisReady: () => redis.status === 'ready' });
const server = app.listen(config.api.port, config.api.host, () => {
  const a = server.address();
  log.info({ address: a }, 'kvm-migrate API listening');
  if (process.send) process.send({ ready: true, address: a });
});

async function shutdown(sig: string) {
  log.info({ sig }, 'shutting down');
  server.close();
  await queue.close().catch(() => undefined);
  redis.disconnect();
  await source.close();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
