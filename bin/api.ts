/** Entry point of an API process. */
import type { AddressInfo } from 'node:net';
import { wireApi } from '../api/wiring.js';
import { createLogger, systemClock } from '../shared/log.js';
import { configFromArgs } from './args.js';
import { atMost } from '../shared/timeout.js';

const config = configFromArgs(
  process.argv.slice(2),
  'kvm-migrate-api',
  'Runs the kvm-migrate REST API (POST /vms/<name>/migrate, GET /tasks).\nEvery route but /health needs a bearer token: set auth.tokens, e.g.\nKVM_MIGRATE_AUTH_TOKENS="ops:operator:$(openssl rand -hex 24)".',
);
const log = createLogger(config.log.level, 'api');
if (config.auth.enabled && config.auth.tokens.length === 0) {
  process.stderr.write(
    'kvm-migrate-api: no tokens configured and auth.enabled is true, so nobody could use the API.\n' +
      'Set auth.tokens, e.g. KVM_MIGRATE_AUTH_TOKENS="ops:operator:$(openssl rand -hex 24),dash:viewer:$(openssl rand -hex 24)",\n' +
      'or KVM_MIGRATE_AUTH_ENABLED=false on a trusted single-user host.\n',
  );
  process.exit(2);
}
if (!config.auth.enabled) log.warn({}, 'authentication is off: anyone who reaches the API is an operator');
const { app, close, redisReady, startFederation } = wireApi(config, log, systemClock);
// A freshly (re)started API waits briefly for Redis, so its first answers are not 503s
// for a connection still being made; a Redis that stays away does not keep it from serving.
if (!(await redisReady(3000))) log.warn({}, 'Redis not reachable yet: answering 503 until it is');
const server = app.listen(config.api.port, config.api.host, () => {
  const a = server.address();
  log.info({ address: a }, 'kvm-migrate API listening');
  // Advertised and discovering only once there is something to reach (federation.enabled; off by default).
  void startFederation((a as AddressInfo).port);
  if (process.send) process.send({ ready: true, address: a });
});

async function shutdown(sig: string) {
  log.info({ sig }, 'shutting down');
  server.close();
  // Bounded: a libvirt connection whose daemon died mid-call may never finish closing.
  await atMost(close(), 5000);
  process.exit(0);
}
// A client that trickles its headers or body in cannot hold a connection for long.
server.headersTimeout = 10_000;
server.requestTimeout = 30_000;
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
