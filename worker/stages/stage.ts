/**
 * The one interface every stage implements, and the context it runs in.
 * Stages get their dependencies here (libvirt port, config, clock, logger);
 * none of them imports koffi, Redis or BullMQ.
 */
import type { Config } from '../../shared/config.js';
import type { Checkpoint, HistoryEntry, MigrationRequest, StageResults } from '../../shared/job.js';
import type { ErrorJSON } from '../../shared/errors.js';
import type { Connection, Hypervisor } from '../../shared/libvirt/types.js';
import type { StageName, Step } from '../../shared/stage.js';
import type { MigrationProgress } from '../../shared/task.js';
import type { JobControl } from '../control.js';

export interface Clock {
  now(): Date;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** A logger whose every line also carries `fields` (task, vm, stage), so one grep finds a migration's lines. */
export function tagged(log: Logger, fields: object): Logger {
  return {
    info: (o, m) => log.info({ ...fields, ...o }, m),
    warn: (o, m) => log.warn({ ...fields, ...o }, m),
    error: (o, m) => log.error({ ...fields, ...o }, m),
    debug: (o, m) => log.debug({ ...fields, ...o }, m),
  };
}

/** A patch of stage results: each stage's fields are merged into what is saved. */
export type ResultsPatch = { [K in keyof StageResults]?: Partial<NonNullable<StageResults[K]>> };

export interface StageContext {
  readonly request: MigrationRequest;
  /** The checkpoint as saved before this stage started (results of earlier stages). */
  readonly checkpoint: Checkpoint;
  readonly hypervisor: Hypervisor;
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  /** Aborted when the stage's deadline passes or the worker loses the job; long waits must stop then. */
  readonly signal: AbortSignal;
  /** The task's progress when this attempt started (a resumed monitor continues from it). */
  readonly lastProgress: MigrationProgress | null;
  /** Cancel and tune requests for this job. */
  readonly control: JobControl;
  /** Records a decision and its reason in the task history. */
  note(stage: string, detail: string): Promise<void>;
  /** The source host, opened once per job and reopened if the transport died. */
  source(): Promise<Connection>;
  /** The destination host, same rules. */
  destination(): Promise<Connection>;
  /** Saves results at once (merged into each stage's saved results), before a long or risky step. */
  save(results: ResultsPatch, entry?: Omit<HistoryEntry, 'at' | 'stage'>): Promise<void>;
  /** Publishes live progress to the task. */
  progress(p: MigrationProgress): Promise<void>;
}

export interface StageOutcome {
  next: Step;
  results?: Partial<StageResults>;
  /** Set when the migration failed: recovery runs next and the job ends failed. */
  error?: ErrorJSON;
  /** Set by recover when it finds the guest running on the destination after all. */
  clearError?: boolean;
  /** A line for the task history. */
  detail?: string;
}

export interface Stage {
  readonly name: StageName;
  /** The stage's deadline in ms for this request. */
  deadlineMs(config: Config, request: MigrationRequest): number;
  run(ctx: StageContext): Promise<StageOutcome>;
}
