/**
 * Request validation: the schemas of api/schemas.ts (the same ones the
 * OpenAPI document is generated from) parse the request; the first issue
 * becomes a MigrationError with a 4xx code and the schema's message. Nothing
 * reaches libvirt or Redis unchecked.
 */
import { createContext, Script, type Context } from 'node:vm';
import type { z } from 'zod';
import { migrationError } from '../shared/errors.js';
import { filterPattern, MigrateBody, PeersQuery, RemoteHost, TuneBody, VmName } from './schemas.js';

export type { MigrateBody, PolicyBody, TuneBody } from './schemas.js';

/**
 * The issue a client should fix first: an unknown property (it may be a
 * Kimchi field that needs explaining), then the others in schema order.
 */
function firstIssue(issues: z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

type Code = 'BAD_REQUEST' | 'REMOTE_HOST_INVALID';

function parse<S extends z.ZodType>(schema: S, input: unknown, codeFor: (issue: z.core.$ZodIssue) => Code = () => 'BAD_REQUEST'): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = firstIssue(r.error.issues);
  throw migrationError(codeFor(issue), { detail: issue.message });
}

/**
 * remote_host ends up inside a libvirt URI: only a host name or an IP address
 * is accepted, so it cannot inject a path, a port, a user or URI parameters.
 */
export function validateRemoteHost(v: unknown): string {
  return parse(RemoteHost, v, () => 'REMOTE_HOST_INVALID');
}

export function validateMigrateBody(body: unknown): MigrateBody {
  // A remote_host that is there but wrong has Kimchi's code; a missing one is a bad request like any other.
  const given = typeof body === 'object' && body !== null && Object.hasOwn(body, 'remote_host');
  return parse(MigrateBody, body, (i) => (given && i.path[0] === 'remote_host' ? 'REMOTE_HOST_INVALID' : 'BAD_REQUEST'));
}

/** PATCH /tasks/:id: the limits that can change while the copy runs. */
export function validateTuneBody(body: unknown): TuneBody {
  return parse(TuneBody, body);
}

/** libvirt accepts almost any name; refuse what cannot be one (empty, '/', control characters, huge). */
export function validateVmName(name: string): string {
  if (!VmName.safeParse(name).success) {
    throw migrationError('BAD_REQUEST', { detail: 'a VM name is 1 to 255 characters without "/" or control characters' });
  }
  return name;
}

/** Kimchi's UI sends filters as regular expressions; a bad one is a 400, not a 500. */
export function filterRegex(param: string, v: unknown): RegExp | undefined {
  return parse(filterPattern(param), v);
}

/** GET /peers: whether the client asked for objects. */
export function validatePeersQuery(query: unknown): z.output<typeof PeersQuery> {
  return parse(PeersQuery, query ?? {});
}

/** Longest the task filters may run in one request: a catastrophic pattern must not stall the API. */
export const FILTER_BUDGET_MS = 100;

/**
 * What one request's filters may still spend, shared by every batch of rows
 * the request matches: a listing that matches in many small batches (limit=1)
 * must not get a fresh budget for each. The context they run in is made once.
 */
export interface FilterBudget {
  leftMs: number;
  context?: Context;
}

export const filterBudget = (ms = FILTER_BUDGET_MS): FilterBudget => ({ leftMs: ms });

const MATCH = new Script('rows.flatMap((r, i) => ((!s || s.test(r.status)) && (!t || t.test(r.target_uri)) ? [i] : []))');

const tooSlow = () => migrationError('BAD_REQUEST', { detail: `the filter expressions took longer than ${FILTER_BUDGET_MS} ms; simplify them` });

/**
 * Indexes of the rows whose status and target_uri match the filters, with
 * Kimchi's re.match semantics (anchored at the start). Runs within what is
 * left of the request's budget, since a client-supplied pattern can backtrack
 * for minutes; past it, a 400.
 */
export function matchRows(rows: { status: string; target_uri: string }[], status: RegExp | undefined, target: RegExp | undefined, budget: FilterBudget = filterBudget()): number[] {
  if (budget.leftMs <= 0) throw tooSlow();
  const anchored = (r: RegExp | undefined) => (r ? new RegExp(`^(?:${r.source})`, r.flags) : null);
  const context = (budget.context ??= createContext({}));
  Object.assign(context, { rows: rows.map((r) => ({ status: r.status, target_uri: r.target_uri })), s: anchored(status), t: anchored(target) });
  const t0 = performance.now();
  try {
    return MATCH.runInContext(context, { timeout: Math.max(1, Math.ceil(budget.leftMs)) }) as number[];
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      budget.leftMs = 0;
      throw tooSlow();
    }
    throw e;
  } finally {
    budget.leftMs -= performance.now() - t0;
    context.rows = null;
  }
}
