/** The peer policy (api/peer-policy.ts): pure functions, tables. */
import { describe, expect, it } from 'vitest';
import { alive, findPeer, isSelf, kimchiUrl, mergePeers, parseServiceUrl, peerHosts, serviceUrl, verboseParam, type FoundService } from '../api/peer-policy.js';
import { loadConfig, splitPeer } from '../shared/config.js';

const NOW = Date.parse('2025-01-01T12:00:00Z');
const found = (url: string, over: Partial<FoundService> = {}): FoundService => ({ url, lifetime: 65535, from: '10.0.0.9', seenAt: NOW - 1000, ...over });
const SELF = { hosts: ['me.example', '10.0.0.1', '127.0.0.1'], port: 8001 };
const TEMPLATE = 'qemu+tcp://{host}/system';
const merge = (f: FoundService[], statics: string[] = []) => mergePeers({ found: f, statics, self: SELF, defaultPort: 8001, uriTemplate: TEMPLATE, now: NOW });

describe('SLP URLs', () => {
  it.each([
    ['service:wokd://kimchi-a.example:8001', { host: 'kimchi-a.example', port: 8001 }],
    ['service:wokd://Kimchi-A.Example.:8001', { host: 'kimchi-a.example', port: 8001 }],
    ['service:kvm-migrate://10.0.0.2:8010', { host: '10.0.0.2', port: 8010 }],
    ['service:wokd://[fe80::1]:8001', { host: 'fe80::1', port: 8001 }],
    ['SERVICE:WOKD://h:1/', { host: 'h', port: 1 }],
    ['service:wokd://kimchi-a.example', null],
    ['service:wokd://h:0', null],
    ['service:wokd://h:70000', null],
    ['service:wokd://user@h:8001', null],
    ['service:wokd://h/x:8001', null],
    ['service:printer://h:631', null],
    ['service:wokd://bad_host!:8001', null],
    ['', null],
  ])('%j → %j', (url, want) => {
    expect(parseServiceUrl(url)).toEqual(want);
  });

  it.each([
    ['h', 8001, 'https://h:8001', 'service:wokd://h:8001'],
    ['::1', 8001, 'https://[::1]:8001', 'service:wokd://[::1]:8001'],
  ])('%s:%i is %s to Kimchi and advertised as %s', (host, port, url, svc) => {
    expect(kimchiUrl(host, port)).toBe(url);
    expect(serviceUrl('service:wokd', host, port)).toBe(svc);
  });

  it.each([
    ['host2', { host: 'host2' }],
    ['host2:8010', { host: 'host2', port: 8010 }],
    ['10.0.0.2', { host: '10.0.0.2' }],
    ['::1', { host: '::1' }],
    ['[::1]:8001', { host: '::1', port: 8001 }],
    ['[::1]', { host: '::1' }],
    ['host2:0', null],
    ['host2:99999', null],
    ['a/b', null],
    ['user@h', null],
    ['', null],
  ])('static peer %j → %j', (entry, want) => {
    expect(splitPeer(entry)).toEqual(want);
  });
});

describe('who is us, who is alive', () => {
  it.each([
    ['me.example', 8001, undefined, true],
    ['ME.example.', 8001, undefined, true],
    ['me.example', 8002, undefined, false], // another instance on this machine, another port
    ['other.example', 8001, '10.0.0.1', true], // answered from one of our addresses on our port
    ['other.example', 8001, '10.0.0.2', false],
  ])('%s:%i from %s is us: %s', (host, port, from, want) => {
    expect(isSelf(SELF, host, port, from)).toBe(want);
  });

  it.each([
    [65535, NOW - 365 * 86400_000, true], // openslp's permanent
    [60, NOW - 59_000, true],
    [60, NOW - 60_000, false],
    [0, NOW, false],
  ])('lifetime %i s, last seen %i: alive %s', (lifetime, seenAt, want) => {
    expect(alive(found('service:wokd://h:1', { lifetime, seenAt }), NOW)).toBe(want);
  });
});

describe('merging', () => {
  it('lists live discovered peers and static ones once each, without us, sorted, in both forms', () => {
    const peers = merge(
      [
        found('service:wokd://kimchi-b.example:8001', { from: '10.0.0.3' }),
        found('service:kvm-migrate://kimchi-b.example:8001', { from: '10.0.0.3', seenAt: NOW - 10, lifetime: 300 }),
        found('service:wokd://kimchi-a.example:8001', { from: '10.0.0.2' }),
        found('service:wokd://me.example:8001', { from: '10.0.0.1' }),
        found('service:wokd://stale.example:8001', { lifetime: 10, seenAt: NOW - 20_000 }),
        found('service:printer://p:631'),
      ],
      ['kimchi-a.example', 'host9:8010', 'me.example', '10.0.0.1:8001', '[::1]:9000', 'not a host'],
    );
    expect(peers.map((p) => [p.url, p.source])).toEqual([
      ['https://[::1]:9000', 'static'],
      ['https://host9:8010', 'static'],
      ['https://kimchi-a.example:8001', 'slp'],
      ['https://kimchi-b.example:8001', 'slp'],
    ]);
    const b = peers[3]!;
    expect(b).toEqual({
      host: 'kimchi-b.example',
      port: 8001,
      url: 'https://kimchi-b.example:8001',
      libvirt_uri: 'qemu+tcp://kimchi-b.example/system',
      lifetime: 300,
      last_seen: new Date(NOW - 10).toISOString(),
      addresses: ['10.0.0.3'],
      source: 'slp',
    });
    expect(peers[0]!.libvirt_uri).toBe('qemu+tcp://[::1]/system');
    expect(peers[0]).toMatchObject({ lifetime: null, last_seen: null, addresses: [] });
  });

  it('nothing found and no static peers: an empty list', () => {
    expect(merge([])).toEqual([]);
  });
});

describe('require_peer', () => {
  const peers = merge([found('service:wokd://kimchi-a.example:8001', { from: '10.0.0.2' })], ['host9']);
  it.each([
    ['kimchi-a.example', 'kimchi-a.example'],
    ['KIMCHI-A.example.', 'kimchi-a.example'],
    ['10.0.0.2', 'kimchi-a.example'], // the address its answer came from
    ['host9', 'host9'],
    ['kimchi-a', undefined], // no DNS, no guessing at search domains
    ['10.0.0.3', undefined],
  ])('%s is the peer %s', (remote, want) => {
    expect(findPeer(peers, remote)?.host).toBe(want);
  });

  it('names the known hosts, or says there are none', () => {
    expect(peerHosts(peers)).toBe('host9, kimchi-a.example');
    expect(peerHosts([])).toMatch(/^none/);
  });
});

describe('GET /peers?verbose', () => {
  it.each([
    [undefined, false],
    ['false', false],
    ['0', false],
    ['true', true],
    ['1', true],
    ['', true],
    ['yes', null],
    [['true', 'true'], null],
  ])('%j → %s', (v, want) => {
    expect(verboseParam(v)).toBe(want);
  });
});

describe('configuration', () => {
  it('is off by default, as in Kimchi, on port 427', () => {
    const c = loadConfig();
    expect(c.federation).toEqual({ enabled: false, advertise_host: '', advertise_port: 0, static_peers: [], require_peer: false, refresh_interval: 60000 });
    expect(c.slp).toEqual({ port: 427, interfaces: [], deadline: 6000, register_with_slpd: true });
  });

  it('reads lists in the comma form', () => {
    const c = loadConfig({ env: { KVM_MIGRATE_FEDERATION_STATIC_PEERS: 'host2, host3:8010,[::1]:9000', KVM_MIGRATE_SLP_INTERFACES: '10.0.0.1,10.0.0.2' } });
    expect(c.federation.static_peers).toEqual(['host2', 'host3:8010', '[::1]:9000']);
    expect(c.slp.interfaces).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it.each([
    [{ KVM_MIGRATE_FEDERATION_STATIC_PEERS: 'host2,a/b' }, 'federation.static_peers'],
    [{ KVM_MIGRATE_SLP_INTERFACES: 'eth0' }, 'slp.interfaces'],
    // SLP runs over udp4 sockets: an IPv6 interface address would fail at the first search.
    [{ KVM_MIGRATE_SLP_INTERFACES: '10.0.0.1,fe80::1' }, 'slp.interfaces: must be a list of IPv4 addresses'],
    [{ KVM_MIGRATE_FEDERATION_ADVERTISE_HOST: 'x/y' }, 'federation.advertise_host'],
    [{ KVM_MIGRATE_FEDERATION_REQUIRE_PEER: 'true' }, 'federation.require_peer: needs federation.enabled'],
  ])('refuses %j naming the key', (env, key) => {
    expect(() => loadConfig({ env })).toThrow(key);
  });
});
