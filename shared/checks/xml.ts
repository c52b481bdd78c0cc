/**
 * Reads the few facts the checks need out of libvirt's XML documents.
 * Pure functions: XML text in, plain objects out.
 */
import { XMLParser } from 'fast-xml-parser';

const ARRAYS = new Set([
  'domain.devices.disk',
  'domain.devices.hostdev',
  'domain.devices.interface',
  'capabilities.guest',
  'capabilities.guest.arch.domain',
]);

function parser(): XMLParser {
  return new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@',
    parseTagValue: false,
    parseAttributeValue: false,
    isArray: (_name, jpath) => ARRAYS.has(String(jpath)),
  });
}

type Node = Record<string, unknown>;
const obj = (v: unknown): Node => (typeof v === 'object' && v !== null ? (v as Node) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
const text = (v: unknown): string | undefined => str(v) ?? str(obj(v)['#text']);

export interface HostCaps {
  uuid: string | undefined;
  arch: string | undefined;
  cpuModel: string | undefined;
  /** Guest architectures with the domain types (qemu, kvm) they can run. */
  guests: { osType: string; arch: string; domainTypes: string[] }[];
}

export function parseCapabilities(xml: string): HostCaps {
  const doc = obj(parser().parse(xml)).capabilities;
  if (doc === undefined) throw new Error('not a libvirt capabilities document');
  const host = obj(obj(doc).host);
  const cpu = obj(host.cpu);
  const guests = ((obj(doc).guest as unknown[]) ?? []).map((g) => {
    const arch = obj(obj(g).arch);
    return {
      osType: text(obj(g).os_type) ?? '',
      arch: str(arch['@name']) ?? '',
      domainTypes: ((arch.domain as unknown[]) ?? []).map((d) => str(obj(d)['@type']) ?? ''),
    };
  });
  return { uuid: text(host.uuid), arch: text(cpu.arch), cpuModel: text(cpu.model), guests };
}

export interface DiskInfo {
  /** Guest device name, e.g. vda. */
  target: string;
  /** file, block, network, volume, dir */
  type: string;
  /** disk, cdrom, floppy, lun */
  device: string;
  path: string | null;
  /** For type='volume' disks. */
  pool: string | null;
  volume: string | null;
  readonly: boolean;
  shareable: boolean;
}

export interface DomainXmlInfo {
  name: string;
  uuid: string;
  type: string;
  arch: string | undefined;
  memoryKiB: number;
  hostdevs: string[];
  disks: DiskInfo[];
}

function kib(node: unknown): number {
  const n = Number(text(node) ?? 0);
  const unit = (str(obj(node)['@unit']) ?? 'KiB').toLowerCase();
  const scale: Record<string, number> = { b: 1 / 1024, bytes: 1 / 1024, k: 1, kib: 1, kb: 1000 / 1024, m: 1024, mib: 1024, mb: 1e6 / 1024, g: 1048576, gib: 1048576, gb: 1e9 / 1024 };
  return Math.round(n * (scale[unit] ?? 1));
}

function describeHostdev(h: unknown): string {
  const n = obj(h);
  const type = str(n['@type']) ?? 'unknown';
  const addr = obj(obj(n.source).address);
  if (type === 'pci' && Object.keys(addr).length) {
    const hex = (v: unknown, w: number) => Number(str(v) ?? 0).toString(16).padStart(w, '0');
    return `pci ${hex(addr['@domain'], 4)}:${hex(addr['@bus'], 2)}:${hex(addr['@slot'], 2)}.${hex(addr['@function'], 1)}`;
  }
  if (type === 'mdev') return `mdev ${str(obj(addr)['@uuid']) ?? ''}`.trim();
  return type;
}

export function parseDomainXml(xml: string): DomainXmlInfo {
  const dom = obj(obj(parser().parse(xml)).domain);
  if (!Object.keys(dom).length) throw new Error('not a libvirt domain document');
  const devices = obj(dom.devices);
  const hostdevs = ((devices.hostdev as unknown[]) ?? []).map(describeHostdev);
  // <interface type='hostdev'> is PCI passthrough of a NIC (SR-IOV VF).
  for (const i of (devices.interface as unknown[]) ?? []) {
    if (str(obj(i)['@type']) === 'hostdev') hostdevs.push('interface hostdev');
  }
  const disks = ((devices.disk as unknown[]) ?? []).map((d): DiskInfo => {
    const n = obj(d);
    const src = obj(n.source);
    const type = str(n['@type']) ?? 'file';
    return {
      target: str(obj(n.target)['@dev']) ?? '?',
      type,
      device: str(n['@device']) ?? 'disk',
      path: str(src['@file']) ?? str(src['@dev']) ?? str(src['@dir']) ?? null,
      pool: type === 'volume' ? (str(src['@pool']) ?? null) : null,
      volume: type === 'volume' ? (str(src['@volume']) ?? null) : null,
      readonly: 'readonly' in n,
      shareable: 'shareable' in n,
    };
  });
  return {
    name: text(dom.name) ?? '',
    uuid: text(dom.uuid) ?? '',
    type: str(dom['@type']) ?? '',
    arch: str(obj(obj(dom.os).type)['@arch']),
    memoryKiB: kib(dom.currentMemory ?? dom.memory),
    hostdevs,
    disks,
  };
}

export interface PoolXmlInfo {
  type: string;
  targetPath: string | null;
}

export function parsePoolXml(xml: string): PoolXmlInfo {
  const pool = obj(obj(parser().parse(xml)).pool);
  return { type: str(pool['@type']) ?? '', targetPath: text(obj(pool.target).path) ?? null };
}
