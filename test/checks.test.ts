import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCapabilities, parseDomainXml } from '../shared/checks/xml.js';
import { blockersOf, verdicts, type CheckFacts, type DiskFacts } from '../shared/checks/verdicts.js';

const fixture = (f: string) => readFileSync(new URL(`./fixtures/${f}`, import.meta.url), 'utf8');

const x86 = { uuid: '11111111-1111-1111-1111-111111111111', arch: 'x86_64', hypervisor: 'QEMU', freeMemoryBytes: 8 * 2 ** 30 };

function facts(over: Partial<CheckFacts> = {}): CheckFacts {
  return {
    vm: { name: 'g', uuid: 'aaaaaaaa-0000-0000-0000-000000000001', state: 'running', memoryKiB: 65536, hostdevs: [], disks: [] },
    source: x86,
    remoteHost: 'host2',
    destination: { reachable: true, uri: 'qemu+tcp://host2/system', host: { ...x86, uuid: '22222222-2222-2222-2222-222222222222' }, clashes: [] },
    ...over,
  };
}

const codes = (f: CheckFacts) => blockersOf(verdicts(f)).map((b) => b.code);

const disk = (over: Partial<DiskFacts>): DiskFacts => ({
  target: 'vda', type: 'block', device: 'disk', path: '/pool/d1', pool: null, volume: null, readonly: false, shareable: false,
  sourcePool: 'shared', onDestination: { visible: true, detail: 'visible' }, sharing: { writable: true, shared: true, detail: 'ok' }, ...over,
});

describe('capabilities parsing', () => {
  it('reads host UUID and architecture of a ppc64le host', () => {
    const caps = parseCapabilities(fixture('caps-ppc64le.xml'));
    expect(caps.arch).toBe('ppc64le');
    expect(caps.uuid).toBe('4c4c4544-0051-3910-8057-b4c04f4e4b32');
    expect(caps.cpuModel).toBe('POWER9');
    expect(caps.guests.map((g) => g.arch)).toEqual(['ppc64', 'ppc64le']);
  });
  it('rejects a document that is not capabilities', () => {
    expect(() => parseCapabilities('<domain/>')).toThrow(/capabilities/);
  });
});

describe('domain XML parsing', () => {
  const xml = `<domain type='kvm'><name>g</name><uuid>u-1</uuid><memory unit='MiB'>128</memory><currentMemory unit='KiB'>65536</currentMemory>
    <os><type arch='x86_64'>hvm</type></os>
    <devices>
      <disk type='block' device='disk'><source dev='/dev/loop7'/><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>
      <disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vdb'/><shareable/></disk>
      <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source></hostdev>
      <interface type='hostdev'><source><address type='pci' domain='0' bus='4' slot='0' function='0'/></source></interface>
    </devices></domain>`;
  it('finds disks, pools, host devices and memory', () => {
    const d = parseDomainXml(xml);
    expect(d.memoryKiB).toBe(65536);
    expect(d.arch).toBe('x86_64');
    expect(d.disks).toEqual([
      { target: 'vda', type: 'block', device: 'disk', path: '/dev/loop7', pool: null, volume: null, readonly: false, shareable: false },
      { target: 'hdc', type: 'file', device: 'cdrom', path: null, pool: null, volume: null, readonly: true, shareable: false },
      { target: 'vdb', type: 'volume', device: 'disk', path: null, pool: 'p', volume: 'v', readonly: false, shareable: true },
    ]);
    expect(d.hostdevs).toEqual(['pci 0000:03:00.1', 'interface hostdev']);
  });
});

describe('check verdicts', () => {
  it('passes a healthy migration with every check ok', () => {
    const r = verdicts(facts({ vm: { ...facts().vm, disks: [disk({})] } }));
    expect(r.every((c) => c.ok)).toBe(true);
    expect(r.map((c) => c.check)).toEqual([
      'destination_reachable', 'not_same_host', 'same_hypervisor', 'same_architecture', 'guest_state', 'no_host_devices', 'shared_storage', 'no_name_clash', 'destination_memory',
    ]);
  });

  it('refuses a ppc64le destination for an x86_64 source (real capabilities document)', () => {
    const ppc = parseCapabilities(fixture('caps-ppc64le.xml'));
    const f = facts({ destination: { reachable: true, uri: 'u', host: { uuid: ppc.uuid, arch: ppc.arch, hypervisor: 'QEMU', freeMemoryBytes: 2 ** 34 }, clashes: [] } });
    expect(codes(f)).toEqual(['KCHVM0064E']);
    expect(blockersOf(verdicts(f))[0]?.reason).toMatch(/source x86_64, destination ppc64le/);
  });

  it('compares host UUIDs, not names, to find the same host', () => {
    const f = facts({ remoteHost: 'some-other-name', destination: { reachable: true, uri: 'u', host: { ...x86 }, clashes: [] } });
    expect(codes(f)).toEqual(['KCHVM0055E']);
  });

  it('reports every blocker at once', () => {
    const f = facts({
      vm: { name: 'g', uuid: 'u', state: 'shutoff', memoryKiB: 2 ** 30, hostdevs: ['pci 0000:03:00.1'], disks: [disk({ target: 'vdb', sourcePool: null })] },
      destination: { reachable: true, uri: 'u', host: { ...x86, uuid: 'other', hypervisor: 'Xen' }, clashes: [{ name: 'g', uuid: 'zzz', active: false }] },
    });
    expect(codes(f).sort()).toEqual(['KCHVM0057E', 'KCHVM0065E', 'KMIG0101E', 'KMIG0102E', 'KMIG0106E', 'KMIG0107E'].sort());
  });

  it('reports an unreachable destination and skips what needs it', () => {
    const f = facts({ destination: { reachable: false, uri: 'qemu+tcp://h/system', detail: 'Connection refused' } });
    const r = verdicts(f);
    expect(codes(f)).toEqual(['KCHVM0090E']);
    expect(r.filter((c) => c.skipped).map((c) => c.check)).toEqual(['not_same_host', 'same_hypervisor', 'same_architecture', 'no_name_clash', 'destination_memory']);
    expect(r.find((c) => c.check === 'not_same_host')?.ok).toBe(false);
  });

  it.each([
    ['pool missing on destination', disk({ onDestination: { visible: false, detail: 'no pool' } }), 'KMIG0103E'],
    ['destination cannot write', disk({ sharing: { writable: false, shared: false, detail: 'EACCES' } }), 'KMIG0104E'],
    ['probe not visible from source', disk({ sharing: { writable: true, shared: false, detail: 'not visible' } }), 'KMIG0105E'],
    ['disk outside any pool', disk({ sourcePool: null }), 'KMIG0102E'],
  ])('storage: %s', (_what, d, code) => {
    expect(codes(facts({ vm: { ...facts().vm, disks: [d] } }))).toEqual([code]);
  });

  it('ignores an empty CD-ROM and reports a pool once for several disks', () => {
    const d1 = disk({ target: 'vda', sharing: { writable: true, shared: false, detail: 'x' } });
    const d2 = disk({ target: 'vdb', sharing: { writable: true, shared: false, detail: 'x' } });
    const cd = disk({ target: 'hdc', device: 'cdrom', path: null, sourcePool: null });
    expect(codes(facts({ vm: { ...facts().vm, disks: [d1, d2, cd] } }))).toEqual(['KMIG0105E']);
  });

  it.each([
    ['same UUID, inactive: stale copy libvirt replaces', { name: 'g', uuid: 'aaaaaaaa-0000-0000-0000-000000000001', active: false }, []],
    ['same UUID, running', { name: 'g', uuid: 'aaaaaaaa-0000-0000-0000-000000000001', active: true }, ['KMIG0106E']],
    ['same name, other UUID', { name: 'g', uuid: 'bbbb', active: false }, ['KMIG0106E']],
  ])('name clash: %s', (_what, clash, expected) => {
    expect(codes(facts({ destination: { reachable: true, uri: 'u', host: { ...x86, uuid: 'd' }, clashes: [clash] } }))).toEqual(expected);
  });

  it.each([['running', []], ['paused', []], ['shutoff', ['KCHVM0057E']], ['crashed', ['KCHVM0057E']]] as const)('guest state %s', (state, expected) => {
    expect(codes(facts({ vm: { ...facts().vm, state } }))).toEqual(expected);
  });

  it('needs the guest memory free on the destination', () => {
    const f = facts({ vm: { ...facts().vm, memoryKiB: 4 * 1024 * 1024 }, destination: { reachable: true, uri: 'u', host: { ...x86, uuid: 'd', freeMemoryBytes: 1024 * 2 ** 20 }, clashes: [] } });
    expect(blockersOf(verdicts(f))[0]?.reason).toMatch(/1024 MiB free, the guest needs 4096 MiB/);
  });
});
