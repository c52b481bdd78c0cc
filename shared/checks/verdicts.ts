/**
 * Capability check verdicts: pure functions from observed facts to blockers.
 * Every check runs and every blocker is reported, so a client fixes all of
 * them in one go instead of one per attempt.
 */
import { migrationError, type ErrorJSON } from '../errors.js';
import type { DomainState } from '../libvirt/types.js';
import type { DiskInfo } from './xml.js';

export interface HostFacts {
  uuid: string | undefined;
  arch: string | undefined;
  hypervisor: string;
  freeMemoryBytes: number;
}

export interface DiskFacts extends DiskInfo {
  /** Pool that holds the disk on the source; null when none does. */
  sourcePool: string | null;
  /** What the destination sees of that pool and volume; null when not looked at. */
  onDestination: { visible: boolean; detail: string } | null;
  /** Probe: a volume written by the destination and read back by the source. */
  sharing: { writable: boolean; shared: boolean; detail: string } | null;
}

export interface DomainClash {
  name: string;
  uuid: string;
  active: boolean;
}

export type DestinationFacts =
  | { reachable: false; uri: string; detail: string }
  | { reachable: true; uri: string; host: HostFacts | null; capsError?: string; clashes: DomainClash[] };

export interface CheckFacts {
  vm: { name: string; uuid: string; state: DomainState; memoryKiB: number; hostdevs: string[]; disks: DiskFacts[] };
  source: HostFacts | null;
  sourceCapsError?: string;
  remoteHost: string;
  destination: DestinationFacts;
}

export type CheckName =
  | 'destination_reachable'
  | 'not_same_host'
  | 'same_hypervisor'
  | 'same_architecture'
  | 'guest_state'
  | 'no_host_devices'
  | 'shared_storage'
  | 'no_name_clash'
  | 'destination_memory';

export interface CheckResult {
  check: CheckName;
  ok: boolean;
  /** The blockers this check found; empty when ok. */
  blockers: ErrorJSON[];
  /** Set when the check could not run because an earlier fact is missing. */
  skipped?: string;
}

function result(check: CheckName, blockers: ErrorJSON[], skipped?: string): CheckResult {
  return { check, ok: blockers.length === 0 && !skipped, blockers, ...(skipped ? { skipped } : {}) };
}

const needsDest = (check: CheckName): CheckResult => result(check, [], 'destination unreachable');

/** Architectures libvirt reports under different names for the same ISA. */
function normalizeArch(a: string): string {
  return a === 'amd64' ? 'x86_64' : a;
}

function hostChecks(f: CheckFacts): CheckResult[] {
  const d = f.destination;
  if (!d.reachable) return [needsDest('not_same_host'), needsDest('same_hypervisor'), needsDest('same_architecture')];
  const src = f.source;
  const dst = d.host;
  if (!src || !dst) {
    const detail = f.sourceCapsError ?? d.capsError ?? 'capabilities missing';
    const e = [migrationError('CAPS_UNREADABLE', { detail }).toJSON()];
    return [result('not_same_host', e), result('same_hypervisor', []), result('same_architecture', [])];
  }
  const out: CheckResult[] = [];
  const same = src.uuid !== undefined && src.uuid === dst.uuid;
  out.push(result('not_same_host', same ? [migrationError('SAME_HOST', { host: f.remoteHost, uuid: String(src.uuid) }).toJSON()] : []));
  out.push(
    result(
      'same_hypervisor',
      src.hypervisor.toLowerCase() !== dst.hypervisor.toLowerCase()
        ? [migrationError('HYPERVISOR_MISMATCH', { source: src.hypervisor, destination: dst.hypervisor }).toJSON()]
        : [],
    ),
  );
  const sa = src.arch ? normalizeArch(src.arch) : undefined;
  const da = dst.arch ? normalizeArch(dst.arch) : undefined;
  if (!sa || !da) out.push(result('same_architecture', [migrationError('CAPS_UNREADABLE', { detail: 'host CPU architecture missing from capabilities' }).toJSON()]));
  else out.push(result('same_architecture', sa !== da ? [migrationError('ARCH_MISMATCH', { source: sa, destination: da }).toJSON()] : []));
  return out;
}

function storageCheck(f: CheckFacts): CheckResult {
  const blockers: ErrorJSON[] = [];
  const reported = new Set<string>();
  for (const disk of f.vm.disks) {
    if (!disk.path && !disk.volume) continue; // empty CD-ROM: nothing to share
    const path = disk.path ?? `${disk.pool}/${disk.volume}`;
    if (!disk.sourcePool) {
      blockers.push(migrationError('DISK_NOT_SHARED', { target: disk.target, path }).toJSON());
      continue;
    }
    if (!f.destination.reachable) continue;
    if (disk.onDestination && !disk.onDestination.visible) {
      blockers.push(migrationError('POOL_NOT_ON_DEST', { target: disk.target, path, pool: disk.sourcePool, detail: disk.onDestination.detail }).toJSON());
      continue;
    }
    // One probe per pool: report a pool once even when several disks live in it.
    if (disk.sharing && !reported.has(disk.sourcePool)) {
      reported.add(disk.sourcePool);
      if (!disk.sharing.writable) blockers.push(migrationError('POOL_NOT_WRITABLE', { pool: disk.sourcePool, detail: disk.sharing.detail }).toJSON());
      else if (!disk.sharing.shared) blockers.push(migrationError('POOL_NOT_SHARED', { pool: disk.sourcePool, detail: disk.sharing.detail }).toJSON());
    }
  }
  return result('shared_storage', blockers);
}

function clashCheck(f: CheckFacts): CheckResult {
  const d = f.destination;
  if (!d.reachable) return needsDest('no_name_clash');
  const blockers: ErrorJSON[] = [];
  for (const c of d.clashes) {
    // An inactive definition with the guest's own UUID is a stale copy libvirt replaces.
    if (c.uuid === f.vm.uuid && !c.active) continue;
    const what = c.uuid === f.vm.uuid ? `running with the same UUID ${c.uuid} (named ${c.name})` : `named ${c.name} with another UUID (${c.uuid})${c.active ? ', running' : ''}`;
    blockers.push(migrationError('NAME_CLASH', { detail: what }).toJSON());
  }
  return result('no_name_clash', blockers);
}

function memoryCheck(f: CheckFacts): CheckResult {
  const d = f.destination;
  if (!d.reachable || !d.host) return needsDest('destination_memory');
  const needMiB = Math.ceil(f.vm.memoryKiB / 1024);
  const freeMiB = Math.floor(d.host.freeMemoryBytes / 1048576);
  return result('destination_memory', freeMiB < needMiB ? [migrationError('DEST_NO_MEMORY', { free: String(freeMiB), need: String(needMiB) }).toJSON()] : []);
}

/** Runs every verdict over the facts; the migration may go ahead only if all are ok. */
export function verdicts(f: CheckFacts): CheckResult[] {
  const d = f.destination;
  const reach = result('destination_reachable', d.reachable ? [] : [migrationError('DEST_UNREACHABLE', { uri: d.uri, detail: d.detail }).toJSON()]);
  const state = f.vm.state === 'running' || f.vm.state === 'paused' ? [] : [migrationError('BAD_STATE', { name: f.vm.name, state: f.vm.state }).toJSON()];
  const hostdev = f.vm.hostdevs.length ? [migrationError('PCI_PASSTHROUGH', { name: f.vm.name, devices: f.vm.hostdevs.join(', ') }).toJSON()] : [];
  return [
    reach,
    ...hostChecks(f),
    result('guest_state', state),
    result('no_host_devices', hostdev),
    storageCheck(f),
    clashCheck(f),
    memoryCheck(f),
  ];
}

export function blockersOf(results: CheckResult[]): ErrorJSON[] {
  return results.flatMap((r) => r.blockers);
}
