/**
 * SLP user agent: finds services by multicast convergence the way openSLP's
 * `slptool findsrvs` does, or asks one address by unicast.
 *
 * Convergence: the same request (same XID) is sent again and again, each time
 * listing everyone who answered so far in the previous-responder (PR) list,
 * so that those stay silent and the ones whose answers were lost or late get
 * a chance. It stops when a round brings no new responder, the PR list would
 * no longer fit a datagram, five requests went out, or the deadline passed.
 * A unicast request is sent again on the same schedule until it is answered
 * or the deadline passes.
 */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { decode, encode, Flags, Fn, SLP_MTU, SLP_MULTICAST_GROUP, SLP_PORT, type SrvRqst } from './codec.js';
import { SlpTimeoutError } from './errors.js';

export interface FoundService {
  url: string;
  /** Seconds, as the responder gave it (65535: permanent). */
  lifetime: number;
  /** Address of the agent that answered first with this URL. */
  from: string;
  /** When it was first seen (ms since the epoch, the agent's clock). */
  seenAt: number;
}

export interface UserAgentOptions {
  port?: number;
  group?: string;
  /** Local address whose interface multicast requests leave by (default: the route's). */
  interfaceAddress?: string;
  /** Multicast TTL; openSLP's default is 255. */
  ttl?: number;
  /** Overall limit on one find(), ms; default the sum of waitsMs. */
  deadlineMs?: number;
  /** How long each round listens; openSLP: 500, 750, 1000, 1500, 2000 (at most 5 sends). */
  waitsMs?: number[];
  /** Clock for seenAt and the deadline (tests). */
  now?: () => number;
}

/** What the last multicast find() did, round by round: for tests and logs. */
export interface Round {
  prList: string[];
  sourcePort: number;
  responders: string[];
  waitedMs: number;
}

export class SlpReplyError extends Error {
  override name = 'SlpReplyError';
  constructor(
    readonly code: number,
    from: string,
  ) {
    super(`${from} answered with SLP error ${code}`);
  }
}

export const OPENSLP_WAITS_MS = [500, 750, 1000, 1500, 2000];
const MAX_SENDS = 5;
/** Bounds on one search: any host on the segment can answer, with up to 64 KiB of URLs a datagram. */
const MAX_FOUND = 256;
const MAX_RESPONDERS = 256;

interface Reply {
  from: string;
  urls: { url: string; lifetime: number }[];
  error: number;
}

export class UserAgent {
  private readonly port: number;
  private readonly group: string;
  private readonly waits: number[];
  private readonly deadlineMs: number;
  private readonly now: () => number;
  /** Rounds of the last multicast find(). */
  lastRounds: Round[] = [];

  constructor(private readonly opts: UserAgentOptions = {}) {
    this.port = opts.port ?? SLP_PORT;
    this.group = opts.group ?? SLP_MULTICAST_GROUP;
    this.waits = (opts.waitsMs ?? OPENSLP_WAITS_MS).slice(0, MAX_SENDS);
    this.deadlineMs = opts.deadlineMs ?? this.waits.reduce((a, b) => a + b, 0);
    this.now = opts.now ?? Date.now;
  }

  async find(serviceType: string, opts: { scopes?: string[]; unicastTo?: string } = {}): Promise<FoundService[]> {
    const request = (prList: string[], multicast: boolean): SrvRqst => ({
      fn: Fn.SrvRqst, xid, lang: 'en', flags: multicast ? Flags.REQUEST_MCAST : 0,
      prList, serviceType, scopes: opts.scopes ?? ['DEFAULT'], predicate: '', spi: '',
    });
    const xid = randomInt(1, 0x10000);
    if (opts.unicastTo !== undefined) return this.unicast(request([], false), opts.unicastTo);

    const start = this.now();
    const found = new Map<string, FoundService>();
    const pr: string[] = [];
    this.lastRounds = [];
    for (const wait of this.waits) {
      const left = this.deadlineMs - (this.now() - start);
      if (left <= 0) break;
      const wire = encode(request([...pr], true));
      if (wire.length > SLP_MTU) break; // the PR list no longer fits one datagram
      const round = await this.round(wire, xid, Math.min(wait, left), null);
      const fresh = [...new Set(round.replies.map((r) => r.from))].filter((a) => !pr.includes(a));
      for (const r of round.replies) {
        // Only URLs of the type asked for, and a bounded number: any host on the segment can answer.
        for (const u of r.urls) {
          if (found.size >= MAX_FOUND) break;
          if (u.url.toLowerCase().startsWith(`${serviceType.toLowerCase()}:`) && !found.has(u.url)) found.set(u.url, { ...u, from: r.from, seenAt: this.now() });
        }
      }
      this.lastRounds.push({ prList: [...pr], sourcePort: round.sourcePort, responders: [...new Set(round.replies.map((r) => r.from))], waitedMs: round.waitedMs });
      // Nothing new: everyone there has answered. While nobody at all has,
      // keep sending: the first request or its answers may have been lost.
      if (fresh.length === 0 && pr.length > 0) break;
      pr.push(...fresh);
    }
    return [...found.values()];
  }

  /**
   * RFC 2608 section 6.3: a request that gets no answer is sent again (same
   * XID, so the agent may answer it as the same request) after growing waits,
   * here the convergence schedule, until the deadline. UDP drops what a busy
   * receiver's queue cannot take: one lost datagram must not lose the query.
   */
  private async unicast(req: SrvRqst, to: string): Promise<FoundService[]> {
    const wire = encode(req);
    const start = this.now();
    let reply: Reply | undefined;
    for (let i = 0; !reply; i++) {
      const left = this.deadlineMs - (this.now() - start);
      if (left <= 0) break;
      // After the schedule's last wait, its last wait again until the deadline.
      const wait = this.waits[Math.min(i, this.waits.length - 1)] ?? left;
      reply = (await this.round(wire, req.xid, Math.min(wait, left), to)).replies[0];
    }
    if (!reply) throw new SlpTimeoutError(`no SLP answer from ${to}:${this.port} within ${this.deadlineMs} ms`);
    if (reply.error !== 0) throw new SlpReplyError(reply.error, to);
    return reply.urls.map((u) => ({ ...u, from: reply.from, seenAt: this.now() }));
  }

  /**
   * One send from a fresh socket (so a fresh source port: openSLP's
   * retransmissions do the same, and late answers to an earlier round do
   * not land here), then listen for `ms`. Unicast returns at the first answer.
   */
  private round(wire: Buffer, xid: number, ms: number, unicastTo: string | null): Promise<{ replies: Reply[]; sourcePort: number; waitedMs: number }> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({ type: 'udp4' });
      const replies: Reply[] = [];
      const t0 = this.now();
      let timer: NodeJS.Timeout | undefined;
      let sourcePort = 0;
      const finish = () => {
        clearTimeout(timer);
        sock.removeAllListeners('message');
        sock.close(() => resolve({ replies, sourcePort, waitedMs: this.now() - t0 }));
      };
      sock.on('error', (e) => {
        clearTimeout(timer);
        try {
          sock.close();
        } catch {
          /* already closed */
        }
        reject(e);
      });
      sock.on('message', (msg, rinfo) => {
        if (unicastTo !== null && rinfo.address !== unicastTo) return;
        let m;
        try {
          m = decode(msg);
        } catch {
          return; // not for us, or garbage (only SlpDecodeError comes out of decode): ignore, never throw here
        }
        if (m.fn !== Fn.SrvRply || m.xid !== xid) return;
        if (replies.length >= MAX_RESPONDERS) return;
        replies.push({ from: rinfo.address, urls: m.urls.map((u) => ({ url: u.url, lifetime: u.lifetime })), error: m.error });
        if (unicastTo !== null) finish();
      });
      sock.bind(0, () => {
        // These throw synchronously (an interface address gone since start, say): a failed search, not a crash.
        try {
          sourcePort = sock.address().port;
          if (unicastTo === null) {
            sock.setMulticastTTL(this.opts.ttl ?? 255);
            if (this.opts.interfaceAddress) sock.setMulticastInterface(this.opts.interfaceAddress);
          }
          timer = setTimeout(finish, ms);
          sock.send(wire, this.port, unicastTo ?? this.group, (err) => {
            if (err) sock.emit('error', err);
          });
        } catch (e) {
          sock.emit('error', e as Error);
        }
      });
    });
  }
}
