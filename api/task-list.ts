/**
 * GET /tasks as pages, and GET /tasks/:id/series.
 *
 * Tasks come newest first (created_at, then id, both descending), at most
 * `limit` a page. The body stays Kimchi's JSON array of tasks; the next page is
 * announced in a `Link: </tasks?…&cursor=…>; rel="next"` header (RFC 8288) and
 * in `X-Next-Cursor`, and there is none on the last page. The cursor is a
 * position in the task index, so tasks added meanwhile never shift a page.
 *
 * Filters: `vm`, `host` (source or destination), `source_host`,
 * `destination_host`, `since`/`until` (created_at), and Kimchi's `status` and
 * `target_uri`. `status` is a comma list of statuses (running,failed) or else
 * Kimchi's regular expression matched from the start; a single status word
 * means the same either way. A request looks at no more than MAX_EXAMINED
 * tasks: when filters leave a page short after that, it still carries a next
 * link, and the client goes on from there.
 */
import type { Express, NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { migrationError } from '../shared/errors.js';
import { finalFigures } from '../shared/series.js';
import type { Task, TaskStatus } from '../shared/task.js';
import type { ApiDeps } from './app.js';
import { atOrAfter, before, hostOfUri, normHost, parseMember, type IndexSet } from './task-index.js';
import { filterBudget, filterRegex, matchRows, validateRemoteHost, validateVmName, type FilterBudget } from './validate.js';

export const LIST_LIMIT = { default: 100, max: 500 } as const;
/** Most index entries one request reads, matching or not. */
export const MAX_EXAMINED = 2000;

export const TASK_STATUSES: readonly TaskStatus[] = ['running', 'finished', 'failed', 'killed'];
const ONE_STATUS = `(${TASK_STATUSES.join('|')})`;
const STATUS_LIST = new RegExp(`^${ONE_STATUS}(,${ONE_STATUS})*$`);
/** A date, or a date and time with its zone: a time without one would mean the server's zone. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2})))?$/;

/** Epoch ms of an ISO 8601 time, or null: Date.parse alone takes 2026-02-30 for March 2nd. */
function isoMs(v: string): number | null {
  const m = ISO_TIME.exec(v);
  if (!m) return null;
  const [y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0] = m.slice(1).map((x) => (x === undefined ? undefined : Number(x)));
  const day = new Date(Date.UTC(y!, mo! - 1, d!));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo! - 1 || day.getUTCDate() !== d) return null;
  if (h > 23 || mi > 59 || sec > 59 || oh > 23 || om > 59) return null;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms;
}

const once = (name: string) => ({ error: `'${name}' must be given once, as text` });
const text = (name: string) => z.string(once(name));

function instant(name: string) {
  return text(name)
    .max(40, `'${name}' is an ISO 8601 time`)
    .transform((v, ctx) => {
      const ms = isoMs(v);
      if (ms === null) {
        ctx.issues.push({ code: 'custom', input: v, message: `'${name}' must be an ISO 8601 date or time with its zone, e.g. 2026-01-31 or 2026-01-31T14:00:00Z` });
        return z.NEVER;
      }
      return ms;
    });
}

function host(name: string) {
  return text(name).transform((v, ctx) => {
    try {
      return normHost(validateRemoteHost(v));
    } catch {
      ctx.issues.push({ code: 'custom', input: v, message: `'${name}' must be a host name or an IP address` });
      return z.NEVER;
    }
  });
}

/** The query of GET /tasks: what validates it is what describes it. */
export const taskListQuery = z
  .object({
    limit: text('limit')
      .regex(/^\d{1,3}$/, `'limit' must be a whole number from 1 to ${LIST_LIMIT.max}`)
      .transform(Number)
      .pipe(z.number().min(1, `'limit' must be a whole number from 1 to ${LIST_LIMIT.max}`).max(LIST_LIMIT.max, `'limit' must be a whole number from 1 to ${LIST_LIMIT.max}`))
      .optional()
      .meta({ description: `Tasks per page, 1 to ${LIST_LIMIT.max} (default ${LIST_LIMIT.default}).`, example: '100' }),
    cursor: text('cursor')
      .transform((v, ctx) => {
        const member = decodeCursor(v);
        if (member) return member;
        ctx.issues.push({ code: 'custom', input: v, message: "'cursor' is not one this API gave out; take it from the Link or X-Next-Cursor header of the page before, or start without one" });
        return z.NEVER;
      })
      .optional()
      .meta({ description: 'Where the page starts: the X-Next-Cursor of the page before (the Link header carries it too). Opaque.' }),
    vm: text('vm')
      .transform((v, ctx) => {
        try {
          return validateVmName(v);
        } catch {
          ctx.issues.push({ code: 'custom', input: v, message: "'vm' is a VM name: 1 to 255 characters without \"/\" or control characters" });
          return z.NEVER;
        }
      })
      .optional()
      .meta({ description: 'Only tasks of the VM of this exact name.', example: 'lab-tiny' }),
    host: host('host').optional().meta({ description: 'Only tasks whose source or destination host is this one (host name or address, any case).' }),
    source_host: host('source_host').optional().meta({ description: "Only tasks from this source host (the host of the task's source URI)." }),
    destination_host: host('destination_host').optional().meta({ description: 'Only tasks to this destination host (remote_host as requested).' }),
    status: text('status')
      .max(200, "'status' must be a comma list of statuses or one regular expression of at most 200 characters")
      .optional()
      .meta({ description: 'A comma list of statuses (running, finished, failed, killed), or, as in Kimchi, one regular expression matched from the start of the status.', example: 'failed,killed' }),
    target_uri: text('target_uri').optional().meta({ description: "Kimchi's filter: a regular expression matched from the start of target_uri (/vms/<name>)." }),
    since: instant('since').optional().meta({ description: 'Only tasks created at or after this time (ISO 8601 with zone).', example: '2026-01-31T00:00:00Z' }),
    until: instant('until').optional().meta({ description: 'Only tasks created before this time (ISO 8601 with zone).' }),
  })
  .strict();

export interface TaskListQuery {
  limit: number;
  /** Index member the page starts below. */
  after: string | null;
  vm?: string;
  host?: string;
  sourceHost?: string;
  destinationHost?: string;
  statuses?: ReadonlySet<TaskStatus>;
  statusRegex?: RegExp;
  targetRegex?: RegExp;
  sinceMs?: number;
  untilMs?: number;
  /** The parameters as given, but the cursor: the next link repeats them. */
  params: Record<string, string>;
}

const KNOWN = Object.keys(taskListQuery.shape);

export function parseTaskListQuery(raw: unknown): TaskListQuery {
  const r = taskListQuery.safeParse(raw ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    const detail = i.code === 'unrecognized_keys' ? `unknown parameter ${i.keys.map((k) => `'${k.slice(0, 40)}'`).join(', ')}; GET /tasks takes ${KNOWN.join(', ')}` : i.message;
    throw migrationError('BAD_REQUEST', { detail });
  }
  const v = r.data;
  if (v.since !== undefined && v.until !== undefined && v.since >= v.until) throw migrationError('BAD_REQUEST', { detail: "'since' must be before 'until'" });
  const q: TaskListQuery = { limit: v.limit ?? LIST_LIMIT.default, after: v.cursor ?? null, params: {} };
  if (v.vm !== undefined) q.vm = v.vm;
  if (v.host !== undefined) q.host = v.host;
  if (v.source_host !== undefined) q.sourceHost = v.source_host;
  if (v.destination_host !== undefined) q.destinationHost = v.destination_host;
  if (v.since !== undefined) q.sinceMs = v.since;
  if (v.until !== undefined) q.untilMs = v.until;
  if (v.status !== undefined) {
    if (STATUS_LIST.test(v.status)) q.statuses = new Set(v.status.split(',') as TaskStatus[]);
    else q.statusRegex = filterRegex('status', v.status);
  }
  if (v.target_uri !== undefined) q.targetRegex = filterRegex('target_uri', v.target_uri);
  const given = (raw ?? {}) as Record<string, string>;
  for (const k of KNOWN) if (k !== 'cursor' && typeof given[k] === 'string') q.params[k] = given[k];
  return q;
}

export function encodeCursor(member: string): string {
  return Buffer.from(member).toString('base64url');
}

/** The index member a cursor stands for, or null for anything this API did not give out. */
export function decodeCursor(c: string): string | null {
  if (!/^[A-Za-z0-9_-]{1,120}$/.test(c)) return null;
  const member = Buffer.from(c, 'base64url').toString();
  return parseMember(member) && encodeCursor(member) === c ? member : null;
}

export function nextHref(q: TaskListQuery, next: string): string {
  return `/tasks?${new URLSearchParams({ ...q.params, cursor: encodeCursor(next) })}`;
}

/** The index the listing reads: the narrowest one its filters name. */
export function drivingSet(q: TaskListQuery): IndexSet {
  if (q.vm !== undefined) return { kind: 'vm', value: q.vm };
  if (q.destinationHost !== undefined) return { kind: 'destination', value: q.destinationHost };
  if (q.sourceHost !== undefined) return { kind: 'source', value: q.sourceHost };
  if (q.host !== undefined) return { kind: 'host', value: q.host };
  return { kind: 'all' };
}

/** Which of `rows` the query keeps. Kimchi's patterns spend from the request's time budget (matchRows). */
export function keepRows(q: TaskListQuery, rows: (Task | null)[], budget: FilterBudget = filterBudget()): boolean[] {
  const exact = rows.map((t) => {
    if (!t) return false;
    const src = hostOfUri(t.source.uri);
    const dst = normHost(t.destination.host);
    return (
      (q.vm === undefined || t.vm === q.vm) &&
      (q.sourceHost === undefined || src === q.sourceHost) &&
      (q.destinationHost === undefined || dst === q.destinationHost) &&
      (q.host === undefined || src === q.host || dst === q.host) &&
      (q.statuses === undefined || q.statuses.has(t.status))
    );
  });
  if (!q.statusRegex && !q.targetRegex) return exact;
  const candidates = rows.flatMap((t, i) => (t && exact[i] ? [{ i, t }] : []));
  if (!candidates.length) return exact;
  const keep = new Set(matchRows(candidates.map((c) => c.t), q.statusRegex, q.targetRegex, budget).map((j) => candidates[j]!.i));
  return rows.map((_, i) => keep.has(i));
}

export interface PageSource {
  /** Index members newest first, from a lex bound down to another, at most `count`. */
  range(set: IndexSet, from: string, to: string, count: number): Promise<string[]>;
  /**
   * The tasks of those members; null for one whose task is gone. With
   * `statuses`, also null for one whose task cannot have any of them (its
   * data is then not read).
   */
  rows(members: string[], statuses?: ReadonlySet<TaskStatus>): Promise<(Task | null)[]>;
}

export interface Page {
  tasks: Task[];
  /** The member the next page starts below; null on the last page. */
  next: string | null;
}

/**
 * Reads one page: index entries in batches, their tasks in parallel, until the
 * page is full or MAX_EXAMINED were read. Kimchi's patterns get one time budget
 * for the whole page, however many batches it takes.
 */
export async function readPage(src: PageSource, q: TaskListQuery, maxExamined = MAX_EXAMINED, budget: FilterBudget = filterBudget()): Promise<Page> {
  const set = drivingSet(q);
  const bounds = [q.after !== null ? `(${q.after}` : null, q.untilMs !== undefined ? before(q.untilMs) : null].filter((b): b is string => b !== null);
  let from = bounds.sort()[0] ?? '+';
  const to = q.sinceMs !== undefined ? atOrAfter(q.sinceMs) : '-';
  const batch = Math.min(200, Math.max(20, q.limit));
  const out: Task[] = [];
  let examined = 0;
  let last: string | null = null;
  for (;;) {
    const want = Math.min(batch, maxExamined - examined);
    if (want <= 0) return { tasks: out, next: last };
    const members = await src.range(set, from, to, want);
    if (!members.length) return { tasks: out, next: null };
    const rows = await src.rows(members, q.statuses);
    const keep = keepRows(q, rows, budget);
    for (let i = 0; i < members.length; i++) {
      examined++;
      last = members[i]!;
      if (!keep[i]) continue;
      out.push(rows[i]!);
      if (out.length < q.limit) continue;
      const more = i < members.length - 1 || (await src.range(set, `(${last}`, to, 1)).length > 0;
      return { tasks: out, next: more ? last : null };
    }
    if (members.length < want) return { tasks: out, next: null };
    from = `(${last}`;
  }
}

type Handler = (req: Request, res: Response) => Promise<void>;
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

export function addTaskListRoutes(app: Express, deps: Pick<ApiDeps, 'tasks'>): void {
  const { tasks } = deps;
  app.get(
    '/tasks',
    wrap(async (req, res) => {
      const q = parseTaskListQuery(req.query);
      const page = await tasks.page(q);
      if (page.next) {
        res.setHeader('link', `<${nextHref(q, page.next)}>; rel="next"`);
        res.setHeader('x-next-cursor', encodeCursor(page.next));
      }
      res.json(page.tasks);
    }),
  );

  app.get(
    '/tasks/:id/series',
    wrap(async (req, res) => {
      const id = String(req.params.id);
      const task = await tasks.get(id);
      if (!task) throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      const series = await tasks.series(id);
      res.json({ id: task.id, status: task.status, interval_ms: series?.intervalMs ?? null, points: series?.points ?? [], final: finalFigures(task) });
    }),
  );
}
