/**
 * The HTTP API: validate, look the VM up on the source (bounded), enqueue,
 * and render jobs as Kimchi tasks. It never runs a migration step.
 *
 * Errors: {code, reason, status} where `code` is the stable catalogue code and
 * `reason` starts with it ("KCHVM0002E: ..."), as Kimchi clients expect.
 */
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { destinationUri, type Config } from '../shared/config.js';
import { runChecks } from '../shared/checks/index.js';
import { isMigrationError, migrationError } from '../shared/errors.js';
import type { MigrationRequest } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import type { Clock, Logger } from '../worker/stages/stage.js';
import { authorize } from './auth.js';
import { fingerprint, validateIdempotencyKey, type Claimed } from './idempotency.js';
import type { SourceHost } from './source.js';
import { addTaskRoutes } from './task-routes.js';
import type { TaskStore } from './tasks.js';
import { filterRegex, matchRows, validateMigrateBody, validateVmName } from './validate.js';

export interface ApiDeps {
  config: Config;
  hypervisor: Hypervisor;
  source: SourceHost;
  tasks: TaskStore;
  clock: Clock;
  log: Logger;
  /** Liveness of the queue's Redis connection, for /health. */
  redisReady: () => boolean;
  /** Runs an enqueue at most once per client and Idempotency-Key (see idempotency.ts). */
  once: (scope: string, key: string, print: string, create: (id: string) => Promise<{ task: import('../shared/task.js').Task; created: boolean }>) => Promise<Claimed>;
}

type Handler = (req: Request, res: Response) => Promise<void>;

/** The precheck answers within the check stage's deadline; a libvirt failure on the source is a 503, not a 500. */
async function boundedChecks(ms: number, input: Parameters<typeof runChecks>[0]) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      runChecks(input),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(migrationError('SOURCE_UNAVAILABLE', { detail: `the checks took longer than ${ms} ms` })), ms);
      }),
    ]);
  } catch (e) {
    if (isMigrationError(e)) throw e;
    throw migrationError('SOURCE_UNAVAILABLE', { detail: e instanceof Error ? e.message : String(e) });
  } finally {
    clearTimeout(timer);
  }
}
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

export function createApp(deps: ApiDeps): express.Express {
  const { config, tasks, clock } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // Security headers on every answer (a JSON API: nothing may frame or sniff it).
  app.use(helmet());
  // Browsers on other origins are refused unless the operator lists them.
  if (config.api.cors_origins.length) {
    app.use(cors({ origin: config.api.cors_origins, allowedHeaders: ['authorization', 'content-type', 'idempotency-key'], exposedHeaders: ['location'], maxAge: 600 }));
  }

  app.get('/health', (_req, res) => {
    const redis = deps.redisReady();
    res.status(redis ? 200 : 503).json({ status: redis ? 'ok' : 'degraded', redis });
  });

  // Everything below needs a token, and the role its method needs; bodies are read only after that.
  app.use(authorize(config.auth));
  app.use(
    rateLimit({
      windowMs: 60_000,
      limit: config.api.rate_limit,
      skip: (req) => req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS',
      keyGenerator: (req) => req.principal?.name ?? 'anonymous',
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      handler: (_req, res, next) => next(migrationError('RATE_LIMITED', { limit: String(config.api.rate_limit), retry: String(res.getHeader('retry-after') ?? 60) })),
    }),
  );
  app.use(express.json({ limit: '16kb', strict: true, type: () => true }));

  app.post(
    '/vms/:name/migrate',
    wrap(async (req, res) => {
      const name = validateVmName(String(req.params.name));
      const body = validateMigrateBody(req.body ?? {});
      const domain = await deps.source.lookup(name);
      if (!domain) throw migrationError('VM_NOT_FOUND', { name });
      const destUri = destinationUri(config.libvirt.destination_uri_template, body.remote_host);
      if (body.dry_run) {
        try {
          const report = await boundedChecks(config.stages.check_deadline, {
            hypervisor: deps.hypervisor,
            source: await deps.source.connection(),
            domain,
            remoteHost: body.remote_host,
            destinationUri: destUri,
            connectTimeoutMs: config.libvirt.connect_timeout,
          });
          const checks = report.results;
          if (report.ok) {
            res.status(200).json({ ready: true, vm: name, remote_host: body.remote_host, destination_uri: destUri, checks });
            return;
          }
          const e = migrationError('MIGRATION_BLOCKED', { name, host: body.remote_host, count: String(report.blockers.length) });
          res.status(e.http).json({ code: e.code, reason: e.message, status: e.http, ready: false, blockers: report.blockers, checks });
        } finally {
          domain.free();
        }
        return;
      }
      domain.free();
      const now = clock.now();
      const request: MigrationRequest = {
        vm: name,
        remoteHost: body.remote_host,
        sourceUri: config.libvirt.source_uri,
        destinationUri: destUri,
        requestedAt: now.toISOString(),
        bandwidth: config.migration_max_bandwidth,
        downtimeMs: config.migration_downtime,
        timeoutSeconds: config.migration_destination_timeout,
        keepSourceDefinition: config.libvirt.keep_source_definition,
        deadlineAction: body.deadline_action ?? 'abort',
        autoConverge: body.auto_converge ?? false,
        compression: body.compression === 'xbzrle' ? 'xbzrle' : null,
      };
      // Per-migration policy wins over the configured defaults, for this migration only.
      if (body.bandwidth !== undefined) request.bandwidth = body.bandwidth;
      if (body.max_downtime !== undefined) request.downtimeMs = body.max_downtime;
      if (body.deadline !== undefined) request.timeoutSeconds = body.deadline;
      const key = validateIdempotencyKey(req.headers['idempotency-key']);
      const { task, created, replayed } = key
        ? await deps.once(req.principal?.name ?? 'anonymous', key, fingerprint(name, body as unknown as Record<string, unknown>), (id) => tasks.enqueue(request, now, id))
        : { ...(await tasks.enqueue(request, now)), replayed: false };
      if (replayed) {
        res.status(202).location(`/tasks/${task.id}`).setHeader('idempotent-replayed', 'true').json(task);
        return;
      }
      if (!created) {
        const e = migrationError('MIGRATION_IN_PROGRESS', { name, task: task.id });
        res.status(409).location(`/tasks/${task.id}`).json({ code: e.code, reason: e.message, status: 409, task });
        return;
      }
      deps.log.info({ task: task.id, vm: name, remote_host: body.remote_host, by: req.principal?.name }, 'migration queued');
      res.status(202).location(`/tasks/${task.id}`).json(task);
    }),
  );

  app.get(
    '/tasks',
    wrap(async (req, res) => {
      const status = filterRegex('status', req.query.status);
      const target = filterRegex('target_uri', req.query.target_uri);
      const list = await tasks.list();
      res.json(matchRows(list, status, target).map((i) => list[i]));
    }),
  );

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

  app.use((req, _res, next) => next(migrationError('ROUTE_NOT_FOUND', { method: req.method, path: req.path.slice(0, 200) })));

  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    let e = err;
    const status = (err as { status?: number; type?: string })?.status;
    const type = (err as { type?: string })?.type;
    if (type === 'entity.too.large') e = migrationError('BODY_TOO_LARGE');
    else if (type === 'entity.parse.failed') e = migrationError('BAD_REQUEST', { detail: 'the body is not valid JSON' });
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
