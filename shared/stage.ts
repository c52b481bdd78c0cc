/**
 * The migration as stages: the seed's Do_migration steps, in order.
 * A job's checkpoint names the stage to run next; `done` means nothing is left.
 */
export const STAGES = [
  'check', // migration source check: every capability check, all blockers at once
  'connect', // connect destination, take the migratable XML, build migration params
  'prepare', // record pre-migration state, apply max downtime and bandwidth
  'migrate', // virDomainMigrateToURI3, live + peer-to-peer + tunnelled
  'recover', // reconcile both hosts after a failure: guest runs once, on the source
  'finish', // verify the guest runs and is persistent on the destination
] as const;

export type StageName = (typeof STAGES)[number];
export type Step = StageName | 'done';

export function isStageName(s: unknown): s is StageName {
  return typeof s === 'string' && (STAGES as readonly string[]).includes(s);
}

/** The stage that follows a successful one on the happy path. */
export function nextOnSuccess(stage: StageName): Step {
  switch (stage) {
    case 'check':
      return 'connect';
    case 'connect':
      return 'prepare';
    case 'prepare':
      return 'migrate';
    case 'migrate':
      return 'finish';
    case 'recover':
    case 'finish':
      return 'done';
  }
}
