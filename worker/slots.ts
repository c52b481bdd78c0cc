/**
 * The runner's side of the concurrency limits: takes a job's migration slots
 * before the first stage that needs them, renews the lease while the job
 * runs here, and gives the slots back (or keeps them) when the run leaves
 * this worker, as worker/policy/limits.ts decides.
 */
import type { MigrationRequest, StageResults } from '../shared/job.js';
import type { SlotHosts, Slots } from '../shared/limits.js';
import type { Step } from '../shared/stage.js';
import { slotWaitMessage } from '../shared/task.js';
import { limitReason, slotHosts, slotNeed, slotOnLeave, type Leaving } from './policy/limits.js';
import type { Logger } from './stages/stage.js';

/**
 * Thrown by the runner when a limit is full: the worker puts the job back in
 * the queue to look again later. Not a failure: no attempt is used.
 */
export class SlotWait extends Error {
  override name = 'SlotWait';
  constructor(readonly reason: string) {
    super(slotWaitMessage(reason));
  }
}

export type Taken =
  /** Nothing to take: no limits configured, the stage needs none, or this run holds the slots already. */
  | { kind: 'none' }
  /** Taken; `over` says which limit a forced acquisition went past. */
  | { kind: 'acquired'; over: string | null }
  | { kind: 'blocked'; reason: string };

export class JobSlots {
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<unknown> = Promise.resolve();
  private hosts: SlotHosts | null = null;
  private stopped = false;

  constructor(
    private readonly slots: Slots | undefined,
    private readonly jobId: string,
    private readonly renewEveryMs: number,
    private readonly log: Logger,
  ) {}

  /** Takes the slots `step` needs, unless this run holds them already. */
  async take(step: Step, request: MigrationRequest, results: StageResults): Promise<Taken> {
    const need = slotNeed(step);
    if (!this.slots || this.hosts || need === 'none') return { kind: 'none' };
    const hosts = slotHosts(request, results);
    const got = await this.slots.acquire(this.jobId, hosts, { force: need === 'force' });
    if (got.kind === 'blocked') return { kind: 'blocked', reason: limitReason(got, request) };
    this.hosts = hosts;
    if (this.stopped) return { kind: 'acquired', over: got.over ? limitReason(got.over, request) : null };
    this.timer = setInterval(() => {
      // One renewal at a time, and leave() waits for the last one: a renewal must never land after a release.
      this.renewing = this.renewing
        .then(() => this.slots?.renew(this.jobId, hosts))
        .then(
          (kept) => kept === false && this.log.warn({}, 'migration slot lease had lapsed; taken back'),
          (e: Error) => this.log.warn({ err: e.message }, 'could not renew the migration slot lease'),
        );
    }, this.renewEveryMs);
    return { kind: 'acquired', over: got.over ? limitReason(got.over, request) : null };
  }

  /** Stops renewing (this worker lost the job: renewing could bring back slots its new owner released). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopped = true;
  }

  /** Stops renewing, then releases or keeps the slots as the policy says for how this run leaves. */
  async leave(how: Leaving, step: Step, request: MigrationRequest, results: StageResults): Promise<void> {
    this.stop();
    await this.renewing;
    if (!this.slots || slotOnLeave(how, step) === 'keep') return;
    // Also when this run took nothing: an earlier run of the job may have kept them for a retry.
    await this.slots.release(this.jobId, this.hosts ?? slotHosts(request, results)).catch((e: Error) => {
      this.log.warn({ err: e.message }, 'could not release the migration slots; their lease runs out by itself');
    });
    this.hosts = null;
  }
}
