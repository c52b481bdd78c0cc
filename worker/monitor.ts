/**
 * migrateMonitor: watches a running libvirt migration job. Samples job stats
 * into the task's progress (never backwards), applies the starting max
 * downtime once the job exists, operator tuning as it arrives, and the
 * convergence schedule's decisions; records every limit in force and every
 * decision with its reason.
 */
import type { Tuning } from '../shared/control.js';
import type { InForce } from '../shared/job.js';
import type { Connection, Domain } from '../shared/libvirt/types.js';
import { decideConvergence, type ConvergencePolicy } from './policy/convergence.js';
import { converging, progressFrom } from './policy/progress.js';
import type { StageContext } from './stages/stage.js';

/** libvirt's "unlimited" bandwidth for virDomainMigrateSetMaxSpeed (QEMU_DOMAIN_MIG_BANDWIDTH_MAX). */
export const UNLIMITED_MIBS = 8796093022207;

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export interface MonitorOptions {
  /** Max downtime to apply once the job runs; null keeps libvirt's default. */
  startDowntimeMs: number | null;
  bandwidthMiBs: number | null;
  convergence: Omit<ConvergencePolicy, 'startMs'>;
}

export class MigrationMonitor {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private percent: number;
  private jobSeen = false;
  private pendingTune: Tuning | null = null;
  /** Lowest data remaining seen in each iteration: the convergence evidence. */
  private readonly floors = new Map<number, number>();
  private lastStep: { iteration: number; elapsedMs: number } | null = null;
  readonly inForce: InForce;

  constructor(
    private readonly ctx: StageContext,
    private readonly domain: Domain,
    private readonly opts: MonitorOptions,
    previous?: InForce,
  ) {
    this.percent = ctx.lastProgress?.percent ?? 0;
    this.inForce = previous ?? { bandwidthMiBs: opts.bandwidthMiBs, maxDowntimeMs: null, operatorTuned: false };
  }

  private unsubscribe: (() => Promise<void>) | null = null;
  private completed: Promise<Record<string, number | string>> | null = null;

  start(): this {
    this.timer = setInterval(() => void this.tick(), this.ctx.config.worker.progress_interval);
    return this;
  }

  /**
   * Also listens to libvirt's migration events on `conn`: a new iteration is
   * sampled at once instead of at the next tick, and JOB_COMPLETED carries the
   * final statistics (with the real downtime).
   */
  async listen(conn: Connection): Promise<void> {
    let resolveCompleted!: (f: Record<string, number | string>) => void;
    this.completed = new Promise((r) => (resolveCompleted = r));
    this.unsubscribe = await conn.onMigrationEvents(this.domain, {
      iteration: () => void this.tick(),
      jobCompleted: (fields) => resolveCompleted(fields),
    });
  }

  /** The JOB_COMPLETED statistics, waiting a little: the event may trail the migrate call. */
  async finalStats(waitMs = 2000): Promise<Record<string, number | string> | null> {
    if (!this.completed) return null;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), waitMs)));
    try {
      return await Promise.race([this.completed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private abortRequested = false;
  private ticks = 0;

  /** Aborts the libvirt job now, and again on every sample while it still runs (it may not exist yet). */
  requestAbort(): void {
    this.abortRequested = true;
    void this.domain.abortJob().catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const off = this.unsubscribe;
    this.unsubscribe = null;
    await off?.().catch(() => undefined);
  }

  /** An operator's change: applied now if the job runs, else on the first sample that sees it. */
  async tune(t: Tuning): Promise<void> {
    this.pendingTune = { ...(this.pendingTune ?? {}), ...t };
    if (this.jobSeen) await this.applyTune();
  }

  private async applyTune(): Promise<void> {
    const t = this.pendingTune;
    if (!t) return;
    this.pendingTune = null;
    const done: string[] = [];
    if (t.bandwidth !== undefined) {
      const mibs = t.bandwidth === 'unlimited' ? UNLIMITED_MIBS : t.bandwidth;
      await this.domain.migrateSetMaxSpeed(mibs);
      this.inForce.bandwidthMiBs = t.bandwidth === 'unlimited' ? null : t.bandwidth;
      done.push(`bandwidth ${t.bandwidth === 'unlimited' ? 'unlimited' : `${t.bandwidth} MiB/s`}`);
    }
    if (t.maxDowntimeMs !== undefined) {
      await this.domain.migrateSetMaxDowntime(t.maxDowntimeMs);
      this.inForce.maxDowntimeMs = t.maxDowntimeMs;
      done.push(`max downtime ${t.maxDowntimeMs} ms`);
    }
    this.inForce.operatorTuned = true;
    await this.record(`operator set ${done.join(' and ')}; automatic downtime steps stop`);
  }

  private async record(decision: string): Promise<void> {
    await this.ctx.save({ migrate: { inForce: { ...this.inForce } } });
    await this.ctx.note('migrate', decision);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      // Every few seconds, look at the persistent cancel mark too: a pub/sub message can be lost.
      if (++this.ticks % 10 === 0) await this.ctx.control.refresh();
      const stats = await this.domain.jobStats();
      if (stats.type !== 'unbounded' && stats.type !== 'bounded') return;
      if (this.abortRequested) {
        await this.domain.abortJob().catch(() => undefined);
        return;
      }
      if (!this.jobSeen) {
        this.jobSeen = true;
        if (this.opts.startDowntimeMs !== null && this.inForce.maxDowntimeMs === null) {
          await this.domain.migrateSetMaxDowntime(this.opts.startDowntimeMs);
          this.inForce.maxDowntimeMs = this.opts.startDowntimeMs;
          await this.record(`max downtime ${this.opts.startDowntimeMs} ms applied`);
        }
      }
      await this.applyTune();
      const iteration = typeof stats.fields.memory_iteration === 'number' ? stats.fields.memory_iteration : 0;
      const remaining = stats.fields.data_remaining;
      if (typeof remaining === 'number') this.floors.set(iteration, Math.min(remaining, this.floors.get(iteration) ?? Infinity));
      const p = progressFrom(stats.fields, this.percent, converging(this.floors, iteration));
      this.percent = p.percent;
      await this.ctx.progress(p);
      if (!this.inForce.operatorTuned) await this.converge(p.iteration ?? 0, p.elapsedMs ?? 0, p.dataTotal ?? 0);
    } catch (e) {
      this.ctx.log.debug({ err: errText(e) }, 'monitor sample failed');
    } finally {
      this.busy = false;
    }
  }

  private async converge(iteration: number, elapsedMs: number, dataTotalBytes: number): Promise<void> {
    const current = this.inForce.maxDowntimeMs ?? this.opts.startDowntimeMs ?? 300;
    const a = decideConvergence({ iteration, elapsedMs, dataTotalBytes, currentMs: current, lastStep: this.lastStep }, { ...this.opts.convergence, startMs: this.opts.startDowntimeMs ?? 300 });
    if (a.kind !== 'raise') return;
    this.lastStep = { iteration, elapsedMs };
    await this.domain.migrateSetMaxDowntime(a.downtimeMs);
    this.inForce.maxDowntimeMs = a.downtimeMs;
    await this.record(a.reason);
  }
}
