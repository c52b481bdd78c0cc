/**
 * Runs every capability check for one guest and destination: open the
 * destination (bounded), gather facts, judge them. Used by the worker's check
 * stage and by the API's precheck, so both give the same answer.
 */
import type { Connection, Domain, Hypervisor } from '../libvirt/types.js';
import { gatherFacts } from './gather.js';
import { blockersOf, verdicts, type CheckFacts, type CheckResult } from './verdicts.js';
import type { ErrorJSON } from '../errors.js';

export { verdicts, blockersOf } from './verdicts.js';
export type { CheckFacts, CheckResult } from './verdicts.js';

export interface CheckReport {
  ok: boolean;
  results: CheckResult[];
  blockers: ErrorJSON[];
  facts: CheckFacts;
}

export interface RunChecksInput {
  hypervisor: Hypervisor;
  source: Connection;
  domain: Domain;
  remoteHost: string;
  destinationUri: string;
  connectTimeoutMs: number;
}

/** Opens the destination for the checks; the caller owns (and closes) the returned connection. */
export async function openDestination(h: Hypervisor, uri: string, timeoutMs: number): Promise<Connection | { error: string }> {
  try {
    return await h.open(uri, { timeoutMs });
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

export async function runChecks(input: RunChecksInput): Promise<CheckReport> {
  const destination = await openDestination(input.hypervisor, input.destinationUri, input.connectTimeoutMs);
  try {
    const facts = await gatherFacts({ source: input.source, domain: input.domain, remoteHost: input.remoteHost, destinationUri: input.destinationUri, destination });
    const results = verdicts(facts);
    const blockers = blockersOf(results);
    return { ok: blockers.length === 0 && results.every((r) => r.ok), results, blockers, facts };
  } finally {
    if (!('error' in destination)) await destination.close().catch(() => undefined);
  }
}
