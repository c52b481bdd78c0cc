/**
 * BullMQ processor: adapts a BullMQ job to the stage runner and maps a final
 * failure to UnrecoverableError so BullMQ does not retry what the runner
 * already decided to end.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import type { MigrationJobData } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import { JobFailed, runJob, type RunnableJob } from './runner.js';
import { createStages } from './stages/index.js';
import type { Clock, Logger } from './stages/stage.js';

export interface WorkerDeps {
  config: Config;
  connection: Redis;
  hypervisor: Hypervisor;
  clock: Clock;
  log: Logger;
}

function adapt(job: Job<MigrationJobData>): RunnableJob {
  return {
    id: String(job.id),
    get data() {
      return job.data;
    },
    attemptsMade: job.attemptsMade,
    updateData: (d) => job.updateData(d),
    updateProgress: (p) => job.updateProgress(p as unknown as object),
  };
}

export function createMigrationWorker(deps: WorkerDeps): Worker<MigrationJobData> {
  const { config, log } = deps;
  const stages = createStages();
  const worker = new Worker<MigrationJobData>(
    config.redis.queue,
    async (job) => {
      log.info({ job: job.id, vm: job.data.request.vm, attempt: job.attemptsMade + 1 }, 'migration job picked up');
      try {
        const cp = await runJob(adapt(job), { stages, hypervisor: deps.hypervisor, config, clock: deps.clock, log });
        log.info({ job: job.id, vm: job.data.request.vm }, 'migration finished');
        return { step: cp.step };
      } catch (e) {
        if (e instanceof JobFailed) {
          log.warn({ job: job.id, vm: job.data.request.vm, err: e.error.reason }, 'migration failed');
          throw new UnrecoverableError(e.message);
        }
        throw e;
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
      maxStalledCount: 5,
      autorun: false,
    },
  );
  worker.on('error', (err) => log.error({ err: err.message }, 'worker error'));
  return worker;
}
