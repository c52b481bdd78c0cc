/**
 * Label values for the migration metrics. Pure. Every value is reduced to a
 * small alphabet so it can never break the Redis field encoding or the
 * exposition format, whatever a client sent as remote_host.
 */
import type { ErrorJSON } from '../errors.js';
import { isStageName } from '../stage.js';

export type Outcome = 'finished' | 'failed' | 'killed';

const MAX_LABEL = 128;

/** Host names, addresses (IPv6 in brackets) and stage names pass; anything else becomes "_". */
export function labelValue(v: string): string {
  const s = v.toLowerCase().replace(/[^a-z0-9._:[\]-]/g, '_').slice(0, MAX_LABEL);
  return s === '' ? 'unknown' : s;
}

/** The host a libvirt URI names: qemu+tcp://10.0.0.2/system → 10.0.0.2; no host (qemu:///system) → localhost. */
export function sourceHostLabel(uri: string): string {
  try {
    const u = new URL(uri);
    return labelValue(u.hostname === '' ? 'localhost' : u.hostname);
  } catch {
    return 'unknown';
  }
}

/** The destination as the client named it (remote_host), which is also what the task shows. */
export function destinationHostLabel(remoteHost: string): string {
  return labelValue(remoteHost.trim().replace(/\.$/, ''));
}

/** A catalogue code (KCHVM0058E, KMIG0204E), else "unknown": codes are a closed set. */
export function codeLabel(code: string | undefined): string {
  return code !== undefined && /^K[A-Z]{2,5}\d{4}E$/.test(code) ? code : 'unknown';
}

export function stageLabel(stage: string): string {
  return isStageName(stage) ? stage : 'unknown';
}

/** How a migration that ended is counted: as its task's status says (shared/task.ts). */
export function outcomeOf(error: ErrorJSON | undefined): Outcome {
  if (!error) return 'finished';
  return error.key === 'CANCELLED' ? 'killed' : 'failed';
}
