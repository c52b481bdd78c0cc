/**
 * Every route the API serves, described for the OpenAPI document: who may
 * call it, what it takes (the validating schemas of api/schemas.ts), what
 * it answers and which catalogue errors it can answer with.
 * test/openapi.test.ts checks this table against the routes Express has.
 */
import type { z } from 'zod';
import type { ErrorKey } from '../shared/errors.js';
import { blockedPrecheck, errorExample, finishedSeries, finishedTask, killedTask, queuedTask, readyPrecheck, runningTask, verbosePeer } from './openapi-examples.js';
import * as R from './response-schemas.js';
import { OPS_ROUTES } from './routes-doc-ops.js';
import { MigrateBody, MigrateHeaders, PeersQuery, TaskParams, TuneBody, VmParams } from './schemas.js';
import { taskListQuery } from './task-list.js';

export type Access = 'public' | 'viewer' | 'operator';

export interface Example {
  summary: string;
  value: unknown;
}

export interface Reply {
  description: string;
  /** The body's schema; a component of the document. */
  schema?: z.ZodType;
  /** application/json unless said otherwise; the schema holds for each. */
  contentType?: string | string[];
  examples?: Record<string, Example>;
  headers?: Record<string, string>;
}

export interface RouteDoc {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Express's form: /tasks/:id. */
  path: string;
  /** Set when the entry stands for a sub-app or static directory mounted here (app.use), not a route. */
  mount?: string;
  tag: string;
  summary: string;
  description: string;
  access: Access;
  params?: z.ZodObject;
  query?: z.ZodObject;
  headers?: z.ZodObject;
  body?: { schema: z.ZodType; examples: Record<string, Example> };
  /** Answers that are not catalogue errors. */
  responses: Record<number, Reply>;
  /** Catalogue errors this route answers with, beyond those every route of its access level can. */
  errors: ErrorKey[];
}

/**
 * What every route needing a given role can answer: the guards' refusals,
 * and a 503 when a session cookie cannot be looked up in Redis.
 */
export const COMMON_ERRORS: Record<Access, ErrorKey[]> = {
  public: [],
  viewer: ['UNAUTHENTICATED', 'AUTH_FAILURES', 'QUEUE_UNAVAILABLE', 'INTERNAL'],
  operator: ['UNAUTHENTICATED', 'AUTH_FAILURES', 'FORBIDDEN', 'CROSS_SITE', 'RATE_LIMITED', 'UNSUPPORTED_MEDIA_TYPE', 'BODY_TOO_LARGE', 'BAD_REQUEST', 'QUEUE_UNAVAILABLE', 'INTERNAL'],
};

/** Errors whose body carries more than {code, reason, status}. */
export const ERROR_BODIES: Partial<Record<ErrorKey, { schema: z.ZodType; example: unknown }>> = {
  MIGRATION_IN_PROGRESS: { schema: R.InProgressError, example: { ...errorExample('MIGRATION_IN_PROGRESS'), task: runningTask } },
  NOT_A_PEER: { schema: R.NotAPeerError, example: { ...errorExample('NOT_A_PEER'), peers: ['host9', 'kimchi-a.example'] } },
  MIGRATION_BLOCKED: { schema: R.PrecheckBlocked, example: blockedPrecheck },
};

const task = (summary: string, value: unknown) => ({ summary, value });
const location = { Location: 'The task: /tasks/<id>.' };
const cancelReplies: Record<number, Reply> = {
  200: { description: 'The migration was still queued: it left the queue and the task ended killed.', schema: R.Task, examples: { killed: task('Cancelled while queued', killedTask) }, headers: location },
  202: { description: 'The migration had started: the worker running it aborts the copy, recovers the guest on the source and the task ends killed (KMIG0204E).', schema: R.Task, examples: { running: task('Being stopped', runningTask) }, headers: location },
};

export const ROUTES: RouteDoc[] = [
  {
    method: 'post',
    path: '/vms/:name/migrate',
    tag: 'migrations',
    summary: 'Migrate a guest, or check that it can be migrated (dry_run)',
    description:
      'Looks the VM up on the source (bounded by libvirt.lookup_timeout) and enqueues the migration; a worker runs it through the stages check, connect, prepare, migrate, finish (recover on failure). With "dry_run": true it runs every capability check now, enqueues nothing, and answers 200 or 422 with every blocker at once.',
    access: 'operator',
    params: VmParams,
    headers: MigrateHeaders,
    body: {
      schema: MigrateBody,
      examples: {
        plain: { summary: 'Migrate to host2 with the configured limits', value: { remote_host: 'host2' } },
        policy: { summary: 'With a policy for this migration only', value: { remote_host: '127.0.0.12', bandwidth: 64, max_downtime: 800, deadline: 600, deadline_action: 'pause', auto_converge: true, compression: 'xbzrle' } },
        precheck: { summary: 'The precheck: every capability check, nothing queued', value: { remote_host: 'host2', dry_run: true } },
      },
    },
    responses: {
      200: { description: 'dry_run: every check passed.', schema: R.PrecheckReady, examples: { ready: task('Ready to migrate', readyPrecheck) } },
      202: {
        description: 'Queued: the task. Also the answer to a retry with the same Idempotency-Key (with Idempotent-Replayed: true), even after the task ended.',
        schema: R.Task,
        examples: { queued: task('Queued', queuedTask) },
        headers: { ...location, 'Idempotent-Replayed': '"true" when this answers an earlier request with the same Idempotency-Key.' },
      },
    },
    errors: ['REMOTE_HOST_INVALID', 'VM_NOT_FOUND', 'MIGRATION_IN_PROGRESS', 'IDEMPOTENCY_IN_FLIGHT', 'IDEMPOTENCY_MISMATCH', 'NOT_A_PEER', 'MIGRATION_BLOCKED', 'SOURCE_UNAVAILABLE', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'post',
    path: '/vms/:name/migrate_cancel',
    tag: 'migrations',
    summary: "Cancel the VM's queued or running migration",
    description: 'Kimchi\'s action style; the same as DELETE /tasks/{id} for the VM\'s active task. Once the job is in recover or finish the copy is over and a cancel cannot change the outcome (409 KMIG0012E).',
    access: 'operator',
    params: VmParams,
    responses: cancelReplies,
    errors: ['NO_ACTIVE_MIGRATION', 'TASK_NOT_FOUND', 'TASK_ENDED', 'CANCEL_TOO_LATE', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/tasks',
    tag: 'tasks',
    summary: 'List tasks, a page at a time',
    description:
      "Tasks kept (tasks.keep_finished), newest first (created_at, then id), at most `limit` a page. The body is Kimchi's array of tasks; the next page is announced in a Link header (rel=\"next\") and in X-Next-Cursor, and the last page has neither. The cursor is a position in the task index, so tasks added meanwhile never shift a page. One request looks at no more than 2000 tasks: when the filters leave a page short after that, it still links to the next. Kimchi's patterns (status as an expression, target_uri) share one 100 ms budget per request, however many tasks they are matched against; past it, 400. Parameters not listed are refused (400).",
    access: 'viewer',
    query: taskListQuery,
    responses: {
      200: {
        description: 'A page of tasks.',
        schema: R.TaskList,
        examples: { some: task('A running and a finished migration', [runningTask, finishedTask]) },
        headers: { Link: 'The next page: </tasks?...&cursor=...>; rel="next". Absent on the last page.', 'X-Next-Cursor': "The next page's cursor. Absent on the last page." },
      },
    },
    errors: ['BAD_REQUEST', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/tasks/:id',
    tag: 'tasks',
    summary: 'One task',
    description: 'A migration as a Kimchi task: status, message, stage, hosts, times, progress, policy, error and stage history. Poll it, or follow GET /tasks/{id}/events.',
    access: 'viewer',
    params: TaskParams,
    responses: { 200: { description: 'The task.', schema: R.Task, examples: { running: task('Copying memory', runningTask), finished: task('Finished', finishedTask) } } },
    errors: ['TASK_NOT_FOUND', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'delete',
    path: '/tasks/:id',
    tag: 'tasks',
    summary: 'Cancel a migration',
    description: 'A queued migration leaves the queue at once (200, task killed). A started one is stopped by the worker running it, in whatever process or machine (202); the task ends killed once the guest runs on the source again.',
    access: 'operator',
    params: TaskParams,
    responses: cancelReplies,
    errors: ['TASK_NOT_FOUND', 'TASK_ENDED', 'CANCEL_TOO_LATE', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'patch',
    path: '/tasks/:id',
    tag: 'tasks',
    summary: 'Change the limits of a running migration',
    description: 'Sets bandwidth (virDomainMigrateSetMaxSpeed) and max downtime (virDomainMigrateSetMaxDowntime) while the copy runs; automatic downtime steps stop. Waits up to 3 s for the worker to apply them.',
    access: 'operator',
    params: TaskParams,
    body: { schema: TuneBody, examples: { both: { summary: 'Both limits', value: { bandwidth: 32, max_downtime: 800 } }, unlimited: { summary: 'No bandwidth limit', value: { bandwidth: 'unlimited' } } } },
    responses: {
      200: { description: 'Applied: policy.in_force shows them.', schema: R.Task, examples: { applied: task('Applied', runningTask) } },
      202: { description: 'Not applied yet (e.g. still queued: the worker applies them when the copy starts).', schema: R.Task, examples: { queued: task('Queued', queuedTask) } },
    },
    errors: ['TASK_NOT_FOUND', 'TASK_ENDED', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/tasks/:id/events',
    tag: 'tasks',
    summary: "Follow a task's changes (server-sent events)",
    description: 'event: task with the task JSON, first the current state, then the state whenever it changed (looked at every 100 ms), ending after the terminal status; a comment line every 15 s keeps proxies from closing it. At most api.streams_per_client open streams per client.',
    access: 'viewer',
    params: TaskParams,
    responses: {
      200: {
        description: 'The event stream.',
        contentType: 'text/event-stream',
        schema: R.EventStream,
        examples: { stream: task('Two states', `event: task\nid: 1767261602000\ndata: ${JSON.stringify(queuedTask)}\n\nevent: task\nid: 1767261614000\ndata: ${JSON.stringify(runningTask)}\n\n`) },
      },
    },
    errors: ['TASK_NOT_FOUND', 'TOO_MANY_STREAMS', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/tasks/:id/series',
    tag: 'tasks',
    summary: "A task's progress over time",
    description: "The progress samples the worker kept (thinned as the copy goes on, so a long migration keeps a bounded number of points) and, once the task ended, its final figures: what a chart of data remaining and transfer rate over time needs, also after the migration finished.",
    access: 'viewer',
    params: TaskParams,
    responses: { 200: { description: 'The series.', schema: R.TaskSeries, examples: { finished: task('A finished migration', finishedSeries) } } },
    errors: ['TASK_NOT_FOUND', 'QUEUE_UNAVAILABLE'],
  },
  {
    method: 'get',
    path: '/peers',
    tag: 'peers',
    summary: 'Known peers (destinations)',
    description: 'Hosts found over SLP (service:wokd and service:kvm-migrate) plus federation.static_peers, this service left out; [] when federation is off. Kimchi\'s form by default.',
    access: 'viewer',
    query: PeersQuery,
    responses: {
      200: {
        description: 'Kimchi\'s list of https://host:port, or with ?verbose=true one object per peer.',
        schema: R.PeerAnswer,
        examples: { kimchi: task("Kimchi's form", ['https://kimchi-a.example:8001']), verbose: task('?verbose=true', [verbosePeer]) },
      },
    },
    errors: ['BAD_REQUEST'],
  },
  ...OPS_ROUTES,
];
