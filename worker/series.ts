/**
 * Records a task's progress series: every progress sample the stages publish
 * (the monitor's while the copy runs, the finish stage's final figures) goes
 * through the sampling policy, and the points it keeps go to the series store.
 * A series that cannot be written costs a plot, never a migration: failures
 * are logged and the job goes on.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../shared/config.js';
import { pointOf, redisSeriesStore, type SeriesState, type SeriesStore } from '../shared/series.js';
import type { MigrationProgress } from '../shared/task.js';
import { SERIES_SAMPLING, samplePoint, type SamplingPolicy } from './policy/series.js';
import type { RunnableJob } from './runner.js';
import type { Clock, Logger } from './stages/stage.js';

export class SeriesRecorder {
  /** undefined until loaded: a job picked up again continues the series it left. */
  private state: SeriesState | null | undefined;
  private queue: Promise<void> = Promise.resolve();
  private warned = false;

  constructor(
    private readonly id: string,
    private readonly store: SeriesStore,
    private readonly policy: SamplingPolicy,
    private readonly now: () => number,
    private readonly log: Pick<Logger, 'warn'>,
  ) {}

  /** Takes a sample; resolves once it is written or skipped. Never rejects. */
  record(p: MigrationProgress): Promise<void> {
    const t = this.now();
    // One at a time, in order: a thinning must not race the append after it.
    this.queue = this.queue.then(() => this.write(p, t)).catch((e) => {
      // Read again before the next write: what is stored is unknown now.
      this.state = undefined;
      if (!this.warned) this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cannot record the progress series; the migration goes on');
      this.warned = true;
    });
    return this.queue;
  }

  private async write(p: MigrationProgress, t: number): Promise<void> {
    if (this.state === undefined) this.state = await this.store.load(this.id);
    // Only the finish stage publishes 100%: the migration's last figures.
    const d = samplePoint(this.state, pointOf(p, t), this.policy, p.percent >= 100);
    if (d.kind === 'skip') return;
    if (d.kind === 'append') await this.store.append(this.id, d.state.points.at(-1)!, d.state.intervalMs);
    else await this.store.replace(this.id, d.state);
    this.state = d.state;
  }
}

/** The job as it is, except that its published progress is also recorded in the series. */
export function withSeries(job: RunnableJob, recorder: SeriesRecorder): RunnableJob {
  const out = Object.create(job) as RunnableJob;
  Object.defineProperty(out, 'updateProgress', {
    value: async (p: MigrationProgress) => {
      await job.updateProgress(p);
      await recorder.record(p);
    },
  });
  return out;
}

/** For the BullMQ processor: each job it runs records its series in Redis, kept as long as the task. */
export function recordingSeries(client: Redis, config: Config, clock: Clock): (job: RunnableJob, log: Pick<Logger, 'warn'>) => RunnableJob {
  const store = redisSeriesStore(client, config.redis.prefix, config.tasks.keep_finished);
  return (job, log) => withSeries(job, new SeriesRecorder(job.id, store, SERIES_SAMPLING, () => clock.now().getTime(), log));
}
