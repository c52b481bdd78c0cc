/**
 * `npm run demo`: the embedded default a new user starts with. Brings the lab
 * up, uses the Redis on 127.0.0.1:6379 or starts a private one, starts the API
 * and a worker configured for the lab, and prints the commands to try.
 * Ctrl-C stops what it started (the lab too, if it was not up before).
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LAB_GUESTS } from '../lab/config.js';
import { labDown, labStatus, labUp, resetGuest } from '../lab/lab.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm run demo [-- --port N]

Brings up the libvirt lab (needs root), Redis (the one on 127.0.0.1:6379, or a
private redis-server on 127.0.0.1:6399), the kvm-migrate API on 127.0.0.1:PORT
(default 8010) and one worker, then prints curl commands to migrate a lab
guest. Ctrl-C stops everything it started.
`);
  process.exit(0);
}
const portArg = process.argv.indexOf('--port');
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 8010;
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
let privateRedis: ChildProcess | null = null;

async function redisAt(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function main() {
  const wasUp = (await labStatus().catch(() => null))?.up === true;
  process.stdout.write(wasUp ? 'lab already up\n' : 'bringing the lab up (first time takes a few seconds)...\n');
  const lab = await labUp();
  // Every demo starts with the guests at home on the first host.
  for (const g of LAB_GUESTS) await resetGuest(g);
  const [source, dest] = lab.hosts;
  if (!source || !dest) throw new Error('the lab needs two hosts');

  let redisUrl = 'redis://127.0.0.1:6379';
  if (!(await redisAt(redisUrl))) {
    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-demo-redis-'));
    privateRedis = spawn('redis-server', ['--port', '6399', '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''], { stdio: 'ignore' });
    redisUrl = 'redis://127.0.0.1:6399';
    for (let i = 0; i < 50 && !(await redisAt(redisUrl)); i++) await new Promise((r) => setTimeout(r, 100));
    process.stdout.write(`started a private redis-server on ${redisUrl}\n`);
  }

  // A fresh operator token for this demo only, unless tokens are configured already.
  const token = randomBytes(24).toString('hex');
  const env = {
    ...process.env,
    KVM_MIGRATE_AUTH_TOKENS: process.env.KVM_MIGRATE_AUTH_TOKENS ?? `demo:operator:${token}`,
    KVM_MIGRATE_REDIS_URL: redisUrl,
    KVM_MIGRATE_REDIS_PREFIX: 'kvm-migrate-demo',
    KVM_MIGRATE_LIBVIRT_SOURCE_URI: source.uri,
    KVM_MIGRATE_API_PORT: String(port),
    KVM_MIGRATE_LOG_LEVEL: process.env.KVM_MIGRATE_LOG_LEVEL ?? 'warn',
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
  };
  for (const f of ['./api.ts', './worker.ts']) {
    const c = fork(here(f), [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(c);
    await new Promise((resolve, reject) => {
      c.once('message', resolve);
      c.once('exit', (code) => reject(new Error(`${f} exited with ${code}`)));
    });
  }
  const api = `http://127.0.0.1:${port}`;
  process.stdout.write(`
kvm-migrate is running: API ${api}, source ${source.name} (${source.uri}), destination ${dest.name} (${dest.address}).

Every request but /health needs a token; this demo made one (the CLI reads it from the same variable):
  export KVM_MIGRATE_TOKEN=${process.env.KVM_MIGRATE_AUTH_TOKENS ? '<a token from KVM_MIGRATE_AUTH_TOKENS>' : token}

Migrate a guest:
  curl -s -XPOST ${api}/vms/lab-tiny/migrate -H "authorization: Bearer $KVM_MIGRATE_TOKEN" -H 'content-type: application/json' -d '{"remote_host": "${dest.address}"}'

Watch its task (use the id from the answer, or list them all):
  curl -s -H "authorization: Bearer $KVM_MIGRATE_TOKEN" ${api}/tasks/<id>
  curl -s -H "authorization: Bearer $KVM_MIGRATE_TOKEN" ${api}/tasks
  npm run --silent cli -- --api ${api} watch <id>

Check first without migrating (every blocker at once):
  curl -s -XPOST ${api}/vms/lab-disk/migrate -H "authorization: Bearer $KVM_MIGRATE_TOKEN" -H 'content-type: application/json' -d '{"remote_host": "${dest.address}", "dry_run": true}'

See where the guest runs:
  virsh -c ${dest.uri} list --all --persistent
  virsh -c ${source.uri} list --all

Ctrl-C stops it all.
`);
  const stop = async () => {
    process.stdout.write('\nstopping...\n');
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    privateRedis?.kill('SIGTERM');
    if (!wasUp) {
      process.stdout.write('taking the lab down...\n');
      await labDown();
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch(async (e) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : e}\n`);
  for (const c of children) c.kill('SIGTERM');
  privateRedis?.kill('SIGTERM');
  process.exit(1);
});
