/** The pure parts of access control: header parsing, token lookup, roles, and the token config. */
import { describe, expect, it } from 'vitest';
import { allows, bearer, createTokenLookup, failureBrake, roleFor } from '../api/auth.js';
import { loadConfig, parseTokens } from '../shared/config.js';

describe('bearer()', () => {
  it.each([
    [undefined, null],
    ['', null],
    ['Bearer abc.DEF-123_~+/=', 'abc.DEF-123_~+/='],
    ['bearer   tok', 'tok'],
    ['Basic dXNlcjpwYXNz', null],
    ['Bearer', null],
    ['Bearer two words', null],
    ['Bearer tök', null],
  ])('%j → %j', (header, token) => {
    const r = bearer(header);
    expect('token' in r ? r.token : null).toBe(token);
  });
});

describe('createTokenLookup()', () => {
  const lookup = createTokenLookup([
    { name: 'ops', role: 'operator', token: 'operator-token-0123456789' },
    { name: 'dash', role: 'viewer', token: 'viewer-token-0123456789' },
  ]);
  it('finds the owner of a known token and nobody for anything else', () => {
    expect(lookup('operator-token-0123456789')).toEqual({ name: 'ops', role: 'operator' });
    expect(lookup('viewer-token-0123456789')).toEqual({ name: 'dash', role: 'viewer' });
    for (const t of ['', 'operator-token-012345678', 'operator-token-01234567890', 'OPERATOR-TOKEN-0123456789']) expect(lookup(t)).toBeNull();
  });
});

describe('roles', () => {
  it.each([
    ['GET', 'viewer'],
    ['HEAD', 'viewer'],
    ['POST', 'operator'],
    ['PATCH', 'operator'],
    ['DELETE', 'operator'],
    ['PUT', 'operator'],
    ['OPTIONS', 'operator'],
  ] as const)('%s needs %s', (method, role) => {
    expect(roleFor(method)).toBe(role);
  });
  it('an operator may do everything, a viewer only read', () => {
    expect([allows('operator', 'operator'), allows('operator', 'viewer'), allows('viewer', 'viewer'), allows('viewer', 'operator')]).toEqual([true, true, true, false]);
  });
});

describe('failureBrake()', () => {
  it('lets an address fail the limit, then asks it to wait until its minute is over; a new minute starts afresh', () => {
    let t = 0;
    const brake = failureBrake(3, () => t);
    expect([brake.fail('a'), brake.fail('a'), brake.fail('a')]).toEqual([null, null, null]);
    t = 20_000;
    expect(brake.fail('a')).toBe(40);
    expect(brake.fail('b')).toBeNull();
    t = 60_000;
    expect(brake.fail('a')).toBeNull();
  });
});

describe('idempotency_ttl', () => {
  it('may not outlive the tasks it points at', () => {
    expect(() => loadConfig({ env: { KVM_MIGRATE_API_IDEMPOTENCY_TTL: '700000' } })).toThrow(/api.idempotency_ttl: must be at most tasks.keep_finished/);
    expect(loadConfig({ env: { KVM_MIGRATE_API_IDEMPOTENCY_TTL: '600' } }).api.idempotency_ttl).toBe(600);
    // Left at its default, it follows a shorter retention.
    expect(loadConfig({ env: { KVM_MIGRATE_TASKS_KEEP_FINISHED: '3600' } }).api.idempotency_ttl).toBe(3600);
  });
});

describe('auth.tokens in config', () => {
  it('reads the comma form and the JSON form', () => {
    expect(parseTokens('a:viewer:tok:with:colons')).toEqual([{ name: 'a', role: 'viewer', token: 'tok:with:colons' }]);
    const c = loadConfig({ env: { KVM_MIGRATE_AUTH_TOKENS: '[{"name":"x","role":"operator","token":"0123456789abcdef"}]' } });
    expect(c.auth.tokens).toEqual([{ name: 'x', role: 'operator', token: '0123456789abcdef' }]);
  });
  it.each([
    ['x:admin:0123456789abcdef', /entry 1: the role must be viewer or operator/],
    ['x:viewer:short', /entry 1: the token must be 16-512/],
    ['x:viewer:0123456789abcdef,x:operator:0123456789abcdeg', /entry 2: the name is already used by entry 1/],
    ['[{"name":', /must be a JSON list/],
    // A comma inside a token splits it in the comma form: the piece after it must not be shown as a name.
    ['ops:operator:0123456789abcdef,SECRETPART:xyz', /entry 2: the role must be viewer or operator/],
    ['[{"name":"a","role":"viewer","token":"0123456789,abcdef"}]', /entry 1: the token must be .* without spaces or commas/],
  ])('refuses %s, naming the key and never echoing the token', (raw, msg) => {
    let err: Error | undefined;
    try {
      loadConfig({ env: { KVM_MIGRATE_AUTH_TOKENS: raw } });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(msg);
    expect(err?.message).toMatch(/auth\.tokens/);
    expect(err?.message).not.toContain('0123456789abcde');
    expect(err?.message).not.toContain('SECRETPART');
  });
});
