/**
 * What the queue dashboard may change, and how much it may read at once,
 * decided before bull-board sees a request.
 *
 * bull-board can do anything BullMQ can: add a job with any data, rewrite a
 * queued job's data or checkpoint, retry, empty or obliterate. Each of those
 * goes around what the API enforces (validated requests, URIs built from
 * config, one migration per VM, a cancel that recovers the guest), so even
 * an operator's board allows only these writes, and refuses the rest with
 * 403 KMIG0029E:
 *
 * - pause and resume the queue: workers stop or start taking new jobs;
 *   running migrations go on, queued ones wait. Nothing is skipped.
 * - promote delayed jobs (one or all): a delayed job waits for a migration
 *   slot or a retry's backoff; promoted, it runs the same stages with the
 *   same checks and slot rules, only sooner. The API's cancel promotes too.
 * - remove completed or failed jobs (one, or all in that state): they ended;
 *   no worker acts on them and they hold no VM lock. A queued or running job
 *   is cancelled with DELETE /tasks/:id, which stops libvirt and recovers
 *   the guest; removing it instead would leave a libvirt job unwatched.
 *
 * Retry is refused: a failed job re-run from its checkpoint skips the checks
 * it already passed and takes no per-VM lock (released when it failed), so it
 * could run beside a newer migration of the same guest. A new POST
 * /vms/:name/migrate checks everything again.
 */
import type { Queue } from 'bullmq';
import type { NextFunction, Request, Response } from 'express';
import { migrationError } from '../shared/errors.js';
import { withTimeout } from '../shared/timeout.js';

export type BoardWrite = { kind: 'allow' } | { kind: 'if-ended'; jobId: string } | { kind: 'refuse'; what: string; instead: string };

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const API = '/api/queues/';
/** Words bull-board's routes use where a job id could stand: such an id would reach another route. */
const RESERVED = new Set(['add', 'retry', 'promote', 'clean', 'pause', 'resume', 'empty', 'obliterate', 'concurrency', 'rate-limit', 'job-schedulers', 'update-data', 'delay', 'priority']);

const ALLOW: BoardWrite = { kind: 'allow' };
const refuse = (what: string, instead: string): BoardWrite => ({ kind: 'refuse', what, instead });
const TO_START = 'start a migration with POST /vms/:name/migrate, which checks it and takes the guest\'s lock';
const TO_CANCEL = 'cancel a queued or running migration with DELETE /tasks/:id, which stops libvirt and recovers the guest';

/** Why a write bull-board would do is refused, by what it would do (`segs`: the path below /api/queues/). */
function refusalFor(method: string, segs: string[]): BoardWrite {
  const last = segs.at(-1);
  if (method === 'POST' && last === 'add') return refuse('adding a job', TO_START);
  if (segs[1] === 'retry' || last === 'retry') return refuse('retrying a job', `${TO_START} again`);
  if (method === 'PATCH') return refuse("changing a job's data, delay or priority", "PATCH /tasks/:id changes a running migration's bandwidth and max_downtime; DELETE /tasks/:id cancels");
  if (segs[1] === 'concurrency' || segs[1] === 'rate-limit') return refuse("changing the queue's limits", 'set worker.concurrency and limits.* in the configuration');
  return refuse('removing or changing queued or running jobs', TO_CANCEL);
}

/**
 * What a request to the dashboard (its path below /admin/queues) may do.
 * Exact, case-sensitive matches only: anything else that changes something
 * is refused, so a route bull-board adds later is refused until judged here.
 */
export function boardWrite(method: string, path: string): BoardWrite {
  if (READS.has(method)) return ALLOW;
  if (!path.startsWith(API)) return refusalFor(method, []);
  const rest = path.slice(API.length).split('/');
  const [a, b, c] = rest;
  if (method === 'PUT') {
    if (rest.length === 1 && (a === 'pause' || a === 'resume')) return ALLOW;
    if (rest.length === 2 && a !== '' && (b === 'pause' || b === 'resume' || b === 'promote')) return ALLOW;
    if (rest.length === 3 && a !== '' && b === 'clean' && (c === 'completed' || c === 'failed')) return ALLOW;
    if (rest.length === 3 && a !== '' && b !== undefined && b !== '' && !RESERVED.has(b)) {
      if (c === 'promote') return ALLOW;
      if (c === 'clean') {
        try {
          return { kind: 'if-ended', jobId: decodeURIComponent(b) };
        } catch {
          return refusalFor(method, rest);
        }
      }
    }
  }
  return refusalFor(method, rest);
}

/** bull-board's page size has no upper bound; a page of 20,000 jobs held the event loop for seconds. */
export const MAX_JOBS_PER_PAGE = 100;
/** Pages past this are far beyond any queue the retention keeps; the bound keeps the offset a small integer. */
export const MAX_PAGE = 1_000_000;

/**
 * The query string with jobsPerPage and page brought within bounds, or null
 * when it needs no change. A value that is not a number is left for
 * bull-board to refuse.
 */
export function boundedQuery(search: string): string | null {
  const q = new URLSearchParams(search);
  let changed = false;
  for (const [key, max] of [['jobsPerPage', MAX_JOBS_PER_PAGE], ['page', MAX_PAGE]] as const) {
    if (q.getAll(key).some((v) => Number(v) > max)) {
      q.set(key, String(max));
      changed = true;
    }
  }
  return changed ? q.toString() : null;
}

const ENDED = new Set(['completed', 'failed']);
const STATE_WITHIN_MS = 3000;

/** Middleware in front of the boards: the writes above only, and pages of a bounded size. */
export function guardBoard(queue: Pick<Queue, 'getJobState'>) {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const at = req.url.indexOf('?');
    if (at >= 0) {
      const bounded = boundedQuery(req.url.slice(at + 1));
      if (bounded !== null) req.url = `${req.url.slice(0, at)}?${bounded}`;
    }
    const decision = boardWrite(req.method, req.path);
    if (decision.kind === 'allow') return next();
    if (decision.kind === 'refuse') return next(migrationError('DASHBOARD_REFUSED', { what: decision.what, instead: decision.instead }));
    let state: string;
    try {
      state = await withTimeout(queue.getJobState(decision.jobId), STATE_WITHIN_MS, () => new Error(`no answer within ${STATE_WITHIN_MS} ms`));
    } catch (e) {
      return next(migrationError('QUEUE_UNAVAILABLE', { detail: (e instanceof Error ? e.message : String(e)).replace(/rediss?:\/\/\S*/g, 'redis://…') }));
    }
    if (ENDED.has(state)) return next();
    next(migrationError('DASHBOARD_REFUSED', { what: `removing a job that is ${state === 'unknown' ? 'not there' : state}`, instead: TO_CANCEL }));
  };
}
