/**
 * Worker side of the control channel: one subscriber per process routes
 * cancel and tune messages to the jobs this process runs. A job also reads
 * the persistent keys when it starts, so a request made while no worker held
 * it is honoured by whichever worker picks it up.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { controlChannel, isCancelled, parseControl, readTune, type Tuning } from '../shared/control.js';

export interface JobControl {
  readonly cancelled: boolean;
  /** Calls `cb` once when the job is cancelled (at once if it already is); returns an unsubscribe. */
  onCancel(cb: () => void): () => void;
  /** Calls `cb` for every tuning request that arrives while subscribed. */
  onTune(cb: (t: Tuning) => void): () => void;
  /** Tuning requested so far (including before this worker picked the job up). */
  requestedTune(): Promise<Tuning>;
  /** Looks at the persistent cancel mark again, in case a message was missed. */
  refresh(): Promise<void>;
}

/** A control for jobs run without a bus (unit tests): never cancelled, never tuned. */
export const noControl: JobControl = {
  cancelled: false,
  onCancel: () => () => undefined,
  onTune: () => () => undefined,
  requestedTune: async () => ({}),
  refresh: async () => undefined,
};

class Handle extends EventEmitter implements JobControl {
  cancelled = false;
  constructor(
    private readonly readTuning: () => Promise<Tuning>,
    private readonly readCancelled: () => Promise<boolean>,
  ) {
    super();
  }
  async refresh() {
    if (!this.cancelled && (await this.readCancelled().catch(() => false))) this.cancel();
  }
  cancel() {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancel');
  }
  onCancel(cb: () => void) {
    if (this.cancelled) {
      cb();
      return () => undefined;
    }
    this.once('cancel', cb);
    return () => void this.off('cancel', cb);
  }
  onTune(cb: (t: Tuning) => void) {
    this.on('tune', cb);
    return () => void this.off('tune', cb);
  }
  requestedTune() {
    return this.readTuning();
  }
}

export class ControlBus {
  private readonly handles = new Map<string, Handle>();

  constructor(
    /** A connection in subscriber mode: it can do nothing else. */
    private readonly subscriber: Redis,
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async start(): Promise<void> {
    this.subscriber.on('message', (_channel: string, raw: string) => {
      const m = parseControl(raw);
      const h = m ? this.handles.get(m.jobId) : undefined;
      if (!m || !h) return;
      if (m.type === 'cancel') h.cancel();
      else h.emit('tune', { ...(m.bandwidth !== undefined ? { bandwidth: m.bandwidth } : {}), ...(m.maxDowntimeMs !== undefined ? { maxDowntimeMs: m.maxDowntimeMs } : {}) });
    });
    await this.subscriber.subscribe(controlChannel(this.prefix));
  }

  /** The control of a job this process starts running; reads the persistent cancel mark first. */
  async attach(jobId: string): Promise<JobControl> {
    const h = new Handle(
      () => readTune(this.redis, this.prefix, jobId),
      () => isCancelled(this.redis, this.prefix, jobId),
    );
    this.handles.set(jobId, h);
    if (await isCancelled(this.redis, this.prefix, jobId)) h.cancel();
    return h;
  }

  /** Forgets a run's control; only that run's, should the job already run here again. */
  detach(jobId: string, control: JobControl): void {
    const h = this.handles.get(jobId);
    (control as Handle).removeAllListeners?.();
    if (h === control) this.handles.delete(jobId);
  }

  async stop(): Promise<void> {
    await this.subscriber.unsubscribe().catch(() => undefined);
    this.subscriber.disconnect();
  }
}
