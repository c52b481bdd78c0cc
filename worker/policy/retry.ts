/**
 * Retry rules: which faults are transient, and what the runner does about a
 * failed stage. Pure functions, table-tested; the runner only applies them.
 */
import { isMigrationError } from '../../shared/errors.js';
import type { StageName } from '../../shared/stage.js';

/** libvirt error numbers (virterror.h) that mean "the transport or daemon hiccuped". */
const TRANSIENT_VIR_CODES = new Set([
  5, // VIR_ERR_NO_CONNECT
  39, // VIR_ERR_RPC
  68, // VIR_ERR_OPERATION_TIMEOUT
]);

const TRANSIENT_TEXT = /connection (refused|reset)|broken pipe|end of file while reading data|operation timed out|timed out|cannot recv data|no route to host|client socket is closed|not connected/i;

export interface ErrorLike {
  name?: string;
  code?: number | string;
  message?: string;
  retryable?: boolean;
}

/** True for faults worth retrying with backoff: lost connections, timeouts. */
export function isTransient(err: unknown): boolean {
  if (isMigrationError(err)) return err.retryable;
  const e = (err ?? {}) as ErrorLike;
  if (e.name === 'LibvirtTimeoutError') return true;
  if (e.name === 'VirError') {
    if (typeof e.code === 'number' && TRANSIENT_VIR_CODES.has(e.code)) return true;
    // VIR_ERR_SYSTEM_ERROR (38) covers both lost sockets and real failures: judge by text.
    return TRANSIENT_TEXT.test(e.message ?? '');
  }
  if (typeof e.code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(e.code)) return true;
  return false;
}

/** Stages that may change the guest, so their failure must be reconciled. check, connect and prepare only read. */
const TOUCHES_GUEST: ReadonlySet<StageName> = new Set(['migrate', 'finish']);

export type FailureAction =
  /** Throw so BullMQ retries the job (it resumes at this stage) after backoff. */
  | { kind: 'retry' }
  /** Record the error and run the recover stage next. */
  | { kind: 'recover' }
  /** End the job failed now; nothing on either host was changed. */
  | { kind: 'fail' };

/**
 * What to do after `stage` threw `err` on attempt `attempt` (1-based) of `maxAttempts`.
 * Transient faults retry while attempts remain; once they run out, or for a
 * permanent fault, a stage that may have touched the guest hands over to
 * recovery, and recovery itself fails for good.
 */
export function decideOnFailure(stage: StageName, err: unknown, attempt: number, maxAttempts: number): FailureAction {
  if (isTransient(err) && attempt < maxAttempts) return { kind: 'retry' };
  if (stage === 'recover') return { kind: 'fail' };
  return TOUCHES_GUEST.has(stage) ? { kind: 'recover' } : { kind: 'fail' };
}
