/**
 * Domain event subscriptions (Connection.onMigrationEvents): lifecycle on the
 * in-process test:///default driver, migration iteration and job completed
 * on the lab (real libvirtd and QEMU on loopback addresses).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { GUEST_DIRTY } from '../lab/config.js';
import { hostUri, labUp, resetGuest } from '../lab/lab.js';
import { DomainEventId, lifecycleEventName } from '../shared/libvirt/events.js';
import {
  type Connection,
  type Domain,
  HandleReleasedError,
  MigrateFlag,
  createHypervisor,
} from '../shared/libvirt/index.js';

const TEST_URI = 'test:///default';
const HEADER = '/usr/include/libvirt/libvirt-domain.h';
const hv = createHypervisor();
const opened: Connection[] = [];

async function open(uri = TEST_URI): Promise<Connection> {
  const conn = await hv.open(uri, { timeoutMs: 5000 });
  opened.push(conn);
  return conn;
}

/** A running transient test-driver domain of its own, so tests never see each other's events. */
async function testDomain(conn: Connection): Promise<Domain> {
  const name = `ev-${randomUUID().slice(0, 8)}`;
  return conn.createDomain(`<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory>
    <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`);
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

describe('event numbers', () => {
  it.skipIf(!existsSync(HEADER))('match libvirt-domain.h', () => {
    const h = readFileSync(HEADER, 'utf8');
    const value = (name: string) => Number(new RegExp(`\\b${name}\\s*=\\s*(\\d+)`).exec(h)?.[1]);
    expect(DomainEventId.LIFECYCLE).toBe(value('VIR_DOMAIN_EVENT_ID_LIFECYCLE'));
    expect(DomainEventId.MIGRATION_ITERATION).toBe(value('VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION'));
    expect(DomainEventId.JOB_COMPLETED).toBe(value('VIR_DOMAIN_EVENT_ID_JOB_COMPLETED'));
    for (const [i, name] of ['DEFINED', 'UNDEFINED', 'STARTED', 'SUSPENDED', 'RESUMED', 'STOPPED', 'SHUTDOWN', 'PMSUSPENDED', 'CRASHED'].entries()) {
      expect(value(`VIR_DOMAIN_EVENT_${name}`)).toBe(i);
      expect(lifecycleEventName(i)).toBe(name.toLowerCase());
    }
    expect(lifecycleEventName(99)).toBe('event-99');
  });
});

describe('lifecycle events (test:///default)', () => {
  it("delivers the subscribed domain's events in order, and handlers may call libvirt", async () => {
    const conn = await open();
    const [dom, other] = await Promise.all([testDomain(conn), testDomain(conn)]);
    const seen: [string, number][] = [];
    const fromHandlers: Promise<string>[] = [];
    const unsubscribe = await conn.onMigrationEvents(dom, {
      lifecycle: (event, detail) => {
        seen.push([event, detail]);
        // Would deadlock if the handler ran while libvirt's loop thread waited for it.
        fromHandlers.push(conn.hypervisorType());
      },
    });
    await dom.suspend();
    await other.suspend(); // filtered out: another domain
    await dom.resume();
    await dom.destroy();
    await until(() => seen.length >= 3, 2000);
    await sleep(50); // room for a stray event from `other`
    expect(seen).toEqual([['suspended', 0], ['resumed', 0], ['stopped', 1]]); // *_PAUSED, *_UNPAUSED, *_DESTROYED
    expect(await Promise.all(fromHandlers)).toEqual(['TEST', 'TEST', 'TEST']);
    await unsubscribe();
    await other.destroy();
  });

  it('stops delivering on unsubscribe, which is idempotent', async () => {
    const conn = await open();
    const dom = await testDomain(conn);
    const seen: string[] = [];
    const unsubscribe = await conn.onMigrationEvents(dom, { lifecycle: (e) => seen.push(e) });
    await dom.suspend();
    await until(() => seen.length === 1, 2000);
    const first = unsubscribe();
    expect(unsubscribe()).toBe(first);
    await first;
    await unsubscribe();
    await dom.resume();
    await sleep(100);
    expect(seen).toEqual(['suspended']);
    await dom.destroy();
  });

  it('subscribes again after unsubscribing, and to one domain twice at once', async () => {
    const conn = await open();
    const dom = await testDomain(conn);
    const a: string[] = [];
    const b: string[] = [];
    await (await conn.onMigrationEvents(dom, { lifecycle: (e) => a.push(e) }))();
    const ua = await conn.onMigrationEvents(dom, { lifecycle: (e) => a.push(e) });
    const ub = await conn.onMigrationEvents(dom, { lifecycle: (e) => b.push(e) });
    await dom.suspend();
    await until(() => a.length === 1 && b.length === 1, 2000);
    await ua();
    await dom.resume();
    await until(() => b.length === 2, 2000);
    expect(a).toEqual(['suspended']);
    expect(b).toEqual(['suspended', 'resumed']);
    await ub();
    await dom.destroy();
  });

  it('ends subscriptions when the connection closes, and then lets the event loop stop', async () => {
    const conn = await open();
    const dom = await testDomain(conn);
    const unsubscribe = await conn.onMigrationEvents(dom, { lifecycle: () => undefined, iteration: () => undefined });
    await dom.destroy();
    dom.free();
    await conn.close();
    opened.length = 0;
    await unsubscribe(); // after close: nothing left to do, must not touch the closed pointer
    await until(() => !hv.stats().eventLoopRunning, 2000);
    expect(hv.stats().openConnections).toBe(0);
  });

  it('lets a dropped connection with a forgotten subscription be collected, closed and the loop stop', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = hv.stats().openConnections;
    await (async () => {
      const dropped = await hv.open(TEST_URI, { timeoutMs: 5000 });
      const dom = await dropped.lookupDomain('test');
      if (dom === null) throw new Error('test:///default has no domain "test"');
      await dropped.onMigrationEvents(dom, { lifecycle: () => undefined }); // unsubscribe dropped too
    })();
    expect(hv.stats().openConnections).toBe(before + 1);
    await until(() => {
      gc();
      return hv.stats().openConnections === before;
    }, 5000);
    if (before === 0) await until(() => !hv.stats().eventLoopRunning, 2000);
  });

  it('rejects a released domain or connection, and foreign domain objects', async () => {
    const conn = await open();
    const dom = await testDomain(conn);
    await dom.destroy();
    dom.free();
    await expect(conn.onMigrationEvents(dom, { lifecycle: () => undefined })).rejects.toBeInstanceOf(HandleReleasedError);
    const fake = { name: 'x', uuid: '00000000-0000-0000-0000-000000000000' } as unknown as Domain;
    await expect(conn.onMigrationEvents(fake, {})).rejects.toBeInstanceOf(TypeError);
    const live = await testDomain(conn);
    await conn.close();
    await expect(conn.onMigrationEvents(live, { lifecycle: () => undefined })).rejects.toBeInstanceOf(HandleReleasedError);
    live.free();
  });

  it('gives every koffi callback slot back (more subscriptions than koffi has slots)', async () => {
    const conn = await open();
    const dom = await testDomain(conn);
    const handlers = { lifecycle: () => undefined, iteration: () => undefined, jobCompleted: () => undefined };
    // 3 callbacks each: 2800 subscriptions use 8400 slots in all, over koffi's 8192.
    for (let batch = 0; batch < 28; batch++) {
      const subs = await Promise.all(Array.from({ length: 100 }, () => conn.onMigrationEvents(dom, handlers)));
      await Promise.all(subs.map((u) => u()));
    }
    const seen: string[] = [];
    const unsubscribe = await conn.onMigrationEvents(dom, { lifecycle: (e) => seen.push(e) });
    await dom.suspend();
    await until(() => seen.length === 1, 2000);
    await unsubscribe();
    await dom.destroy();
  }, 60_000);
});

describe('migration events (lab)', () => {
  afterAll(async () => {
    // 64 MiB/s is the lab default the other suites rely on; lab-dirty goes home with it.
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
  }, 180_000);

  it('reports each memory pass, then the completed job with its downtime', async () => {
    await labUp();
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 1 });
    const conn = await open(hostUri('host1'));
    const dom = await conn.lookupDomain(GUEST_DIRTY);
    if (dom === null) throw new Error(`${GUEST_DIRTY} is not on host1 after resetGuest`);
    const iterations: number[] = [];
    const completed: Record<string, number | string>[] = [];
    const lifecycle: string[] = [];
    const unsubscribe = await conn.onMigrationEvents(dom, {
      iteration: (n) => iterations.push(n),
      jobCompleted: (fields) => completed.push(fields),
      lifecycle: (event) => lifecycle.push(event),
    });
    try {
      const flags = MigrateFlag.LIVE | MigrateFlag.PEER2PEER | MigrateFlag.TUNNELLED
        | MigrateFlag.PERSIST_DEST | MigrateFlag.UNDEFINE_SOURCE;
      await dom.migrateToURI3(hostUri('host2'), { bandwidthMiBs: 16 }, flags);
      // The event and the call's reply race to the main thread: either may come first.
      await until(() => completed.length > 0, 5000);
      await sleep(100); // a second completion event would show up here
    } finally {
      await unsubscribe();
      dom.free();
    }
    expect(iterations.length).toBeGreaterThanOrEqual(1);
    expect(iterations.every((n, i) => i === 0 || n > (iterations[i - 1] ?? Infinity))).toBe(true);
    expect(completed).toHaveLength(1);
    const fields = completed[0] ?? {};
    expect(fields.downtime).toBeGreaterThan(0);
    expect(fields.data_total).toBeGreaterThan(0);
    expect(fields.time_elapsed).toBeGreaterThan(0);
    // The source pauses the guest for the switchover, then stops it as migrated.
    expect(lifecycle).toContain('suspended');
    expect(lifecycle).toContain('stopped');
  }, 120_000);
});
