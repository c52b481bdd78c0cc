/**
 * Where is the guest right now? Observed from both hosts, never remembered.
 * Recovery and resumed stages decide from this alone.
 */
import { migrationError } from '../../shared/errors.js';
import type { Connection, Domain, DomainState } from '../../shared/libvirt/types.js';
import type { StageContext } from './stage.js';

export interface HostView {
  state: DomainState;
  persistent: boolean;
  /** A libvirt job (e.g. an outgoing migration) is still running on it. */
  jobActive: boolean;
  uuid: string;
}

export interface Placement {
  /** running = running or paused there. */
  on: 'source' | 'destination' | 'both' | 'nowhere' | 'unknown';
  source: HostView | null;
  destination: HostView | null;
  /** Why the destination could not be looked at, if it could not. */
  destinationError?: string;
}

const ACTIVE: ReadonlySet<DomainState> = new Set(['running', 'paused', 'blocked', 'pmsuspended']);
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * The guest as one host sees it, or null. When `uuid` is given, a domain of
 * the same name but another UUID is not the guest: it is someone else's.
 */
export async function viewOn(conn: Connection, name: string, uuid?: string): Promise<HostView | null> {
  const d = await conn.lookupDomain(name);
  if (!d) return null;
  if (uuid && d.uuid !== uuid) {
    d.free();
    return null;
  }
  try {
    const [{ state }, persistent, job] = await Promise.all([d.state(), d.isPersistent(), d.jobStats().catch(() => ({ type: 'none' as const }))]);
    return { state, persistent, jobActive: job.type === 'unbounded' || job.type === 'bounded', uuid: d.uuid };
  } finally {
    d.free();
  }
}

export const isActiveState = (s: DomainState): boolean => ACTIVE.has(s);
export const isActive = (v: HostView | null): boolean => v !== null && ACTIVE.has(v.state);

/** Pure: where the guest runs, from the two views. */
export function placementOf(src: HostView | null, dst: HostView | null, destinationKnown: boolean): Placement['on'] {
  const s = isActive(src);
  const d = isActive(dst);
  if (s && d) return 'both';
  if (s) return 'source';
  if (d) return 'destination';
  return destinationKnown ? 'nowhere' : 'unknown';
}

export async function observePlacement(ctx: StageContext): Promise<Placement> {
  const uuid = ctx.checkpoint.results.check?.domainUuid;
  const source = await viewOn(await ctx.source(), ctx.request.vm, uuid);
  let destination: HostView | null = null;
  let destinationError: string | undefined;
  try {
    destination = await viewOn(await ctx.destination(), ctx.request.vm, uuid);
  } catch (e) {
    destinationError = errText(e);
  }
  const on = placementOf(source, destination, destinationError === undefined);
  return { on, source, destination, ...(destinationError ? { destinationError } : {}) };
}

/** Runs `fn` with the guest's handle on the source; VM_NOT_FOUND when the source has no such guest. */
export async function withSourceDomain<T>(ctx: StageContext, fn: (d: Domain, source: Connection) => Promise<T>): Promise<T> {
  const source = await ctx.source();
  const domain = await source.lookupDomain(ctx.request.vm);
  if (!domain) throw migrationError('VM_NOT_FOUND', { name: ctx.request.vm });
  try {
    return await fn(domain, source);
  } finally {
    domain.free();
  }
}
