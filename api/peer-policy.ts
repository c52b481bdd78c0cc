/**
 * Peers, as pure functions: what an SLP URL means, who "we" are, which found
 * services are still alive, how discovered and static peers merge, and
 * whether a remote_host is a known peer. api/peers.ts does the I/O.
 */
import { isIP } from 'node:net';
import { destinationUri, splitPeer } from '../shared/config.js';
import { redactUri } from '../shared/redact.js';
import type { FoundService } from '../shared/slp/agent.js';

/** What discovery gives: the SLP user agent's answers. */
export type { FoundService };

/** The type Kimchi peers register and look for. */
export const WOKD = 'service:wokd';
/** Our own, richer type: only kvm-migrate services answer it. */
export const KVM_MIGRATE = 'service:kvm-migrate';

export interface Peer {
  host: string;
  port: number;
  /** Kimchi's form: https://host:port. */
  url: string;
  /** Where a migration to this peer goes: libvirt.destination_uri_template with its host. */
  libvirt_uri: string;
  /** Seconds; null for a static peer. 65535 is permanent (openslp's rule). */
  lifetime: number | null;
  /** ISO time of the last answer; null for a static peer never discovered. */
  last_seen: string | null;
  /** Addresses the SLP answers came from (may differ from host, e.g. an FQDN). */
  addresses: string[];
  source: 'slp' | 'static';
}

export const PERMANENT = 65535;

/** Host names compare case-insensitively and without a trailing dot; IPv6 without brackets. */
export function normalHost(h: string): string {
  const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  return bare.toLowerCase().replace(/\.$/, '');
}

const bracket = (h: string) => (isIP(h) === 6 ? `[${h}]` : h);

/** https://host:port, as Kimchi's GET /peers answers. */
export const kimchiUrl = (host: string, port: number) => `https://${bracket(host)}:${port}`;

/** The URL we advertise: service:wokd://host:port (Kimchi's form). */
export const serviceUrl = (type: string, host: string, port: number) => `${type}://${bracket(host)}:${port}`;

/**
 * host and port of a service:wokd:// (or service:kvm-migrate://) URL; null
 * for anything else, or a host that could not be a remote_host. A URL without
 * a port is not a peer: Kimchi always registers one.
 */
export function parseServiceUrl(url: string): { host: string; port: number } | null {
  const m = /^service:(?:wokd|kvm-migrate):\/\/(\[[^\]]+\]|[^:/[\]]+):(\d{1,5})\/?$/i.exec(url);
  if (!m) return null;
  const split = splitPeer(`${m[1]}:${m[2]}`);
  if (!split || split.port === undefined) return null;
  return { host: normalHost(split.host), port: split.port };
}

/** Who we are: a peer at one of these hosts on our advertised port is this service. */
export interface Self {
  hosts: string[];
  port: number;
}

export function isSelf(self: Self, host: string, port: number, from?: string): boolean {
  if (port !== self.port) return false;
  const mine = new Set(self.hosts.map(normalHost));
  return mine.has(normalHost(host)) || (from !== undefined && mine.has(normalHost(from)));
}

/** A found service whose lifetime has run out since it last answered is gone (65535 never runs out). */
export function alive(f: FoundService, now: number): boolean {
  return f.lifetime >= PERMANENT || f.seenAt + f.lifetime * 1000 > now;
}

export interface MergeInput {
  found: FoundService[];
  /** federation.static_peers entries: host, host:port, [v6]:port. */
  statics: string[];
  self: Self;
  /** Port of a static peer given without one: our own (peers usually share a config). */
  defaultPort: number;
  uriTemplate: string;
  now: number;
}

/**
 * The peer list: live discovered services and static peers, one entry per
 * host:port (a discovered one keeps its lifetime and last answer), ourselves
 * left out, sorted by host then port.
 */
export function mergePeers(input: MergeInput): Peer[] {
  const out = new Map<string, Peer>();
  const make = (host: string, port: number, source: Peer['source']): Peer => ({
    host,
    port,
    url: kimchiUrl(host, port),
    // Shown to viewers (GET /peers?verbose): a template's credentials stay out, as in tasks.
    libvirt_uri: redactUri(destinationUri(input.uriTemplate, host)),
    lifetime: null,
    last_seen: null,
    addresses: [],
    source,
  });
  for (const f of input.found) {
    const at = parseServiceUrl(f.url);
    if (!at || !alive(f, input.now) || isSelf(input.self, at.host, at.port, f.from)) continue;
    const key = `${at.host} ${at.port}`;
    const p = out.get(key) ?? make(at.host, at.port, 'slp');
    // The same peer answering for both types, or from two addresses: the latest answer counts.
    const seen = new Date(f.seenAt).toISOString();
    if (p.last_seen === null || seen > p.last_seen) {
      p.last_seen = seen;
      p.lifetime = f.lifetime;
    }
    if (f.from && !p.addresses.includes(f.from)) p.addresses.push(f.from);
    out.set(key, p);
  }
  for (const entry of input.statics) {
    const split = splitPeer(entry);
    if (!split) continue;
    const host = normalHost(split.host);
    const port = split.port ?? input.defaultPort;
    if (isSelf(input.self, host, port)) continue;
    const key = `${host} ${port}`;
    if (!out.has(key)) out.set(key, make(host, port, 'static'));
  }
  return [...out.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.port - b.port));
}

/**
 * Is remote_host a known peer? By the host a peer advertised or an address
 * its answers came from; no DNS lookups (a slow resolver must not hold a POST).
 */
export function findPeer(peers: Peer[], remoteHost: string): Peer | undefined {
  const h = normalHost(remoteHost);
  return peers.find((p) => p.host === h || p.addresses.some((a) => normalHost(a) === h));
}

/** For error messages: the hosts a remote_host may name, or "none". */
export function peerHosts(peers: Peer[]): string {
  const hosts = [...new Set(peers.map((p) => p.host))];
  return hosts.length ? hosts.join(', ') : 'none (no peer has been found)';
}

/** GET /peers?verbose=...: absent or false/0 is Kimchi's list of URLs, true/1 the full objects. */
export function verboseParam(v: unknown): boolean | null {
  if (v === undefined || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1' || v === '') return true;
  return null;
}
