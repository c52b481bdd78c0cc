/**
 * Peers in the API (api/peers.ts, GET /peers, federation.require_peer)
 * against a real API in this process, real Redis and libvirt's test driver,
 * with discovery injected: no SLP traffic leaves this test.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { FoundService } from '../api/peer-policy.js';
import type { Discover } from '../api/peers.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

const FED = { KVM_MIGRATE_FEDERATION_ENABLED: 'true', KVM_MIGRATE_FEDERATION_ADVERTISE_HOST: 'me.example', KVM_MIGRATE_FEDERATION_ADVERTISE_PORT: '8001' };
const found = (url: string, from = '10.9.0.2'): FoundService => ({ url, lifetime: 65535, from, seenAt: Date.now() });

/** Discovery that answers what `answer` says when asked, and counts the asks. */
function scripted(answer: (type: string) => Promise<FoundService[]>) {
  const asked: string[] = [];
  const discover: Discover = (type) => {
    asked.push(type);
    return answer(type);
  };
  return { discover, asked };
}

const open: InProc[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});
async function start(env: Record<string, string>, opts: Parameters<typeof startInProc>[1] = {}) {
  const s = await startInProc(env, opts);
  open.push(s);
  return s;
}

describe('GET /peers', () => {
  it('with federation off (the default) answers [] in both forms, as Kimchi does, and never discovers', async () => {
    const d = scripted(async () => [found('service:wokd://kimchi-a.example:8001')]);
    const svc = await start({ KVM_MIGRATE_FEDERATION_STATIC_PEERS: 'host9' }, { discover: d.discover });
    await svc.peers.refresh();
    expect(await api(svc.url, 'GET', '/peers')).toMatchObject({ status: 200, body: [] });
    expect(await api(svc.url, 'GET', '/peers?verbose=true')).toMatchObject({ status: 200, body: [] });
    expect(d.asked).toEqual([]);
  });

  it("lists discovered and static peers without itself: Kimchi's https://host:port list, or the objects with ?verbose=true", async () => {
    const d = scripted(async (type) =>
      type === 'service:wokd'
        ? [found('service:wokd://kimchi-a.example:8001'), found('service:wokd://me.example:8001', '10.9.0.1')]
        : [found('service:kvm-migrate://kimchi-a.example:8001'), found('service:kvm-migrate://km-b.example:8010', '10.9.0.3')],
    );
    const advertised: string[] = [];
    const svc = await start(
      { ...FED, KVM_MIGRATE_FEDERATION_STATIC_PEERS: 'host9:8010,kimchi-a.example' },
      { discover: d.discover, advertiser: (host, port) => ({ start: async () => void advertised.push(`start ${host}:${port}`), stop: async () => void advertised.push('stop') }) },
    );
    await svc.peers.refresh();
    expect(new Set(d.asked)).toEqual(new Set(['service:wokd', 'service:kvm-migrate']));
    expect(advertised).toEqual(['start me.example:8001']);
    const kimchi = await api(svc.url, 'GET', '/peers', undefined, { token: TOKENS.viewer });
    expect(kimchi.status).toBe(200);
    expect(kimchi.body).toEqual(['https://host9:8010', 'https://kimchi-a.example:8001', 'https://km-b.example:8010']);
    const rich = await api(svc.url, 'GET', '/peers?verbose=true', undefined, { token: TOKENS.viewer });
    expect(rich.body[1]).toMatchObject({ host: 'kimchi-a.example', port: 8001, url: 'https://kimchi-a.example:8001', libvirt_uri: 'qemu+tcp://kimchi-a.example/system', lifetime: 65535, addresses: ['10.9.0.2'], source: 'slp' });
    expect(Date.parse(rich.body[1].last_seen)).toBeGreaterThan(Date.now() - 60_000);
    expect(rich.body[0]).toMatchObject({ host: 'host9', source: 'static', lifetime: null, last_seen: null });
    expect((await api(svc.url, 'GET', '/peers?verbose=maybe')).body.code).toBe('KMIG0001E');
    await svc.close();
    open.splice(0);
    expect(advertised).toEqual(['start me.example:8001', 'stop']);
  });

  it('a failed discovery gives the last good list (or none) for up to three rounds, then none, with a logged reason, never a 5xx; it comes back by itself', async () => {
    let mode: 'fail' | 'ok' = 'fail';
    const d = scripted(async () => {
      if (mode === 'fail') throw new Error('errorcode: -23');
      return [found('service:wokd://kimchi-a.example:8001')];
    });
    const svc = await start(FED, { discover: d.discover });
    await svc.peers.refresh();
    expect(await api(svc.url, 'GET', '/peers')).toMatchObject({ status: 200, body: [] });
    expect(svc.logs.some((l) => l.includes('peer discovery failed') && l.includes('errorcode: -23'))).toBe(true);
    mode = 'ok';
    await svc.peers.refresh();
    expect((await api(svc.url, 'GET', '/peers')).body).toEqual(['https://kimchi-a.example:8001']);
    mode = 'fail';
    await svc.peers.refresh();
    expect(await api(svc.url, 'GET', '/peers')).toMatchObject({ status: 200, body: ['https://kimchi-a.example:8001'] });
    expect(svc.peers.lastError).toBe('errorcode: -23');
    // Failing on and on, the list would be a guess: after three rounds in a row it is empty.
    await svc.peers.refresh();
    expect((await api(svc.url, 'GET', '/peers')).body).toEqual(['https://kimchi-a.example:8001']);
    await svc.peers.refresh();
    expect(await api(svc.url, 'GET', '/peers')).toMatchObject({ status: 200, body: [] });
    expect(svc.logs.some((l) => l.includes('the discovered peers are dropped until it works again'))).toBe(true);
  });

  it('a discovery that never answers holds no request up, and is given up past its deadline', async () => {
    const d = scripted(() => new Promise<never>(() => undefined));
    const svc = await start({ ...FED, KVM_MIGRATE_SLP_DEADLINE: '200', KVM_MIGRATE_FEDERATION_STATIC_PEERS: 'host9' }, { discover: d.discover });
    const t0 = Date.now();
    expect((await api(svc.url, 'GET', '/peers')).body).toEqual(['https://host9:8001']);
    expect(Date.now() - t0).toBeLessThan(300);
    await svc.peers.refresh();
    expect(svc.peers.lastError).toMatch(/no answer from discovery within 1400 ms/);
  });

  it('refreshes in the background every federation.refresh_interval', async () => {
    let n = 0;
    const d = scripted(async () => (n++ < 2 ? [] : [found('service:wokd://late.example:8001')]));
    const svc = await start({ ...FED, KVM_MIGRATE_FEDERATION_REFRESH_INTERVAL: '100' }, { discover: d.discover });
    for (let i = 0; i < 50 && (await api(svc.url, 'GET', '/peers')).body.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await api(svc.url, 'GET', '/peers')).body).toEqual(['https://late.example:8001']);
    expect(svc.peers.rounds).toBeGreaterThanOrEqual(2);
  });
});

describe('federation.require_peer', () => {
  const REQ = { ...FED, KVM_MIGRATE_FEDERATION_REQUIRE_PEER: 'true', KVM_MIGRATE_FEDERATION_STATIC_PEERS: '127.0.0.1:9999' };
  const discover = async () => [found('service:wokd://kimchi-a.example:8001', '10.9.0.2')];

  it('refuses a remote_host that is not a known peer, migration and precheck alike, naming the peers; nothing changes', async () => {
    const svc = await start(REQ, { discover });
    await svc.peers.refresh();
    const before = await svc.snapshot();
    for (const dry of [false, true]) {
      const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2', dry_run: dry });
      expect(r.status, `dry_run ${dry}`).toBe(422);
      expect(r.body.code).toBe('KMIG0040E');
      expect(r.body.reason).toBe('KMIG0040E: host2 is not a known peer, and federation.require_peer is on; known peers: 127.0.0.1, kimchi-a.example');
      expect(r.body.peers).toEqual(['127.0.0.1', 'kimchi-a.example']);
    }
    expect(await svc.snapshot()).toEqual(before);
  });

  it('lets a peer through, by its advertised host or the address it answered from', async () => {
    const svc = await start(REQ, { discover });
    await svc.peers.refresh();
    const byName = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'kimchi-a.example' });
    expect(byName.status).toBe(202);
    expect(byName.body.destination.uri).toBe('qemu+tcp://kimchi-a.example/system');
    expect((await api(svc.url, 'DELETE', `/tasks/${byName.body.id}`)).status).toBe(200);
    expect((await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: '10.9.0.2' })).status).toBe(202);
  });

  it('with no peer found, says there are none', async () => {
    const svc = await start({ ...REQ, KVM_MIGRATE_FEDERATION_STATIC_PEERS: '' }, { discover: async () => Promise.reject(new Error('no network')) });
    await svc.peers.refresh();
    const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
    expect(r.status).toBe(422);
    expect(r.body.reason).toMatch(/known peers: none/);
  });

  it("the precheck's answer lists the known peers as destinations", async () => {
    const svc = await start({ ...FED, KVM_MIGRATE_FEDERATION_STATIC_PEERS: '127.0.0.1:9999', KVM_MIGRATE_LIBVIRT_CONNECT_TIMEOUT: '1000' }, { discover });
    await svc.peers.refresh();
    // 127.0.0.1 has no libvirtd listening on TCP here: a 422 with the blocker; either way the peers are there.
    const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: '127.0.0.1', dry_run: true });
    expect([200, 422]).toContain(r.status);
    expect(r.body.peers).toEqual(['127.0.0.1', 'kimchi-a.example']);
  });
});


describe('with the real SLP agents on loopback', () => {
  it('two APIs advertise over SLP and each lists the other, not itself', async () => {
    const slp = { KVM_MIGRATE_FEDERATION_ENABLED: 'true', KVM_MIGRATE_SLP_PORT: String(40000 + Math.floor(Math.random() * 20000)), KVM_MIGRATE_SLP_INTERFACES: '127.0.0.1', KVM_MIGRATE_SLP_DEADLINE: '1500' };
    const a = await start({ ...slp, KVM_MIGRATE_FEDERATION_ADVERTISE_HOST: 'peer-a.example', KVM_MIGRATE_FEDERATION_ADVERTISE_PORT: '8101' });
    const b = await start({ ...slp, KVM_MIGRATE_FEDERATION_ADVERTISE_HOST: 'peer-b.example', KVM_MIGRATE_FEDERATION_ADVERTISE_PORT: '8102' });
    // A's first round may have begun before B advertised: let it end, then ask again.
    await Promise.all([a.peers.refresh(), b.peers.refresh()]);
    await Promise.all([a.peers.refresh(), b.peers.refresh()]);
    expect(a.peers.lastError).toBeNull();
    expect((await api(a.url, 'GET', '/peers')).body).toEqual(['https://peer-b.example:8102']);
    expect((await api(b.url, 'GET', '/peers')).body).toEqual(['https://peer-a.example:8101']);
  });
});
