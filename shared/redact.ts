/**
 * What a client or a log line may see of a secret: nothing. A libvirt URI
 * can carry a user and password (qemu+ssh://root:pw@host/...) and query
 * parameters naming key files (keyfile, pkipath, authfile, ...); a Redis URL
 * a password. Workers keep the real URIs in job data; everything rendered
 * for a client (tasks, the dashboard) or written to the log goes through
 * these.
 */

export const REDACTED = '[redacted]';

const SENSITIVE_KEY = /token|passw|secret|authori[sz]ation|cookie|idempotency|credential|principal|api[-_]?key/i;
const URI_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]*/gi;

/** A URI without its user and password and with its query parameters' values hidden; the scheme, host and path stay. */
export function redactUri(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i.exec(uri);
  if (!m) return uri;
  const [, scheme, authority = '', path = '', query, fragment = ''] = m;
  const host = authority.includes('@') ? `${REDACTED}@${authority.slice(authority.lastIndexOf('@') + 1)}` : authority;
  const params = query === undefined ? '' : `?${query.slice(1).split('&').map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('=') + 1)}${REDACTED}` : p)).join('&')}`;
  return `${scheme}${host}${path}${params}${fragment}`;
}

/** Every URI inside a text (an error message, a lock key) redacted. */
export const redactText = (s: string): string => s.replace(URI_IN_TEXT, redactUri);

/** A JSON value with sensitive fields replaced and every URI in every string redacted. */
export function redactDeep(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return redactText(v);
  if (depth > 32 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => redactDeep(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = SENSITIVE_KEY.test(k) ? REDACTED : redactDeep(x, depth + 1);
  return out;
}
