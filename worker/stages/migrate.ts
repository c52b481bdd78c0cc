/**
 * Stage `migrate` (seed: "do actually migration"): virDomainMigrateToURI3,
 * live, peer-to-peer, tunnelled, watched by the monitor, with the deadline
 * action (abort, or pause the guest so the copy completes), cancel and live
 * tuning from any API process.
 *
 * On resume it never starts a second migration blindly: it looks at real
 * state first (job still active: re-attach; guest on the destination: finish;
 * otherwise: recover).
 */
import { migrationError, type ErrorJSON } from '../../shared/errors.js';
import { MigrateFlag, type Connection, type Domain, type MigrateParams } from '../../shared/libvirt/types.js';
import { MigrationMonitor } from '../monitor.js';
import { observePlacement } from './placement.js';
import type { Stage, StageContext, StageOutcome } from './stage.js';

/** Headroom over the deadline for the deadline action and its cleanup. */
const ABORT_GRACE_MS = 60_000;

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

function monitorFor(ctx: StageContext, domain: Domain): MigrationMonitor {
  const c = ctx.config.convergence;
  const prep = ctx.checkpoint.results.prepare;
  return new MigrationMonitor(
    ctx,
    domain,
    { startDowntimeMs: prep?.downtimeMs ?? null, bandwidthMiBs: prep?.bandwidthMiBs ?? null, convergence: { ceilingMs: c.ceiling, steps: c.steps, stepDelayPerGiBMs: c.step_delay_per_gib } },
    ctx.checkpoint.results.migrate?.inForce,
  );
}

/** Waits for a libvirt job that is already running (after a worker restart) to end. */
async function waitForJobEnd(ctx: StageContext, domain: Domain, deadline: number): Promise<'ended' | 'timeout' | 'cancelled'> {
  const monitor = monitorFor(ctx, domain).start();
  // Subscribe first, then read what was asked while no worker held the job: nothing falls between.
  const offTune = ctx.control.onTune((t) => void monitor.tune(t).catch(() => undefined));
  await monitor.tune(await ctx.control.requestedTune()).catch(() => undefined);
  await monitor.listen(await ctx.source()).catch(() => undefined);
  let paused = ctx.checkpoint.results.migrate?.paused === true;
  try {
    for (;;) {
      if (ctx.signal.aborted) throw migrationError('TRANSIENT', { detail: 'stopped watching the running migration: this worker lost the job' });
      const stats = await domain.jobStats().catch(() => ({ type: 'none' as const, fields: {} }));
      if (stats.type !== 'unbounded' && stats.type !== 'bounded') return 'ended';
      const now = ctx.clock.now().getTime();
      if (ctx.control.cancelled) {
        monitor.requestAbort();
        return 'cancelled';
      }
      // The same deadline action as a first run: pause (once), abort only after the grace.
      if (now > deadline && ctx.request.deadlineAction === 'pause' && !paused) {
        paused = true;
        await pauseForCompletion(ctx, domain);
      } else if (now > deadline + (ctx.request.deadlineAction === 'pause' ? ABORT_GRACE_MS / 2 : 0)) {
        monitor.requestAbort();
        return 'timeout';
      }
      await new Promise((r) => setTimeout(r, ctx.config.worker.progress_interval));
    }
  } finally {
    offTune();
    await monitor.stop();
  }
}

async function pauseForCompletion(ctx: StageContext, domain: Domain): Promise<void> {
  await domain.suspend();
  await ctx.save({ migrate: { paused: true } });
  await ctx.note('migrate', `deadline of ${ctx.request.timeoutSeconds} s reached: paused the guest so the copy completes`);
}

function failureFor(ctx: StageContext, why: 'cancelled' | 'timeout' | 'error', detail = ''): ErrorJSON {
  const { vm, timeoutSeconds } = ctx.request;
  if (why === 'cancelled') return migrationError('CANCELLED', { name: vm }).toJSON();
  if (why === 'timeout') return migrationError('MIGRATION_TIMEOUT', { name: vm, seconds: String(timeoutSeconds) }).toJSON();
  return migrationError('MIGRATION_FAILED', { name: vm, detail }).toJSON();
}

async function resume(ctx: StageContext, startedAt: string): Promise<StageOutcome> {
  const { request } = ctx;
  const deadline = Date.parse(startedAt) + request.timeoutSeconds * 1000;
  const source = await ctx.source();
  const domain = await source.lookupDomain(request.vm);
  let ended: 'ended' | 'timeout' | 'cancelled' = 'ended';
  if (domain) {
    try {
      ended = await waitForJobEnd(ctx, domain, deadline);
    } finally {
      domain.free();
    }
  }
  const where = await observePlacement(ctx);
  const endedAt = ctx.clock.now().toISOString();
  if (where.on === 'destination') {
    // The final figures (real downtime, data transferred) as the destination kept them: the JOB_COMPLETED event went to the worker that died.
    const stats = await completedStats(ctx);
    const detail = `re-attached: the guest already runs on the destination${stats ? `; libvirt reports: ${summary(stats)}` : ''}`;
    return { next: 'finish', results: { migrate: { startedAt, endedAt, outcome: 'completed', ...(stats ? { stats } : {}) } }, detail };
  }
  const why = ctx.control.cancelled ? 'cancelled' : ended === 'ended' ? 'error' : ended;
  const error = failureFor(ctx, why, 'the worker running it stopped before the migration completed');
  return { next: 'recover', error, results: { migrate: { startedAt, endedAt, outcome: 'failed', error } }, detail: `resumed: guest on ${where.on}` };
}

function flagsFor(ctx: StageContext, base: number): number {
  let flags = base;
  if (ctx.request.autoConverge) flags |= MigrateFlag.AUTO_CONVERGE;
  if (ctx.request.compression === 'xbzrle') flags |= MigrateFlag.COMPRESSED;
  return flags;
}

function paramsFor(ctx: StageContext, persistentXml: string | null, bandwidthMiBs: number | null): MigrateParams {
  const p: MigrateParams = {};
  if (persistentXml) p.persistentXml = persistentXml;
  if (bandwidthMiBs) p.bandwidthMiBs = bandwidthMiBs;
  if (ctx.request.compression === 'xbzrle') p.compression = ['xbzrle'];
  return p;
}

/** "50.2 MiB in 2.0 s, downtime 27 ms" */
export function summary(f: Record<string, number | string>): string {
  const n = (k: string) => (typeof f[k] === 'number' ? (f[k] as number) : undefined);
  const bytes = n('data_processed') ?? n('data_total');
  const ms = n('time_elapsed');
  const downtime = n('downtime');
  const copied = [bytes !== undefined ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : '', ms !== undefined ? `in ${(ms / 1000).toFixed(1)} s` : ''].filter(Boolean).join(' ');
  return [copied, downtime !== undefined ? `downtime ${downtime} ms` : ''].filter(Boolean).join(', ');
}

async function completedStats(ctx: StageContext): Promise<Record<string, number | string> | undefined> {
  try {
    const dest = await ctx.destination();
    const d = await dest.lookupDomain(ctx.request.vm);
    if (!d) return undefined;
    try {
      return (await d.jobStats({ completed: true })).fields;
    } finally {
      d.free();
    }
  } catch {
    return undefined;
  }
}

/** Runs the deadline action: abort, or pause the guest and abort only if even that does not finish it. */
function armDeadline(ctx: StageContext, domain: Domain, onAbort: (why: 'timeout') => void): () => void {
  const { request } = ctx;
  const timers: NodeJS.Timeout[] = [];
  const abort = () => {
    onAbort('timeout');
    void domain.abortJob().catch((e) => ctx.log.error({ err: errText(e) }, 'abort failed'));
  };
  timers.push(
    setTimeout(() => {
      if (request.deadlineAction !== 'pause') {
        ctx.log.warn({ vm: request.vm }, 'deadline reached: aborting the libvirt job');
        return abort();
      }
      void pauseForCompletion(ctx, domain).catch((e) => ctx.log.error({ err: errText(e) }, 'pause failed'));
      timers.push(setTimeout(abort, ABORT_GRACE_MS / 2));
    }, request.timeoutSeconds * 1000),
  );
  return () => timers.forEach(clearTimeout);
}

export const migrateStage: Stage = {
  name: 'migrate',
  deadlineMs: (_config, request) => request.timeoutSeconds * 1000 + ABORT_GRACE_MS,
  async run(ctx) {
    const { request } = ctx;
    const started = ctx.checkpoint.results.migrate?.startedAt;
    if (started) return resume(ctx, started);
    if (ctx.control.cancelled) return { next: 'done', error: failureFor(ctx, 'cancelled'), detail: 'cancelled before the migration started' };
    const flags = ctx.checkpoint.results.connect?.flags;
    if (flags === undefined) throw migrationError('INTERNAL', { detail: 'migrate stage without connect results' });

    const source = await ctx.source();
    const domain = await source.lookupDomain(request.vm);
    if (!domain) throw migrationError('VM_NOT_FOUND', { name: request.vm });
    // libvirt errors are "last error on this connection wins": the long call gets its own.
    let mconn: Connection | null = null;
    let mdom: Domain | null = null;
    let startedAt: string | null = null;
    let monitor: MigrationMonitor | null = null;
    const cleanups: (() => void)[] = [];
    let stopped: 'cancelled' | 'timeout' | null = null;
    let failure: ErrorJSON | null = null;
    let final: Record<string, number | string> | null = null;
    const call: { callStartedAt?: string; callEndedAt?: string } = {};
    try {
      mconn = await ctx.hypervisor.open(request.sourceUri, { timeoutMs: ctx.config.libvirt.connect_timeout });
      mdom = await mconn.lookupDomain(request.vm);
      if (!mdom) throw migrationError('VM_NOT_FOUND', { name: request.vm });
      // Read just before migrating and never stored: the secure XML may hold console passwords.
      const persistentXml = ctx.checkpoint.results.connect?.persistent ? await mdom.xml({ migratable: true, secure: true, inactive: true }) : null;
      // Listen before reading what was asked while the job waited: nothing falls between.
      const m = monitorFor(ctx, domain);
      monitor = m;
      cleanups.push(ctx.control.onTune((t) => void m.tune(t).catch((e) => ctx.log.warn({ err: errText(e) }, 'tuning failed'))));
      cleanups.push(
        ctx.control.onCancel(() => {
          stopped = 'cancelled';
          m.requestAbort();
        }),
      );
      const tuned = await ctx.control.requestedTune();
      const bandwidth = tuned.bandwidth !== undefined ? (tuned.bandwidth === 'unlimited' ? null : tuned.bandwidth) : (ctx.checkpoint.results.prepare?.bandwidthMiBs ?? null);
      m.inForce.bandwidthMiBs = bandwidth;
      // Everything above changed nothing, so a failure there is simply retried.
      // From here on the checkpoint says "started", and a resumed stage looks before it acts.
      startedAt = ctx.clock.now().toISOString();
      await ctx.save({ migrate: { startedAt } }, { event: 'step', detail: `libvirt migration to ${request.destinationUri} started` });
      // An operator's earlier request is theirs: recorded, and it stops automatic steps.
      if (tuned.bandwidth !== undefined || tuned.maxDowntimeMs !== undefined) await m.tune(tuned);
      m.start();
      await m.listen(source).catch((e) => ctx.log.warn({ err: errText(e) }, 'no migration events: sampling only'));
      cleanups.push(armDeadline(ctx, domain, (why) => (stopped ??= why)));
      try {
        // A cancel that came while the job was being set up: no libvirt job yet, so do not start one.
        if (ctx.control.cancelled) throw migrationError('CANCELLED', { name: request.vm });
        call.callStartedAt = ctx.clock.now().toISOString();
        await mdom.migrateToURI3(request.destinationUri, paramsFor(ctx, persistentXml, bandwidth), flagsFor(ctx, flags));
      } catch (e) {
        failure = failureFor(ctx, ctx.control.cancelled ? 'cancelled' : (stopped ?? 'error'), errText(e));
      }
      if (call.callStartedAt) call.callEndedAt = ctx.clock.now().toISOString();
    } finally {
      cleanups.forEach((c) => c());
      // After a success, JOB_COMPLETED may trail the call: give it a moment before unsubscribing.
      final = !failure && monitor ? await monitor.finalStats() : null;
      await monitor?.stop();
      mdom?.free();
      domain.free();
      await mconn?.close().catch(() => undefined);
    }
    if (!startedAt) throw migrationError('INTERNAL', { detail: 'migration neither started nor failed' });
    const endedAt = ctx.clock.now().toISOString();
    const inForce = monitor ? { ...monitor.inForce } : undefined;
    if (failure) return { next: 'recover', error: failure, results: { migrate: { startedAt, endedAt, ...call, outcome: 'failed', error: failure, ...(inForce ? { inForce } : {}) } }, detail: failure.reason };
    const stats = final ?? (await completedStats(ctx));
    const detail = `libvirt reports the migration completed${stats ? `: ${summary(stats)}` : ''}${final ? ' (JOB_COMPLETED event)' : ''}`;
    return { next: 'finish', results: { migrate: { startedAt, endedAt, ...call, outcome: 'completed', ...(stats ? { stats } : {}), ...(inForce ? { inForce } : {}) } }, detail };
  },
};
