/**
 * Failpoints for the fault suite: named places in the stage runner where a
 * worker can be made to die with SIGKILL, so a crash lands exactly where it
 * is hardest to recover from (say, "migrate:done": the guest already runs on
 * the destination but the checkpoint does not say so yet).
 *
 * Off unless KVM_MIGRATE_FAILPOINT names places ("stage:start" right after
 * the stage's start is recorded, "stage:done" after the stage returned and
 * before its result is recorded), comma-separated. Not a configuration key:
 * nothing but the fault suite should ever set it.
 */
import { writeSync } from 'node:fs';

export type Failpoint = (place: string) => void;

export const FAILPOINT_PLACES = ['start', 'done'] as const;

/** The failpoint hook for a spec, or undefined when there is none. `die` is injectable for tests. */
export function failpointsFrom(spec: string | undefined, die: () => void = () => process.kill(process.pid, 'SIGKILL')): Failpoint | undefined {
  const places = new Set((spec ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  if (!places.size) return undefined;
  return (place) => {
    if (!places.has(place)) return;
    // Written synchronously: the process is gone a moment later.
    writeSync(2, `${JSON.stringify({ level: 50, msg: 'failpoint hit: dying with SIGKILL', failpoint: place, pid: process.pid })}\n`);
    die();
  };
}
