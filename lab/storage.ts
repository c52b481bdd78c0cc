/**
 * The shared storage pool `lab-shared`.
 *
 * Design: a `dir` pool whose target is <labdir>/shared, a directory outside
 * the per-host private mounts, defined (same name, same UUID) on every host.
 * Block volumes are symlinks in that directory to loop devices over files in
 * <labdir>/images. Why this shape:
 *  - the service's shared-storage proof (vol-create-as a small file on the
 *    destination, pool-refresh and look for it on the source) works because
 *    every host's pool is the same directory;
 *  - a guest disk is `<disk type='block'>` with `<source dev='<labdir>/shared/
 *    lab-disk'/>`; virStorageVolLookupByPath on any host finds that exact path
 *    as a volume of lab-shared (dir pools match paths literally, and their
 *    refresh lists symlinks to block devices as block volumes);
 *  - to libvirt's migration safety check a block disk with cache='none' is
 *    shared storage, which it is: every host opens the same /dev/loopN.
 *    A plain file in the pool would be refused as "local" (LAB.md).
 */
import { existsSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DISK_VOLUME, DISK_VOLUME_MIB, hostUri, labPaths, labUuid, POOL_NAME } from './config.js';
import { LabError, run, virsh, virshTry } from './exec.js';
import type { LabState } from './state.js';

/** Loop devices currently attached to `file` (as losetup reports them). */
export async function loopsBackedBy(file: string): Promise<string[]> {
  const out = (await run('losetup', ['--json', '--list', '-O', 'NAME,BACK-FILE'])).stdout;
  if (out.trim() === '') return [];
  const list = (JSON.parse(out) as { loopdevices: Array<{ name: string; 'back-file': string | null }> }).loopdevices;
  return list.filter((l) => l['back-file'] === file).map((l) => l.name);
}

/** The path of the disk guest's volume: what its <source dev> names. */
export function diskVolumePath(dir: string): string {
  return path.join(labPaths(dir).shared, DISK_VOLUME);
}

/**
 * Make sure the disk volume's loop device is attached and linked into the
 * pool directory. An attachment of our image file that the state does not
 * know (a run that died right after losetup) is adopted, not duplicated.
 */
export async function ensureDiskVolume(dir: string, state: LabState, save: () => void): Promise<string> {
  const p = labPaths(dir);
  mkdirSync(p.images, { recursive: true });
  mkdirSync(p.shared, { recursive: true });
  const image = path.join(p.images, `${DISK_VOLUME}.img`);
  if (!existsSync(image)) {
    // sparse: a few MiB that cost nothing until written
    writeFileSync(image, '');
    await run('truncate', ['-s', `${DISK_VOLUME_MIB}M`, image]);
  }
  let attached = await loopsBackedBy(image);
  if (attached.length === 0) {
    const dev = (await run('losetup', ['--find', '--show', image])).stdout.trim();
    if (!dev.startsWith('/dev/loop')) throw new LabError(`losetup gave no device for ${image}`);
    attached = [dev];
  }
  // the state lists exactly what is attached now (down detaches by this list)
  state.loops = attached.map((device) => ({ device, file: image }));
  save();
  const device = attached[0] as string;
  const link = diskVolumePath(dir);
  if (!isSymlinkTo(link, device)) {
    if (existsSync(link) || isSymlink(link)) unlinkSync(link);
    symlinkSync(device, link);
  }
  return device;
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function isSymlinkTo(p: string, target: string): boolean {
  return isSymlink(p) && readlinkSync(p) === target;
}

/** Detach the loop devices the state recorded, if still backed by our files. */
export async function detachLoops(state: LabState): Promise<string[]> {
  const detached: string[] = [];
  for (const loop of state.loops) {
    if (!(await loopsBackedBy(loop.file)).includes(loop.device)) continue;
    await run('losetup', ['-d', loop.device]);
    detached.push(loop.device);
  }
  state.loops = [];
  return detached;
}

export function poolXml(dir: string): string {
  return `<pool type='dir'>
  <name>${POOL_NAME}</name>
  <uuid>${labUuid(dir, 'pool')}</uuid>
  <target><path>${labPaths(dir).shared}</path></target>
</pool>
`;
}

/** Define, start, autostart and refresh lab-shared on one host. */
export async function ensurePool(dir: string, name: string): Promise<void> {
  const uri = hostUri(name);
  const want = labPaths(dir).shared;
  const xml = await virshTry(uri, ['pool-dumpxml', '--inactive', POOL_NAME]);
  if (xml.code === 0 && !xml.stdout.includes(`<path>${want}</path>`)) {
    // a pool of that name pointing elsewhere: replace it with ours
    await virshTry(uri, ['pool-destroy', POOL_NAME]);
    await virsh(uri, ['pool-undefine', POOL_NAME]);
  }
  if (xml.code !== 0 || !xml.stdout.includes(`<path>${want}</path>`)) {
    const file = path.join(labPaths(dir).xml, `pool-${POOL_NAME}.xml`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, poolXml(dir));
    await virsh(uri, ['pool-define', file]);
  }
  const info = await poolInfo(name);
  if (info?.state !== 'running') await virsh(uri, ['pool-start', POOL_NAME]);
  else await virsh(uri, ['pool-refresh', POOL_NAME]);
  if (info?.autostart !== 'yes') await virsh(uri, ['pool-autostart', POOL_NAME]);
}

/** `virsh pool-info` as a record, or null when the pool is not defined. */
export async function poolInfo(name: string): Promise<{ state: string; autostart: string } | null> {
  const r = await virshTry(hostUri(name), ['pool-info', POOL_NAME], 10_000);
  if (r.code !== 0) return null;
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(r.stdout)?.[1]?.trim() ?? '';
  return { state: field('State'), autostart: field('Autostart') };
}
