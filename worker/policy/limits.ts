/**
 * Concurrency-limit policy: which stages need a migration slot, when a job
 * must take one even over a limit, what happens to the slot when the job
 * leaves a worker, how long a lease lasts and what a waiting task says.
 * Pure functions, table-tested; the runner and shared/limits.ts apply them.
 */
import type { Config } from '../../shared/config.js';
import type { MigrationRequest, StageResults } from '../../shared/job.js';
import type { LimitHit, SlotHosts } from '../../shared/limits.js';
import type { Step } from '../../shared/stage.js';

/**
 * - none: the stage needs no slot (check only reads, so it runs while others copy).
 * - wait: take a slot before running; while a limit is full the job waits in the queue.
 * - force: take the slot even over a limit. A job resumed at migrate, recover or
 *   finish may have a copy running in libvirt right now (peer-to-peer: it outlives
 *   the worker); leaving it unwatched is worse than being briefly over a limit.
 */
export type SlotNeed = 'none' | 'wait' | 'force';

export function slotNeed(step: Step): SlotNeed {
  switch (step) {
    case 'check':
    case 'done':
      return 'none';
    case 'connect':
    case 'prepare':
      return 'wait';
    case 'migrate':
    case 'recover':
    case 'finish':
      return 'force';
  }
}

/**
 * How a run leaves the worker:
 * - ended: completed or failed for good;
 * - retry: back to the queue to retry the stage `step` after backoff;
 * - lost: this worker lost the job's lock; another worker owns it (or will).
 */
export type Leaving = 'ended' | 'retry' | 'lost';

/**
 * Whether to give the slots back now. A lost job's slot is its new owner's:
 * the same job id holds it, so the new owner's acquisition just renews it.
 * A retry before the copy gives the slot to whoever is waiting; a retry at
 * migrate or later keeps it (the lease runs out by itself if the job never
 * comes back), because the copy may still be running in libvirt.
 */
export function slotOnLeave(how: Leaving, step: Step): 'release' | 'keep' {
  if (how === 'lost') return 'keep';
  if (how === 'ended') return 'release';
  return slotNeed(step) === 'force' ? 'keep' : 'release';
}

/** Margin over a takeover's worst case: the new worker must still find the job's slot. */
export const LEASE_MARGIN_MS = 10_000;

/**
 * A lease must outlive a crashed worker's takeover: its lock expires after
 * lock_duration, the stalled check runs every stalled_interval, and the next
 * worker picks the job up and renews (same job id, so the slot is still its own).
 */
export function leaseMs(config: Pick<Config, 'worker'>): number {
  return config.worker.lock_duration + config.worker.stalled_interval + LEASE_MARGIN_MS;
}

/** Renewed as often as BullMQ renews the job's lock: a living worker never loses its slot. */
export function renewEveryMs(config: Pick<Config, 'worker'>): number {
  return Math.max(1, Math.floor(config.worker.lock_duration / 2));
}

/** Host identities for the slot keys: the UUIDs the check stage read, else the URIs. */
export function slotHosts(request: Pick<MigrationRequest, 'sourceUri' | 'destinationUri'>, results: StageResults): SlotHosts {
  const c = results.check;
  return { source: c?.sourceHostUuid || request.sourceUri, destination: c?.destinationHostUuid || request.destinationUri };
}

/** The host part of a libvirt URI for people to read ("127.0.0.11"), or the URI itself. */
function hostLabel(uri: string): string {
  try {
    return new URL(uri).hostname || uri;
  } catch {
    return uri;
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "127.0.0.11 already has 2 outgoing migrations (limit 2)" */
export function limitReason(hit: LimitHit, request: Pick<MigrationRequest, 'sourceUri' | 'remoteHost'>): string {
  switch (hit.limit) {
    case 'outgoing':
      return `${hostLabel(request.sourceUri)} already has ${plural(hit.count, 'outgoing migration')} (limit ${hit.max})`;
    case 'incoming':
      return `${request.remoteHost} already has ${plural(hit.count, 'incoming migration')} (limit ${hit.max})`;
    case 'global':
      return `${plural(hit.count, 'migration')} already running (global limit ${hit.max})`;
  }
}
