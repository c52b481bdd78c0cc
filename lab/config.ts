/**
 * Lab naming and layout: every name, address, path and identifier the lab
 * uses is derived here, so the rest of the lab (and the tests) agree on them.
 *
 * Identifiers (host UUIDs, guest UUIDs, pool UUID) are hashes of the lab
 * directory plus a role, not random: they are stable across `up`/`down`
 * cycles, and a qemu process carrying one of our guest UUIDs is provably ours
 * (labDown relies on that to never kill a process the lab did not start).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import path from 'node:path';

export const GUEST_TINY = 'lab-tiny';
export const GUEST_DISK = 'lab-disk';
export const GUEST_DIRTY = 'lab-dirty';
export const LAB_GUESTS = [GUEST_TINY, GUEST_DISK, GUEST_DIRTY] as const;
export type LabGuestName = (typeof LAB_GUESTS)[number];
export type GuestKind = 'diskless' | 'disk' | 'dirty';
export const GUEST_KINDS: Record<LabGuestName, GuestKind> = {
  [GUEST_TINY]: 'diskless',
  [GUEST_DISK]: 'disk',
  [GUEST_DIRTY]: 'dirty',
};

export const POOL_NAME = 'lab-shared';
/** The volume (in POOL_NAME) that backs lab-disk's only disk. */
export const DISK_VOLUME = 'lab-disk';
export const DISK_VOLUME_MIB = 8;

export const LIBVIRT_PORT = 16509;
export const DEFAULT_LAB_DIR = '/var/lib/kvm-migrate-lab';
export const DEFAULT_HOSTS = 2;
/** 127.0.0.(10+N) must stay a valid, lab-only loopback address. */
export const MAX_HOSTS = 20;
/** Far above what an 8 MiB/s migration can keep up with: it never converges. */
export const DEFAULT_DIRTY_RATE_MIBS = 64;

/** The lab directory: env KVM_MIGRATE_LAB_DIR or the default, absolute. */
export function labDir(): string {
  const fromEnv = process.env.KVM_MIGRATE_LAB_DIR;
  return path.resolve(fromEnv && fromEnv.trim() !== '' ? fromEnv : DEFAULT_LAB_DIR);
}

export function hostName(index: number): string {
  return `host${index}`;
}

/** host3 -> 3; throws on anything that is not a lab host name. */
export function hostIndex(name: string): number {
  const m = /^host([1-9][0-9]?)$/.exec(name);
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 1 && n <= MAX_HOSTS)) throw new Error(`not a lab host name: ${JSON.stringify(name)}`);
  return n;
}

export function hostAddress(name: string): string {
  return `127.0.0.${10 + hostIndex(name)}`;
}

/** The URI the service's template `qemu+tcp://{host}/system` yields for this host. */
export function hostUri(name: string): string {
  return `qemu+tcp://${hostAddress(name)}/system`;
}

/** A UUID derived from the lab directory and a role ("host:host1", "guest:lab-tiny"). */
export function labUuid(dir: string, role: string): string {
  const h = createHash('sha256').update(`kvm-migrate-lab\0${dir}\0${role}`).digest('hex');
  // Shape it as a version-4/variant-1 UUID so every tool accepts it.
  const v = `4${h.slice(13, 16)}`;
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16) + h.slice(17, 20);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${v}-${variant}-${h.slice(20, 32)}`;
}

/** Files and directories of one lab. */
export function labPaths(dir: string) {
  return {
    dir,
    marker: path.join(dir, '.kvm-migrate-lab'),
    state: path.join(dir, 'state.json'),
    lock: path.join(dir, 'lock'),
    hosts: path.join(dir, 'hosts'),
    /** The pool target: outside the per-host private mounts, so every host sees it. */
    shared: path.join(dir, 'shared'),
    /** Backing files of the loop devices. */
    images: path.join(dir, 'images'),
    /** The dirty-guest kernel; both hosts' qemu must be able to open it. */
    guest: path.join(dir, 'guest'),
    /** XML handed to virsh (define, pool-define). */
    xml: path.join(dir, 'xml'),
    /** Guests' serial consoles (append mode, so a migration keeps the history). */
    consoles: path.join(dir, 'consoles'),
  };
}

/**
 * The directories each host gets privately: [subdirectory of the host dir,
 * mount point]. libvirtd keeps all of its state under these, so bind-mounting
 * them per mount namespace makes two daemons two independent hosts.
 */
export const PRIVATE_MOUNTS: ReadonlyArray<readonly [string, string]> = [
  ['run', '/run/libvirt'],
  ['lib', '/var/lib/libvirt'],
  ['log', '/var/log/libvirt'],
  ['etc', '/etc/libvirt'],
  ['cache', '/var/cache/libvirt'],
];

export function hostPaths(dir: string, name: string) {
  const root = path.join(labPaths(dir).hosts, name);
  return {
    root,
    etc: path.join(root, 'etc'),
    pidfile: path.join(root, 'libvirtd.pid'),
    /** stdout/stderr of the reaper and libvirtd (startup failures land here). */
    daemonLog: path.join(root, 'daemon.log'),
    libvirtdLog: path.join(root, 'log', 'libvirtd.log'),
    /** Where qemu writes <guest>.pid, seen from outside the namespace. */
    qemuRun: path.join(root, 'run', 'qemu'),
  };
}

/**
 * `<domain type>` for lab guests. Env KVM_MIGRATE_LAB_VIRT=kvm|qemu forces it.
 * Otherwise kvm when /dev/kvm opens read-write, except under kvm_pvm (the
 * nested flavour of the lab machine): it emulates the guest's real-mode and
 * unpaged code (~1 MIPS measured), so SeaBIOS alone takes ~3 s and lab-dirty
 * is ready after ~4 s instead of ~0.6 s with TCG, for the same CPU use and
 * the same migration behaviour. Both types were verified to migrate there.
 */
export function detectVirtType(): 'kvm' | 'qemu' {
  const forced = process.env.KVM_MIGRATE_LAB_VIRT;
  if (forced === 'kvm' || forced === 'qemu') return forced;
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
  } catch {
    return 'qemu';
  }
  return existsSync('/sys/module/kvm_pvm') ? 'qemu' : 'kvm';
}
