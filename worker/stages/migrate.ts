/**
 * Stage `migrate` (seed: "do actually migration"): virDomainMigrateToURI3,
 * live, peer-to-peer, tunnelled, with a monitor alongside and the
 * migration_destination_timeout enforced by aborting the libvirt job.
 *
 * On resume it never starts a second migration blindly: it looks at real
 * state first (job still active: re-attach; guest on the destination: finish;
 * otherwise: recover).
 */
import { migrationError, type ErrorJSON } from '../../shared/errors.js';
import type { Connection, Domain, MigrateParams } from '../../shared/libvirt/types.js';
import { progressFrom } from '../policy/progress.js';
import { observePlacement } from './placement.js';
import type { Stage, StageContext, StageOutcome } from './stage.js';

/** Headroom over migration_destination_timeout for the abort and its cleanup. */
const ABORT_GRACE_MS = 60_000;

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Samples job stats while the migration runs; applies max downtime once the job exists. */
function startMonitor(ctx: StageContext, domain: Domain, downtimeMs: number | null) {
  // Continue from what the task already showed: a resumed monitor must not go backwards.
  let percent = ctx.lastProgress?.percent ?? 0;
  let downtimeApplied = downtimeMs === null;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const stats = await domain.jobStats();
      if (stats.type !== 'unbounded' && stats.type !== 'bounded') return;
      if (!downtimeApplied && downtimeMs !== null) {
        downtimeApplied = true;
        await domain.migrateSetMaxDowntime(downtimeMs).catch((e) => ctx.log.warn({ err: errText(e) }, 'could not set max downtime'));
      }
      const p = progressFrom(stats.fields, percent);
      percent = p.percent;
      await ctx.progress(p);
    } catch (e) {
      ctx.log.debug({ err: errText(e) }, 'job stats sample failed');
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), ctx.config.worker.progress_interval);
  return { stop: () => clearInterval(timer) };
}

/** Waits for a libvirt job that is already running (after a worker restart) to end. */
async function waitForJobEnd(ctx: StageContext, domain: Domain, deadline: number): Promise<boolean> {
  const stop = startMonitor(ctx, domain, null);
  try {
    for (;;) {
      if (ctx.signal.aborted) throw migrationError('TRANSIENT', { detail: 'stopped watching the running migration: this worker lost the job' });
      const stats = await domain.jobStats().catch(() => ({ type: 'none' as const, fields: {} }));
      if (stats.type !== 'unbounded' && stats.type !== 'bounded') return false;
      if (ctx.clock.now().getTime() > deadline) {
        await domain.abortJob().catch(() => undefined);
        return true;
      }
      await new Promise((r) => setTimeout(r, ctx.config.worker.progress_interval));
    }
  } finally {
    stop.stop();
  }
}

async function resume(ctx: StageContext, startedAt: string): Promise<StageOutcome> {
  const { request } = ctx;
  const deadline = Date.parse(startedAt) + request.timeoutSeconds * 1000;
  const source = await ctx.source();
  const domain = await source.lookupDomain(request.vm);
  let timedOut = false;
  if (domain) {
    timedOut = await waitForJobEnd(ctx, domain, deadline);
    domain.free();
  }
  const where = await observePlacement(ctx);
  if (where.on === 'destination') return { next: 'finish', results: { migrate: { startedAt, endedAt: ctx.clock.now().toISOString(), outcome: 'completed' } }, detail: 're-attached: the guest already runs on the destination' };
  const error = timedOut
    ? migrationError('MIGRATION_TIMEOUT', { name: request.vm, seconds: String(request.timeoutSeconds) }).toJSON()
    : migrationError('MIGRATION_FAILED', { name: request.vm, detail: 'the worker running it stopped before the migration completed' }).toJSON();
  return { next: 'recover', error, results: { migrate: { startedAt, endedAt: ctx.clock.now().toISOString(), outcome: 'failed', error } }, detail: `resumed: guest on ${where.on}` };
}

function params(ctx: StageContext, persistentXml: string | null): MigrateParams {
  const p: MigrateParams = {};
  if (persistentXml) p.persistentXml = persistentXml;
  const bw = ctx.checkpoint.results.prepare?.bandwidthMiBs;
  if (bw) p.bandwidthMiBs = bw;
  return p;
}

async function completedStats(ctx: StageContext): Promise<Record<string, number | string> | undefined> {
  try {
    const dest = await ctx.destination();
    const d = await dest.lookupDomain(ctx.request.vm);
    if (!d) return undefined;
    const s = await d.jobStats({ completed: true });
    d.free();
    return s.fields;
  } catch {
    return undefined;
  }
}

export const migrateStage: Stage = {
  name: 'migrate',
  deadlineMs: (_config, request) => request.timeoutSeconds * 1000 + ABORT_GRACE_MS,
  async run(ctx) {
    const { request } = ctx;
    const started = ctx.checkpoint.results.migrate?.startedAt;
    if (started) return resume(ctx, started);
    const flags = ctx.checkpoint.results.connect?.flags;
    if (flags === undefined) throw migrationError('INTERNAL', { detail: 'migrate stage without connect results' });

    const source = await ctx.source();
    const domain = await source.lookupDomain(request.vm);
    if (!domain) throw migrationError('VM_NOT_FOUND', { name: request.vm });
    const downtimeMs = ctx.checkpoint.results.prepare?.downtimeMs ?? null;

    // libvirt errors are "last error on this connection wins": the long call gets its own.
    let mconn: Connection | null = null;
    let mdom: Domain | null = null;
    let startedAt: string | null = null;
    let monitor: { stop(): void } | null = null;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let failure: ErrorJSON | null = null;
    try {
      mconn = await ctx.hypervisor.open(request.sourceUri, { timeoutMs: ctx.config.libvirt.connect_timeout });
      mdom = await mconn.lookupDomain(request.vm);
      if (!mdom) throw migrationError('VM_NOT_FOUND', { name: request.vm });
      // Read just before migrating and never stored: the secure XML may hold console passwords.
      const persistentXml = ctx.checkpoint.results.connect?.persistent ? await mdom.xml({ migratable: true, secure: true, inactive: true }) : null;
      // Everything above changed nothing, so a failure there is simply retried.
      // From here on the checkpoint says "started", and a resumed stage looks before it acts.
      startedAt = ctx.clock.now().toISOString();
      await ctx.save({ migrate: { startedAt } }, { event: 'step', detail: `libvirt migration to ${request.destinationUri} started` });
      monitor = startMonitor(ctx, domain, downtimeMs);
      timer = setTimeout(() => {
        timedOut = true;
        ctx.log.warn({ vm: request.vm }, 'migration_destination_timeout reached: aborting the libvirt job');
        void domain.abortJob().catch((e) => ctx.log.error({ err: errText(e) }, 'abort failed'));
      }, request.timeoutSeconds * 1000);
      try {
        await mdom.migrateToURI3(request.destinationUri, params(ctx, persistentXml), flags);
      } catch (e) {
        failure = timedOut
          ? migrationError('MIGRATION_TIMEOUT', { name: request.vm, seconds: String(request.timeoutSeconds) }).toJSON()
          : migrationError('MIGRATION_FAILED', { name: request.vm, detail: errText(e) }).toJSON();
      }
    } finally {
      clearTimeout(timer);
      monitor?.stop();
      mdom?.free();
      domain.free();
      await mconn?.close().catch(() => undefined);
    }
    if (!startedAt) throw migrationError('INTERNAL', { detail: 'migration neither started nor failed' });
    const endedAt = ctx.clock.now().toISOString();
    if (failure) return { next: 'recover', error: failure, results: { migrate: { startedAt, endedAt, outcome: 'failed', error: failure } }, detail: failure.reason };
    const stats = await completedStats(ctx);
    return { next: 'finish', results: { migrate: { startedAt, endedAt, outcome: 'completed', ...(stats ? { stats } : {}) } }, detail: 'libvirt reports the migration completed' };
  },
};
