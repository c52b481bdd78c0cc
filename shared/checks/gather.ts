/**
 * Gathers the facts the capability verdicts judge, from real libvirt.
 * Read-only except for the storage probe, which writes a tiny volume on the
 * destination, reads it back from the source and deletes it again: the only
 * honest proof that a pool is shared and writable by the destination.
 */
import { randomUUID } from 'node:crypto';
import type { Connection, Domain, StoragePool } from '../libvirt/types.js';
import { parseCapabilities, parseDomainXml, parsePoolXml } from './xml.js';
import type { CheckFacts, DestinationFacts, DiskFacts, DomainClash, HostFacts } from './verdicts.js';

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Pool types that are shared by construction even when the probe cannot create a volume. */
const SHARED_POOL_TYPES = new Set(['netfs', 'iscsi', 'iscsi-direct', 'rbd', 'gluster', 'sheepdog', 'vstorage', 'mpath', 'scsi']);

/** What a host is (its UUID, CPU architecture, hypervisor) does not change while a connection to it is open. */
function fixedHostFacts(conn: Connection): Promise<Omit<HostFacts, 'freeMemoryBytes'>> {
  return conn.remember('host-facts', async () => {
    const [capsXml, hypervisor] = await Promise.all([conn.capabilities(), conn.hypervisorType()]);
    const caps = parseCapabilities(capsXml);
    return { uuid: caps.uuid, arch: caps.arch, hypervisor };
  });
}

export async function hostFacts(conn: Connection): Promise<HostFacts> {
  const [fixed, freeMemoryBytes] = await Promise.all([fixedHostFacts(conn), conn.freeMemory()]);
  return { ...fixed, freeMemoryBytes };
}

async function clashes(dest: Connection, name: string, uuid: string): Promise<DomainClash[]> {
  const out: DomainClash[] = [];
  const byName = await dest.lookupDomain(name);
  const byUuid = await dest.lookupDomainByUUID(uuid);
  for (const d of [byName, byUuid]) {
    if (!d || out.some((c) => c.uuid === d.uuid)) continue;
    out.push({ name: d.name, uuid: d.uuid, active: await d.isActive() });
    d.free();
  }
  return out;
}

/** Writes a probe volume through the destination and looks for it from the source. */
async function probePool(source: StoragePool, dest: StoragePool): Promise<NonNullable<DiskFacts['sharing']>> {
  const name = `kvm-migrate-probe-${randomUUID()}`;
  const type = parsePoolXml(await dest.xml()).type;
  let vol;
  try {
    vol = await dest.createVolume(`<volume><name>${name}</name><capacity unit='KiB'>4</capacity><target><format type='raw'/></target></volume>`);
  } catch (e) {
    if (SHARED_POOL_TYPES.has(type)) return { writable: true, shared: true, detail: `pool type ${type} is shared storage; it does not support a write probe` };
    return { writable: false, shared: false, detail: errText(e) };
  }
  try {
    await source.refresh();
    const seen = await source.lookupVolume(name);
    seen?.free();
    return seen
      ? { writable: true, shared: true, detail: 'a volume written by the destination was read back by the source' }
      : { writable: true, shared: false, detail: `a volume written by the destination in pool ${dest.name} (${type}) is not visible from the source` };
  } finally {
    await vol.delete().catch(() => undefined);
    vol.free();
    await source.refresh().catch(() => undefined);
  }
}

async function diskFacts(source: Connection, dest: Connection | null, xml: string): Promise<DiskFacts[]> {
  const disks = parseDomainXml(xml).disks;
  const probes = new Map<string, Promise<DiskFacts['sharing']>>();
  const pools: StoragePool[] = [];
  const keep = <T extends StoragePool | null>(p: T): T => {
    if (p) pools.push(p);
    return p;
  };
  try {
    const out: DiskFacts[] = [];
    for (const disk of disks) {
      let sourcePool: string | null = disk.pool;
      let srcPool: StoragePool | null = null;
      if (disk.pool) srcPool = keep(await source.lookupPool(disk.pool));
      else if (disk.path) {
        const vol = await source.lookupVolumeByPath(disk.path);
        if (vol) {
          try {
            srcPool = keep(await vol.pool());
            sourcePool = srcPool.name;
          } finally {
            vol.free();
          }
        }
      }
      let onDestination: DiskFacts['onDestination'] = null;
      let sharing: DiskFacts['sharing'] = null;
      if (dest && sourcePool && srcPool) {
        try {
          const dstPool = keep(await dest.lookupPool(sourcePool));
          const dstVol = disk.path ? await dest.lookupVolumeByPath(disk.path) : disk.volume && dstPool ? await dstPool.lookupVolume(disk.volume) : null;
          dstVol?.free();
          const active = dstPool ? (await dstPool.info()).state === 'running' : false;
          onDestination = !dstPool
            ? { visible: false, detail: `the destination has no pool named ${sourcePool}` }
            : !active
              ? { visible: false, detail: `pool ${sourcePool} is not active on the destination` }
              : !dstVol
                ? { visible: false, detail: `the destination's pool ${sourcePool} does not hold this volume` }
                : { visible: true, detail: 'visible' };
          if (dstPool && active) {
            const pending = probes.get(sourcePool) ?? probePool(srcPool, dstPool);
            probes.set(sourcePool, pending);
            sharing = await pending;
          }
        } catch (e) {
          onDestination = { visible: false, detail: `the destination could not be asked: ${errText(e)}` };
        }
      }
      out.push({ ...disk, sourcePool, onDestination, sharing });
    }
    return out;
  } finally {
    // A live pool handle keeps its connection open after close(): free every one.
    for (const p of pools) p.free();
  }
}

export interface GatherInput {
  source: Connection;
  domain: Domain;
  remoteHost: string;
  destinationUri: string;
  /** The open destination connection, or why it could not be opened. */
  destination: Connection | { error: string };
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: string };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true as const, value }), (e: unknown) => ({ ok: false as const, error: errText(e) }));

async function destinationFacts(dest: Connection, uri: string, name: string, uuid: string): Promise<DestinationFacts> {
  const [host, found] = await Promise.all([settle(hostFacts(dest)), settle(clashes(dest, name, uuid))]);
  // Answered the open and then stopped answering.
  if (!found.ok) return { reachable: false, uri, detail: found.error };
  return { reachable: true, uri, host: host.ok ? host.value : null, ...(host.ok ? {} : { capsError: host.error }), clashes: found.value };
}

export async function gatherFacts(input: GatherInput): Promise<CheckFacts> {
  const { source, domain } = input;
  const dest = 'error' in input.destination ? null : input.destination;
  // The two hosts answer on their own connections: ask both at once.
  // Every branch settles before this returns: the caller closes the destination right after.
  const [guest, sourceFacts, destination] = await Promise.all([
    Promise.all([domain.state(), domain.xml()]).then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })),
    settle(hostFacts(source)),
    dest
      ? destinationFacts(dest, input.destinationUri, domain.name, domain.uuid)
      : Promise.resolve<DestinationFacts>({ reachable: false, uri: input.destinationUri, detail: (input.destination as { error: string }).error }),
  ]);
  // The guest's own error, as libvirt gave it: the runner's retry policy reads its code.
  if (!guest.ok) throw guest.error;
  const [state, xml] = guest.value;
  const info = parseDomainXml(xml);
  const sourceHost = sourceFacts.ok ? sourceFacts.value : null;
  const sourceCapsError = sourceFacts.ok ? undefined : sourceFacts.error;

  return {
    vm: { name: info.name, uuid: info.uuid, state: state.state, memoryKiB: info.memoryKiB, hostdevs: info.hostdevs, disks: await diskFacts(source, dest, xml) },
    source: sourceHost,
    ...(sourceCapsError ? { sourceCapsError } : {}),
    remoteHost: input.remoteHost,
    destination,
  };
}
