/**
 * SLP service agent: answers Service Requests and Service Type Requests for
 * the services it was given, on UDP 427 (or the configured port), on the
 * configured interfaces. What to answer is decided by answer.ts; this file
 * only owns the sockets.
 *
 * Sockets. With interface addresses configured: one socket per address bound
 * to (address, port), for unicast requests and for every reply (so a reply's
 * source is that address, the one a user agent puts in its PR list), and one
 * socket bound to (group, port) that joins the group on each of them. Binding
 * to the address, not 0.0.0.0, is what lets several agents share a port on
 * one machine and each get its own unicast. All use SO_REUSEADDR, as openSLP
 * does, so a local slpd can hold the port too. Without interfaces: one socket
 * on 0.0.0.0 joined to the group on the default interface.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import { decode, encode, Flags, Fn, SLP_MULTICAST_GROUP, SLP_PORT, type SlpMessage } from './codec.js';
import { SlpDecodeError } from './errors.js';
import { answer, type Registration } from './answer.js';
import { registerWithSlpd, type SlpdOptions } from './slpd.js';

export interface ServiceAgentOptions {
  port?: number;
  /** IPv4 addresses of the interfaces to serve on; default all, through one wildcard socket. */
  interfaces?: string[];
  group?: string;
  services: Registration[];
  /** Register the services with a local slpd (SrvReg to 127.0.0.1:427) if one answers; off by default. */
  slpd?: SlpdOptions | false;
}

export interface ServiceAgentStats {
  /** Every datagram that reached the agent, whatever it was. */
  datagrams: number;
  requests: number;
  replies: number;
  malformed: number;
  /** Requests left unanswered because one of our addresses was in the PR list. */
  listed: number;
  /** Multicast requests we had nothing for (no error, no empty reply). */
  silent: number;
  /** Well-formed messages an SA does not answer (replies, registrations, ...). */
  ignored: number;
  /** Whether a local slpd acknowledged our registrations. */
  slpdRegistered: boolean;
}

const bind = (s: dgram.Socket, port: number, address?: string) =>
  new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address, exclusive: false }, () => {
      s.off('error', reject);
      resolve();
    });
  });

function ipv4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
}

export class ServiceAgent {
  readonly stats: ServiceAgentStats = { datagrams: 0, requests: 0, replies: 0, malformed: 0, listed: 0, silent: 0, ignored: 0, slpdRegistered: false };
  private sockets: { sock: dgram.Socket; address: string | null }[] = [];
  private groupSocket: dgram.Socket | null = null;
  private boundPort = 0;
  /** What a local slpd acknowledged, to deregister on stop. */
  private inSlpd: Registration[] = [];

  constructor(private readonly opts: ServiceAgentOptions) {}

  /** The port in use (the configured one, or the one the system chose for port 0). */
  get port(): number {
    return this.boundPort;
  }

  private get group(): string {
    return this.opts.group ?? SLP_MULTICAST_GROUP;
  }

  private ownAddresses(): string[] {
    if (this.opts.interfaces?.length) return this.opts.interfaces;
    return Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).filter((i) => i.family === 'IPv4').map((i) => i.address));
  }

  async start(): Promise<void> {
    const ifaces = this.opts.interfaces ?? [];
    let port = this.opts.port ?? SLP_PORT;
    const make = () => dgram.createSocket({ type: 'udp4', reuseAddr: true });
    try {
      // Each socket is recorded before anything on it can fail, so stop() closes it whatever happens.
      if (ifaces.length === 0) {
        const sock = make();
        this.sockets.push({ sock, address: null });
        await bind(sock, port);
        sock.addMembership(this.group);
        sock.setMulticastTTL(255);
        this.boundPort = sock.address().port;
      } else {
        for (const address of ifaces) {
          const sock = make();
          this.sockets.push({ sock, address });
          await bind(sock, port, address);
          port = sock.address().port; // port 0: the others follow the first
        }
        this.boundPort = port;
        const g = make();
        this.groupSocket = g;
        await bind(g, port, this.group);
        for (const address of ifaces) g.addMembership(this.group, address);
      }
    } catch (e) {
      await this.stop();
      throw e;
    }
    for (const s of this.sockets) s.sock.on('message', (m, r) => this.onMessage(m, r, s.sock, false));
    this.groupSocket?.on('message', (m, r) => this.onMessage(m, r, null, true));
    for (const s of [...this.sockets.map((x) => x.sock), ...(this.groupSocket ? [this.groupSocket] : [])]) {
      s.on('error', () => {
        /* a send that failed (peer gone): nothing to do, the next request tries again */
      });
    }
    if (this.opts.slpd) {
      this.inSlpd = await registerWithSlpd(this.opts.services, 'register', this.opts.slpd);
      this.stats.slpdRegistered = this.inSlpd.length === this.opts.services.length;
    }
  }

  async stop(): Promise<void> {
    // Every registration slpd took is taken back, also when it refused others.
    if (this.opts.slpd && this.inSlpd.length) {
      await registerWithSlpd(this.inSlpd, 'deregister', this.opts.slpd);
      this.inSlpd = [];
      this.stats.slpdRegistered = false;
    }
    const all = [...this.sockets.map((s) => s.sock), ...(this.groupSocket ? [this.groupSocket] : [])];
    this.sockets = [];
    this.groupSocket = null;
    await Promise.all(all.map((s) => new Promise<void>((resolve) => {
      try {
        s.close(() => resolve());
      } catch {
        resolve(); // never bound, or closed already
      }
    })));
  }

  /** The socket to answer from: the one the request came in on, else the interface on the sender's subnet. */
  private replySocket(from: string): dgram.Socket | undefined {
    if (this.sockets.length <= 1) return this.sockets[0]?.sock;
    const nets = os.networkInterfaces();
    for (const s of this.sockets) {
      const info = Object.values(nets).flatMap((l) => l ?? []).find((i) => i.address === s.address);
      if (info && (ipv4ToInt(info.address) & ipv4ToInt(info.netmask)) === (ipv4ToInt(from) & ipv4ToInt(info.netmask))) return s.sock;
    }
    return this.sockets[0]?.sock;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo, via: dgram.Socket | null, onGroup: boolean): void {
    this.stats.datagrams++;
    let req: SlpMessage;
    try {
      req = decode(msg);
    } catch (e) {
      // Only SlpDecodeError comes out of decode (the codec's fuzz test holds it to that); were anything
      // else to, it is counted the same rather than crash the agent on one datagram.
      void (e instanceof SlpDecodeError);
      this.stats.malformed++;
      return;
    }
    if (req.fn === Fn.SrvRqst || req.fn === Fn.SrvTypeRqst) this.stats.requests++;
    const multicast = onGroup || ((req.flags ?? 0) & Flags.REQUEST_MCAST) !== 0;
    const outcome = answer(req, { services: this.opts.services, ownAddresses: this.ownAddresses(), multicast });
    if (outcome.kind === 'listed') this.stats.listed++;
    else if (outcome.kind === 'silent') this.stats.silent++;
    else if (outcome.kind === 'ignored') this.stats.ignored++;
    else {
      const sock = via ?? this.replySocket(rinfo.address);
      if (!sock) return;
      let wire: Buffer;
      try {
        wire = encode(outcome.reply);
      } catch {
        this.stats.malformed++; // a request whose echo cannot be encoded (cannot happen with decoded input)
        return;
      }
      // Port 0 cannot be answered (send throws at once); a datagram claiming it is dropped, never fatal.
      if (rinfo.port === 0) {
        this.stats.ignored++;
        return;
      }
      try {
        sock.send(wire, rinfo.port, rinfo.address);
        this.stats.replies++;
      } catch {
        this.stats.ignored++; // an address a reply cannot go to: nothing to answer
      }
    }
  }
}
