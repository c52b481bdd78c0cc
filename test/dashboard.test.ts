/**
 * The queue dashboard at /admin/queues, against a real API in this process
 * and real Redis: refused without credentials, read-only for a viewer (its
 * writes refused by our own authorization, the queue unchanged), full for
 * an operator, and never showing a secret: URIs with credentials in job data,
 * lock keys, failure reasons and logs come out redacted. One real Chromium
 * logs in through /login with a viewer token and renders the board with no
 * Content-Security-Policy complaint (screenshot: test-results/dashboard.png).
 */
import { mkdirSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobLabel } from '../api/dashboard.js';
import { redactDeep, redactText, redactUri } from '../shared/redact.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

describe('redaction', () => {
  it.each([
    ['qemu+ssh://root:hunter2@host2/system?keyfile=/etc/k&no_verify=1', 'qemu+ssh://[redacted]@host2/system?keyfile=[redacted]&no_verify=[redacted]'],
    ['qemu+tcp://host2/system', 'qemu+tcp://host2/system'],
    ['qemu+tls://user@[fd00::2]:16514/system?pkipath=/pki', 'qemu+tls://[redacted]@[fd00::2]:16514/system?pkipath=[redacted]'],
    ['test:///default', 'test:///default'],
    ['redis://:pw@127.0.0.1:6379/0', 'redis://[redacted]@127.0.0.1:6379/0'],
    ['qemu+ssh://a@b@host/system#frag', 'qemu+ssh://[redacted]@host/system#frag'],
    ['qemu:///system?socket', 'qemu:///system?socket'],
  ])('redactUri(%s)', (uri, out) => {
    expect(redactUri(uri)).toBe(out);
  });

  it('finds URIs inside text and keys that name secrets anywhere in a value', () => {
    expect(redactText('Cannot connect to qemu+ssh://u:p@h/system?keyfile=/k: refused (vm:qemu+ssh://u:p@h/system:lab-tiny)')).toBe(
      'Cannot connect to qemu+ssh://[redacted]@h/system?keyfile=[redacted] refused (vm:qemu+ssh://[redacted]@h/system:lab-tiny)',
    );
    const v = { request: { vm: 'lab-tiny', destinationUri: 'qemu+ssh://u:p@h/system' }, token: 't', auth: { Authorization: 'Bearer x', password: 'p' }, idempotencyKey: 'k', principal: { name: 'ops' }, list: ['x://u:p@h'], n: 3, ok: true, none: null };
    expect(redactDeep(v)).toEqual({
      request: { vm: 'lab-tiny', destinationUri: 'qemu+ssh://[redacted]@h/system' },
      token: '[redacted]',
      auth: { Authorization: '[redacted]', password: '[redacted]' },
      idempotencyKey: '[redacted]',
      principal: '[redacted]',
      list: ['x://[redacted]@h'],
      n: 3,
      ok: true,
      none: null,
    });
  });

  it('names a job by its VM and destination', () => {
    expect(jobLabel({ name: 'migrate', data: { request: { vm: 'lab-tiny', remoteHost: '127.0.0.12' } } })).toBe('migrate lab-tiny → 127.0.0.12');
    expect(jobLabel({ name: 'other', data: {} })).toBe('other');
  });
});

/** What must never reach a browser from the jobs below. */
const SECRETS = ['hunter2', 'root:', 's3cret', 'admin:', '/etc/kvm-migrate/secret-key', 'id_src', 'idem-secret-42', TOKENS.operator, TOKENS.viewer];
const SOURCE = 'qemu+ssh://admin:s3cret@src.example/system?keyfile=/root/.ssh/id_src';

let svc: InProc;
let conn: Redis;
let queue: Queue;
let taskId: string;
const failedId = 'failed-1';
const board = (path: string) => `/admin/queues${path}`;
const asViewer = { token: TOKENS.viewer };

beforeAll(async () => {
  svc = await startInProc({ KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE: 'qemu+ssh://root:hunter2@{host}/system?keyfile=/etc/kvm-migrate/secret-key&no_verify=1' });
  conn = new Redis(svc.config.redis.url, { maxRetriesPerRequest: null });
  queue = new Queue(svc.config.redis.queue, { connection: conn, prefix: svc.prefix });
  // A failed job whose source URI, lock key, failure and log carry credentials, and whose data has fields named like secrets.
  const job = await queue.add(
    'migrate',
    { request: { vm: 'lab-disk', remoteHost: 'dst.example', sourceUri: SOURCE, destinationUri: 'qemu+tcp://dst.example/system' }, idempotencyKey: 'idem-secret-42', principal: { name: 'ops', token: TOKENS.operator } },
    { jobId: failedId, attempts: 1, deduplication: { id: `vm:${SOURCE}:lab-disk` } },
  );
  await job.log(`connecting to ${SOURCE}`);
  const worker = new Worker(svc.config.redis.queue, null, { connection: conn, prefix: svc.prefix, autorun: false });
  const taken = await worker.getNextJob('test-lock');
  expect(taken?.id).toBe(failedId);
  await taken!.moveToFailed(new Error(`cannot reach ${SOURCE}`), 'test-lock', false);
  await worker.close();
  const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
  expect(r.status).toBe(202);
  taskId = r.body.id;
});

afterAll(async () => {
  await queue?.close();
  conn?.disconnect();
  await svc?.close();
});

describe('without credentials', () => {
  it('API clients get JSON 401, browsers are sent to log in, and nothing changes', async () => {
    const before = await svc.snapshot();
    for (const [method, path] of [['GET', '/'], ['GET', '/api/queues'], ['GET', '/static/favicon.ico'], ['PUT', '/api/queues/migrations/pause'], ['PUT', `/api/queues/migrations/${failedId}/clean`]]) {
      const res = await api(svc.url, method!, board(path!), undefined, { token: null });
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(res.body.code).toBe('KMIG0020E');
    }
    const nav = await fetch(`${svc.url}${board('')}`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(nav.status).toBe(303);
    expect(nav.headers.get('location')).toBe('/login?next=%2Fadmin%2Fqueues');
    expect(await svc.snapshot()).toEqual(before);
  });
});

describe('a viewer', () => {
  it("gets bull-board's page with helmet's Content-Security-Policy unchanged and no third-party font", async () => {
    const res = await fetch(`${svc.url}${board('')}`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('x-powered-by')).toBeNull();
    const tasks = await fetch(`${svc.url}/tasks`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } });
    expect(res.headers.get('content-security-policy')).toBe(tasks.headers.get('content-security-policy'));
    const html = await res.text();
    expect(html).toContain('<base href="/admin/queues/"');
    expect(html).not.toContain('googleapis');
    const script = /<script defer src="([^"]+)"/.exec(html)![1]!;
    const asset = await fetch(`${svc.url}${board(`/${script}`)}`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } });
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toMatch(/javascript/);
  });

  it('sees the queue read-only with its jobs, their data redacted', async () => {
    const res = await api(svc.url, 'GET', board('/api/queues?activeQueue=migrations&status=latest&page=1&jobsPerPage=10'), undefined, asViewer);
    expect(res.status).toBe(200);
    const [q] = res.body.queues;
    expect(q).toMatchObject({ name: 'migrations', readOnlyMode: true, allowRetries: false, isPaused: false, counts: { waiting: 1, failed: 1 } });
    const mine = q.jobs.find((j: { id: string }) => j.id === taskId);
    expect(mine.name).toBe('migrate test → host2');
    expect(mine.data.request).toMatchObject({ vm: 'test', remoteHost: 'host2', sourceUri: 'test:///default', destinationUri: 'qemu+ssh://[redacted]@host2/system?keyfile=[redacted]&no_verify=[redacted]' });
    const failed = q.jobs.find((j: { id: string }) => j.id === failedId);
    expect(failed.data).toMatchObject({ request: { sourceUri: 'qemu+ssh://[redacted]@src.example/system?keyfile=[redacted]' }, idempotencyKey: '[redacted]', principal: '[redacted]' });
    expect(failed.failedReason).toBe('cannot reach qemu+ssh://[redacted]@src.example/system?keyfile=[redacted]');
    expect(failed.opts.deduplication.id).toBe('vm:qemu+ssh://[redacted]@src.example/system?keyfile=[redacted]');
    const text = JSON.stringify(res.body);
    for (const s of SECRETS) expect(text, s).not.toContain(s);
  });

  it("reads one job and its log redacted the same way", async () => {
    const job = await api(svc.url, 'GET', board(`/api/queues/migrations/${failedId}`), undefined, asViewer);
    expect(job.status).toBe(200);
    expect(job.body.status).toBe('failed');
    const logs = await api(svc.url, 'GET', board(`/api/queues/migrations/${failedId}/logs`), undefined, asViewer);
    expect(logs.status).toBe(200);
    expect(JSON.stringify(logs.body)).toContain('connecting to qemu+ssh://[redacted]@src.example/system?keyfile=[redacted]');
    for (const s of SECRETS) expect(JSON.stringify([job.body, logs.body]), s).not.toContain(s);
  });

  it("cannot write through the board's API: 403 KMIG0021E from our own authorization, with a token or a session, and the queue is unchanged", async () => {
    const login = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKENS.viewer }) });
    const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
    const writes: [string, string, unknown?][] = [
      ['PUT', '/api/queues/migrations/pause'],
      ['PUT', '/api/queues/pause'],
      ['PUT', '/api/queues/migrations/resume'],
      ['PUT', `/api/queues/migrations/${failedId}/retry`],
      ['PUT', '/api/queues/migrations/retry/failed'],
      ['PUT', '/api/queues/migrations/clean/failed'],
      ['PUT', `/api/queues/migrations/${taskId}/clean`],
      ['PUT', '/api/queues/migrations/promote'],
      ['PUT', '/api/queues/migrations/empty'],
      ['PUT', '/api/queues/migrations/obliterate', { force: true }],
      ['POST', '/api/queues/migrations/add', { name: 'migrate', data: {} }],
      ['PATCH', `/api/queues/migrations/${taskId}/update-data`, { data: {} }],
    ];
    const before = await svc.snapshot();
    for (const [method, path, body] of writes) {
      for (const opts of [asViewer, { token: null, headers: { cookie, origin: svc.url, 'sec-fetch-site': 'same-origin' } }]) {
        const res = await api(svc.url, method, board(path), body, opts);
        expect(res.status, `${method} ${path}`).toBe(403);
        expect(res.body.code).toBe('KMIG0021E');
      }
    }
    expect(await svc.snapshot()).toEqual(before);
    expect(await queue.isPaused()).toBe(false);
    expect(await queue.getJobState(failedId)).toBe('failed');
  });
});

describe('an operator', () => {
  it('gets the full board and may pause, resume and remove, with a token or from the page with a session', async () => {
    const res = await api(svc.url, 'GET', board('/api/queues'), undefined, { token: TOKENS.operator });
    // Retries are refused (api/dashboard-guard.ts), so the board shows no retry button either.
    expect(res.body.queues[0]).toMatchObject({ name: 'migrations', readOnlyMode: false, allowRetries: false });
    for (const s of SECRETS) expect(JSON.stringify(res.body), s).not.toContain(s);

    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/pause'))).status).toBe(200);
    expect(await queue.isPaused()).toBe(true);
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/resume'))).status).toBe(200);
    expect(await queue.isPaused()).toBe(false);

    const login = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKENS.operator }) });
    const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
    // From anywhere but the API's own pages, a session cookie changes nothing.
    const bare = await api(svc.url, 'PUT', board(`/api/queues/migrations/${failedId}/clean`), undefined, { token: null, headers: { cookie } });
    expect(bare.status).toBe(403);
    expect(bare.body.code).toBe('KMIG0026E');
    expect(await queue.getJobState(failedId)).toBe('failed');
    const page = await api(svc.url, 'PUT', board(`/api/queues/migrations/${failedId}/clean`), undefined, { token: null, headers: { cookie, origin: svc.url, 'sec-fetch-site': 'same-origin' } });
    expect(page.status).toBe(204);
    expect(await queue.getJob(failedId)).toBeUndefined();
  });
});

describe("an operator's board", () => {
  const asOperator = { token: TOKENS.operator };
  const refused = async (method: string, path: string, body?: unknown, opts: Parameters<typeof api>[4] = asOperator) => {
    const res = await api(svc.url, method, board(path), body, opts);
    expect(res.status, `${method} ${path}`).toBe(403);
    expect(res.body.code, `${method} ${path}`).toBe('KMIG0029E');
    return res.body.reason as string;
  };

  it('refuses every write that goes around the API, with a token or a session, and the queue is unchanged', async () => {
    // A job a worker is running (taken with a lock, as a worker takes it) and a failed one; lifo puts each ahead of the waiting task.
    const worker = new Worker(svc.config.redis.queue, null, { connection: conn, prefix: svc.prefix, autorun: false });
    await queue.add('migrate', { request: { vm: 'lab-tiny', remoteHost: 'host2' } }, { jobId: 'failed-2', attempts: 1, lifo: true });
    const failed2 = await worker.getNextJob('test-lock');
    expect(failed2?.id).toBe('failed-2');
    await failed2!.moveToFailed(new Error('gone'), 'test-lock', false);
    await queue.add('migrate', { request: { vm: 'lab-dirty', remoteHost: 'host2' } }, { jobId: 'active-1', lifo: true });
    expect((await worker.getNextJob('test-lock'))?.id).toBe('active-1');
    await worker.close();
    const login = await fetch(`${svc.url}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKENS.operator }) });
    const fromPage = { token: null, headers: { cookie: login.headers.getSetCookie()[0]!.split(';')[0]!, origin: svc.url, 'sec-fetch-site': 'same-origin' } };
    const ext = { request: { vm: 'lab-tiny', remoteHost: 'x', sourceUri: 'test:///default', destinationUri: 'qemu+ext:///system?command=/usr/bin/id' } };
    const writes: [string, string, unknown?][] = [
      ['POST', '/api/queues/migrations/add', { name: 'migrate', data: ext }],
      ['PATCH', `/api/queues/migrations/${taskId}/update-data`, { jobData: { ...ext, checkpoint: { step: 'migrate', results: {}, history: [] } } }],
      ['PATCH', `/api/queues/migrations/${taskId}/delay`, { runAt: Date.now() + 60_000 }],
      ['PATCH', `/api/queues/migrations/${taskId}/priority`, { priority: 1 }],
      ['PUT', '/api/queues/migrations/empty'],
      ['PUT', '/api/queues/migrations/obliterate', { force: true }],
      ['PUT', '/api/queues/migrations/active-1/clean'],
      ['PUT', `/api/queues/migrations/${taskId}/clean`],
      ['PUT', '/api/queues/migrations/no-such-job/clean'],
      ['PUT', '/api/queues/migrations/clean/active'],
      ['PUT', '/api/queues/migrations/clean/wait'],
      ['PUT', '/api/queues/migrations/clean/delayed'],
      ['PUT', '/api/queues/migrations/failed-2/retry'],
      ['PUT', '/api/queues/migrations/retry/failed'],
      ['PUT', '/api/queues/migrations/concurrency', { concurrency: 100 }],
      ['PUT', '/api/queues/migrations/rate-limit', { max: 1, duration: 60_000 }],
      ['PUT', '/api/queues/migrations/job-schedulers/x/run'],
      ['PUT', '/API/queues/migrations/ADD'],
      ['PUT', '/api/queues/migrations/pause/'],
    ];
    // The queue's keys: the API's own background work (the task index) may write elsewhere meanwhile.
    const queueKeys = async () => Object.fromEntries(Object.entries(await svc.snapshot()).filter(([k]) => k.startsWith(`${svc.prefix}:${svc.config.redis.queue}:`)));
    const before = await queueKeys();
    expect(Object.keys(before).length).toBeGreaterThan(5);
    for (const [method, path, body] of writes) for (const opts of [asOperator, fromPage]) await refused(method, path, body, opts);
    expect(await queueKeys()).toEqual(before);
    expect(await refused('POST', '/api/queues/migrations/add', { name: 'migrate', data: ext })).toMatch(/adding a job; start a migration with POST \/vms\/:name\/migrate/);
    expect(await refused('PUT', '/api/queues/migrations/active-1/clean')).toMatch(/removing a job that is active; cancel a queued or running migration with DELETE \/tasks\/:id/);
    expect(await queue.getJobState('active-1')).toBe('active');
    expect(await queue.getJobState(taskId)).toBe('waiting');
    expect(await queue.getJobState('failed-2')).toBe('failed');
    expect(await queue.count()).toBe(1);
  });

  it('still promotes delayed jobs (one or all) and removes failed ones', async () => {
    await queue.add('migrate', { request: { vm: 'lab-disk', remoteHost: 'host2' } }, { jobId: 'delayed-1', delay: 3_600_000 });
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/delayed-1/promote'))).status).toBe(204);
    expect(await queue.getJobState('delayed-1')).toBe('waiting');
    await queue.remove('delayed-1');
    await queue.add('migrate', { request: { vm: 'lab-disk', remoteHost: 'host2' } }, { jobId: 'delayed-2', delay: 3_600_000 });
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/promote'))).status).toBe(200);
    expect(await queue.getJobState('delayed-2')).toBe('waiting');
    await queue.remove('delayed-2');
    // bull-board removes only jobs that ended more than 5 s ago this way; here it must not touch the others.
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/clean/completed'))).status).toBe(200);
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/clean/failed'))).status).toBe(200);
    expect((await api(svc.url, 'PUT', board('/api/queues/migrations/failed-2/clean'))).status).toBe(204);
    expect(await queue.getJob('failed-2')).toBeUndefined();
    expect(await queue.getJobState('active-1')).toBe('active');
    expect(await queue.getJobState(taskId)).toBe('waiting');
  });
});

describe('pages of jobs', () => {
  it('hold at most 100 jobs whatever jobsPerPage asks, and a page number is bounded', async () => {
    const bulk = await queue.addBulk(Array.from({ length: 150 }, (_, i) => ({ name: 'bulk', data: { request: { vm: `bulk-${i}`, remoteHost: 'host2' } } })));
    try {
      const page = async (q: string) => {
        const res = await api(svc.url, 'GET', board(`/api/queues?activeQueue=migrations&status=waiting&${q}`), undefined, asViewer);
        expect(res.status, q).toBe(200);
        return res.body.queues[0] as { jobs: unknown[]; pagination: { pageCount: number } };
      };
      expect((await page('jobsPerPage=20000')).jobs).toHaveLength(100);
      expect((await page('jobsPerPage=1e9&jobsPerPage=5')).jobs).toHaveLength(100);
      expect((await page('jobsPerPage=50')).jobs).toHaveLength(50);
      expect((await page('jobsPerPage=20000&page=2')).jobs).toHaveLength(51);
      expect(await page('jobsPerPage=100&page=1e300')).toMatchObject({ jobs: [], pagination: { pageCount: 2 } });
    } finally {
      for (const j of bulk) await j.remove();
    }
  });
});

describe('in a real browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Logs in through /login as the browser would be sent there, and returns the page on the board with what the console said. */
  async function open(token: string) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(`${svc.url}/admin/queues/queue/migrations`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.getByTestId('token').fill(token);
    await page.getByTestId('login').click();
    await page.waitForURL(`${svc.url}/admin/queues/queue/migrations`);
    await page.getByText('migrate test → host2').waitFor({ timeout: 15_000 });
    return { context, page, problems };
  }

  it('a viewer logs in, sees the queue and its job, read-only, with no CSP or script error', async () => {
    const viewer = await open(TOKENS.viewer);
    const operator = await open(TOKENS.operator);
    try {
      const { page, problems } = viewer;
      await expect(page.getByText('migrations', { exact: true }).first().isVisible()).resolves.toBe(true);
      await expect(page.getByText('read-only: your role is viewer').isVisible()).resolves.toBe(true);
      expect(await page.content()).not.toContain('hunter2');
      // The operator's board has the queue's actions menu (pause, clean, ...); the viewer's has none.
      const menus = (p: typeof page) => p.locator('button[aria-haspopup="menu"]').count();
      expect(await menus(page)).toBeLessThan(await menus(operator.page));
      mkdirSync('test-results', { recursive: true });
      await page.screenshot({ path: 'test-results/dashboard.png', fullPage: true });
      expect([...problems, ...operator.problems]).toEqual([]);
    } finally {
      await viewer.context.close();
      await operator.context.close();
    }
  });
});
