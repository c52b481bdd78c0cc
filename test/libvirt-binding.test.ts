/**
 * The koffi binding against real libvirt: the in-process test:///default
 * driver (no daemon), plus loopback-only sockets for the failure paths.
 * Nothing here connects to a non-loopback address.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { XMLParser } from 'fast-xml-parser';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Connection,
  HandleReleasedError,
  LibvirtTimeoutError,
  MigrateFlag,
  VirError,
  VirErrorCode,
  createHypervisor,
  isLibvirtTimeoutError,
  isVirError,
} from '../shared/libvirt/index.js';
import { type DomainPtr, loadLibvirt } from '../shared/libvirt/ffi.js';
import { TypedParams, buildMigrateParams, paramsToFields } from '../shared/libvirt/typed-params.js';

const TEST_URI = 'test:///default';
const hv = createHypervisor();
const opened: Connection[] = [];

async function openTest(): Promise<Connection> {
  const conn = await hv.open(TEST_URI, { timeoutMs: 5000 });
  opened.push(conn);
  return conn;
}

function domainXml(name: string): string {
  return `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory>
    <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback server that accepts and never answers: libvirt's open then waits forever. */
async function silentServer(): Promise<{ port: number; accepted: () => number; shut: () => Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    accepted: () => sockets.length,
    shut: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

describe('connection', () => {
  it('opens, reports itself alive, and closes idempotently', async () => {
    const conn = await openTest();
    expect(conn.uri).toBe(TEST_URI);
    expect(conn.isAlive()).toBe(true);
    expect(hv.stats().openConnections).toBeGreaterThanOrEqual(1);
    await conn.close();
    await conn.close();
    expect(conn.isAlive()).toBe(false);
    await expect(conn.capabilities()).rejects.toBeInstanceOf(HandleReleasedError);
  });

  it('reads host facts', async () => {
    const conn = await openTest();
    expect(await conn.capabilities()).toContain('<host>');
    // The test driver names itself "TEST" (testConnectGetType), not "Test".
    expect(await conn.hypervisorType()).toBe('TEST');
    expect((await conn.hostname()).length).toBeGreaterThan(0);
    expect(await conn.nodeInfo()).toEqual({ model: 'i686', memoryKiB: 3145728, cpus: 16, mhz: 1400 });
    expect(await conn.freeMemory()).toBeGreaterThan(0);
  });

  it('stops driving the event loop once the last connection closes', async () => {
    const conn = await openTest();
    expect(hv.stats().eventLoopRunning).toBe(true);
    await conn.close();
    opened.length = 0;
    await until(() => !hv.stats().eventLoopRunning, 2000);
    expect(hv.stats().openConnections).toBe(0);
  });

  it('rejects an unreachable daemon quickly with a VirError', async () => {
    const started = Date.now();
    const err: unknown = await hv.open('qemu+tcp://127.0.0.99/system', { timeoutMs: 5000 }).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(isVirError(err)).toBe(true);
    const e = err as VirError;
    expect(e.name).toBe('VirError');
    expect(e.code).toBe(VirErrorCode.SYSTEM_ERROR);
    expect(e.codeName).toBe('VIR_ERR_SYSTEM_ERROR');
    expect(e.message).toMatch(/unable to connect to server at '127\.0\.0\.99:16509'/);
    expect(hv.stats().openConnections).toBe(0);
  });

  it('times out an open that never completes, then cleans up when libvirt gives up', async () => {
    const server = await silentServer();
    const started = Date.now();
    let last = performance.now();
    let maxGap = 0;
    const ticker = setInterval(() => {
      maxGap = Math.max(maxGap, performance.now() - last);
      last = performance.now();
    }, 10);
    const err: unknown = await hv
      .open(`test+tcp://127.0.0.1:${server.port}/default`, { timeoutMs: 200 })
      .catch((e) => e)
      .finally(() => clearInterval(ticker));
    expect(maxGap).toBeLessThan(100); // the hanging open sits on a pool thread, not on the event loop
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(err).toBeInstanceOf(LibvirtTimeoutError);
    expect(isLibvirtTimeoutError(err)).toBe(true);
    expect((err as LibvirtTimeoutError).timeoutMs).toBe(200);
    expect(server.accepted()).toBe(1);
    expect(hv.stats().openConnections).toBe(1); // still inside virConnectOpen on a pool thread
    await server.shut();
    await until(() => hv.stats().openConnections === 0, 5000);
  });

  it('closes a connection that opens after its deadline', async () => {
    // Occupy every libuv pool thread with opens that hang, so the test:/// open queues behind them.
    const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const server = await silentServer();
    const blockers = Array.from({ length: poolSize }, () =>
      hv.open(`test+tcp://127.0.0.1:${server.port}/default`, { timeoutMs: 60_000 }).catch((e: unknown) => e),
    );
    await until(() => server.accepted() >= poolSize - 1, 3000);
    const before = hv.stats().lateOpensClosed;
    const late: unknown = await hv.open(TEST_URI, { timeoutMs: 50 }).catch((e) => e);
    expect(late).toBeInstanceOf(LibvirtTimeoutError);
    await server.shut();
    for (const b of await Promise.all(blockers)) expect(isVirError(b)).toBe(true);
    await until(() => hv.stats().lateOpensClosed === before + 1, 5000);
    await until(() => hv.stats().openConnections === 0, 5000);
  });

  it('gives each of two failing opens its own error', async () => {
    const [a, b] = await Promise.all(
      ['127.0.0.98', '127.0.0.99'].map((host) =>
        hv.open(`qemu+tcp://${host}/system`, { timeoutMs: 5000 }).catch((e: unknown) => e),
      ),
    );
    expect((a as VirError).message).toContain("'127.0.0.98:16509'");
    expect((b as VirError).message).toContain("'127.0.0.99:16509'");
  });

  it('keeps libvirt quiet on stderr (an error handler is installed)', () => {
    const index = fileURLToPath(new URL('../shared/libvirt/index.ts', import.meta.url));
    const script = `import { createHypervisor } from ${JSON.stringify(index)};
      const hv = createHypervisor();
      try { await hv.open('qemu+tcp://127.0.0.99/system'); } catch (e) { console.log(e.name, e.code); }
      const c = await hv.open('test:///default');
      console.log(await c.lookupDomain('nope'));
      await c.close();`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.status).toBe(0);
    expect(run.stdout).toBe('VirError 38\nnull\n');
    expect(run.stderr).toBe('');
  });
});

describe('domains', () => {
  it('looks up the test domain, and answers null for a missing one', async () => {
    const conn = await openTest();
    const dom = await conn.lookupDomain('test');
    expect(dom).not.toBeNull();
    expect(dom!.name).toBe('test');
    expect(dom!.uuid).toBe('6695eb01-f6a4-8304-79aa-97f2502e193f');
    expect(await dom!.state()).toEqual({ state: 'running', reason: expect.any(Number) });
    expect(await dom!.isActive()).toBe(true);
    expect(await dom!.isPersistent()).toBe(true);
    const info = await dom!.info();
    expect(info).toMatchObject({ state: 'running', maxMemKiB: 8388608, memoryKiB: 2097152, vcpus: 2 });
    expect(info.cpuTimeNs).toBeGreaterThan(0);
    expect(await conn.lookupDomain('nope')).toBeNull();

    const byUuid = await conn.lookupDomainByUUID(dom!.uuid);
    expect(byUuid?.name).toBe('test');
    expect(await conn.lookupDomainByUUID(randomUUID())).toBeNull();
    const bad: unknown = await conn.lookupDomainByUUID('not-a-uuid').catch((e) => e);
    expect(isVirError(bad) && bad.code).toBe(VirErrorCode.INVALID_ARG);
    dom!.free();
    byUuid?.free();
  });

  it('returns migratable XML that parses', async () => {
    const conn = await openTest();
    const dom = (await conn.lookupDomain('test'))!;
    const xml = await dom.xml({ migratable: true });
    const doc = new XMLParser({ ignoreAttributes: false }).parse(xml) as { domain: { name: string; uuid: string } };
    expect(doc.domain.name).toBe('test');
    expect(doc.domain.uuid).toBe(dom.uuid);
    expect(await dom.xml({ inactive: true, secure: true })).toContain('<name>test</name>');
    dom.free();
  });

  it('runs a defined domain through its lifecycle', async () => {
    const conn = await openTest();
    const name = uniqueName('kvmm-life');
    const dom = await conn.defineDomain(domainXml(name));
    expect(dom.name).toBe(name);
    expect(dom.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect((await dom.state()).state).toBe('shutoff');
    expect(await dom.isPersistent()).toBe(true);
    expect((await conn.listDomains()).map((d) => d.name)).toEqual(expect.arrayContaining(['test', name]));

    await dom.start();
    expect((await dom.state()).state).toBe('running');
    await dom.suspend();
    expect((await dom.state()).state).toBe('paused');
    await dom.resume();
    expect((await dom.state()).state).toBe('running');
    await dom.destroy();
    expect((await dom.state()).state).toBe('shutoff');
    expect(await dom.isActive()).toBe(false);
    await dom.undefine();
    expect(await conn.lookupDomain(name)).toBeNull();
    expect((await conn.listDomains()).map((d) => d.name)).not.toContain(name);
    dom.free();
    dom.free();
    await expect(dom.state()).rejects.toBeInstanceOf(HandleReleasedError);
  });

  it('creates a transient domain that disappears when destroyed', async () => {
    const conn = await openTest();
    const name = uniqueName('kvmm-transient');
    const dom = await conn.createDomain(domainXml(name));
    expect((await dom.state()).state).toBe('running');
    expect(await dom.isPersistent()).toBe(false);
    await dom.destroy();
    expect(await conn.lookupDomain(name)).toBeNull();
    dom.free();
  });

  it('reports libvirt failures as VirError with libvirt fields', async () => {
    const conn = await openTest();
    const err: unknown = await conn.defineDomain('<domain type="test"><name>broken').catch((e) => e);
    expect(err).toBeInstanceOf(VirError);
    const e = err as VirError;
    expect(e.name).toBe('VirError');
    expect(e.code).toBe(VirErrorCode.XML_DETAIL);
    expect(e.codeName).toBe('VIR_ERR_XML_DETAIL');
    expect(e.domain).toBe(20); // VIR_FROM_DOMAIN
    expect(e.level).toBe(2); // VIR_ERR_ERROR
    expect(e.message).toContain('domain_definition');
    // Survives a trip through JSON (BullMQ/Redis) and is still recognised by name.
    const copy: unknown = JSON.parse(JSON.stringify(e));
    expect(isVirError(copy)).toBe(true);
    expect(copy).toMatchObject({ code: 35, codeName: 'VIR_ERR_XML_DETAIL', message: e.message });

    const dom = (await conn.lookupDomain('test'))!;
    // The test driver reports these as INTERNAL_ERROR from VIR_FROM_TEST (12).
    const running: unknown = await dom.start().catch((x) => x);
    expect(running).toMatchObject({ code: VirErrorCode.INTERNAL_ERROR, domain: 12 });
    expect((running as VirError).message).toMatch(/'test' is already running/);
    // Each failure carries its own message, not the previous one left on the connection.
    const notPaused: unknown = await dom.resume().catch((x) => x);
    expect((notPaused as VirError).message).toMatch(/not paused/);
    dom.free();
  });

  it('gives each of many concurrent failures on one connection its own error', async () => {
    const conn = await openTest();
    const dom = (await conn.lookupDomain('test'))!;
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, i) => {
        switch (i % 4) {
          case 0:
            return conn.lookupDomain(`nope-${i}`).then((d) => (d === null ? 'null' : 'found'), (e: Error) => e.message);
          case 1:
            return dom.start().then(() => 'started', (e: Error) => e.message);
          case 2:
            return dom.resume().then(() => 'resumed', (e: Error) => e.message);
          default:
            return dom.state().then((s) => s.state, (e: Error) => e.message);
        }
      }),
    );
    outcomes.forEach((outcome, i) => {
      const expected = [/^null$/, /'test' is already running/, /'test' not paused/, /^running$/][i % 4];
      expect(outcome).toMatch(expected!);
    });
    dom.free();
  });

  it('passes migration parameters and reports the driver refusal', async () => {
    const conn = await openTest();
    const dom = (await conn.lookupDomain('test'))!;
    const err: unknown = await dom
      .migrateToURI3(
        'test+tcp://127.0.0.1:1/default',
        { destinationXml: domainXml('x'), persistentXml: domainXml('x'), bandwidthMiBs: 64, compression: ['xbzrle'] },
        MigrateFlag.LIVE | MigrateFlag.PEER2PEER | MigrateFlag.TUNNELLED,
      )
      .catch((e) => e);
    expect(isVirError(err) && err.code).toBe(VirErrorCode.ARGUMENT_UNSUPPORTED);
    const stats: unknown = await dom.jobStats({ completed: true }).catch((e) => e);
    expect(isVirError(stats) && stats.code).toBe(VirErrorCode.NO_SUPPORT);
    expect((await dom.state()).state).toBe('running');
    dom.free();
  });
});

describe('typed parameters', () => {
  it('decodes every type from arrays built by libvirt', () => {
    const tp = new TypedParams(loadLibvirt())
      .addInt('i', -7)
      .addUInt('ui', 4_000_000_000)
      .addLLong('l', -(2 ** 40))
      .addULLong('ul', 2n ** 60n)
      .addDouble('d', 1.5)
      .addBoolean('b', true)
      .addString('s', 'xbzrle');
    try {
      expect(tp.count).toBe(7);
      expect(tp.decode()).toEqual([
        { field: 'i', type: 1, value: -7 },
        { field: 'ui', type: 2, value: 4_000_000_000 },
        { field: 'l', type: 3, value: -(2 ** 40) },
        { field: 'ul', type: 4, value: 2n ** 60n },
        { field: 'd', type: 5, value: 1.5 },
        { field: 'b', type: 6, value: true },
        { field: 's', type: 7, value: 'xbzrle' },
      ]);
      expect(paramsToFields(tp.decode())).toEqual({ i: -7, ui: 4e9, l: -(2 ** 40), ul: 2 ** 60, d: 1.5, b: 1, s: 'xbzrle' });
    } finally {
      tp.free();
    }
    expect(tp.ptr).toBeNull();
  });

  it('builds virDomainMigrateToURI3 parameters with libvirt key names', () => {
    const tp = buildMigrateParams(loadLibvirt(), {
      destinationXml: '<domain/>',
      persistentXml: '<domain>p</domain>',
      destinationName: 'renamed',
      bandwidthMiBs: 128,
      compression: ['xbzrle', 'mt'],
    });
    try {
      expect(tp.decode().map(({ field, value }) => [field, value])).toEqual([
        ['destination_xml', '<domain/>'],
        ['persistent_xml', '<domain>p</domain>'],
        ['destination_name', 'renamed'],
        ['bandwidth', 128],
        ['compression', 'xbzrle'],
        ['compression', 'mt'],
      ]);
    } finally {
      tp.free();
    }
    expect(() => buildMigrateParams(loadLibvirt(), { bandwidthMiBs: -1 })).toThrow(RangeError);
  });
});

describe('storage', () => {
  it('finds the default pool and manages a volume', async () => {
    const conn = await openTest();
    const pool = await conn.lookupPool('default-pool');
    expect(pool).not.toBeNull();
    expect(pool!.name).toBe('default-pool');
    expect(pool!.uuid).toBe('dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566');
    expect((await pool!.info()).state).toBe('running');
    expect(await pool!.xml()).toContain('<path>/default-pool</path>');
    await pool!.refresh();
    expect(await conn.lookupPool('nope')).toBeNull();
    expect((await conn.listPools()).map((p) => p.name)).toContain('default-pool');

    const name = `${uniqueName('kvmm-vol')}.img`;
    const vol = await pool!.createVolume(`<volume><name>${name}</name><capacity unit='MiB'>16</capacity></volume>`);
    expect(vol.name).toBe(name);
    expect(vol.path).toBe(`/default-pool/${name}`);
    expect((await vol.info()).capacity).toBe(16 * 1024 * 1024);
    expect((await vol.pool()).name).toBe('default-pool');

    const byPath = await conn.lookupVolumeByPath(vol.path);
    expect(byPath?.key).toBe(vol.key);
    expect((await pool!.lookupVolume(name))?.path).toBe(vol.path);
    await vol.delete();
    expect(await conn.lookupVolumeByPath(vol.path)).toBeNull();
    expect(await pool!.lookupVolume(name)).toBeNull();
    for (const h of [vol, byPath, pool]) h?.free();
  });
});

describe('handles', () => {
  it('brands pointers so one kind cannot be passed as another (checked by tsc)', () => {
    const { api } = loadLibvirt();
    const dom = 1n as DomainPtr;
    // @ts-expect-error a domain pointer is not a connection pointer
    const misuse = () => api.virConnectIsAlive(dom);
    // @ts-expect-error a bare bigint is not a connection pointer either
    const bare = () => api.virConnectIsAlive(1n);
    expect([typeof misuse, typeof bare]).toEqual(['function', 'function']); // never called
  });

  it('closes a connection nobody closed once it is garbage collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = hv.stats().openConnections;
    await (async () => {
      const dropped = await hv.open(TEST_URI, { timeoutMs: 5000 });
      const dom = await dropped.lookupDomain('test'); // a handle keeps its connection reachable
      expect(dom?.name).toBe('test');
    })();
    expect(hv.stats().openConnections).toBe(before + 1);
    await until(() => {
      gc();
      return hv.stats().openConnections === before;
    }, 5000);
  });
});

describe('event loop', () => {
  it('keeps ticking while many libvirt calls run', async () => {
    const conn = await openTest();
    const dom = (await conn.lookupDomain('test'))!;
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    const started = performance.now();
    let calls = 0;
    try {
      while (performance.now() - started < 300) {
        const batch = await Promise.all([
          ...Array.from({ length: 20 }, () => conn.capabilities()),
          ...Array.from({ length: 20 }, () => dom.xml({ migratable: true })),
          ...Array.from({ length: 10 }, () => conn.lookupDomain('nope')),
        ]);
        calls += batch.length;
      }
    } finally {
      clearInterval(timer);
      dom.free();
    }
    expect(calls).toBeGreaterThanOrEqual(100);
    expect(ticks).toBeGreaterThanOrEqual(15);
    expect(maxGap).toBeLessThan(100);
  });
});
