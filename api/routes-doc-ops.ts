/**
 * The routes around the API proper, described for the OpenAPI document:
 * probes, this document, the migrations page and its assets, the guests
 * of the source host.
 */
import * as R from './response-schemas.js';
import type { Reply, RouteDoc } from './routes-doc.js';
import { SessionBody } from './schemas.js';

const ex = (summary: string, value: unknown) => ({ summary, value });

/** A browser that opens a page without credentials is sent to log in (a request that does not ask for HTML gets the 401). */
const toLogin: Reply = { description: 'No credentials and the request asks for HTML: log in first.', headers: { Location: '/login?next=<this address>' } };

const file = (path: string, type: string, summary: string): RouteDoc => ({
  method: 'get',
  path,
  tag: 'session',
  summary,
  description: 'Part of the login page, which must load before anyone is authenticated. Public.',
  access: 'public',
  responses: { 200: { description: 'The file.', contentType: type, schema: type === 'text/html' ? R.Html : R.Asset } },
  errors: [],
});

export const OPS_ROUTES: RouteDoc[] = [
  {
    method: 'get',
    path: '/health',
    tag: 'probes',
    summary: 'Health (Redis connection)',
    description: 'No token needed.',
    access: 'public',
    responses: {
      200: { description: 'Redis is connected.', schema: R.Health, examples: { ok: ex('Healthy', { status: 'ok', redis: true }) } },
      503: { description: 'Redis is not connected.', schema: R.Health, examples: { degraded: ex('Degraded', { status: 'degraded', redis: false }) } },
    },
    errors: [],
  },
  {
    method: 'get',
    path: '/healthz',
    tag: 'probes',
    summary: 'Liveness probe',
    description: '200 while the process lives. No token needed.',
    access: 'public',
    responses: { 200: { description: 'Alive.', schema: R.Alive, examples: { alive: ex('Alive', { status: 'alive', uptime_s: 3600 }) } } },
    errors: [],
  },
  {
    method: 'get',
    path: '/readyz',
    tag: 'probes',
    summary: 'Readiness probe',
    description: 'Ready when Redis answers, the source libvirt answers and at least one worker is connected to the queue; each check bounded to 2 s, the answer cached for 1 s. No token needed.',
    access: 'public',
    responses: {
      200: { description: 'Ready.', schema: R.Readiness, examples: { ready: ex('Ready', { ready: true, checks: { redis: { ok: true, detail: 'answers' }, libvirt: { ok: true, detail: 'the source answers' }, workers: { ok: true, detail: '2 connected' } } }) } },
      503: {
        description: 'Not ready: the failing checks say why.',
        schema: R.Readiness,
        examples: { noWorker: ex('No worker', { ready: false, checks: { redis: { ok: true, detail: 'answers' }, libvirt: { ok: true, detail: 'the source answers' }, workers: { ok: false, detail: 'no worker is connected to the queue: migrations would wait' } } }) } },
    },
    errors: [],
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'probes',
    summary: 'This document',
    description: 'The OpenAPI 3.1 description of the API, generated from the schemas that validate requests. No token needed.',
    access: 'public',
    responses: { 200: { description: 'The document.', schema: R.OpenApiDocument } },
    errors: [],
  },
  {
    method: 'get',
    path: '/vms',
    tag: 'migrations',
    summary: "The source host's guests",
    description: "Every guest defined on the source, with the id of its queued or running migration, for the migrations page's form. Listing bounded by libvirt.lookup_timeout.",
    access: 'viewer',
    responses: { 200: { description: 'The guests, by name.', schema: R.VmList, examples: { two: ex('Two guests, one migrating', [{ name: 'lab-disk', uuid: '6f2b7a7e-5a0f-4e8e-9d59-3f1e6d2c4b10', state: 'running', persistent: true, migration: null }, { name: 'lab-tiny', uuid: '0d8e1c52-91b4-4f55-8a0b-2b6f0c7e9a31', state: 'running', persistent: true, migration: '4f7c2a1e-8d0b-4c55-9a51-0c1d2e3f4a5b' }]) } } },
    errors: ['SOURCE_UNAVAILABLE', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/',
    tag: 'page',
    summary: 'The migrations page',
    description: 'An HTML page: the task list with live progress, each task\'s stage history and chart, a form to start a migration (gated by the precheck) and cancel buttons. It calls this API from the browser.',
    access: 'viewer',
    responses: { 200: { description: 'The page.', contentType: 'text/html', schema: R.Html }, 303: toLogin },
    errors: [],
  },
  {
    method: 'get',
    path: '/ui/:file',
    mount: '/ui',
    tag: 'page',
    summary: "The page's scripts and style sheets",
    description: 'Static files of the migrations page (ES modules and CSS, no build step). Public: they hold nothing secret. A file that is not there is a 404.',
    access: 'public',
    params: R.AssetParams,
    responses: { 200: { description: 'The file.', contentType: ['text/javascript', 'text/css'], schema: R.Asset } },
    errors: ['ROUTE_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/ui/vendor/:file',
    mount: '/ui/vendor',
    tag: 'page',
    summary: 'uPlot, the chart library of the page',
    description: 'uPlot\'s files served from the installed package, so the page loads nothing from another origin. Public.',
    access: 'public',
    params: R.AssetParams,
    responses: { 200: { description: 'The file.', contentType: ['text/javascript', 'text/css'], schema: R.Asset } },
    errors: ['ROUTE_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/admin/queues',
    // bull-board is an Express app of its own mounted here: its page and, under it, its own
    // JSON API (/admin/queues/api/...) and static files. Those are bull-board's internals, used
    // by its page and not part of this API, so only the entry point is described.
    mount: '/admin/queues',
    tag: 'page',
    summary: 'The queue dashboard (bull-board)',
    description: "BullMQ's own view of the migrations queue: jobs by state, their data (credentials and secret-named fields redacted), logs and failures. Viewers get a read-only board, and any write through it from a viewer is refused (403 KMIG0021E). Operators may also pause and resume the queue, promote delayed jobs and remove completed or failed ones; every other write through the board's own API (adding, retrying or editing a job, removing a queued or running one, emptying the queue, its limits) is refused with 403 KMIG0029E, as it would go around this API's checks: use POST /vms/:name/migrate and DELETE /tasks/:id. A page of jobs holds at most 100. Behind the API's authentication like every route.",
    access: 'viewer',
    responses: { 200: { description: 'The dashboard page.', contentType: 'text/html', schema: R.Html }, 303: toLogin },
    errors: [],
  },
  {
    method: 'get',
    path: '/metrics',
    tag: 'metrics',
    summary: 'Prometheus metrics',
    description: "Migrations started, finished, failed (by code) and killed by source and destination host, in flight, duration and real-downtime histograms, bytes transferred, stage durations, retries, check failures by code, the API process's metrics and BullMQ's queue metrics. Read from Redis at scrape time, bounded to 2 s: past that the answer is still 200, with kvm_migrate_metrics_redis_up 0.",
    access: 'viewer',
    responses: { 200: { description: 'The metrics.', contentType: 'text/plain', schema: R.Metrics, examples: { some: ex('A few lines', '# HELP kvm_migrate_metrics_redis_up Whether the migration metrics could be read from Redis\n# TYPE kvm_migrate_metrics_redis_up gauge\nkvm_migrate_metrics_redis_up 1\n') } } },
    errors: [],
  },
  file('/login', 'text/html', 'The login page'),
  file('/login.js', 'text/javascript', "The login page's script"),
  file('/login.css', 'text/css', "The login page's style sheet"),
  {
    method: 'post',
    path: '/session',
    tag: 'session',
    summary: 'Log in: trade a token for a session cookie',
    description: "Checks the token like a bearer token (same lookup, same failure brake) and sets an HttpOnly, SameSite=Strict cookie holding a random session id for auth.session_ttl; the token itself is never stored. Needs no credentials, only JSON from this API's own pages.",
    access: 'public',
    body: { schema: SessionBody, examples: { login: ex('Log in', { token: '<the token>' }) } },
    responses: {
      201: {
        description: 'Logged in: the cookie is set.',
        schema: R.Session,
        headers: { 'Set-Cookie': 'kvm_migrate_session=<id>; Path=/; HttpOnly; SameSite=Strict (and Secure over https)' },
        examples: { dash: ex('A viewer', { name: 'dash', role: 'viewer', expires_at: '2026-01-01T22:00:00.000Z' }) },
      },
    },
    errors: ['UNAUTHENTICATED', 'AUTH_FAILURES', 'CROSS_SITE', 'UNSUPPORTED_MEDIA_TYPE', 'BODY_TOO_LARGE', 'BAD_REQUEST', 'QUEUE_UNAVAILABLE', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/session',
    tag: 'session',
    summary: 'Who am I',
    description: 'The name and role behind the request, and when its session ends.',
    access: 'viewer',
    responses: { 200: { description: 'Who the request is.', schema: R.Session, examples: { dash: ex('A viewer with a session', { name: 'dash', role: 'viewer', expires_at: '2026-01-01T22:00:00.000Z' }) } } },
    errors: ['QUEUE_UNAVAILABLE'],
  },
  {
    method: 'delete',
    path: '/session',
    tag: 'session',
    summary: 'Log out',
    description: "Ends the session the request's cookie names (if any) and clears the cookie. Needs no role, so a viewer can log out; with a cookie it must come from this API's own pages.",
    access: 'public',
    responses: { 204: { description: 'Logged out (or there was nothing to end).', headers: { 'Set-Cookie': 'clears kvm_migrate_session' } } },
    errors: ['CROSS_SITE', 'QUEUE_UNAVAILABLE', 'INTERNAL'],
  },
];
