/**
 * Registration with a local openSLP slpd, so that hosts still running
 * Kimchi's `slptool findsrvs` (which asks slpd too) see us. Small and bounded
 * on purpose: one SrvReg or SrvDeReg per service to 127.0.0.1, one wait for
 * its SrvAck, and no slpd is not an error, just "not registered".
 */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { decode, encode, Flags, Fn, SLP_PORT, type SlpMessage } from './codec.js';
import type { Registration } from './answer.js';

export interface SlpdOptions {
  address?: string;
  port?: number;
  /** Wait for each SrvAck, ms (default 500). */
  timeoutMs?: number;
}

function ask(msg: SlpMessage, opts: SlpdOptions): Promise<number | null> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const done = (code: number | null) => {
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        /* closed already */
      }
      resolve(code);
    };
    const timer = setTimeout(() => done(null), opts.timeoutMs ?? 500);
    sock.on('error', () => done(null));
    sock.on('message', (b) => {
      try {
        const m = decode(b);
        if (m.fn === Fn.SrvAck && m.xid === msg.xid) done(m.error);
      } catch {
        /* not an answer */
      }
    });
    sock.send(encode(msg), opts.port ?? SLP_PORT, opts.address ?? '127.0.0.1');
  });
}

/** The services slpd acknowledged without error (all of them when it is there and well). */
export async function registerWithSlpd(services: Registration[], what: 'register' | 'deregister', opts: SlpdOptions): Promise<Registration[]> {
  const acked: Registration[] = [];
  for (const s of services) {
    const xid = randomInt(1, 0x10000);
    const url = { url: s.url, lifetime: s.lifetime ?? 0xffff };
    const scopes = s.scopes?.length ? s.scopes : ['DEFAULT'];
    const msg: SlpMessage = what === 'register'
      ? { fn: Fn.SrvReg, xid, lang: 'en', flags: Flags.FRESH, url, serviceType: s.serviceType, scopes, attrs: '' }
      : { fn: Fn.SrvDeReg, xid, lang: 'en', scopes, url, tags: '' };
    const code = await ask(msg, opts);
    if (code === 0) acked.push(s);
    if (code === null) break; // nobody there: do not wait once per service
  }
  return acked;
}
