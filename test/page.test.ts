/**
 * What the migrations page stands on, without a browser: its assets are
 * served (public, from this package and uPlot's), the page itself needs a
 * viewer, and GET /vms lists the source's guests for the start form.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, TOKENS } from './helpers/service.js';
import { startInProc, type InProc } from './helpers/inproc.js';

let svc: InProc;
beforeAll(async () => {
  svc = await startInProc();
});
afterAll(async () => {
  await svc?.close();
});

describe('page assets', () => {
  it.each([
    ['/ui/app.js', /javascript/],
    ['/ui/tasks.js', /javascript/],
    ['/ui/app.css', /text\/css/],
    ['/ui/vendor/uPlot.esm.js', /javascript/],
    ['/ui/vendor/uPlot.min.css', /text\/css/],
  ])('serves %s without a token', async (path, type) => {
    const res = await fetch(`${svc.url}${path}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(type);
    expect((await res.text()).length).toBeGreaterThan(100);
  });

  it('answers 404 with the catalogue code for an asset that is not there, and never serves files outside the page', async () => {
    for (const path of ['/ui/nope.js', '/ui/vendor/nope.js']) {
      const res = await fetch(`${svc.url}${path}`);
      expect(res.status, path).toBe(404);
      const body = (await res.json()) as { code: string; reason: string };
      expect(body.code).toBe('KMIG0008E');
      // Where the files live on this server is nobody's business.
      expect(body.reason).not.toMatch(/public|node_modules|ENOENT/);
    }
    for (const path of ['/ui/..%2f..%2fpackage.json', '/ui/vendor/..%2f..%2fpackage.json', '/ui/%2e%2e/%2e%2e/package.json']) {
      const res = await fetch(`${svc.url}${path}`);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(await res.text()).not.toMatch(/"dependencies"/);
    }
  });

  it('keeps helmet\'s Content-Security-Policy on the page: scripts from this origin only', async () => {
    const res = await fetch(`${svc.url}/`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'self'(;|$)/);
    const html = await res.text();
    expect(html).toMatch(/<script type="module" src="\/ui\/app.js"><\/script>/);
    // No inline script: the policy would block it.
    expect(html).not.toMatch(/<script>(?!<\/script>)/);
  });

  it('does not serve the page to a client without credentials', async () => {
    const res = await fetch(`${svc.url}/`, { redirect: 'manual' });
    expect([303, 401]).toContain(res.status);
  });
});

describe('GET /vms', () => {
  it("lists the source's guests with their state and no running migration", async () => {
    const res = await api(svc.url, 'GET', '/vms', undefined, { token: TOKENS.viewer });
    expect(res.status).toBe(200);
    // The test:///default driver has exactly one guest, "test", running and persistent.
    expect(res.body).toEqual([{ name: 'test', uuid: expect.stringMatching(/^[0-9a-f-]{36}$/), state: 'running', persistent: true, migration: null }]);
  });

  it('needs a token', async () => {
    const res = await api(svc.url, 'GET', '/vms', undefined, { token: null });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('KMIG0020E');
  });
});
