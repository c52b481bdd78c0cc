/**
 * POST /vms/:name/migrate: validate, replay an Idempotency-Key's task, check
 * the VM is on the source, then either run the precheck (dry_run, on a handle
 * looked up, bounded) or enqueue the migration (the source's known names
 * answer, else a bounded lookup: source.ts).
 */
import type { Express, NextFunction, Request, Response } from 'express';
import { runChecks } from '../shared/checks/index.js';
import { destinationUri } from '../shared/config.js';
import { isMigrationError, migrationError } from '../shared/errors.js';
import type { MigrationRequest } from '../shared/job.js';
import type { Task } from '../shared/task.js';
import type { ApiDeps } from './app.js';
import { fingerprint, validateIdempotencyKey } from './idempotency.js';
import { findPeer, peerHosts } from './peer-policy.js';
import { validateMigrateBody, validateVmName, type MigrateBody } from './validate.js';
import { redactDeep, redactUri } from '../shared/redact.js';
import { withTimeout } from '../shared/timeout.js';

type Handler = (req: Request, res: Response) => Promise<void>;
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

/** The precheck answers within the check stage's deadline; a libvirt failure on the source is a 503, not a 500. */
async function boundedChecks(ms: number, input: Parameters<typeof runChecks>[0]) {
  try {
    return await withTimeout(runChecks(input), ms, () => migrationError('SOURCE_UNAVAILABLE', { detail: `the checks took longer than ${ms} ms` }));
  } catch (e) {
    if (isMigrationError(e)) throw e;
    throw migrationError('SOURCE_UNAVAILABLE', { detail: e instanceof Error ? e.message : String(e) });
  }
}
function requestFor(deps: ApiDeps, name: string, body: MigrateBody, now: Date): MigrationRequest {
  const { config } = deps;
  const request: MigrationRequest = {
    vm: name,
    remoteHost: body.remote_host,
    sourceUri: config.libvirt.source_uri,
    destinationUri: destinationUri(config.libvirt.destination_uri_template, body.remote_host),
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
  return request;
}

const replayed = (res: Response, task: Task) => res.status(202).location(`/tasks/${task.id}`).setHeader('idempotent-replayed', 'true').json(task);

export function addMigrateRoute(app: Express, deps: ApiDeps): void {
  const { config, tasks, clock } = deps;
  app.post(
    '/vms/:name/migrate',
    wrap(async (req, res) => {
      const name = validateVmName(String(req.params.name));
      const body = validateMigrateBody(req.body ?? {});
      const key = body.dry_run ? undefined : validateIdempotencyKey(req.headers['idempotency-key']);
      const scope = req.principal?.name ?? 'anonymous';
      const print = fingerprint(name, body);
      // A retry is answered from Redis alone: its VM may have left the source long ago.
      if (key) {
        const earlier = await deps.idempotency.replay(scope, key, print);
        if (earlier) return void replayed(res, earlier);
      }
      // Known peers are the destinations the precheck offers; with require_peer, the only ones allowed.
      const peers = deps.peers.list();
      if (config.federation.require_peer && !findPeer(peers, body.remote_host)) {
        const e = migrationError('NOT_A_PEER', { host: body.remote_host, peers: peerHosts(peers) });
        res.status(e.http).json({ code: e.code, reason: e.message, status: e.http, peers: peers.map((p) => p.host) });
        return;
      }
      const destinations = peers.map((p) => p.host);
      const request = requestFor(deps, name, body, clock.now());
      if (body.dry_run) {
        // The precheck reads the domain itself: a real handle, looked up.
        const domain = await deps.source.lookup(name);
        if (!domain) throw migrationError('VM_NOT_FOUND', { name });
        try {
          const report = await boundedChecks(config.stages.check_deadline, {
            hypervisor: deps.hypervisor,
            source: await deps.source.connection(),
            domain,
            remoteHost: body.remote_host,
            destinationUri: request.destinationUri,
            connectTimeoutMs: config.libvirt.connect_timeout,
          });
          // Check reasons quote the destination URI: shown, like tasks, without its credentials.
          const checks = redactDeep(report.results) as typeof report.results;
          if (report.ok) {
            res.status(200).json({ ready: true, vm: name, remote_host: body.remote_host, destination_uri: redactUri(request.destinationUri), checks, peers: destinations });
            return;
          }
          const e = migrationError('MIGRATION_BLOCKED', { name, host: body.remote_host, count: String(report.blockers.length) });
          res.status(e.http).json({ code: e.code, reason: e.message, status: e.http, ready: false, blockers: redactDeep(report.blockers), checks, peers: destinations });
        } finally {
          domain.free();
        }
        return;
      }
      // Enqueueing needs only to know the VM is there: the source's known names, else a lookup.
      if (!(await deps.source.exists(name))) throw migrationError('VM_NOT_FOUND', { name });
      const now = new Date(request.requestedAt);
      const out = key ? await deps.idempotency.once(scope, key, print, (id) => tasks.enqueue(request, now, id)) : { ...(await tasks.enqueue(request, now)), replayed: false };
      if (out.replayed) return void replayed(res, out.task);
      if (!out.created) {
        const e = migrationError('MIGRATION_IN_PROGRESS', { name, task: out.task.id });
        res.status(409).location(`/tasks/${out.task.id}`).json({ code: e.code, reason: e.message, status: 409, task: out.task });
        return;
      }
      deps.log.info({ task: out.task.id, vm: name, remote_host: body.remote_host, by: scope }, 'migration queued');
      res.status(202).location(`/tasks/${out.task.id}`).json(out.task);
    }),
  );
}
