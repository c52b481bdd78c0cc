/**
 * GET /openapi.json: the API's OpenAPI 3.1 document, generated from the
 * route table (api/routes-doc.ts) and the zod schemas that validate the
 * requests (api/schemas.ts) and describe the answers
 * (api/response-schemas.ts). Nothing in it is written by hand twice.
 */
import type { Express } from 'express';
import { z } from 'zod';
import { Catalogue, type ErrorKey } from '../shared/errors.js';
import { SESSION_COOKIE } from './auth.js';
import { errorExample, errorText } from './openapi-examples.js';
import * as R from './response-schemas.js';
import { COMMON_ERRORS, ERROR_BODIES, ROUTES, type RouteDoc } from './routes-doc.js';
import { packageVersion } from '../shared/version.js';
import { MigrateBody, SessionBody, TuneBody } from './schemas.js';

type Json = Record<string, unknown>;

/** Every schema the document names, under its name in components.schemas. */
export const COMPONENTS: Record<string, z.ZodType> = {
  Error: R.ErrorBody,
  StoredError: R.StoredError,
  HistoryEntry: R.HistoryEntry,
  Progress: R.Progress,
  Policy: R.Policy,
  Task: R.Task,
  TaskList: R.TaskList,
  InProgressError: R.InProgressError,
  NotAPeerError: R.NotAPeerError,
  CheckResult: R.CheckResult,
  PrecheckReady: R.PrecheckReady,
  PrecheckBlocked: R.PrecheckBlocked,
  Peer: R.Peer,
  PeerUrls: R.PeerUrls,
  PeerList: R.PeerList,
  PeerAnswer: R.PeerAnswer,
  Health: R.Health,
  Alive: R.Alive,
  Readiness: R.Readiness,
  EventStream: R.EventStream,
  OpenApiDocument: R.OpenApiDocument,
  SeriesPoint: R.SeriesPoint,
  FinalFigures: R.FinalFigures,
  TaskSeries: R.TaskSeries,
  VmSummary: R.VmSummary,
  VmList: R.VmList,
  Html: R.Html,
  Asset: R.Asset,
  Session: R.Session,
  SessionBody,
  Metrics: R.Metrics,
  MigrateBody,
  TuneBody,
};

/** /tasks/:id → /tasks/{id} */
export const openApiPath = (expressPath: string) => expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** A schema standing alone (a parameter's), as JSON Schema without the dialect line. */
function inline(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Json;
  return rest;
}

function components(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, s] of Object.entries(COMPONENTS)) registry.add(s, { id });
  const { schemas } = z.toJSONSchema(registry, { io: 'input', uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, Json> };
  // Each comes out as a document of its own; in components it is one schema among the others.
  return Object.fromEntries(Object.entries(schemas).map(([id, { $schema: _d, $id: _i, ...s }]) => [id, s]));
}

function operationId(r: RouteDoc): string {
  const words = r.path.split(/[/._-]/).filter(Boolean).map((w) => (w.startsWith(':') ? `By${w[1]!.toUpperCase()}${w.slice(2)}` : w[0]!.toUpperCase() + w.slice(1)));
  return r.method + words.join('');
}

function parameters(r: RouteDoc): Json[] {
  const out: Json[] = [];
  const add = (obj: z.ZodObject | undefined, where: 'path' | 'query' | 'header') => {
    for (const [name, s] of Object.entries(obj?.shape ?? {})) {
      const { description, ...schema } = inline(s as z.ZodType);
      out.push({ name, in: where, required: where === 'path' || !(s as z.ZodType).safeParse(undefined).success, ...(description ? { description } : {}), schema });
    }
  };
  add(r.params, 'path');
  add(r.query, 'query');
  add(r.headers, 'header');
  return out;
}

function errorResponses(r: RouteDoc, names: Map<z.ZodType, string>): Record<string, Json> {
  const keys = [...new Set([...COMMON_ERRORS[r.access], ...r.errors])];
  const byStatus = new Map<number, ErrorKey[]>();
  for (const k of keys) byStatus.set(Catalogue[k].http, [...(byStatus.get(Catalogue[k].http) ?? []), k]);
  const out: Record<string, Json> = {};
  for (const [status, ks] of [...byStatus].sort(([a], [b]) => a - b)) {
    const schemas = [...new Set(ks.map((k) => nameOf(ERROR_BODIES[k]?.schema ?? R.ErrorBody, names)))];
    out[String(status)] = {
      description: ks.map((k) => `\`${Catalogue[k].code}\` ${k}: ${errorText(k)}`).join('\n\n'),
      content: {
        'application/json': {
          schema: schemas.length === 1 ? ref(schemas[0]!) : { anyOf: schemas.map(ref) },
          examples: Object.fromEntries(ks.map((k) => [Catalogue[k].code, { summary: k, value: ERROR_BODIES[k]?.example ?? errorExample(k) }])),
        },
      },
    };
  }
  return out;
}

function nameOf(schema: z.ZodType, names: Map<z.ZodType, string>): string {
  const name = names.get(schema);
  if (!name) throw new Error('a schema used by a route is not in COMPONENTS');
  return name;
}

function operation(r: RouteDoc, names: Map<z.ZodType, string>): Json {
  const responses: Record<string, Json> = {};
  for (const [status, reply] of Object.entries(r.responses)) {
    responses[status] = {
      description: reply.description,
      ...(reply.headers ? { headers: Object.fromEntries(Object.entries(reply.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])) } : {}),
      ...(reply.schema ? { content: Object.fromEntries([reply.contentType ?? 'application/json'].flat().map((type) => [type, { schema: ref(nameOf(reply.schema!, names)), ...(reply.examples ? { examples: reply.examples } : {}) }])) } : {}),
    };
  }
  for (const [status, resp] of Object.entries(errorResponses(r, names))) {
    if (responses[status]) throw new Error(`${r.method} ${r.path}: ${status} is both an answer and an error`);
    responses[status] = resp;
  }
  const params = parameters(r);
  const role = r.access === 'public' ? 'No token needed.' : `Needs role ${r.access}: a bearer token or a browser session.`;
  return {
    operationId: operationId(r),
    summary: r.summary,
    description: `${r.description}\n\n${role}`,
    tags: [r.tag],
    'x-required-role': r.access,
    'x-error-codes': [...new Set([...COMMON_ERRORS[r.access], ...r.errors])].map((k) => Catalogue[k].code),
    security: r.access === 'public' ? [] : [{ bearer: [] }, { session: [] }],
    ...(params.length ? { parameters: params } : {}),
    ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: ref(nameOf(r.body.schema, names)), examples: r.body.examples } } } } : {}),
    responses,
  };
}

const DESCRIPTION = `Live migration of KVM guests between libvirt hosts, as a job-queue service with Kimchi's REST conventions.

Errors are {"code", "reason", "status"}: code is a stable code from the catalogue, reason starts with it. Each operation lists the codes it can answer with (x-error-codes, and under each status). An unknown route answers 404 KMIG0008E (401 without credentials).

Access: a bearer token (auth.tokens) with role viewer (reads) or operator (also migrates, cancels, tunes), or a browser session cookie made from one. x-required-role says which an operation needs.`;

export interface OpenApiDocument extends Json {
  openapi: '3.1.0';
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json>; securitySchemes: Json };
}

/** The document for these routes (all of them unless told otherwise). */
export function openApiDocument(version: string, routes: RouteDoc[] = ROUTES): OpenApiDocument {
  const names = new Map(Object.entries(COMPONENTS).map(([n, s]) => [s, n]));
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of routes) {
    const p = (paths[openApiPath(r.path)] ??= {});
    if (p[r.method]) throw new Error(`${r.method} ${r.path} is described twice`);
    p[r.method] = operation(r, names);
  }
  return {
    openapi: '3.1.0',
    info: { title: 'kvm-migrate', version, description: DESCRIPTION, license: { name: 'Apache-2.0', identifier: 'Apache-2.0' } },
    tags: [
      { name: 'migrations', description: 'Start, check and cancel migrations of a guest.' },
      { name: 'tasks', description: 'Migrations as Kimchi tasks: read, follow, tune, cancel.' },
      { name: 'peers', description: 'Hosts a migration may go to (federation).' },
      { name: 'probes', description: 'Health, readiness and this document; no token needed.' },
      { name: 'page', description: 'The migrations page, the queue dashboard and their files.' },
      { name: 'session', description: 'Browser sessions: log in with a token, get a cookie.' },
      { name: 'metrics', description: 'Prometheus metrics.' },
    ],
    paths,
    components: {
      schemas: components(),
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'A token from auth.tokens (name:role:token).' },
        session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'A browser session, made by POST /session with a token; writes also need to come from this API\'s own pages.' },
      },
    },
  };
}

export { packageVersion };

/** Serves the document, built once, on first request. */
export function addOpenApiRoute(app: Express, version: () => string = packageVersion): void {
  let doc: OpenApiDocument | undefined;
  app.get('/openapi.json', (_req, res) => {
    doc ??= openApiDocument(version());
    res.json(doc);
  });
}
