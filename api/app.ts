/**
 * The HTTP API: validate, look the VM up on the source (bounded), enqueue,
 * and render jobs as Kimchi tasks. It never runs a migration step.
 *
 * Errors: {code, reason, status} where `code` is the stable catalogue code and
 * `reason` starts with it ("KCHVM0002E: ..."), as Kimchi clients expect.
 */
import type { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../shared/config.js';
import { isMigrationError, migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import type { Clock, Logger } from '../worker/stages/stage.js';
import { createAuthenticator } from './auth.js';
import { addDashboard } from './dashboard.js';
import { innerGuards, outerGuards } from './guards.js';
import { addHealthRoutes, type Probes } from './health.js';
import type { Idempotency } from './idempotency.js';
import { addMetricsRoute, type MetricsEndpoint } from './metrics.js';
import { addMigrateRoute } from './migrate-route.js';
import { addOpenApiRoute } from './openapi.js';
import { addPageAssets, addPageRoute } from './page.js';
import { addPeerRoutes, type Peers } from './peers.js';
import { addLoginRoutes, addSessionRoute, type SessionStore } from './session.js';
import type { SourceHost } from './source.js';
import { addTaskListRoutes } from './task-list.js';
import { addTaskRoutes } from './task-routes.js';
import type { TaskSignals } from './task-events.js';
import type { TaskStore } from './tasks.js';
import { addVmRoutes } from './vms-route.js';

export interface ApiDeps {
  config: Config;
  hypervisor: Hypervisor;
  source: SourceHost;
  tasks: TaskStore;
  clock: Clock;
  log: Logger;
  /** Liveness of the queue's Redis connection, for /health. */
  redisReady: () => boolean;
  /** What /readyz asks: Redis, the source libvirt, the workers. */
  probes: Probes;
  /** Idempotency-Key: replays and at-most-once enqueues per client and key. */
  idempotency: Idempotency;
  /** Known peers (federation), read from a cache: never waits for discovery. */
  peers: Peers;
  /** GET /metrics: this process's metrics and the migration metrics workers record in Redis. */
  metrics: MetricsEndpoint;
  /** Browser sessions (cookie → token name and role) in Redis. */
  sessions: SessionStore;
  /** The migrations queue, for the dashboard at /admin/queues. */
  queue: Queue<MigrationJobData>;
  /** Wakes event streams when their job changes (task-events.ts); without it they only look every 100 ms. */
  signals?: TaskSignals;
}

type Handler = (req: Request, res: Response) => Promise<void>;

const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

export function createApp(deps: ApiDeps): express.Express {
  const { config, tasks } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(outerGuards(config));

  app.get('/health', (_req, res) => {
    const redis = deps.redisReady();
    res.status(redis ? 200 : 503).json({ status: redis ? 'ok' : 'degraded', redis });
  });
  addHealthRoutes(app, deps.probes);
  addOpenApiRoute(app);
  addPageAssets(app);

  // One failure brake for bearer tokens, session cookies and logins.
  const auth = createAuthenticator(config.auth, { failuresPerMinute: config.api.auth_failure_limit, now: Date.now }, deps.sessions);
  addLoginRoutes(app, { config, sessions: deps.sessions, auth, clock: deps.clock, log: deps.log });

  // Everything below needs a token (or a session) and the role its method needs; bodies are read only after that.
  app.use(innerGuards(config, auth));
  addSessionRoute(app);
  addDashboard(app, deps.queue);

  addMigrateRoute(app, deps);

  // GET /tasks (pages, filters) and GET /tasks/:id/series.
  addTaskListRoutes(app, deps);

  app.get(
    '/tasks/:id',
    wrap(async (req, res) => {
      const id = String(req.params.id);
      const task = await tasks.get(id);
      if (!task) throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      res.json(task);
    }),
  );

  addTaskRoutes(app, deps);
  addPeerRoutes(app, deps.peers);
  addMetricsRoute(app, deps.metrics);
  addVmRoutes(app, deps);
  addPageRoute(app);

  app.use((req, _res, next) => next(migrationError('ROUTE_NOT_FOUND', { method: req.method, path: req.path.slice(0, 200) })));

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let e = err;
    const status = (err as { status?: number; type?: string })?.status;
    const type = (err as { type?: string })?.type;
    if (type === 'entity.too.large') e = migrationError('BODY_TOO_LARGE');
    else if (type === 'entity.parse.failed') e = migrationError('BAD_REQUEST', { detail: 'the body is not valid JSON' });
    // A file the page's static handler does not have: its message names a path on this server.
    else if (!isMigrationError(err) && status === 404) e = migrationError('ROUTE_NOT_FOUND', { method: req.method, path: req.path.slice(0, 200) });
    else if (!isMigrationError(err) && status && status >= 400 && status < 500) e = migrationError('BAD_REQUEST', { detail: (err as Error).message });
    if (!isMigrationError(e)) {
      deps.log.error({ err: (err as Error)?.stack ?? String(err) }, 'unexpected error');
      e = migrationError('INTERNAL', { detail: 'see the service log' });
    }
    const me = e as ReturnType<typeof migrationError>;
    res.status(me.http).json({ code: me.code, reason: me.message, status: me.http });
  });
  return app;
}
