/**
 * The request schemas' own rules: remote_host is one regular expression (so
 * the OpenAPI document can state it), and it accepts exactly the host names
 * and addresses the API accepted when it asked Node's net.isIP; the peers
 * query takes exactly what the peer policy understands.
 */
import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { verboseParam } from '../api/peer-policy.js';
import { PeersQuery, REMOTE_HOST, RemoteHost } from '../api/schemas.js';
import { validateMigrateBody } from '../api/validate.js';

/** The rule before the schemas: an RFC 1123 name or whatever net.isIP calls an address, optionally in brackets. */
const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
function before(v: string): boolean {
  const host = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

const hexish = fc.stringMatching(/^[0-9a-fA-F:.%\[\]a-z-]{0,45}$/);
const host = fc.oneof(
  fc.ipV6(),
  fc.ipV6().map((s) => `[${s}]`),
  fc.ipV6().map((s) => `${s}%eth0`),
  fc.ipV4(),
  fc.ipV4Extended(),
  fc.domain(),
  fc.domain().map((s) => `[${s}]`),
  hexish,
  fc.string({ maxLength: 20 }),
  fc.constantFrom('::', ':::', '1::2::3', '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', 'fe80::1%', '[]', '[h', 'h]', 'h.', 'h..x', '-h', 'x'.repeat(253), 'x'.repeat(254), `[${'x'.repeat(253)}]`, `[${'x'.repeat(254)}]`),
);

describe('remote_host', () => {
  it('the one expression accepts exactly what net.isIP and the RFC 1123 rule accept (200,000 generated hosts)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(host, (h) => {
        const ok = before(h);
        if (ok) accepted++;
        return REMOTE_HOST.test(h) === ok;
      }),
      { numRuns: 200_000, seed: 11 },
    );
    expect(accepted).toBeGreaterThan(50_000);
  });

  it('compiles as a JSON Schema pattern (with the u flag) and means the same there', () => {
    const u = new RegExp(REMOTE_HOST.source, 'u');
    fc.assert(fc.property(host, (h) => u.test(h) === REMOTE_HOST.test(h)), { numRuns: 20_000, seed: 12 });
  });

  it('loses its brackets once accepted', () => {
    expect(RemoteHost.parse('[fe80::1]')).toBe('fe80::1');
    expect(RemoteHost.parse('[host2]')).toBe('host2');
    expect(validateMigrateBody({ remote_host: 'host2' })).toEqual({ remote_host: 'host2', dry_run: false });
  });
});

describe('the validating schemas keep the explanations', () => {
  it.each([
    [{ remote_host: 'h', enable_rdma: true }, /property 'enable_rdma' is not supported: the source libvirtd connects to the destination libvirtd itself/],
    [{ remote_host: 'h', user: 'root', speed: 1 }, /property 'user' is not supported/],
    [{ remote_host: 'h', parallel: 4 }, /parallel connections are not available with tunnelled transport/],
    [{ remote_host: 'h', post_copy: true }, /post-copy is not available with tunnelled transport; use deadline_action "pause"/],
    [{ remote_host: 'h', toString: 1 }, /unknown property 'toString'; allowed: remote_host, dry_run, bandwidth, max_downtime, deadline, deadline_action, auto_converge, compression/],
    [{ remote_host: 'h', bandwidth: 0 }, /'bandwidth' must be a whole number of MiB\/s \(or "unlimited"\) from 1 to 1048576/],
    [{ remote_host: 'h', bandwidth: 'fast' }, /'bandwidth' must be a whole number/],
    [{ remote_host: 'h', deadline: 1.5 }, /'deadline' must be a whole number of seconds from 1 to 2000000/],
    [{ remote_host: 'h', auto_converge: 'yes' }, /'auto_converge' must be true or false/],
    [{ remote_host: 'h', compression: 'zstd' }, /'compression' is "xbzrle" or "none": multithreaded and multifd compression need a non-tunnelled or parallel transport/],
  ])('%j', (body, text) => {
    expect(() => validateMigrateBody(body)).toThrow(text);
  });
});

describe('GET /peers ?verbose', () => {
  it("takes exactly the values the peer policy understands, and means what it means", () => {
    for (const v of [undefined, 'true', '1', '', 'false', '0', 'TRUE', 'yes', 'maybe', ['true', 'true']]) {
      const r = PeersQuery.safeParse(v === undefined ? {} : { verbose: v });
      expect(r.success, String(v)).toBe(verboseParam(v) !== null);
      if (r.success) expect(r.data.verbose).toBe(verboseParam(v));
    }
  });
});
