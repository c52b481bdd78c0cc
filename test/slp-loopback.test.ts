/**
 * The service agent's other duties over real UDP on 127.0.0.1 (no namespace
 * needed): answering a Service Type Request, and registering with a local
 * slpd (a stand-in speaking the wire format) when one answers, then
 * deregistering on stop; without one, it starts anyway, unregistered. And
 * the user agent sending an unanswered unicast request again.
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceAgent } from '../shared/slp/agent.js';
import { ALL_AUTHORITIES, decode, encode, Fn, type SlpMessage } from '../shared/slp/codec.js';
import { UserAgent } from '../shared/slp/user-agent.js';

const SERVICES = [
  { url: 'service:wokd://kimchi-a.example:8001', serviceType: 'service:wokd', lifetime: 65535, scopes: ['DEFAULT'] },
  { url: 'service:kvm-migrate://kimchi-a.example:8001', serviceType: 'service:kvm-migrate', lifetime: 65535, scopes: ['DEFAULT'] },
];
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function socket(port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(port, '127.0.0.1', () => r()));
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

/** A free UDP port on 127.0.0.1 (bound, read, released). */
async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function agent(opts: Partial<ConstructorParameters<typeof ServiceAgent>[0]> = {}): Promise<ServiceAgent> {
  const sa = new ServiceAgent({ port: await freePort(), interfaces: ['127.0.0.1'], services: SERVICES, ...opts });
  await sa.start();
  cleanup.push(() => sa.stop());
  return sa;
}

function ask(sock: dgram.Socket, msg: SlpMessage, port: number): Promise<SlpMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer in 2 s')), 2000);
    sock.once('message', (b) => {
      clearTimeout(timer);
      resolve(decode(b));
    });
    sock.send(encode(msg), port, '127.0.0.1');
  });
}

describe('service type requests', () => {
  it('are answered by unicast with the types the agent serves, for all naming authorities or IANA', async () => {
    const sa = await agent();
    const client = await socket();
    const all = await ask(client, { fn: Fn.SrvTypeRqst, xid: 0x4242, lang: 'en', prList: [], namingAuthority: ALL_AUTHORITIES, scopes: ['DEFAULT'] }, sa.port);
    expect(all).toMatchObject({ fn: Fn.SrvTypeRply, xid: 0x4242, error: 0 });
    expect((all as { serviceTypes: string[] }).serviceTypes.sort()).toEqual(['service:kvm-migrate', 'service:wokd']);
    const iana = await ask(client, { fn: Fn.SrvTypeRqst, xid: 0x4243, lang: 'en', prList: [], namingAuthority: '', scopes: ['DEFAULT'] }, sa.port);
    expect((iana as { serviceTypes: string[] }).serviceTypes.sort()).toEqual(['service:kvm-migrate', 'service:wokd']);
    expect(sa.stats.requests).toBe(2);
    expect(sa.stats.replies).toBe(2);
  });
});

describe('hostile datagrams', () => {
  it('a request claiming source port 0 (which no reply can reach) is dropped, not fatal: the agent answers the next one', async () => {
    const sa = await agent();
    const req = encode({ fn: Fn.SrvRqst, xid: 0x0707, lang: 'en', flags: 0, prList: [], serviceType: 'service:wokd', scopes: ['DEFAULT'], predicate: '', spi: '' });
    // A real datagram with UDP source port 0, sent through a raw socket (Node has none).
    const py = `import socket,struct,sys
p=bytes.fromhex(sys.argv[2]); s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_UDP)
s.sendto(struct.pack('!HHHH',0,int(sys.argv[1]),8+len(p),0)+p,('127.0.0.1',0))`;
    execFileSync('python3', ['-c', py, String(sa.port), req.toString('hex')]);
    for (let i = 0; i < 40 && sa.stats.datagrams === 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(sa.stats).toMatchObject({ datagrams: 1, requests: 1, replies: 0, ignored: 1 });
    const client = await socket();
    const answer = await ask(client, { fn: Fn.SrvRqst, xid: 0x0708, lang: 'en', flags: 0, prList: [], serviceType: 'service:wokd', scopes: ['DEFAULT'], predicate: '', spi: '' }, sa.port);
    expect(answer).toMatchObject({ fn: Fn.SrvRply, xid: 0x0708, error: 0 });
  });
});

describe('registration with a local slpd', () => {
  it('registers every URL when slpd answers, and deregisters them on stop', async () => {
    const slpd = await socket();
    const seen: SlpMessage[] = [];
    slpd.on('message', (b, from) => {
      const m = decode(b);
      seen.push(m);
      slpd.send(encode({ fn: Fn.SrvAck, xid: m.xid, lang: 'en', error: 0 }), from.port, from.address);
    });
    const sa = new ServiceAgent({ port: await freePort(), interfaces: ['127.0.0.1'], services: SERVICES, slpd: { port: (slpd.address() as AddressInfo).port } });
    await sa.start();
    expect(sa.stats.slpdRegistered).toBe(true);
    const regs = seen.filter((m) => m.fn === Fn.SrvReg);
    expect(regs.map((m) => ({ url: m.url.url, lifetime: m.url.lifetime, type: m.serviceType, scopes: m.scopes }))).toEqual(
      SERVICES.map((s) => ({ url: s.url, lifetime: 65535, type: s.serviceType, scopes: ['DEFAULT'] })),
    );
    await sa.stop();
    expect(seen.filter((m) => m.fn === Fn.SrvDeReg).map((m) => m.url.url)).toEqual(SERVICES.map((s) => s.url));
  });

  it('takes back what slpd acknowledged even when it refused the rest', async () => {
    const slpd = await socket();
    const seen: SlpMessage[] = [];
    slpd.on('message', (b, from) => {
      const m = decode(b);
      seen.push(m);
      // Refuses the second registration (error 4, SCOPE_NOT_SUPPORTED), acknowledges the rest.
      const refuse = m.fn === Fn.SrvReg && m.url.url === SERVICES[1]!.url;
      slpd.send(encode({ fn: Fn.SrvAck, xid: m.xid, lang: 'en', error: refuse ? 4 : 0 }), from.port, from.address);
    });
    const sa = new ServiceAgent({ port: await freePort(), interfaces: ['127.0.0.1'], services: SERVICES, slpd: { port: (slpd.address() as AddressInfo).port } });
    await sa.start();
    expect(sa.stats.slpdRegistered).toBe(false);
    await sa.stop();
    expect(seen.filter((m) => m.fn === Fn.SrvDeReg).map((m) => m.url.url)).toEqual([SERVICES[0]!.url]);
  });

  it('starts unregistered, within the ack wait, when no slpd listens', async () => {
    const t0 = Date.now();
    const sa = await agent({ slpd: { port: await freePort(), timeoutMs: 300 } });
    expect(sa.stats.slpdRegistered).toBe(false);
    // One wait of 300 ms, not one per service (that would be 600): nobody is there.
    expect(Date.now() - t0).toBeLessThan(550);
  });
});

describe('user agent, unicast', () => {
  it('sends a request that got no answer again, with the same XID, until answered (RFC 2608 section 6.3)', async () => {
    const responder = await socket();
    const port = (responder.address() as AddressInfo).port;
    const seen: number[] = [];
    responder.on('message', (b, rinfo) => {
      const m = decode(b);
      if (m.fn !== Fn.SrvRqst) return;
      seen.push(m.xid);
      // The first request is "lost": only a second one is answered.
      if (seen.length < 2) return;
      const reply: SlpMessage = { fn: Fn.SrvRply, xid: m.xid, lang: m.lang, flags: 0, error: 0, urls: [{ url: 'service:wokd://kimchi-b.example:8001', lifetime: 65535 }] };
      responder.send(encode(reply), rinfo.port, rinfo.address);
    });
    const ua = new UserAgent({ port, waitsMs: [150, 150, 150], deadlineMs: 2000 });
    const found = await ua.find('service:wokd', { unicastTo: '127.0.0.1' });
    expect(found.map((f) => f.url)).toEqual(['service:wokd://kimchi-b.example:8001']);
    expect(seen.length).toBe(2);
    expect(seen[1]).toBe(seen[0]);
  });
});
