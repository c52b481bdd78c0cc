import { describe, expect, it } from 'vitest';
import { isMigrationError } from '../shared/errors.js';
import { filterRegex, matchRows, validateMigrateBody, validateRemoteHost, validateVmName } from '../api/validate.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isMigrationError(e)) return e.code;
    throw e;
  }
  return 'no error';
}

describe('request validation', () => {
  it.each(['host2', 'kvm-02.lab.example.org', '127.0.0.12', '::1', '[fe80::1]', 'h.'])('accepts remote_host %s', (h) => {
    expect(() => validateRemoteHost(h)).not.toThrow();
  });

  it.each(['', 'host/system?x', 'a b', 'user@host', 'host:16509', "h'><x", '$(reboot)', 'h;rm', '-h', 'x'.repeat(300), 'h..x'])('refuses remote_host %j (URI injection)', (h) => {
    expect(codeOf(() => validateRemoteHost(h))).toBe('KCHVM0060E');
  });

  it('refuses a non-string remote_host with KCHVM0060E', () => {
    expect(codeOf(() => validateMigrateBody({ remote_host: 7 }))).toBe('KCHVM0060E');
  });

  it.each([
    [null, /JSON object/],
    [[], /JSON object/],
    [{}, /remote_host' is required/],
    [{ remote_host: 'h', speed: 1 }, /unknown property 'speed'/],
    [{ remote_host: 'h', password: 'x' }, /no credentials/],
    [{ remote_host: 'h', dry_run: 'yes' }, /dry_run/],
  ])('refuses body %j with KMIG0001E', (body, text) => {
    expect(codeOf(() => validateMigrateBody(body))).toBe('KMIG0001E');
    expect(() => validateMigrateBody(body)).toThrow(text);
  });

  it('passes a good body through', () => {
    expect(validateMigrateBody({ remote_host: '[::1]', dry_run: true })).toEqual({ remote_host: '::1', dry_run: true });
  });

  it.each(['', 'a/b', 'x\u0000', 'y'.repeat(256)])('refuses VM name %j', (n) => {
    expect(codeOf(() => validateVmName(n))).toBe('KMIG0001E');
  });

  it("keeps VM names with XML or shell characters: libvirt allows them and they are never interpolated", () => {
    expect(validateVmName("a<b>&'$(x)")).toBe("a<b>&'$(x)");
  });

  it('turns a bad filter regex into a 400', () => {
    expect(codeOf(() => filterRegex('target_uri', '(('))).toBe('KMIG0001E');
    expect(filterRegex('status', 'running')?.test('running')).toBe(true);
  });
});

describe('task filters', () => {
  const rows = [
    { status: 'running', target_uri: '/vms/lab-tiny' },
    { status: 'finished', target_uri: '/vms/lab-disk' },
    { status: 'failed', target_uri: `/vms/${'a'.repeat(40)}` },
  ];
  it("match from the start, as Kimchi's re.match did", () => {
    expect(matchRows(rows, /running/, undefined)).toEqual([0]);
    expect(matchRows(rows, undefined, /\/vms\/lab-/)).toEqual([0, 1]);
    expect(matchRows(rows, undefined, /lab-/)).toEqual([]);
    expect(matchRows(rows, /running|finished/, /\/vms\/lab-d/)).toEqual([1]);
  });
  it('stop a catastrophic pattern within the budget with a 400', () => {
    const t0 = performance.now();
    expect(codeOf(() => matchRows(rows, undefined, /\/vms\/([a-z0-9-]+)*!/))).toBe('KMIG0001E');
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
