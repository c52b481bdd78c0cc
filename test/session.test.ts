/**
 * Browser sessions: the pure rules (cookie Secure, the cross-site refusal of
 * cookie writes, which requests are sent to log in, where the login page may
 * go next) as tables, and the whole flow against a real API in this process
 * with real Redis: log in, the cookie and its Redis entry, reading with only
 * the cookie, the failure brake shared with bearer tokens, logging out, and
 * what a cookie may and may not write.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSessionId, tokenTag, wantsLoginPage } from '../api/auth.js';
import { crossSiteRefusal, publicOrigin } from '../api/guards.js';
import { safeNext } from '../api/public/login.js';
import { cookieSecure, sessionKey } from '../api/session.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

describe('cookieSecure()', () => {
  it.each([
    ['auto', false, undefined, false],
    ['auto', true, undefined, true],
    ['auto', false, 'https', true],
    ['auto', false, 'HTTPS, http', true],
    ['auto', false, 'http, https', false],
    ['always', false, undefined, true],
    ['never', true, 'https', false],
  ] as const)('%s, TLS socket %s, X-Forwarded-Proto %s → %s', (setting, tls, fwd, secure) => {
    expect(cookieSecure(setting, tls, fwd)).toBe(secure);
  });
});

describe('crossSiteRefusal()', () => {
  const own = 'http://api.example:8010';
  const allowed = new Set(['https://dash.example']);
  const base = { own, allowed, origin: undefined as string | undefined, fetchSite: undefined as string | undefined };
  it.each([
    // method, origin, Sec-Fetch-Site, via session, refused
    ['GET', 'https://evil.example', 'cross-site', true, false],
    ['POST', undefined, undefined, false, false],
    ['POST', 'https://evil.example', undefined, false, true],
    ['POST', 'https://dash.example', undefined, false, false],
    ['POST', undefined, 'cross-site', false, true],
    ['POST', undefined, undefined, true, true],
    ['DELETE', undefined, undefined, true, true],
    ['POST', own, undefined, true, false],
    ['POST', undefined, 'same-origin', true, false],
    ['POST', own, 'same-origin', true, false],
    ['POST', undefined, 'same-site', true, true],
    ['POST', undefined, 'none', true, true],
    ['POST', own, 'cross-site', true, true],
    ['POST', 'https://dash.example', undefined, true, true],
    // Sec-Fetch-Site: same-origin is the browser's own word and no page can set it: it settles the question
    // before Origin is compared (behind a TLS proxy the API's idea of its origin is not the browser's).
    ['PATCH', 'https://evil.example', 'same-origin', true, false],
    ['POST', 'https://api.example', 'same-origin', true, false],
    ['POST', 'https://api.example', undefined, true, true],
    ['POST', 'https://api.example', undefined, false, true],
  ] as const)('%s Origin %s Sec-Fetch-Site %s session %s → refused %s', (method, origin, fetchSite, viaSession, refused) => {
    expect(crossSiteRefusal({ ...base, method, origin, fetchSite, viaSession }) !== null).toBe(refused);
  });

  // api.public_origin: the origin browsers use behind a proxy, for those that send no Sec-Fetch-Site.
  it.each([
    // Origin, Sec-Fetch-Site, via session, refused
    ['https://api.example', undefined, true, false],
    ['https://api.example', undefined, false, false],
    [own, undefined, true, false],
    ['https://evil.example', undefined, true, true],
    ['https://evil.example', undefined, false, true],
    ['https://api.example', 'cross-site', true, true],
    ['https://api.example', 'same-site', true, true],
    [undefined, undefined, true, true],
  ] as const)('public origin https://api.example: Origin %s Sec-Fetch-Site %s session %s → refused %s', (origin, fetchSite, viaSession, refused) => {
    expect(crossSiteRefusal({ ...base, method: 'POST', origin, fetchSite, viaSession, publicOrigin: 'https://api.example' }) !== null).toBe(refused);
  });

  it('takes api.public_origin as browsers write an Origin', () => {
    expect(publicOrigin('https://Migrate.Example.com:443')).toBe('https://migrate.example.com');
    expect(publicOrigin('http://migrate.example.com:8080')).toBe('http://migrate.example.com:8080');
    expect(publicOrigin('')).toBe('');
  });
});

describe('wantsLoginPage()', () => {
  const html = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
  it.each([
    ['GET', '/', html, true],
    ['GET', '/admin/queues', html, true],
    ['GET', '/admin/queues/queue/migrations', html, true],
    ['GET', '/admin/queuesX', html, false],
    ['GET', '/tasks', html, false],
    ['GET', '/', '*/*', false],
    ['GET', '/', 'application/json', false],
    ['GET', '/', undefined, false],
    ['POST', '/', html, false],
    ['GET', '/admin/queues/api/queues', 'application/json', false],
  ] as const)('%s %s Accept %s → %s', (method, path, accept, page) => {
    expect(wantsLoginPage(method, path, accept)).toBe(page);
  });
});

describe('safeNext() of the login page', () => {
  const origin = 'http://api.example:8010';
  it.each([
    ['/', '/'],
    ['/admin/queues', '/admin/queues'],
    ['/admin/queues/queue/migrations?status=failed#x', '/admin/queues/queue/migrations?status=failed#x'],
    ['/tasks/../admin', '/admin'],
    [null, '/'],
    ['', '/'],
    ['admin', '/'],
    ['//evil.example/', '/'],
    ['/\\evil.example', '/'],
    ['https://evil.example/', '/'],
    ['javascript:alert(1)', '/'],
    ['/\tevil', '/'],
    [' /admin', '/'],
  ])('%j → %j', (raw, next) => {
    expect(safeNext(raw, origin)).toBe(next);
  });
});

describe('isSessionId()', () => {
  it('takes 43 base64url characters (256 bits) and nothing else', () => {
    expect(isSessionId('A'.repeat(43))).toBe(true);
    expect(isSessionId('a-_0'.repeat(10) + 'abc')).toBe(true);
    for (const v of ['A'.repeat(42), 'A'.repeat(44), `${'A'.repeat(42)}=`, `${'A'.repeat(42)}/`, 42, undefined]) expect(isSessionId(v)).toBe(false);
  });
});

/** A cookie as the browser keeps it: value and attributes. */
function parseSetCookie(header: string): { name: string; value: string; attrs: Record<string, string | true> } {
  const [pair, ...rest] = header.split(';').map((s) => s.trim());
  const [name, value] = [pair!.slice(0, pair!.indexOf('=')), pair!.slice(pair!.indexOf('=') + 1)];
  const attrs: Record<string, string | true> = {};
  for (const a of rest) {
    const i = a.indexOf('=');
    attrs[(i < 0 ? a : a.slice(0, i)).toLowerCase()] = i < 0 ? true : a.slice(i + 1);
  }
  return { name, value, attrs };
}

async function login(url: string, token: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/session`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ token }) });
  const body = (await res.json()) as Record<string, string>;
  const set = res.headers.getSetCookie();
  const cookie = set.length ? parseSetCookie(set[0]!) : null;
  return { status: res.status, body, cookie, headers: res.headers };
}

const withCookie = (id: string, headers: Record<string, string> = {}) => ({ token: null, headers: { cookie: `kvm_migrate_session=${id}`, ...headers } });

let svc: InProc;

beforeAll(async () => {
  svc = await startInProc({ KVM_MIGRATE_AUTH_SESSION_TTL: '3600' });
});

afterAll(async () => {
  await svc?.close();
});

describe('logging in', () => {
  it('answers 201 with who and until when, sets the cookie right, and keeps only a digest of a random id in Redis for the TTL', async () => {
    const t0 = Date.now();
    const r = await login(svc.url, TOKENS.viewer);
    expect(r.status).toBe(201);
    expect(r.body).toEqual({ name: 'dash', role: 'viewer', expires_at: expect.any(String) });
    expect(Math.abs(Date.parse(r.body.expires_at!) - (t0 + 3600_000))).toBeLessThan(5000);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const c = r.cookie!;
    expect(c.name).toBe('kvm_migrate_session');
    expect(isSessionId(c.value)).toBe(true);
    expect(c.attrs).toMatchObject({ httponly: true, samesite: 'Strict', path: '/', 'max-age': '3600' });
    expect(c.attrs.secure).toBeUndefined();
    const key = `${svc.prefix}:session:${createHash('sha256').update(c.value).digest('hex')}`;
    expect(key).toBe(sessionKey(svc.prefix, c.value));
    expect(JSON.parse((await svc.redis.get(key))!)).toEqual({ name: 'dash', role: 'viewer', expires_at: r.body.expires_at, tag: tokenTag(TOKENS.viewer) });
    expect(tokenTag(TOKENS.viewer)).toMatch(/^[0-9a-f]{8}$/);
    const ttl = await svc.redis.ttl(key);
    expect(ttl).toBeGreaterThan(3590);
    expect(ttl).toBeLessThanOrEqual(3600);
    // Neither the token nor the id itself is anywhere in Redis.
    const all = JSON.stringify(await svc.snapshot());
    expect(all).not.toContain(TOKENS.viewer);
    expect(all).not.toContain(c.value);
    // Two logins, two sessions.
    expect((await login(svc.url, TOKENS.viewer)).cookie!.value).not.toBe(c.value);
  });

  it('marks the cookie Secure when the login came over https (X-Forwarded-Proto) or config says always, and never when it says never', async () => {
    expect((await login(svc.url, TOKENS.viewer, { 'x-forwarded-proto': 'https' })).cookie!.attrs.secure).toBe(true);
    for (const [setting, secure] of [['always', true], ['never', undefined]] as const) {
      const other = await startInProc({ KVM_MIGRATE_AUTH_COOKIE_SECURE: setting });
      try {
        expect((await login(other.url, TOKENS.viewer, { 'x-forwarded-proto': 'https' })).cookie!.attrs.secure).toBe(secure);
      } finally {
        await other.close();
      }
    }
  });

  it('works with only the cookie: GET /session says who, reads pass, and the event stream opens', async () => {
    const { cookie, body } = await login(svc.url, TOKENS.viewer);
    const who = await api(svc.url, 'GET', '/session', undefined, withCookie(cookie!.value));
    expect(who.status).toBe(200);
    expect(who.body).toEqual({ name: 'dash', role: 'viewer', expires_at: body.expires_at });
    expect((await api(svc.url, 'GET', '/tasks', undefined, withCookie(cookie!.value))).status).toBe(200);
    // A bearer client asking who it is: no session, no expiry.
    expect((await api(svc.url, 'GET', '/session', undefined, { token: TOKENS.operator })).body).toEqual({ name: 'ops', role: 'operator', expires_at: null });
  });

  it('refuses a wrong, missing or malformed token with 401 and changes nothing; only JSON, at most 16 KiB', async () => {
    const before = await svc.snapshot();
    for (const body of [{ token: 'not-a-known-token-000000' }, {}, { token: 42 }, { token: '' }, { token: 'x'.repeat(513) }, [], { token: [TOKENS.viewer] }]) {
      const res = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe('KMIG0020E');
      expect(res.headers.getSetCookie()).toEqual([]);
    }
    const form = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKENS.viewer}` });
    expect(form.status).toBe(415);
    const big = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKENS.viewer, pad: 'x'.repeat(20_000) }) });
    expect(big.status).toBe(413);
    const cross = await login(svc.url, TOKENS.viewer, { origin: 'https://evil.example' });
    expect(cross.status).toBe(403);
    expect(cross.cookie).toBeNull();
    expect(await svc.snapshot()).toEqual(before);
  });

  it('is under the same failure brake as bearer tokens: past the limit 429, while a right token still logs in', async () => {
    const braked = await startInProc({ KVM_MIGRATE_API_AUTH_FAILURE_LIMIT: '4' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 2; i++) codes.push((await api(braked.url, 'GET', '/tasks', undefined, { token: `guess-${i}-0123456789abcdef` })).status);
      for (let i = 0; i < 2; i++) codes.push((await login(braked.url, `guess-${i}-0123456789abcdef`)).status);
      codes.push((await api(braked.url, 'GET', '/tasks', undefined, withCookie('B'.repeat(43)))).status);
      const last = await login(braked.url, 'guess-x-0123456789abcdef');
      codes.push(last.status);
      expect(codes).toEqual([401, 401, 401, 401, 429, 429]);
      expect(last.body.code).toBe('KMIG0027E');
      expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await login(braked.url, TOKENS.viewer)).status).toBe(201);
    } finally {
      await braked.close();
    }
  });
});

describe('a session ends', () => {
  it('at logout: the Redis entry is gone, the cookie expires, and the old id no longer works', async () => {
    const { cookie } = await login(svc.url, TOKENS.operator);
    const id = cookie!.value;
    const out = await fetch(`${svc.url}/session`, { method: 'DELETE', headers: { cookie: `kvm_migrate_session=${id}`, origin: svc.url } });
    expect(out.status).toBe(204);
    const cleared = parseSetCookie(out.headers.getSetCookie()[0]!);
    expect(cleared.name).toBe('kvm_migrate_session');
    expect(cleared.value).toBe('');
    expect(Date.parse(String(cleared.attrs.expires))).toBeLessThan(Date.now());
    expect(await svc.redis.exists(sessionKey(svc.prefix, id))).toBe(0);
    const after = await api(svc.url, 'GET', '/session', undefined, withCookie(id));
    expect(after.status).toBe(401);
    expect(after.body.code).toBe('KMIG0020E');
    expect(after.body.reason).toMatch(/session is not valid or has expired/);
  });

  it('when Redis lets it expire, and when its token is gone from config, has another role now, or was replaced under the same name', async () => {
    const { cookie } = await login(svc.url, TOKENS.viewer);
    await svc.redis.expire(sessionKey(svc.prefix, cookie!.value), 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await api(svc.url, 'GET', '/session', undefined, withCookie(cookie!.value))).status).toBe(401);
    const stored = async (i: number, record: object) => {
      const id = String(i).repeat(43);
      await svc.redis.set(sessionKey(svc.prefix, id), JSON.stringify({ ...record, expires_at: new Date(Date.now() + 60_000).toISOString() }), 'EX', 60);
      return (await api(svc.url, 'GET', '/session', undefined, withCookie(id))).status;
    };
    // The record as a login writes it holds; each way of no longer matching the configured tokens does not.
    expect(await stored(0, { name: 'dash', role: 'viewer', tag: tokenTag(TOKENS.viewer) })).toBe(200);
    expect(await stored(1, { name: 'ghost', role: 'operator', tag: tokenTag('ghost-token-0123456789') })).toBe(401);
    expect(await stored(2, { name: 'dash', role: 'operator', tag: tokenTag(TOKENS.viewer) })).toBe(401);
    expect(await stored(3, { name: 'dash', role: 'viewer', tag: tokenTag('an-older-dash-token-0123') })).toBe(401);
    expect(await stored(4, { name: 'dash', role: 'viewer' })).toBe(401);
  });
});

describe('what a cookie may write', () => {
  let operator: string;
  let viewer: string;
  beforeAll(async () => {
    operator = (await login(svc.url, TOKENS.operator)).cookie!.value;
    viewer = (await login(svc.url, TOKENS.viewer)).cookie!.value;
  });

  it('a write with a session cookie but neither Origin nor Sec-Fetch-Site: same-origin is refused with 403 KMIG0026E, and changes nothing', async () => {
    const before = await svc.snapshot();
    for (const headers of <Record<string, string>[]>[{}, { 'sec-fetch-site': 'same-site' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }, { origin: 'null' }]) {
      const res = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, withCookie(operator, headers));
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.body.code).toBe('KMIG0026E');
    }
    const del = await api(svc.url, 'DELETE', '/session', undefined, withCookie(operator));
    expect(del.status).toBe(403);
    expect(await svc.snapshot()).toEqual(before);
  });

  it("passes from the API's own pages (same Origin, or Sec-Fetch-Site: same-origin)", async () => {
    const a = await api(svc.url, 'POST', '/vms/test/migrate_cancel', undefined, withCookie(operator, { origin: svc.url }));
    expect(a.body.code).toBe('KMIG0011E');
    const b = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, withCookie(operator, { 'sec-fetch-site': 'same-origin' }));
    expect(b.status).toBe(202);
    expect((await api(svc.url, 'DELETE', `/tasks/${b.body.id}`, undefined, withCookie(operator, { origin: svc.url }))).status).toBe(200);
  });

  it("a viewer's session may not write, even from the API's own pages", async () => {
    const res = await api(svc.url, 'POST', '/vms/test/migrate_cancel', undefined, withCookie(viewer, { origin: svc.url, 'sec-fetch-site': 'same-origin' }));
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('KMIG0021E');
  });

  it('bearer clients are unaffected, and a bearer header wins over a cookie', async () => {
    expect((await api(svc.url, 'POST', '/vms/test/migrate_cancel', undefined, { token: TOKENS.operator })).body.code).toBe('KMIG0011E');
    // A viewer's cookie does not lower an operator's bearer token, nor does a cookie need an Origin then.
    expect((await api(svc.url, 'POST', '/vms/test/migrate_cancel', undefined, { token: TOKENS.operator, headers: { cookie: `kvm_migrate_session=${viewer}` } })).body.code).toBe('KMIG0011E');
    // An operator's cookie does not rescue a wrong bearer token.
    const wrong = await api(svc.url, 'GET', '/tasks', undefined, { token: 'not-a-known-token-000000', headers: { cookie: `kvm_migrate_session=${operator}` } });
    expect(wrong.status).toBe(401);
  });
});

describe('behind a TLS-terminating proxy', () => {
  // What a browser on https://migrate.example sends through a proxy to the API's plain HTTP port.
  const viaProxy = { 'x-forwarded-proto': 'https', origin: 'https://migrate.example' };

  it('a browser that sends Sec-Fetch-Site: same-origin logs in and writes, whatever the API takes its own origin to be', async () => {
    const r = await login(svc.url, TOKENS.operator, { ...viaProxy, 'sec-fetch-site': 'same-origin' });
    expect(r.status).toBe(201);
    expect(r.cookie!.attrs.secure).toBe(true);
    const write = await api(svc.url, 'POST', '/vms/test/migrate_cancel', undefined, withCookie(r.cookie!.value, { ...viaProxy, 'sec-fetch-site': 'same-origin' }));
    expect(write.body.code).toBe('KMIG0011E');
    // Without Sec-Fetch-Site and without api.public_origin, that Origin is not the API's.
    const bare = await login(svc.url, TOKENS.operator, viaProxy);
    expect(bare.status).toBe(403);
    expect(bare.body.code).toBe('KMIG0026E');
  });

  it('with api.public_origin, a browser that sends only Origin logs in and writes; another origin is still refused', async () => {
    const proxied = await startInProc({ KVM_MIGRATE_API_PUBLIC_ORIGIN: 'https://migrate.example' });
    try {
      const r = await login(proxied.url, TOKENS.operator, viaProxy);
      expect(r.status).toBe(201);
      const id = r.cookie!.value;
      expect((await api(proxied.url, 'POST', '/vms/test/migrate_cancel', undefined, withCookie(id, viaProxy))).body.code).toBe('KMIG0011E');
      // The origin the request names itself still counts (a browser on the API's own address).
      expect((await api(proxied.url, 'POST', '/vms/test/migrate_cancel', undefined, withCookie(id, { origin: proxied.url }))).body.code).toBe('KMIG0011E');
      const before = await proxied.snapshot();
      for (const headers of <Record<string, string>[]>[{ origin: 'https://evil.example' }, { origin: 'http://migrate.example' }, { ...viaProxy, 'sec-fetch-site': 'cross-site' }, { ...viaProxy, 'sec-fetch-site': 'same-site' }, {}]) {
        const res = await api(proxied.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, withCookie(id, headers));
        expect(res.status, JSON.stringify(headers)).toBe(403);
        expect(res.body.code).toBe('KMIG0026E');
      }
      const evil = await login(proxied.url, TOKENS.operator, { origin: 'https://evil.example' });
      expect(evil.status).toBe(403);
      expect(evil.cookie).toBeNull();
      expect(await proxied.snapshot()).toEqual(before);
    } finally {
      await proxied.close();
    }
  });
});

describe('browsers without credentials', () => {
  const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
  it('are sent to /login with where they were going, from / and the dashboard; API clients get JSON 401', async () => {
    for (const [path, next] of [['/', '%2F'], ['/admin/queues', '%2Fadmin%2Fqueues'], ['/admin/queues/queue/migrations?status=failed', '%2Fadmin%2Fqueues%2Fqueue%2Fmigrations%3Fstatus%3Dfailed']]) {
      const res = await fetch(`${svc.url}${path}`, { headers: html, redirect: 'manual' });
      expect(res.status, path).toBe(303);
      expect(res.headers.get('location')).toBe(`/login?next=${next}`);
      // An expired session is sent there too.
      const stale = await fetch(`${svc.url}${path}`, { headers: { ...html, cookie: `kvm_migrate_session=${'C'.repeat(43)}` }, redirect: 'manual' });
      expect(stale.status).toBe(303);
    }
    for (const [path, headers] of [['/', {}], ['/admin/queues', { accept: 'application/json' }], ['/tasks', html]] as const) {
      const res = await api(svc.url, 'GET', path, undefined, { token: null, headers });
      expect(res.status, path).toBe(401);
      expect(res.body.code).toBe('KMIG0020E');
    }
  });

  it('get a login page whose script is a file of this origin (the CSP forbids inline script)', async () => {
    const page = await fetch(`${svc.url}/login`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const text = await page.text();
    expect(text).toContain('<script type="module" src="/login.js"></script>');
    expect(text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    const js = await fetch(`${svc.url}/login.js`);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect(await js.text()).toContain('export function safeNext');
    expect((await fetch(`${svc.url}/login.css`)).headers.get('content-type')).toMatch(/^text\/css/);
  });
});

describe('with authentication off', () => {
  it('logging in needs no token and leaves no cookie: everyone is an operator already', async () => {
    const open = await startInProc({ KVM_MIGRATE_AUTH_ENABLED: 'false' });
    try {
      const r = await login(open.url, 'anything');
      expect(r.status).toBe(201);
      expect(r.body).toEqual({ name: 'anonymous', role: 'operator', expires_at: null });
      expect(r.cookie).toBeNull();
    } finally {
      await open.close();
    }
  });
});
