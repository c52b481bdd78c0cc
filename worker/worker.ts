/**
 * BullMQ processor: adapts a BullMQ job to the stage runner and maps a final
 * failure to UnrecoverableError so BullMQ does not retry what the runner
 * already decided to end, and a full concurrency limit to BullMQ's manual
 * delay, so a job waiting for a migration slot waits in the queue.
 */
import { DelayedError, MetricsTime, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import type { MigrationJobData } from '../shared/job.js';
import { redisSlots } from '../shared/limits.js';
import { onceTtl, redisMetrics } from '../shared/metrics/store.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import type { MigrationProgress } from '../shared/task.js';
import { refusal } from './admit.js';
import type { ControlBus, JobControl } from './control.js';
import type { Failpoint } from './failpoints.js';
import { leaseMs } from './policy/limits.js';
import { endedByQueue, jobMetrics } from './metrics.js';
import { JobFailed, runJob, type RunnableJob } from './runner.js';
import { recordingSeries } from './series.js';
import { SlotWait } from './slots.js';
import { createStages } from './stages/index.js';
import { tagged, type Clock, type Logger } from './stages/stage.js';

export interface WorkerDeps {
  config: Config;
  connection: Redis;
  /** Cancel and tune requests from any API process. */
  control: ControlBus;
  hypervisor: Hypervisor;
  clock: Clock;
  log: Logger;
  /** Fault-suite hook (failpoints.ts); undefined in normal operation. */
  failpoint?: Failpoint;
}

function asProgress(p: unknown): MigrationProgress | null {
  return typeof p === 'object' && p !== null && typeof (p as MigrationProgress).percent === 'number' ? (p as MigrationProgress) : null;
}

function adapt(job: Job<MigrationJobData>, fallbackAttempts: number, signal: AbortSignal, control: JobControl): RunnableJob {
  return {
    id: String(job.id),
    get data() {
      return job.data;
    },
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? fallbackAttempts,
    lastProgress: asProgress(job.progress),
    signal,
    control,
    updateData: (d) => job.updateData(d),
    updateProgress: (p) => job.updateProgress(p as unknown as object),
  };
}

export function createMigrationWorker(deps: WorkerDeps): Worker<MigrationJobData> {
  const { config, log } = deps;
  const stages = createStages();
  const { limits } = config;
  const slots = redisSlots(deps.connection, config.redis.prefix, { outgoingPerHost: limits.outgoing_per_host, incomingPerHost: limits.incoming_per_host, global: limits.global }, leaseMs(config));
  const series = recordingSeries(deps.connection, config, deps.clock);
  const metrics = redisMetrics(deps.connection, config.redis.prefix, onceTtl(config));
  // Jobs this process runs, so a lost lock can stop the right one.
  const running = new Map<string, AbortController>();
  const worker = new Worker<MigrationJobData>(
    config.redis.queue,
    async (job, token, bullSignal) => {
      // Before anything reads the job's data as a request: it may not be one (worker/admit.ts).
      const refused = refusal(job.data, config.libvirt, deps.clock.now());
      if (refused) {
        log.error({ task: String(job.id), err: refused.error.reason }, 'refused a job the API did not make with this configuration; libvirt was not contacted');
        await job.updateData({ ...job.data, checkpoint: refused.checkpoint });
        throw new UnrecoverableError(refused.error.reason);
      }
      // A job waiting for a slot is picked up every limits.wait_poll: not worth a line each time.
      const waiting = job.data.checkpoint?.slotWait !== undefined;
      const jlog = tagged(log, { task: String(job.id), vm: job.data.request.vm });
      jlog[waiting ? 'debug' : 'info']({ attempt: job.attemptsMade + 1 }, waiting ? 'looking for a migration slot again' : 'migration job picked up');
      const ac = new AbortController();
      bullSignal?.addEventListener('abort', () => ac.abort());
      running.set(String(job.id), ac);
      let control: JobControl | null = null;
      try {
        control = await deps.control.attach(String(job.id));
        const cp = await runJob(series(adapt(job, config.retry.attempts, ac.signal, control), jlog), { stages, hypervisor: deps.hypervisor, config, clock: deps.clock, log, slots, metrics, ...(deps.failpoint ? { failpoint: deps.failpoint } : {}) });
        jlog.info({}, 'migration finished');
        return { step: cp.step };
      } catch (e) {
        if (e instanceof SlotWait) {
          // BullMQ's manual delay: back to the delayed set without using an attempt
          // (moveToDelayed skips the attempt count); DelayedError tells the worker not to fail it.
          if (!waiting) jlog.info({ reason: e.reason }, 'waiting for a migration slot');
          await job.moveToDelayed(Date.now() + config.limits.wait_poll, token);
          throw new DelayedError();
        }
        if (e instanceof JobFailed) {
          jlog.warn({ err: e.error.reason }, 'migration failed');
          throw new UnrecoverableError(e.message);
        }
        throw e;
      } finally {
        running.delete(String(job.id));
        if (control) deps.control.detach(String(job.id), control);
      }
    },
    {
      connection: deps.connection,
      prefix: config.redis.prefix,
      concurrency: config.worker.concurrency,
      // A crashed worker's job is picked up by another one after the lock expires;
      // the stages resume from the checkpoint and look at real state first.
      lockDuration: config.worker.lock_duration,
      stalledInterval: config.worker.stalled_interval,
      // Each takeover resumes from the checkpoint; a job that keeps killing its
      // workers is failed after this many takeovers instead of looping forever.
      maxStalledCount: 20,
      // No maxStartedAttempts: a job waiting for a migration slot is started again at every look.
      autorun: false,
      // BullMQ's completed and failed counts per minute, behind bullmq_job_completed_total and
      // bullmq_job_failed_total at /metrics; a week of points.
      metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
    },
  );
  worker.on('error', (err) => log.error({ err: err.message }, 'worker error'));
  // A job BullMQ failed for good without the runner saving its end still ends, once, in the metrics.
  worker.on('failed', (job) => {
    const cp = job?.finishedOn ? endedByQueue(job.data.checkpoint, job.finishedOn, job.failedReason ?? 'the job failed') : null;
    if (job && cp) void jobMetrics(metrics, String(job.id), job.data.request, log).sync(cp, asProgress(job.progress));
  });
  // Another worker may take the job over once the lock is gone: stop acting on it here.
  worker.on('lockRenewalFailed', (ids) => {
    for (const id of ids) {
      log.warn({ task: id }, 'lost the lock on a job: stopping work on it here');
      running.get(id)?.abort();
    }
  });
  return worker;
}
