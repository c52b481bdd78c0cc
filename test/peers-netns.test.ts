/**
 * Two kvm-migrate API processes with federation on, each in its own network
 * namespace (made for this run, joined by a veth pair): each finds the other
 * over SLP multicast and lists it at GET /peers, never itself; with
 * federation.require_peer, a remote_host that is not a peer is refused
 * naming the peers. Requests are made from inside the namespaces (curl);
 * nothing leaves them. Needs root; no libvirt lab (the source is libvirt's
 * test driver) and no Redis (neither answer needs it).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNetPair } from './helpers/netns.js';
import { AUTH_ENV, TOKENS } from './helpers/service.js';

const pair = makeNetPair('peers');
const root = new URL('..', import.meta.url).pathname;
const children: ChildProcess[] = [];
const PORT = 8010;

/** Starts bin/api.ts inside `ns`, listening and advertising on `addr`; resolves once it listens. */
function startApi(ns: string, addr: string, extra: Record<string, string> = {}): Promise<ChildProcess> {
  const env = {
    ...process.env,
    KVM_MIGRATE_AUTH_TOKENS: AUTH_ENV,
    KVM_MIGRATE_API_HOST: addr,
    KVM_MIGRATE_API_PORT: String(PORT),
    // No Redis in the namespace: the API answers 503 for tasks, which this test does not ask for.
    KVM_MIGRATE_REDIS_URL: 'redis://127.0.0.1:6379',
    KVM_MIGRATE_LIBVIRT_SOURCE_URI: 'test:///default',
    KVM_MIGRATE_FEDERATION_ENABLED: 'true',
    KVM_MIGRATE_FEDERATION_ADVERTISE_HOST: addr,
    KVM_MIGRATE_FEDERATION_REFRESH_INTERVAL: '1000',
    KVM_MIGRATE_SLP_INTERFACES: addr,
    KVM_MIGRATE_SLP_DEADLINE: '3000',
    KVM_MIGRATE_LOG_LEVEL: 'info',
    ...extra,
  };
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'bin/api.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`API in ${ns} did not start: ${out}`)), 30_000);
    const look = (b: Buffer) => {
      out += b.toString();
      if (out.includes('kvm-migrate API listening')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => reject(new Error(`API in ${ns} exited ${code}: ${out}`)));
  });
}

/** One request from inside a namespace: status and parsed body. */
function curl(ns: string, method: string, url: string, body?: unknown): { status: number; body: any } {
  const args = ['netns', 'exec', ns, 'curl', '-s', '-m', '10', '-o', '-', '-w', '\n%{http_code}', '-X', method, '-H', `authorization: Bearer ${TOKENS.operator}`, url];
  if (body !== undefined) args.push('-H', 'content-type: application/json', '--data', JSON.stringify(body));
  const out = execFileSync('ip', args, { encoding: 'utf8' });
  const cut = out.lastIndexOf('\n');
  return { status: Number(out.slice(cut + 1)), body: JSON.parse(out.slice(0, cut) || 'null') };
}

async function until<T>(fn: () => T | null, ms: number): Promise<T | null> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) return null;
    await new Promise((r) => setTimeout(r, 250));
  }
}

const a = pair.a;
const b = pair.b[0]!;

beforeAll(async () => {
  await Promise.all([startApi(pair.nsA, a, { KVM_MIGRATE_FEDERATION_REQUIRE_PEER: 'true' }), startApi(pair.nsB, b)]);
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => { c.once('exit', r); setTimeout(() => c.kill('SIGKILL'), 5000).unref(); }))));
  pair.destroy();
});

describe('two kvm-migrate instances in two network namespaces', () => {
  it('each lists the other at GET /peers, in Kimchi form and verbose, never itself', async () => {
    const t0 = Date.now();
    const fromA = await until(() => {
      const r = curl(pair.nsA, 'GET', `http://${a}:${PORT}/peers`);
      return r.status === 200 && r.body.length ? r.body : null;
    }, 15_000);
    console.log(`peers-netns: A listed B ${Date.now() - t0} ms after both APIs listened`);
    expect(fromA).toEqual([`https://${b}:${PORT}`]);
    const fromB = await until(() => {
      const r = curl(pair.nsB, 'GET', `http://${b}:${PORT}/peers`);
      return r.status === 200 && r.body.length ? r.body : null;
    }, 15_000);
    expect(fromB).toEqual([`https://${a}:${PORT}`]);
    const verbose = curl(pair.nsA, 'GET', `http://${a}:${PORT}/peers?verbose=true`);
    expect(verbose.status).toBe(200);
    expect(verbose.body).toEqual([expect.objectContaining({ host: b, port: PORT, url: `https://${b}:${PORT}`, source: 'slp' })]);
  }, 40_000);

  it('with federation.require_peer, refuses a remote_host that is not a peer, naming the peers', () => {
    const refused = curl(pair.nsA, 'POST', `http://${a}:${PORT}/vms/test/migrate`, { remote_host: '10.9.9.9' });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe('KMIG0040E');
    expect(refused.body.reason).toMatch(new RegExp(`known peers: .*${b.replaceAll(".", "\\.")}`));
  });
});
