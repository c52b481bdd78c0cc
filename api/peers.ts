/**
 * The peer directory of an API process: SLP discovery in the background
 * every federation.refresh_interval, the last good list kept when a round
 * fails (Wok crashed on slptool's errors; here a failure is a log line, never
 * a 500), static peers merged, ourselves left out. Requests only read the
 * cache: a discovery never holds one up.
 *
 * With federation on, the process also advertises itself with an SLP service
 * agent (service:wokd for Kimchi peers, service:kvm-migrate for ours).
 */
import { networkInterfaces, hostname } from 'node:os';
import type { Express } from 'express';
import type { Config } from '../shared/config.js';
import { ServiceAgent, UserAgent } from '../shared/slp/agent.js';
import { KVM_MIGRATE, mergePeers, serviceUrl, WOKD, type FoundService, type Peer, type Self } from './peer-policy.js';
import { withTimeout } from '../shared/timeout.js';
import { validatePeersQuery } from './validate.js';

/** One discovery round for a service type; rejects when discovery itself fails. */
export type Discover = (serviceType: string) => Promise<FoundService[]>;

/** Something that advertises our URLs and stops doing so. */
export interface Advertiser {
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Log {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
}

/** What GET /peers and the migrate route need. */
export interface Peers {
  list(): Peer[];
}

/** Every address of this machine, its host name and the advertised host: a peer there on our port is us. */
export function localHosts(advertiseHost: string): string[] {
  const addrs = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address.replace(/%.*$/, '')));
  return [...new Set([advertiseHost, hostname(), 'localhost', ...addrs].filter(Boolean))];
}

export const advertisedHost = (config: Config) => config.federation.advertise_host || hostname();
/** federation.advertise_port, else api.port, else (api.port 0) the port the API really listens on. */
export const advertisedPort = (config: Config, listening: number) => config.federation.advertise_port || config.api.port || listening;

/** Discovery with shared/slp's user agent: one multicast search per refresh. */
export function slpDiscover(config: Config): Discover {
  return async (serviceType) => {
    const iface = config.slp.interfaces[0];
    const ua = new UserAgent({ port: config.slp.port, deadlineMs: config.slp.deadline, ...(iface ? { interfaceAddress: iface } : {}) });
    return ua.find(serviceType);
  };
}

/** The SLP service agent advertising our URLs; stopped on shutdown. */
export function slpAdvertiser(config: Config, host: string, port: number): Advertiser {
  let agent: ServiceAgent | undefined;
  return {
    async start() {
      agent = new ServiceAgent({
        port: config.slp.port,
        ...(config.slp.interfaces.length ? { interfaces: config.slp.interfaces } : {}),
        slpd: config.slp.register_with_slpd ? { port: config.slp.port } : false,
        services: [
          // Kimchi's own registration: DEFAULT scope, permanent lifetime.
          { url: serviceUrl(WOKD, host, port), serviceType: WOKD, lifetime: 65535, scopes: ['DEFAULT'] },
          { url: serviceUrl(KVM_MIGRATE, host, port), serviceType: KVM_MIGRATE, lifetime: 65535, scopes: ['DEFAULT'] },
        ],
      });
      await agent.start();
    },
    async stop() {
      await agent?.stop();
      agent = undefined;
    },
  };
}

/** Failed rounds in a row after which the discovered peers are dropped (static ones stay). */
export const KEEP_THROUGH_FAILURES = 3;

export interface DirectoryOptions {
  config: Config;
  discover: Discover;
  log: Log;
  now?: () => number;
  /** Hosts that are this machine (default: its addresses, host name and advertised host). */
  selfHosts?: string[];
}

export class PeerDirectory implements Peers {
  private found: FoundService[] = [];
  private self: Self;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** Why the last round failed, or null when it worked; for logs and tests. */
  lastError: string | null = null;
  rounds = 0;
  private failures = 0;

  constructor(private readonly opts: DirectoryOptions) {
    const { config } = opts;
    this.self = { hosts: opts.selfHosts ?? localHosts(advertisedHost(config)), port: advertisedPort(config, 0) };
  }

  get enabled(): boolean {
    return this.opts.config.federation.enabled;
  }

  /** Begins background discovery; `listening` is the API's port (for api.port 0). Off: does nothing. */
  start(listening: number): void {
    if (!this.enabled || this.closed || this.timer) return;
    this.self = { ...this.self, port: advertisedPort(this.opts.config, listening) };
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.config.federation.refresh_interval);
    this.timer.unref();
  }

  /**
   * One discovery round (both types at once); concurrent callers share it.
   * A failure keeps the last good list and logs why; it never throws.
   */
  refresh(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    this.running ??= (async () => {
      try {
        // A discovery that never ends would stop every later round: it is given up past its deadline.
        const limit = 2 * this.opts.config.slp.deadline + 1000;
        const rounds = await withTimeout(Promise.all([WOKD, KVM_MIGRATE].map((t) => this.opts.discover(t))), limit, () => new Error(`no answer from discovery within ${limit} ms`));
        if (this.closed) return;
        const found = rounds.flat().filter((f) => f && typeof f.url === 'string');
        this.found = found;
        if (this.lastError !== null) this.opts.log.info({ found: found.length }, 'peer discovery works again');
        this.lastError = null;
        this.failures = 0;
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        this.failures++;
        // A round or two may fail (a lost datagram, a busy host): keep the last list for a while.
        // Longer, the list would be a guess, and require_peer would accept hosts nobody has seen.
        if (this.failures >= KEEP_THROUGH_FAILURES && this.found.length) {
          this.opts.log.warn({ reason, rounds: this.failures, dropped: this.found.length }, 'peer discovery keeps failing; the discovered peers are dropped until it works again');
          this.found = [];
        } else if (reason !== this.lastError) this.opts.log.warn({ reason, kept: this.found.length }, 'peer discovery failed; keeping the last list found');
        this.lastError = reason;
      } finally {
        this.rounds++;
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** The peers now: cached discovery plus static peers, without us. Off: none, as in Kimchi. */
  list(): Peer[] {
    if (!this.enabled) return [];
    const { config } = this.opts;
    return mergePeers({
      found: this.found,
      statics: config.federation.static_peers,
      self: this.self,
      defaultPort: this.self.port,
      uriTemplate: config.libvirt.destination_uri_template,
      now: (this.opts.now ?? Date.now)(),
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * GET /peers: Kimchi's answer (a list of https://host:port) by default, so
 * Kimchi clients read it as they read Wok's; ?verbose=true gives the objects.
 */
export function addPeerRoutes(app: Express, peers: Peers): void {
  app.get('/peers', (req, res, next) => {
    let verbose: boolean;
    try {
      verbose = validatePeersQuery(req.query).verbose;
    } catch (e) {
      return next(e);
    }
    const list = peers.list();
    res.json(verbose ? list : list.map((p) => p.url));
  });
}
