/**
 * Request validation: pure functions that return the parsed value or throw a
 * MigrationError with a 4xx code. Nothing reaches libvirt or Redis unchecked.
 */
import { isIP } from 'node:net';
import { runInNewContext } from 'node:vm';
import { migrationError } from '../shared/errors.js';

export interface MigrateBody {
  remote_host: string;
  dry_run: boolean;
}

const KNOWN = new Set(['remote_host', 'dry_run']);
/** Kimchi's body had these; kvm-migrate connects libvirt to libvirt and takes no credentials. */
const KIMCHI_ONLY = new Set(['user', 'password', 'enable_rdma']);

/** RFC 1123 host name: labels of letters, digits and hyphens, dots between. */
const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * remote_host ends up inside a libvirt URI: only a host name or an IP address
 * is accepted, so it cannot inject a path, a port, a user or URI parameters.
 */
export function validateRemoteHost(v: unknown): string {
  if (typeof v !== 'string') throw migrationError('REMOTE_HOST_INVALID', { detail: 'it must be a string' });
  const host = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
  if (isIP(host)) return host;
  if (HOSTNAME.test(host)) return host;
  throw migrationError('REMOTE_HOST_INVALID', { detail: JSON.stringify(v.slice(0, 80)) });
}

export function validateMigrateBody(body: unknown): MigrateBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw migrationError('BAD_REQUEST', { detail: 'the body must be a JSON object such as {"remote_host": "host2"}' });
  }
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (KIMCHI_ONLY.has(k)) throw migrationError('BAD_REQUEST', { detail: `property '${k}' is not supported: the source libvirtd connects to the destination libvirtd itself, no credentials are passed through the API` });
    if (!KNOWN.has(k)) throw migrationError('BAD_REQUEST', { detail: `unknown property '${k.slice(0, 64)}'; allowed: remote_host, dry_run` });
  }
  if (!('remote_host' in b)) throw migrationError('BAD_REQUEST', { detail: "'remote_host' is required" });
  if ('dry_run' in b && typeof b.dry_run !== 'boolean') throw migrationError('BAD_REQUEST', { detail: "'dry_run' must be true or false" });
  return { remote_host: validateRemoteHost(b.remote_host), dry_run: b.dry_run === true };
}

/** libvirt accepts almost any name; refuse what cannot be one (empty, '/', control characters, huge). */
export function validateVmName(name: string): string {
  // eslint-disable-next-line no-control-regex
  if (!name || name.length > 255 || name.includes('/') || /[\u0000-\u001f\u007f]/.test(name)) {
    throw migrationError('BAD_REQUEST', { detail: 'a VM name is 1 to 255 characters without "/" or control characters' });
  }
  return name;
}

/** Kimchi's UI sends filters as regular expressions; a bad one is a 400, not a 500. */
export function filterRegex(param: string, v: unknown): RegExp | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 200) throw migrationError('BAD_REQUEST', { detail: `filter '${param}' must be one regular expression of at most 200 characters` });
  try {
    return new RegExp(v);
  } catch {
    throw migrationError('BAD_REQUEST', { detail: `filter '${param}' is not a valid regular expression` });
  }
}

/** Longest the task filters may run: a catastrophic pattern must not stall the API. */
const FILTER_BUDGET_MS = 100;

/**
 * Indexes of the rows whose status and target_uri match the filters, with
 * Kimchi's re.match semantics (anchored at the start). Runs under a time
 * budget, since a client-supplied pattern can backtrack for minutes.
 */
export function matchRows(rows: { status: string; target_uri: string }[], status: RegExp | undefined, target: RegExp | undefined): number[] {
  const anchored = (r: RegExp | undefined) => (r ? new RegExp(`^(?:${r.source})`, r.flags) : null);
  try {
    return runInNewContext(
      'rows.flatMap((r, i) => ((!s || s.test(r.status)) && (!t || t.test(r.target_uri)) ? [i] : []))',
      { rows: rows.map((r) => ({ status: r.status, target_uri: r.target_uri })), s: anchored(status), t: anchored(target) },
      { timeout: FILTER_BUDGET_MS },
    ) as number[];
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      throw migrationError('BAD_REQUEST', { detail: `the filter expressions took longer than ${FILTER_BUDGET_MS} ms; simplify them` });
    }
    throw e;
  }
}
