/**
 * What a migration job carries in Redis: the client's request (never changed)
 * and the checkpoint the worker rewrites after every stage.
 */
import type { ErrorJSON } from './errors.js';
import type { Step } from './stage.js';

export interface MigrationRequest {
  vm: string;
  /** As the client sent it, validated as a host name or address. */
  remoteHost: string;
  sourceUri: string;
  destinationUri: string;
  requestedAt: string;
  /** Bandwidth in MiB/s or 'unlimited', downtime in ms, from config at enqueue time. */
  bandwidth: number | 'unlimited';
  downtimeMs: number;
  /** Seconds the migrate stage may run before its deadline action. */
  timeoutSeconds: number;
  keepSourceDefinition: boolean;
  /** At the deadline: abort and recover, or pause the guest so the copy completes (Nova's force-complete without post-copy). */
  deadlineAction?: 'abort' | 'pause';
  /** VIR_MIGRATE_AUTO_CONVERGE: QEMU throttles the guest's vCPUs while the copy does not converge. */
  autoConverge?: boolean;
  /** VIR_MIGRATE_COMPRESSED with xbzrle. */
  compression?: 'xbzrle' | null;
}

/** Limits in force during the copy, as last applied through libvirt. */
export interface InForce {
  bandwidthMiBs: number | null;
  maxDowntimeMs: number | null;
  /** An operator changed a limit: automatic downtime steps stop. */
  operatorTuned: boolean;
}

export interface HistoryEntry {
  at: string;
  stage: string;
  event: 'queued' | 'start' | 'step' | 'done' | 'retry' | 'error' | 'decision' | 'resume';
  detail?: string;
}

/** Results a stage leaves for later stages (and for a worker that resumes). */
export interface StageResults {
  check?: { sourceHostUuid: string; destinationHostUuid: string; domainUuid: string; memoryKiB: number; destinationHadDefinition: boolean };
  /** Whether the guest is persistent on the source; its XML is read again right before migrating. */
  connect?: { persistent: boolean; flags: number };
  prepare?: { preState: 'running' | 'paused'; downtimeMs: number | null; bandwidthMiBs: number | null };
  /** callStartedAt/callEndedAt bracket virDomainMigrateToURI3 itself (ms precision), so the time around it can be told apart. */
  migrate?: { startedAt: string; endedAt?: string; callStartedAt?: string; callEndedAt?: string; outcome?: 'completed' | 'failed'; error?: ErrorJSON; stats?: Record<string, number | string>; inForce?: InForce; paused?: boolean };
  recover?: { actions: string[]; guestOn: 'source' | 'destination' | 'nowhere' | 'unknown' };
  finish?: { persistent: boolean; sourceUndefined: boolean };
}

export interface Checkpoint {
  step: Step;
  results: StageResults;
  history: HistoryEntry[];
  /** Why the migration failed; recovery still runs before the job ends. */
  error?: ErrorJSON;
  /** Set while the job waits in the queue for a migration slot (a concurrency limit is full). */
  slotWait?: { reason: string; since: string };
}

export interface MigrationJobData {
  request: MigrationRequest;
  checkpoint?: Checkpoint;
}

export function initialCheckpoint(now: Date): Checkpoint {
  return { step: 'check', results: {}, history: [{ at: now.toISOString(), stage: 'queue', event: 'queued' }] };
}
