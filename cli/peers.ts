/**
 * `kvm-migrate peers`: the service's known peers, the hosts a migration may
 * name as <remote_host>. Asks for the rich form; a Kimchi host or an older
 * service answers a list of URLs, which is shown as it is.
 */
import type { Paint } from './format.js';
import { CliFailure, EXIT, type Api } from './http.js';
import { isObject } from './types.js';

/** A peer as GET /peers?verbose=true gives it; everything optional (see types.ts). */
export interface PeerInfo {
  host?: string;
  port?: number;
  url?: string;
  libvirt_uri?: string;
  lifetime?: number | null;
  last_seen?: string | null;
  source?: string;
}

const stamp = (iso: string | null | undefined) => (iso ? iso.replace(/\.\d+Z$/, 'Z') : '-');

export function peersView(peers: (PeerInfo | string)[], paint: Paint): string {
  if (!peers.length) return 'No peers. (A service with federation.enabled off lists none, as Kimchi does.)\n';
  const header = ['HOST', 'PORT', 'SOURCE', 'LAST SEEN', 'LIBVIRT URI'];
  const rows = peers.map((p) => {
    if (typeof p === 'string') return [p, '', '', '', ''];
    return [p.host ?? p.url ?? '?', p.port !== undefined ? String(p.port) : '', p.source ?? '', stamp(p.last_seen), p.libvirt_uri ?? ''];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[paint('bold', line(header)), ...rows.map(line)].join('\n')}\n`;
}

/** GET /peers?verbose=true; `out` gets the raw JSON (--json) or the table. */
export async function listPeers(api: Api, json: boolean, out: (text: string) => void, paint: Paint): Promise<number> {
  const a = await api.request('GET', '/peers?verbose=true');
  if (a.status >= 400) throw api.failure(a, 'listing peers');
  if (!Array.isArray(a.json) || !a.json.every((p) => typeof p === 'string' || isObject(p))) {
    throw new CliFailure(`listing peers: the API at ${api.base} did not answer with a list; is --api pointing at kvm-migrate?`, EXIT.UNREACHABLE, a.json);
  }
  out(json ? `${JSON.stringify(a.json, null, 2)}\n` : peersView(a.json as (PeerInfo | string)[], paint));
  return EXIT.OK;
}
