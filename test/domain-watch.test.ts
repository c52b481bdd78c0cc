/**
 * Hypervisor.watchDomains on libvirt's in-process test driver (test:///default,
 * shared by every connection of the process): the listing, the lifecycle
 * events of domains changed through another connection, the end of events
 * at close; and the API's source host answering "is this VM there" from the
 * watched names without a libvirt lookup, asking libvirt for any name they
 * do not hold, and dropping them when the watch dies. The same against a
 * real libvirtd: domain-watch.lab.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createSourceHost, WATCH_RETRY_MS } from '../api/source.js';
import { loadConfig } from '../shared/config.js';
import { countedHypervisor } from './helpers/counted-hypervisor.js';
import { type Connection, createHypervisor, type DomainLifecycle } from '../shared/libvirt/index.js';

const TEST_URI = 'test:///default';
const hv = createHypervisor();
const cleanup: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

const xml = (name: string) =>
  `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function open(): Promise<Connection> {
  const c = await hv.open(TEST_URI, { timeoutMs: 5000 });
  cleanup.push(() => c.close());
  return c;
}

describe('watchDomains (test:///default)', () => {
  it('lists every domain, then reports defines, undefines, starts and stops made through another connection', async () => {
    const seen: DomainLifecycle[] = [];
    const watch = await hv.watchDomains!(TEST_URI, (e) => seen.push(e), { timeoutMs: 5000 });
    cleanup.push(() => watch.close());
    const conn = await open();
    const listed = await conn.listDomains();
    expect(new Map(listed.map((d) => [d.name, d.uuid]))).toEqual(watch.listed);
    for (const d of listed) d.free();
    expect(watch.listed.has('test')).toBe(true); // the driver's own domain
    expect(watch.isAlive()).toBe(true);

    const name = `watch-${randomUUID().slice(0, 8)}`;
    const dom = await conn.defineDomain(xml(name));
    await until(() => seen.some((e) => e.name === name && e.event === 'defined'), 'defined');
    expect(seen.find((e) => e.name === name)!.uuid).toBe(dom.uuid);
    await dom.start();
    await dom.destroy();
    await dom.undefine();
    dom.free();
    await until(() => seen.some((e) => e.name === name && e.event === 'undefined'), 'undefined');
    expect(seen.filter((e) => e.name === name).map((e) => e.event)).toEqual(['defined', 'started', 'stopped', 'undefined']);
  });

  it('reports nothing after close, and says it is not alive', async () => {
    const seen: DomainLifecycle[] = [];
    const watch = await hv.watchDomains!(TEST_URI, (e) => seen.push(e), { timeoutMs: 5000 });
    await watch.close();
    await watch.close(); // idempotent
    expect(watch.isAlive()).toBe(false);
    const conn = await open();
    const dom = await conn.defineDomain(xml(`watch-${randomUUID().slice(0, 8)}`));
    await dom.undefine();
    dom.free();
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([]);
  });
});

describe('source host: is the VM there', () => {
  const counted = () => countedHypervisor(hv);
  const config = loadConfig({ env: { KVM_MIGRATE_LIBVIRT_SOURCE_URI: TEST_URI } });

  it('answers from the watched names, asks libvirt for any other, and never trusts them to say no', async () => {
    const { hypervisor, stats } = counted();
    const source = createSourceHost(config, hypervisor);
    cleanup.push(() => source.close());
    // The first question starts the watch; until its listing is in, libvirt is asked.
    expect(await source.exists('test')).toBe(true);
    expect(stats.lookups).toBe(1);
    await until(() => source.knownNames() !== null, 'the watch listed');
    expect(await source.exists('test')).toBe(true);
    expect(stats.lookups).toBe(1);

    const conn = await open();
    const name = `src-${randomUUID().slice(0, 8)}`;
    const known = source.knownNames()!;
    const dom = await conn.defineDomain(xml(name));
    // Defined: known once its event is in, then answered without libvirt.
    await until(() => source.knownNames() === known + 1, 'the define reached the names');
    const before = stats.lookups;
    expect(await source.exists(name)).toBe(true);
    expect(stats.lookups).toBe(before);

    // Undefined: the name goes with its event, and libvirt answers no.
    await dom.undefine();
    dom.free();
    await until(() => source.knownNames() === known, 'the undefine reached the names');
    expect(await source.exists(name)).toBe(false);
    expect(stats.lookups).toBe(before + 1);
    // A name never seen: asked every time.
    expect(await source.exists('no-such-vm')).toBe(false);
    expect(stats.lookups).toBe(before + 2);
  });

  it('drops the names whole when the watch dies, and watches again no sooner than WATCH_RETRY_MS', async () => {
    const { hypervisor, stats } = counted();
    let t = 1_000_000;
    const source = createSourceHost(config, hypervisor, { now: () => t });
    cleanup.push(() => source.close());
    await source.exists('test');
    await until(() => source.knownNames() !== null, 'the watch listed');
    await stats.watches[0]!.close(); // as a dead connection looks
    const before = stats.lookups;
    expect(await source.exists('test')).toBe(true);
    expect(stats.lookups).toBe(before + 1);
    expect(source.knownNames()).toBeNull();
    // Too soon after the last start: no new watch, libvirt asked.
    t += WATCH_RETRY_MS - 1;
    await source.exists('test');
    expect(stats.watches).toHaveLength(1);
    t += 1;
    await source.exists('test');
    await until(() => source.knownNames() !== null, 'watched again');
    expect(stats.watches).toHaveLength(2);
    const after = stats.lookups;
    expect(await source.exists('test')).toBe(true);
    expect(stats.lookups).toBe(after);
  });
});
