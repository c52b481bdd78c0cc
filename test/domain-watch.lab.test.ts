/**
 * The watched domain names against a real libvirtd (lab host1, qemu+tcp):
 * the listing holds host1's guests; a guest defined and undefined on host1
 * through another connection is followed by the watch and by the API's
 * source host (known without a lookup once defined, asked of libvirt and
 * refused once undefined); when host1's libvirtd dies the watch says so, the
 * names are dropped whole, and a new watch lists host1 again once it is back.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSourceHost, WATCH_RETRY_MS } from '../api/source.js';
import { GUEST_DISK } from '../lab/config.js';
import { fillerXml } from '../lab/filler.js';
import { hostUri, killHost, labUp, resetGuest, startHost } from '../lab/lab.js';
import { loadConfig } from '../shared/config.js';
import { countedHypervisor } from './helpers/counted-hypervisor.js';
import { type Connection, createHypervisor, type DomainLifecycle } from '../shared/libvirt/index.js';

const hv = createHypervisor();
let h1: Connection;

beforeAll(async () => {
  await labUp();
  await resetGuest(GUEST_DISK);
  h1 = await hv.open(hostUri('host1'), { timeoutMs: 10_000 });
}, 600_000);

afterAll(async () => {
  await h1?.close();
});

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('watchDomains on lab host1', () => {
  it('lists host1\'s guests and follows a guest defined and undefined there', async () => {
    const seen: DomainLifecycle[] = [];
    const watch = await hv.watchDomains!(hostUri('host1'), (e) => seen.push(e), { timeoutMs: 10_000 });
    try {
      const listed = await h1.listDomains();
      expect(new Map(listed.map((d) => [d.name, d.uuid]))).toEqual(watch.listed);
      for (const d of listed) d.free();
      expect(watch.listed.has(GUEST_DISK)).toBe(true);

      const name = `watch-${randomUUID().slice(0, 8)}`;
      const dom = await h1.defineDomain(await fillerXml(name));
      try {
        await until(() => seen.some((e) => e.name === name && e.event === 'defined'), 'defined');
        expect(seen.find((e) => e.name === name)!.uuid).toBe(dom.uuid);
      } finally {
        await dom.undefine();
        dom.free();
      }
      await until(() => seen.some((e) => e.name === name && e.event === 'undefined'), 'undefined');
    } finally {
      await watch.close();
    }
    expect(watch.isAlive()).toBe(false);
  });
});

describe('the API\'s source host over lab host1', () => {
  const counted = () => countedHypervisor(hv);
  const config = loadConfig({ env: { KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_LIBVIRT_LOOKUP_TIMEOUT: '10000' } });

  it('knows a guest defined on host1 without a lookup, and asks libvirt once it is undefined', async () => {
    const { hypervisor, stats } = counted();
    const source = createSourceHost(config, hypervisor);
    try {
      expect(await source.exists(GUEST_DISK)).toBe(true);
      await until(() => source.knownNames() !== null, 'the watch listed');
      const known = source.knownNames()!;
      const before = stats.lookups;
      expect(await source.exists(GUEST_DISK)).toBe(true);
      expect(stats.lookups).toBe(before);

      const name = `watch-${randomUUID().slice(0, 8)}`;
      const dom = await h1.defineDomain(await fillerXml(name));
      await until(() => source.knownNames() === known + 1, 'the define reached the names');
      expect(await source.exists(name)).toBe(true);
      expect(stats.lookups).toBe(before);
      await dom.undefine();
      dom.free();
      await until(() => source.knownNames() === known, 'the undefine reached the names');
      expect(await source.exists(name)).toBe(false);
      expect(stats.lookups).toBe(before + 1);
    } finally {
      await source.close();
    }
  });

  it('drops the names when host1\'s libvirtd dies, and lists host1 again once it is back', async () => {
    const { hypervisor, stats } = counted();
    let t = 1_000_000;
    const source = createSourceHost(config, hypervisor, { now: () => t });
    try {
      await source.exists(GUEST_DISK);
      await until(() => source.knownNames() !== null, 'the watch listed');
      expect(await killHost('host1')).toBe(true);
      try {
        await until(() => !stats.watches[0]!.isAlive(), 'the watch saw its daemon die', 30_000);
        // Nothing answers from names that may be stale: libvirt is asked, and is not there.
        await expect(source.exists(GUEST_DISK)).rejects.toMatchObject({ code: 'KMIG0005E' });
        expect(source.knownNames()).toBeNull();
      } finally {
        await startHost('host1');
      }
      t += WATCH_RETRY_MS;
      expect(await source.exists(GUEST_DISK)).toBe(true);
      await until(() => source.knownNames() !== null, 'watched again', 30_000);
      expect(stats.watches.length).toBeGreaterThanOrEqual(2);
      expect(stats.watches.at(-1)!.listed.has(GUEST_DISK)).toBe(true);
    } finally {
      await source.close();
    }
  }, 120_000);
});
