/**
 * Access control on every route, against a real API (in this process), real
 * Redis and libvirt's test driver: who may do what, that a refused request
 * changes nothing, security headers, CORS, rate limits, Idempotency-Key, and
 * that no token ever reaches a log line or an answer.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../api/idempotency.js';
import { validateMigrateBody } from '../api/validate.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

/** Every route the API has, and who may use it. A route missing here fails the first test. */
const ROUTES: { method: string; path: string; access: 'public' | 'viewer' | 'operator'; body?: unknown }[] = [
  { method: 'GET', path: '/health', access: 'public' },
  { method: 'GET', path: '/healthz', access: 'public' },
  { method: 'GET', path: '/readyz', access: 'public' },
  { method: 'GET', path: '/openapi.json', access: 'public' },
  { method: 'POST', path: '/vms/:name/migrate', access: 'operator', body: { remote_host: 'host2' } },
  { method: 'POST', path: '/vms/:name/migrate_cancel', access: 'operator' },
  { method: 'GET', path: '/tasks', access: 'viewer' },
  { method: 'GET', path: '/tasks/:id', access: 'viewer' },
  { method: 'DELETE', path: '/tasks/:id', access: 'operator' },
  { method: 'PATCH', path: '/tasks/:id', access: 'operator', body: { bandwidth: 8 } },
  { method: 'GET', path: '/tasks/:id/events', access: 'viewer' },
  { method: 'GET', path: '/tasks/:id/series', access: 'viewer' },
  { method: 'GET', path: '/peers', access: 'viewer' },
  { method: 'GET', path: '/metrics', access: 'viewer' },
  { method: 'GET', path: '/vms', access: 'viewer' },
  { method: 'GET', path: '/', access: 'viewer' },
  { method: 'GET', path: '/login', access: 'public' },
  { method: 'GET', path: '/login.js', access: 'public' },
  { method: 'GET', path: '/login.css', access: 'public' },
  { method: 'POST', path: '/session', access: 'public' },
  { method: 'DELETE', path: '/session', access: 'public' },
  { method: 'GET', path: '/session', access: 'viewer' },
];

let svc: InProc;
let taskId: string;

/** The routes Express has registered, as "METHOD path". */
function registered(app: unknown): string[] {
  const stack = (app as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router.stack;
  return stack.flatMap((l) => (l.route ? Object.keys(l.route.methods).filter((m) => m !== '_all').map((m) => `${m.toUpperCase()} ${l.route!.path}`) : []));
}

const concrete = (path: string) => path.replace(':name', 'test').replace(':id', taskId);

beforeAll(async () => {
  svc = await startInProc();
  const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
  expect(r.status).toBe(202);
  taskId = r.body.id;
});

afterAll(async () => {
  await svc?.close();
});

describe('routes and roles', () => {
  it('the table above lists every route the API registers', async () => {
    const { wireApi } = await import('../api/wiring.js');
    const wired = wireApi(svc.config, { info() {}, warn() {}, error() {}, debug() {} } as never, { now: () => new Date() });
    try {
      expect(registered(wired.app).sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    } finally {
      await wired.close();
    }
  });

  it('without a token, or with a wrong or malformed one, every route but /health answers 401 and changes nothing', async () => {
    const before = await svc.snapshot();
    for (const r of ROUTES.filter((x) => x.access !== 'public')) {
      for (const headers of [{} as Record<string, string>, { authorization: 'Bearer not-a-known-token-000000' }, { authorization: `Basic ${TOKENS.operator}` }, { authorization: 'Bearer' }]) {
        const res = await api(svc.url, r.method, concrete(r.path), r.body, { token: null, headers });
        expect(res.status, `${r.method} ${r.path} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.body.code).toBe('KMIG0020E');
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="kvm-migrate"/);
      }
    }
    // An unknown route does not tell a stranger whether it exists.
    expect((await api(svc.url, 'GET', '/secret/place', undefined, { token: null })).status).toBe(401);
    expect(await svc.snapshot()).toEqual(before);
  });

  it('a viewer reads every read route and gets 403 naming the role needed on every route that changes something; nothing changes', async () => {
    const before = await svc.snapshot();
    for (const r of ROUTES.filter((x) => x.access === 'operator')) {
      const res = await api(svc.url, r.method, concrete(r.path), r.body, { token: TOKENS.viewer });
      expect(res.status, `${r.method} ${r.path}`).toBe(403);
      expect(res.body.code).toBe('KMIG0021E');
      expect(res.body.reason).toMatch(/dash has role viewer; .* needs role operator/);
    }
    expect(await svc.snapshot()).toEqual(before);
    for (const r of ROUTES.filter((x) => x.access === 'viewer' && !x.path.endsWith('/events'))) {
      const res = await api(svc.url, r.method, concrete(r.path), undefined, { token: TOKENS.viewer });
      expect(res.status, `${r.method} ${r.path}`).toBe(200);
    }
    const ac = new AbortController();
    const events = await fetch(`${svc.url}/tasks/${taskId}/events`, { headers: { authorization: `Bearer ${TOKENS.viewer}` }, signal: ac.signal });
    expect(events.status).toBe(200);
    expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
    ac.abort();
  });

  it('an operator may do what a viewer may not', async () => {
    const res = await api(svc.url, 'PATCH', `/tasks/${taskId}`, { bandwidth: 8 });
    expect([200, 202]).toContain(res.status);
    expect((await api(svc.url, 'GET', '/health', undefined, { token: null })).status).toBe(200);
  });
});

describe('headers, CORS and sizes', () => {
  it('sets security headers and no CORS headers unless origins are configured', async () => {
    const res = await fetch(`${svc.url}/tasks`, { headers: { authorization: `Bearer ${TOKENS.viewer}`, origin: 'https://evil.example' } });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('x-powered-by')).toBeNull();
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${svc.url}/vms/test/migrate`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers CORS for the configured origins only', async () => {
    const other = await startInProc({ KVM_MIGRATE_API_CORS_ORIGINS: 'https://dash.example' });
    try {
      const ok = await fetch(`${other.url}/tasks`, { headers: { authorization: `Bearer ${TOKENS.viewer}`, origin: 'https://dash.example' } });
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://dash.example');
      // A page on that origin can read where the next page of tasks is.
      expect(ok.headers.get('access-control-expose-headers')).toBe('location,link,x-next-cursor');
      const no = await fetch(`${other.url}/tasks`, { headers: { authorization: `Bearer ${TOKENS.viewer}`, origin: 'https://evil.example' } });
      expect(no.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await other.close();
    }
  });

  it('refuses a body over 16 KiB with 413 before it is parsed', async () => {
    const res = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'h', pad: 'x'.repeat(20_000) });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('KMIG0009E');
  });
});

describe('rate limits on routes that change something', () => {
  it('gives 429 with Retry-After past the limit, per client, and never limits reads', async () => {
    const limited = await startInProc({ KVM_MIGRATE_API_RATE_LIMIT: '5' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) codes.push((await api(limited.url, 'POST', '/vms/test/migrate', { remote_host: 'bad host!' })).status);
      expect(codes).toEqual([400, 400, 400, 400, 400, 429, 429]);
      const last = await api(limited.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
      expect(last.body.code).toBe('KMIG0022E');
      expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
      for (let i = 0; i < 20; i++) expect((await api(limited.url, 'GET', '/tasks')).status).toBe(200);
      // Another client has its own budget.
      expect((await api(limited.url, 'POST', '/vms/test/migrate', { remote_host: 'bad host!' }, { token: TOKENS.operator2 })).status).toBe(400);
    } finally {
      await limited.close();
    }
  });

  it('answers a wrong token with 429 past auth.failure limit per address, while a right token still passes', async () => {
    const braked = await startInProc({ KVM_MIGRATE_API_AUTH_FAILURE_LIMIT: '5' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) codes.push((await api(braked.url, 'GET', '/tasks', undefined, { token: `guess-${i}-0123456789abcdef` })).status);
      expect(codes).toEqual([401, 401, 401, 401, 401, 429, 429]);
      const last = await api(braked.url, 'GET', '/tasks', undefined, { token: null });
      expect(last.body.code).toBe('KMIG0027E');
      expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await api(braked.url, 'GET', '/tasks')).status).toBe(200);
    } finally {
      await braked.close();
    }
  });
});

describe('event streams', () => {
  it('are bounded per client: past the limit 429, a closed stream frees its place, other clients have their own', async () => {
    const small = await startInProc({ KVM_MIGRATE_API_STREAMS_PER_CLIENT: '2' });
    const open: AbortController[] = [];
    const stream = async (token: string) => {
      const ac = new AbortController();
      const res = await fetch(`${small.url}/tasks/${id}/events`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
      if (res.status === 200) open.push(ac);
      else await res.text();
      return res.status;
    };
    let id = '';
    try {
      id = (await api(small.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' })).body.id;
      expect([await stream(TOKENS.viewer), await stream(TOKENS.viewer)]).toEqual([200, 200]);
      const third = await api(small.url, 'GET', `/tasks/${id}/events`, undefined, { token: TOKENS.viewer });
      expect(third.status).toBe(429);
      expect(third.body.code).toBe('KMIG0028E');
      expect(await stream(TOKENS.operator)).toBe(200);
      open.shift()!.abort();
      await new Promise((r) => setTimeout(r, 200));
      expect(await stream(TOKENS.viewer)).toBe(200);
    } finally {
      for (const ac of open) ac.abort();
      await small.close();
    }
  });
});

describe('writes from browsers', () => {
  it('refuses a cross-site write and a non-JSON body even with authentication off; same-origin and non-browser clients pass', async () => {
    const open = await startInProc({ KVM_MIGRATE_AUTH_ENABLED: 'false' });
    try {
      const before = await open.snapshot();
      const cross = await fetch(`${open.url}/vms/test/migrate_cancel`, { method: 'POST', headers: { origin: 'https://evil.example' } });
      expect(cross.status).toBe(403);
      expect(((await cross.json()) as { code: string }).code).toBe('KMIG0026E');
      const site = await fetch(`${open.url}/vms/test/migrate`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' }, body: '{"remote_host":"host2"}' });
      expect(site.status).toBe(403);
      // A "simple" form or text post (no preflight) never reaches the handler.
      const text = await fetch(`${open.url}/vms/test/migrate`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"remote_host":"host2"}' });
      expect(text.status).toBe(415);
      expect(((await text.json()) as { code: string }).code).toBe('KMIG0025E');
      expect(await open.snapshot()).toEqual(before);
      const same = await fetch(`${open.url}/vms/test/migrate`, { method: 'POST', headers: { origin: open.url, 'content-type': 'application/json' }, body: '{"remote_host":"host2"}' });
      expect(same.status).toBe(202);
    } finally {
      await open.close();
    }
  });
});

describe('Idempotency-Key', () => {
  it('repairs a claim left by a request that died between claiming the key and adding the job', async () => {
    const other = await startInProc();
    try {
      const id = '00000000-0000-4000-8000-000000000001';
      const print = fingerprint('test', validateMigrateBody({ remote_host: 'host2' }));
      const claim = `${other.prefix}:idem:${createHash('sha256').update('ops\0orphan-0003').digest('hex')}`;
      await other.redis.set(claim, JSON.stringify({ id, print }), 'EX', 3600);
      const t0 = Date.now();
      const retry = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: { 'idempotency-key': 'orphan-0003' } });
      expect(retry.status).toBe(202);
      expect(retry.body.id).toBe(id);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect((await api(other.url, 'GET', `/tasks/${id}`)).body.vm).toBe('test');
    } finally {
      await other.close();
    }
  });

  it('gives a retried request the same task, refuses the key for a different request, and agrees under concurrency', async () => {
    const other = await startInProc();
    try {
      const key = { 'idempotency-key': 'retry-me-0001' };
      const first = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: key });
      expect(first.status).toBe(202);
      const again = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: key });
      expect(again.status).toBe(202);
      expect(again.body.id).toBe(first.body.id);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      const changed = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host3' }, { headers: key });
      expect(changed.status).toBe(422);
      expect(changed.body.code).toBe('KMIG0023E');
      // Without the key, the VM is busy: 409 naming the task.
      const plain = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
      expect(plain.status).toBe(409);
      expect(plain.body.reason).toContain(first.body.id);
      // The task ends (cancelled while queued); the same key still means the same task, not a new migration.
      expect((await api(other.url, 'DELETE', `/tasks/${first.body.id}`)).status).toBe(200);
      const late = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: key });
      expect(late.body.id).toBe(first.body.id);
      expect(late.body.status).toBe('killed');
      // 30 concurrent sends of one new key: one task, all answers name it.
      const burst = await Promise.all(Array.from({ length: 30 }, () => api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: { 'idempotency-key': 'burst-0002' } })));
      expect(new Set(burst.map((b) => b.status))).toEqual(new Set([202]));
      expect(new Set(burst.map((b) => b.body.id)).size).toBe(1);
      const bad = await api(other.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' }, { headers: { 'idempotency-key': 'x'.repeat(300) } });
      expect(bad.status).toBe(400);
    } finally {
      await other.close();
    }
  });
});

describe('secrets', () => {
  it('no token appears in any log line or answer', async () => {
    // Log lines from every request above, wrong tokens included.
    const all = svc.logs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    for (const t of [...Object.values(TOKENS), 'not-a-known-token-000000']) expect(all).not.toContain(t);
    const res = await api(svc.url, 'GET', '/tasks/nope', undefined, { token: 'not-a-known-token-000000' });
    expect(JSON.stringify(res.body)).not.toContain('not-a-known-token');
  });
});
