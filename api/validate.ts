/**
 * Request validation: pure functions that return the parsed value or throw a
 * MigrationError with a 4xx code. Nothing reaches libvirt or Redis unchecked.
 */
import { isIP } from 'node:net';
import { runInNewContext } from 'node:vm';
import { migrationError } from '../shared/errors.js';

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

/** Per-migration policy a client may set in the POST body (all optional). */
export interface PolicyBody {
  bandwidth?: number | 'unlimited';
  max_downtime?: number;
  deadline?: number;
  deadline_action?: 'abort' | 'pause';
  auto_converge?: boolean;
  compression?: 'xbzrle' | 'none';
}

export interface MigrateBody extends PolicyBody {
  remote_host: string;
  dry_run: boolean;
}

const POLICY_KEYS = ['bandwidth', 'max_downtime', 'deadline', 'deadline_action', 'auto_converge', 'compression'] as const;
const KNOWN = new Set<string>(['remote_host', 'dry_run', ...POLICY_KEYS]);
/** Kimchi's body had these; kvm-migrate connects libvirt to libvirt and takes no credentials. */
const KIMCHI_ONLY = new Set(['user', 'password', 'enable_rdma']);
/** Things libvirt can do, but not with the tunnelled transport this service uses. */
const NOT_WITH_TUNNEL: Record<string, string> = {
  post_copy: 'post-copy is not available with tunnelled transport; use deadline_action "pause" to force completion',
  parallel: 'parallel connections are not available with tunnelled transport',
};

const bad = (detail: string) => migrationError('BAD_REQUEST', { detail });

function wholeNumber(key: string, v: unknown, min: number, max: number, unit: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`'${key}' must be a whole number of ${unit} from ${min} to ${max}`);
  return v;
}

export function validateBandwidth(v: unknown): number | 'unlimited' {
  if (v === 'unlimited') return v;
  return wholeNumber('bandwidth', v, 1, 1_048_576, 'MiB/s (or "unlimited")');
}

export function validateMaxDowntime(v: unknown): number {
  // libvirt ignores a max downtime under 100 ms (the seed says so too): refuse it rather than pretend.
  return wholeNumber('max_downtime', v, 100, 600_000, 'milliseconds');
}

/** The policy fields of a body; a combination libvirt cannot honour is a 400 that says why. */
export function validatePolicy(b: Record<string, unknown>): PolicyBody {
  const out: PolicyBody = {};
  if (b.bandwidth !== undefined) out.bandwidth = validateBandwidth(b.bandwidth);
  if (b.max_downtime !== undefined) out.max_downtime = validateMaxDowntime(b.max_downtime);
  if (b.deadline !== undefined) out.deadline = wholeNumber('deadline', b.deadline, 1, 2_000_000, 'seconds');
  if (b.deadline_action !== undefined) {
    if (b.deadline_action !== 'abort' && b.deadline_action !== 'pause') throw bad(`'deadline_action' is "abort" (stop and recover on the source) or "pause" (pause the guest so the copy completes)`);
    out.deadline_action = b.deadline_action;
  }
  if (b.auto_converge !== undefined) {
    if (typeof b.auto_converge !== 'boolean') throw bad(`'auto_converge' must be true or false`);
    out.auto_converge = b.auto_converge;
  }
  if (b.compression !== undefined) {
    if (b.compression !== 'xbzrle' && b.compression !== 'none') {
      throw bad(`'compression' is "xbzrle" or "none": multithreaded and multifd compression need a non-tunnelled or parallel transport`);
    }
    out.compression = b.compression;
  }
  return out;
}

export function validateMigrateBody(body: unknown): MigrateBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw bad('the body must be a JSON object such as {"remote_host": "host2"}');
  }
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (KIMCHI_ONLY.has(k)) throw bad(`property '${k}' is not supported: the source libvirtd connects to the destination libvirtd itself, no credentials are passed through the API`);
    if (k in NOT_WITH_TUNNEL) throw bad(NOT_WITH_TUNNEL[k]!);
    if (!KNOWN.has(k)) throw bad(`unknown property '${k.slice(0, 64)}'; allowed: ${[...KNOWN].join(', ')}`);
  }
  if (!('remote_host' in b)) throw bad("'remote_host' is required");
  if ('dry_run' in b && typeof b.dry_run !== 'boolean') throw bad("'dry_run' must be true or false");
  return { remote_host: validateRemoteHost(b.remote_host), dry_run: b.dry_run === true, ...validatePolicy(b) };
}

/** PATCH /tasks/:id: the limits that can change while the copy runs. */
export function validateTuneBody(body: unknown): { bandwidth?: number | 'unlimited'; max_downtime?: number } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the body must be a JSON object such as {"bandwidth": 32}');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (k !== 'bandwidth' && k !== 'max_downtime') throw bad(`'${k.slice(0, 64)}' cannot change while a migration runs; only bandwidth and max_downtime can`);
  }
  if (b.bandwidth === undefined && b.max_downtime === undefined) throw bad('give bandwidth, max_downtime or both');
  return {
    ...(b.bandwidth !== undefined ? { bandwidth: validateBandwidth(b.bandwidth) } : {}),
    ...(b.max_downtime !== undefined ? { max_downtime: validateMaxDowntime(b.max_downtime) } : {}),
  };
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
