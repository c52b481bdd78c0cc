/**
 * The OpenAPI document (GET /openapi.json): valid OpenAPI 3.1, describing
 * exactly the routes Express has, with examples that fit their schemas,
 * response schemas that real answers fit, and body schemas that accept
 * exactly what the API's validation accepts (they are the same schemas).
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020Module from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { roleFor } from '../api/auth.js';
import { openApiDocument, openApiPath, packageVersion, type OpenApiDocument } from '../api/openapi.js';
import { ROUTES } from '../api/routes-doc.js';
import * as R from '../api/response-schemas.js';
import { IdempotencyKey, MigrateBody, TuneBody, VmName } from '../api/schemas.js';
import { Catalogue, migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import { toTask, type JobSnapshot } from '../shared/task.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

// ajv is CommonJS: its class is the default export's default.
const Ajv2020 = Ajv2020Module.default;
const doc: OpenApiDocument = openApiDocument(packageVersion());
const DOC_ID = 'https://kvm-migrate.invalid/openapi.json';
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(JSON.parse(JSON.stringify(doc)), DOC_ID);

const pointer = (parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');
/** A validator for the schema at this place in the document; its $refs resolve inside the document. */
const schemaAt = (...parts: string[]) => ajv.compile({ $ref: `${DOC_ID}#/${pointer(parts)}` });

function valid(validate: ReturnType<typeof schemaAt>, value: unknown, what: string) {
  const ok = validate(value);
  expect(ok, `${what}: ${JSON.stringify(validate.errors?.slice(0, 3))}`).toBe(true);
}

/** A zod schema that names every field of the value: parsing strips nothing. */
function fits(schema: z.ZodType, value: unknown, what: string) {
  const r = schema.safeParse(value);
  expect(r.success, `${what}: ${JSON.stringify(r.error?.issues.slice(0, 3))}`).toBe(true);
  expect(r.data, `${what}: a field the schema does not describe`).toEqual(value);
}

/** The routes Express has: "METHOD path" for each route, "MOUNT path" for each sub-app or static directory. */
function registered(app: unknown): string[] {
  const stack = (app as { router: { stack: { route?: { path: string; methods: Record<string, boolean> }; rawPath?: string }[] } }).router.stack;
  return stack.flatMap((l) => {
    if (l.route) return Object.keys(l.route.methods).filter((m) => m !== '_all').map((m) => `${m.toUpperCase()} ${l.route!.path}`);
    // Middleware used on every path (guards, parsers) is no route; one mounted at a path is.
    return l.rawPath && l.rawPath !== '/' ? [`MOUNT ${l.rawPath}`] : [];
  });
}

describe('the document', () => {
  it('validates as OpenAPI 3.1', async () => {
    const result = await new Validator().validate(doc);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
  });

  it('names only catalogue codes, each under its HTTP status with an example of its body', () => {
    const codes = new Map(Object.values(Catalogue).map((d) => [d.code, d.http]));
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const listed = op['x-error-codes'] as string[];
        for (const code of listed) {
          expect(codes.has(code), `${method} ${path}: ${code}`).toBe(true);
          const resp = (op.responses as Record<string, { content: Record<string, { examples: Record<string, { value: { code: string; status: number } }> }> }>)[String(codes.get(code))];
          const example = resp?.content['application/json']?.examples[code]?.value;
          expect(example, `${method} ${path}: ${code}`).toMatchObject({ code, status: codes.get(code) });
        }
      }
    }
  });

  it("gives each route the role auth.ts asks for its method, or none for a public one", () => {
    for (const r of ROUTES) {
      const op = doc.paths[openApiPath(r.path)]![r.method]!;
      expect(op['x-required-role']).toBe(r.access);
      if (r.access === 'public') expect(op.security).toEqual([]);
      else {
        expect(r.access, `${r.method} ${r.path}`).toBe(roleFor(r.method.toUpperCase()));
        expect(op.security).toEqual([{ bearer: [] }, { session: [] }]);
      }
    }
    expect(doc.components.securitySchemes).toMatchObject({ bearer: { type: 'http', scheme: 'bearer' }, session: { type: 'apiKey', in: 'cookie', name: 'kvm_migrate_session' } });
  });
});

describe('examples', () => {
  it('every example in the document validates against the JSON Schema it illustrates', () => {
    let checked = 0;
    const walkSchema = (node: unknown, at: string[]) => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      // JSON Schema's examples, and the single example OpenAPI's Schema Object also allows.
      const examples = [...(Array.isArray(n.examples) ? n.examples : []), ...('example' in n ? [n.example] : [])];
      if (examples.length) {
        const validate = schemaAt(...at);
        for (const ex of examples) (valid(validate, ex, at.join('/')), checked++);
      }
      for (const [k, v] of Object.entries(n)) if (k !== 'examples' && k !== 'example' && typeof v === 'object') walkSchema(v, [...at, k]);
    };
    for (const [name, s] of Object.entries(doc.components.schemas)) walkSchema(s, ['components', 'schemas', name]);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const at = ['paths', path, method];
        ((op.parameters ?? []) as { schema: unknown }[]).forEach((p, i) => walkSchema(p.schema, [...at, 'parameters', String(i), 'schema']));
        const media: [string[], Record<string, { schema: unknown; examples?: Record<string, { value: unknown }> }>][] = [];
        const body = op.requestBody as { content: Record<string, { schema: unknown; examples?: Record<string, { value: unknown }> }> } | undefined;
        if (body) media.push([[...at, 'requestBody', 'content'], body.content]);
        for (const [status, resp] of Object.entries(op.responses as Record<string, { content?: Record<string, { schema: unknown; examples?: Record<string, { value: unknown }> }> }>)) {
          if (resp.content) media.push([[...at, 'responses', status, 'content'], resp.content]);
        }
        for (const [where, content] of media) {
          for (const [type, m] of Object.entries(content)) {
            const validate = schemaAt(...where, type, 'schema');
            for (const [name, ex] of Object.entries(m.examples ?? {})) (valid(validate, ex.value, `${where.join(' ')} ${name}`), checked++);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('the route table\'s examples are accepted by the zod schemas themselves, naming no field they do not', () => {
    for (const r of ROUTES) {
      for (const [name, ex] of Object.entries(r.body?.examples ?? {})) expect(r.body!.schema.safeParse(ex.value).success, `${r.method} ${r.path} ${name}`).toBe(true);
      for (const [status, reply] of Object.entries(r.responses)) {
        for (const [name, ex] of Object.entries(reply.examples ?? {})) if (reply.schema && reply.contentType === undefined) fits(reply.schema, ex.value, `${r.method} ${r.path} ${status} ${name}`);
      }
    }
  });
});

describe('real answers', () => {
  const data: MigrationJobData = {
    request: {
      vm: 'lab-tiny', remoteHost: '127.0.0.12', sourceUri: 'qemu+tcp://127.0.0.11/system', destinationUri: 'qemu+tcp://127.0.0.12/system',
      requestedAt: '2026-01-01T00:00:00.000Z', bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 21600, keepSourceDefinition: false,
    },
    checkpoint: { step: 'migrate', results: {}, history: [{ at: '2026-01-01T00:00:00.000Z', stage: 'queue', event: 'queued' }] },
  };
  const snap = (over: Partial<JobSnapshot>): JobSnapshot => ({ id: 'j1', state: 'active', data, timestamp: Date.parse('2026-01-01T00:00:00Z'), attemptsMade: 0, ...over });
  const failed = (error: ReturnType<ReturnType<typeof migrationError>['toJSON']>) => ({ ...data, checkpoint: { step: 'done' as const, results: {}, history: [], error } });

  it.each([
    ['queued', snap({ state: 'waiting' })],
    ['copying, with progress', snap({ processedOn: Date.parse('2026-01-01T00:00:01Z'), progress: { percent: 42, memoryBps: 50 * 1048576, iteration: 2, dataTotal: 1e9, dataRemaining: 5e8, dirtyRateBps: 1e6, converging: false } })],
    ['with limits in force', snap({ data: { ...data, request: { ...data.request, deadlineAction: 'pause', autoConverge: true, compression: 'xbzrle' }, checkpoint: { step: 'migrate', history: [], results: { migrate: { startedAt: '2026-01-01T00:00:02.000Z', inForce: { bandwidthMiBs: 32, maxDowntimeMs: 800, operatorTuned: true } } } } } })],
    ['waiting for a slot', snap({ state: 'delayed', data: { ...data, checkpoint: { step: 'connect', results: {}, history: [], slotWait: { reason: 'host has 2 outgoing migrations (limit 2)', since: '2026-01-01T00:00:01.000Z' } } } })],
    ['finished', snap({ state: 'completed', finishedOn: Date.parse('2026-01-01T00:00:05Z'), progress: { percent: 100, downtimeMs: 40, etaSeconds: 0 } })],
    ['failed, with details', snap({ state: 'failed', finishedOn: Date.parse('2026-01-01T00:00:05Z'), data: failed(migrationError('MIGRATION_TIMEOUT', { name: 'lab-dirty', seconds: '5' }, { stage: 'migrate' }).toJSON()) })],
    ['failed without a recorded error', snap({ state: 'failed', failedReason: 'job stalled more than allowable limit' })],
    ['killed', snap({ state: 'failed', data: failed(migrationError('CANCELLED', { name: 'x' }).toJSON()) })],
  ])('a task made by toTask (%s) fits the Task schema and the document', (_what, s) => {
    const task = toTask(s);
    fits(R.Task, task, 'task');
    valid(schemaAt('components', 'schemas', 'Task'), task, 'task');
  });

  let svc: InProc;
  let taskId: string;
  beforeAll(async () => {
    svc = await startInProc({ KVM_MIGRATE_API_RATE_LIMIT: '100000', KVM_MIGRATE_LIBVIRT_CONNECT_TIMEOUT: '2000' });
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** The answer's status is documented for this operation, its body fits, and an error's code is one the operation lists. */
  /** As the helper's api(), but a redirect is an answer of its own. */
  async function send(method: string, path: string, body: unknown, opts: { token?: string | null; headers?: Record<string, string> }) {
    const token = opts.token === undefined ? TOKENS.operator : opts.token;
    const res = await fetch(`${svc.url}${path}`, {
      method,
      redirect: 'manual',
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts.headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as any, headers: res.headers, text };
  }

  async function conforms(method: string, path: string, template: string, body?: unknown, opts: { token?: string | null; headers?: Record<string, string> } = {}) {
    const r = await send(method, path, body, opts);
    const op = doc.paths[openApiPath(template)]?.[method.toLowerCase()];
    expect(op, `${method} ${template} is described`).toBeDefined();
    const resp = (op!.responses as Record<string, { content?: Record<string, unknown> }>)[String(r.status)];
    expect(resp, `${method} ${path} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`).toBeDefined();
    const type = (r.headers.get('content-type') ?? '').split(';')[0]!;
    if (!resp!.content) expect(r.text, `${method} ${path} ${r.status}`).toMatch(r.status === 303 ? /Redirecting/ : /^$/);
    else {
      expect(Object.keys(resp!.content)).toContain(type);
      if (type === 'application/json') valid(schemaAt('paths', openApiPath(template), method.toLowerCase(), 'responses', String(r.status), 'content', type, 'schema'), r.body, `${method} ${path} ${r.status}`);
    }
    // An answer the route describes itself (a 503 from /readyz) is no catalogue error.
    const own = ROUTES.find((x) => x.method === method.toLowerCase() && x.path === template)?.responses[r.status];
    if (r.status >= 400 && !own) expect(op!['x-error-codes'] as string[], `${method} ${path}`).toContain(r.body.code);
    return r;
  }

  it('answers of a live API have a documented status and fit its schema', async () => {
    const created = await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'host2', bandwidth: 64 });
    expect(created.status).toBe(202);
    taskId = created.body.id;
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'host2' })).status).toBe(409);
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'a b' })).body.code).toBe('KCHVM0060E');
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'h', user: 'root' })).status).toBe(400);
    expect((await conforms('POST', '/vms/nothere/migrate', '/vms/:name/migrate', { remote_host: 'host2' })).status).toBe(404);
    // The precheck against an address where no libvirtd listens: 422 with the blockers (or 200 should one answer).
    expect([200, 422]).toContain((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: '127.0.0.1', dry_run: true })).status);
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', '{"remote_host":', {})).status).toBe(400);
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', JSON.stringify({ remote_host: 'x'.repeat(20_000) }))).status).toBe(413);
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', 'remote_host=h', { headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'h' }, { token: TOKENS.viewer })).status).toBe(403);
    expect((await conforms('GET', '/tasks', '/tasks', undefined, { token: null })).status).toBe(401);
    expect((await conforms('GET', '/tasks', '/tasks')).body.length).toBeGreaterThan(0);
    expect((await conforms('GET', '/tasks?status=((', '/tasks')).status).toBe(400);
    expect((await conforms('GET', '/tasks?colour=red', '/tasks')).status).toBe(400);
    expect((await conforms('GET', '/tasks?limit=0', '/tasks')).status).toBe(400);

    expect((await conforms('GET', `/tasks/${taskId}`, '/tasks/:id')).status).toBe(200);
    expect((await conforms('GET', `/tasks/${taskId}/series`, '/tasks/:id/series')).status).toBe(200);
    expect((await conforms('GET', '/tasks/00000000-0000-4000-8000-000000000000/series', '/tasks/:id/series')).status).toBe(404);
    expect((await conforms('GET', '/tasks/00000000-0000-4000-8000-000000000000', '/tasks/:id')).status).toBe(404);
    expect((await conforms('PATCH', `/tasks/${taskId}`, '/tasks/:id', { speed: 1 })).status).toBe(400);
    expect((await conforms('GET', '/tasks/00000000-0000-4000-8000-000000000000/events', '/tasks/:id/events')).status).toBe(404);
    const ac = new AbortController();
    const events = await fetch(`${svc.url}/tasks/${taskId}/events`, { headers: { authorization: `Bearer ${TOKENS.viewer}` }, signal: ac.signal });
    expect(events.status).toBe(200);
    expect(Object.keys((doc.paths['/tasks/{id}/events']!.get!.responses as Record<string, { content: object }>)['200']!.content)).toEqual([events.headers.get('content-type')]);
    ac.abort();
    expect((await conforms('DELETE', `/tasks/${taskId}`, '/tasks/:id')).status).toBe(200);
    expect((await conforms('DELETE', `/tasks/${taskId}`, '/tasks/:id')).status).toBe(409);
    expect((await conforms('PATCH', `/tasks/${taskId}`, '/tasks/:id', { bandwidth: 8 })).status).toBe(409);
    expect((await conforms('POST', '/vms/test/migrate_cancel', '/vms/:name/migrate_cancel')).status).toBe(404);
    // A second task: pages of one link to the next; then it is cancelled by VM while queued.
    expect((await conforms('POST', '/vms/test/migrate', '/vms/:name/migrate', { remote_host: 'host3' }, { headers: { 'idempotency-key': 'second-task-0001' } })).status).toBe(202);
    const page = await conforms('GET', '/tasks?limit=1&vm=test&since=2020-01-01', '/tasks');
    expect(page.body).toHaveLength(1);
    expect(page.headers.get('link')).toMatch(/rel="next"/);
    expect((await conforms('GET', `/tasks?limit=1&vm=test&cursor=${page.headers.get('x-next-cursor')}`, '/tasks')).body[0].id).toBe(taskId);
    expect((await conforms('POST', '/vms/test/migrate_cancel', '/vms/:name/migrate_cancel')).status).toBe(200);
    expect((await conforms('POST', `/vms/${encodeURIComponent('a/b')}/migrate_cancel`, '/vms/:name/migrate_cancel')).status).toBe(400);
    expect((await conforms('GET', '/peers', '/peers')).status).toBe(200);
    expect((await conforms('GET', '/peers?verbose=true', '/peers')).status).toBe(200);
    expect((await conforms('GET', '/peers?verbose=maybe', '/peers')).status).toBe(400);
    for (const p of ['/health', '/healthz', '/readyz', '/openapi.json']) await conforms('GET', p, p, undefined, { token: null });
    expect((await conforms('GET', '/vms', '/vms')).body.map((v: { name: string }) => v.name)).toContain('test');
    expect((await conforms('GET', '/', '/', undefined, { token: TOKENS.viewer })).status).toBe(200);
    for (const f of ['app.js', 'app.css']) expect((await conforms('GET', `/ui/${f}`, '/ui/:file', undefined, { token: null })).status).toBe(200);
    for (const f of ['uPlot.esm.js', 'uPlot.min.css']) expect((await conforms('GET', `/ui/vendor/${f}`, '/ui/vendor/:file', undefined, { token: null })).status).toBe(200);
    for (const f of ['/login', '/login.js', '/login.css']) expect((await conforms('GET', f, f, undefined, { token: null })).status).toBe(200);
    const html = { accept: 'text/html' };
    for (const p of ['/', '/admin/queues']) {
      const away = await conforms('GET', p, p, undefined, { token: null, headers: html });
      expect(away.status).toBe(303);
      expect(away.headers.get('location')).toBe(`/login?next=${encodeURIComponent(p)}`);
      expect((await conforms('GET', p, p, undefined, { token: null })).status).toBe(401);
    }
    expect((await conforms('GET', '/admin/queues', '/admin/queues', undefined, { token: TOKENS.viewer, headers: html })).status).toBe(200);
    expect((await conforms('GET', '/metrics', '/metrics', undefined, { token: TOKENS.viewer })).text).toMatch(/^kvm_migrate_metrics_redis_up 1$/m);
    expect((await conforms('POST', '/session', '/session', { token: 'not-a-known-token-000000' }, { token: null })).status).toBe(401);
    expect((await conforms('POST', '/session', '/session', { token: 7 }, { token: null })).status).toBe(401);
    const login = await conforms('POST', '/session', '/session', { token: TOKENS.viewer }, { token: null });
    expect(login.status).toBe(201);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect(cookie).toMatch(/^kvm_migrate_session=/);
    expect((await conforms('GET', '/session', '/session', undefined, { token: null, headers: { cookie } })).body).toMatchObject({ name: 'dash', role: 'viewer' });
    expect((await conforms('DELETE', '/session', '/session', undefined, { token: null, headers: { cookie, 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    expect((await conforms('DELETE', '/session', '/session', undefined, { token: null, headers: { cookie, 'sec-fetch-site': 'same-origin' } })).status).toBe(204);
    expect((await conforms('GET', '/session', '/session', undefined, { token: null, headers: { cookie } })).status).toBe(401);
  });

  it('/openapi.json is served without a token: this document, with the package version', async () => {
    const r = await api(svc.url, 'GET', '/openapi.json', undefined, { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toEqual(JSON.parse(JSON.stringify(doc)));
    expect(r.body.info.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('every route Express has is described, and every described route exists', async () => {
    const { wireApi } = await import('../api/wiring.js');
    const wired = wireApi(svc.config, { info() {}, warn() {}, error() {}, debug() {} } as never, { now: () => new Date() });
    try {
      const described = ROUTES.map((r) => (r.mount ? `MOUNT ${r.mount}` : `${r.method.toUpperCase()} ${r.path}`));
      expect([...new Set(registered(wired.app))].sort()).toEqual([...new Set(described)].sort());
      // And the document has them all, under OpenAPI's path form.
      const inDoc = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
      expect(inDoc.sort()).toEqual(ROUTES.map((r) => `${r.method} ${openApiPath(r.path)}`).sort());
    } finally {
      await wired.close();
    }
  });
});

describe('one source of truth', () => {
  const body = fc.oneof(
    fc.record(
      {
        remote_host: fc.oneof(fc.constantFrom('host2', '127.0.0.12', '[::1]', 'fe80::1%eth0', 'a b', 'h..x', '-h', 'user@h', 'h:22', '[h', ''), fc.domain(), fc.ipV6(), fc.string({ maxLength: 12 }), fc.integer()),
        dry_run: fc.oneof(fc.boolean(), fc.constantFrom('yes', 1, null)),
        bandwidth: fc.oneof(fc.integer({ min: -2, max: 1_048_580 }), fc.constantFrom('unlimited', 'fast', 1.5, 1_048_576, 1_048_577)),
        max_downtime: fc.oneof(fc.integer({ min: 0, max: 700_000 }), fc.constantFrom(99, 100, 600_000, 600_001, '500')),
        deadline: fc.oneof(fc.integer({ min: 0, max: 2_000_001 }), fc.double()),
        deadline_action: fc.constantFrom('abort', 'pause', 'postcopy'),
        auto_converge: fc.oneof(fc.boolean(), fc.constant('true')),
        compression: fc.constantFrom('xbzrle', 'none', 'zstd'),
        user: fc.constant('root'),
        post_copy: fc.constant(true),
        speed: fc.integer(),
      },
      { requiredKeys: [] },
    ),
    fc.json().map((j) => JSON.parse(j) as unknown),
  );
  // Mostly one fault at a time, so both sides of the line are well covered.
  const mostlyValid = fc.tuple(fc.record({ remote_host: fc.constantFrom('host2', '10.0.0.2', 'h2.example') }), body).map(([ok, extra]) =>
    typeof extra === 'object' && extra !== null && !Array.isArray(extra) ? Object.fromEntries(Object.entries({ ...ok, ...extra }).slice(0, 2)) : extra,
  );
  const tune = fc.oneof(
    { arbitrary: fc.record({ bandwidth: fc.oneof(fc.integer({ min: 1, max: 1_048_576 }), fc.constant('unlimited')), max_downtime: fc.integer({ min: 100, max: 600_000 }) }, { requiredKeys: [] }), weight: 2 },
    fc.dictionary(fc.constantFrom('bandwidth', 'max_downtime', 'deadline', 'x'), fc.oneof(fc.integer({ min: -5, max: 1_100_000 }), fc.constantFrom('unlimited', 'x', null, 2.5)), { maxKeys: 3 }),
    fc.json().map((j) => JSON.parse(j) as unknown),
  );

  it.each([
    ['MigrateBody', MigrateBody, fc.oneof(body, mostlyValid)],
    ['TuneBody', TuneBody, tune],
  ] as const)('the document\'s %s accepts exactly what the validating schema accepts', (name, schema, arb) => {
    const validate = schemaAt('components', 'schemas', name);
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(arb as fc.Arbitrary<unknown>, (v) => {
        const ok = schema.safeParse(v).success;
        seen[ok ? 'accepted' : 'refused']++;
        return validate(v) === ok;
      }),
      { numRuns: 20_000, seed: 6 },
    );
    expect(seen.accepted).toBeGreaterThan(500);
    expect(seen.refused).toBeGreaterThan(500);
  });

  it('path and header parameters: the document accepts exactly what the validating schema accepts', () => {
    const param = (path: string, method: string, name: string) => {
      const i = (doc.paths[path]![method]!.parameters as { name: string }[]).findIndex((p) => p.name === name);
      return schemaAt('paths', path, method, 'parameters', String(i), 'schema');
    };
    for (const [validate, schema, arb] of [
      [param('/vms/{name}/migrate', 'post', 'name'), VmName, fc.oneof(fc.string({ maxLength: 300, unit: 'grapheme' }), fc.constantFrom('', 'a/b', 'x\u0000', 'y'.repeat(255), 'y'.repeat(256), '😀'.repeat(255), '😀'.repeat(256)))],
      [param('/vms/{name}/migrate', 'post', 'Idempotency-Key'), IdempotencyKey, fc.oneof(fc.uuid(), fc.string({ maxLength: 300 }), fc.constantFrom('', 'x'.repeat(255), 'x'.repeat(256), 'a b'))],
    ] as const) {
      fc.assert(fc.property(arb as fc.Arbitrary<string>, (v) => validate(v) === (schema as z.ZodType).safeParse(v).success), { numRuns: 5000, seed: 7 });
    }
  });

  describe('against the API', () => {
    let svc: InProc;
    let ended: string;
    beforeAll(async () => {
      svc = await startInProc({ KVM_MIGRATE_API_RATE_LIMIT: '100000' });
      const t = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
      ended = t.body.id;
      expect((await api(svc.url, 'DELETE', `/tasks/${ended}`)).status).toBe(200);
    });
    afterAll(async () => {
      await svc?.close();
    });

    it('a body the document refuses is a 400; one it accepts gets past validation', async () => {
      const migrate = schemaAt('components', 'schemas', 'MigrateBody');
      const tuneSchema = schemaAt('components', 'schemas', 'TuneBody');
      const counts = { migrate: { accepted: 0, refused: 0 }, tune: { accepted: 0, refused: 0 } };
      // No dry_run: a precheck would look the destination up; an accepted body is queued (202) or finds the VM busy (409).
      const bodies = fc.sample(fc.oneof(body, { arbitrary: mostlyValid, weight: 3 }).map((b) => (typeof b === 'object' && b !== null && !Array.isArray(b) ? { ...b, dry_run: false } : b)), { numRuns: 150, seed: 8 });
      for (const b of bodies) {
        const r = await api(svc.url, 'POST', '/vms/test/migrate', JSON.stringify(b));
        const ok = migrate(b);
        counts.migrate[ok ? 'accepted' : 'refused']++;
        if (ok) expect([202, 409], `${JSON.stringify(b)}: ${JSON.stringify(r.body)}`).toContain(r.status);
        else expect(r.status, JSON.stringify(b)).toBe(400);
      }
      // The task has ended: a tuning the document accepts gets past validation to 409 KMIG0010E.
      for (const b of fc.sample(tune, { numRuns: 80, seed: 9 })) {
        const r = await api(svc.url, 'PATCH', `/tasks/${ended}`, JSON.stringify(b));
        const ok = tuneSchema(b);
        counts.tune[ok ? 'accepted' : 'refused']++;
        expect(r.status, `${JSON.stringify(b)}: ${JSON.stringify(r.body)}`).toBe(ok ? 409 : 400);
      }
      console.log('bodies the document accepted and refused', counts);
      for (const c of Object.values(counts)) {
        expect(c.accepted).toBeGreaterThan(15);
        expect(c.refused).toBeGreaterThan(15);
      }
    });
  });
});
