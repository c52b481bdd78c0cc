/**
 * What a remote_host may be. It ends up inside a libvirt URI, so only a host
 * name or an IP address is accepted: nothing that could inject a path, a
 * port, a user or URI parameters. The API validates requests with it
 * (api/schemas.ts) and workers check every job against it again
 * (worker/admit.ts), so it lives here, outside both.
 */

/** RFC 1123 host name: labels of letters, digits and hyphens, dots between (dotted IPv4 addresses are such names too). */
const HOST = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?';

/** An IPv6 address with an optional zone, exactly as Node's net.isIPv6 accepts it. */
const V4SEG = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const V4 = `(?:${V4SEG}\\.){3}${V4SEG}`;
const S = '(?:[0-9a-fA-F]{1,4})';
const IPV6 =
  '(?:' +
  [
    `(?:${S}:){7}(?:${S}|:)`,
    `(?:${S}:){6}(?:${V4}|:${S}|:)`,
    `(?:${S}:){5}(?::${V4}|(?::${S}){1,2}|:)`,
    `(?:${S}:){4}(?:(?::${S}){0,1}:${V4}|(?::${S}){1,3}|:)`,
    `(?:${S}:){3}(?:(?::${S}){0,2}:${V4}|(?::${S}){1,4}|:)`,
    `(?:${S}:){2}(?:(?::${S}){0,3}:${V4}|(?::${S}){1,5}|:)`,
    `(?:${S}:){1}(?:(?::${S}){0,4}:${V4}|(?::${S}){1,6}|:)`,
    `(?::(?:(?::${S}){0,5}:${V4}|(?::${S}){1,7}|:))`,
  ].join('|') +
  ')(?:%[0-9a-zA-Z.:-]{1,})?';

/**
 * A host name (at most 253 characters) or an IP address, optionally in
 * brackets. One expression, so the API's description states exactly what
 * is accepted.
 */
export const REMOTE_HOST = new RegExp(`^(?:(?=.{1,253}$)${HOST}|${IPV6}|\\[(?:(?=[^\\]]{1,253}\\]$)${HOST}|${IPV6})\\])$`);

export const isRemoteHost = (v: unknown): v is string => typeof v === 'string' && REMOTE_HOST.test(v);
