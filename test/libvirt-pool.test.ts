/**
 * The worker's connection pool (shared/libvirt/pool.ts): reuse against real
 * libvirt (the in-process test:///default driver), and the give-back rules
 * table-tested over connections whose liveness and pending calls the test sets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHypervisor, HandleReleasedError, type Connection, type Hypervisor } from '../shared/libvirt/index.js';
import { ConnectionPool } from '../shared/libvirt/pool.js';

const TEST_URI = 'test:///default';
const pools: ConnectionPool[] = [];
const pool = (inner: Hypervisor, idleMs = 60_000, maxIdlePerUri = 4, maxAgeMs?: number) => {
  const p = new ConnectionPool(inner, { idleMs, maxIdlePerUri, ...(maxAgeMs !== undefined ? { maxAgeMs } : {}) });
  pools.push(p);
  return p;
};
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe('against libvirt (test:///default)', () => {
  const hv = createHypervisor();

  it('a connection given back is lent again, with what it remembered of its host', async () => {
    const p = pool(hv);
    const a = await p.open(TEST_URI, { timeoutMs: 5000 });
    let computed = 0;
    const facts = () => a.remember('host', async () => (computed++, a.hostname()));
    const name = await facts();
    expect(await facts()).toBe(name);
    await a.close();
    expect(p.stats).toEqual({ opened: 1, reused: 0, idle: 1 });
    const b = await p.open(TEST_URI, { timeoutMs: 5000 });
    expect(p.stats).toEqual({ opened: 1, reused: 1, idle: 0 });
    expect(await b.remember('host', async () => (computed++, 'again'))).toBe(name);
    expect(computed).toBe(1);
    expect((await b.lookupDomain('test'))?.name).toBe('test');
    await b.close();
  });

  it('a given-back lease refuses calls, as a closed connection does, and closing twice is harmless', async () => {
    const p = pool(hv);
    const a = await p.open(TEST_URI);
    await a.close();
    await a.close();
    expect(a.isAlive()).toBe(false);
    await expect(a.hostname()).rejects.toBeInstanceOf(HandleReleasedError);
    await expect(a.lookupDomain('test')).rejects.toBeInstanceOf(HandleReleasedError);
    expect(p.stats.idle).toBe(1);
  });

  it('read-only and read-write connections are never lent for each other', async () => {
    const p = pool(hv);
    await (await p.open(TEST_URI, { readonly: true })).close();
    const rw = await p.open(TEST_URI);
    expect(p.stats).toEqual({ opened: 2, reused: 0, idle: 1 });
    await rw.close();
  });

  it('a connection shows a call in flight as busy, and idle once it returns', async () => {
    const conn = await hv.open(TEST_URI);
    try {
      expect(conn.isBusy()).toBe(false);
      const call = conn.hostname();
      expect(conn.isBusy()).toBe(true);
      await call;
      expect(conn.isBusy()).toBe(false);
      const d = await conn.lookupDomain('test');
      const state = d!.state();
      expect(conn.isBusy()).toBe(true); // a domain's calls are its connection's
      await state;
      d!.free(); // a call too (virDomainFree), which a give-back waits for
      expect(conn.isBusy()).toBe(true);
      expect(await conn.whenIdle(1000)).toBe(true);
      expect(conn.isBusy()).toBe(false);
    } finally {
      await conn.close();
    }
  });

  it('a failed remember is asked again', async () => {
    const conn = await hv.open(TEST_URI);
    try {
      await expect(conn.remember('k', () => Promise.reject(new Error('no')))).rejects.toThrow('no');
      expect(await conn.remember('k', async () => 'yes')).toBe('yes');
    } finally {
      await conn.close();
    }
  });
});

/** A connection whose transport and pending calls the test decides; only what the pool reads. */
function fakeConn(uri: string, state: { alive: boolean; busy: boolean; registering?: Promise<void> }) {
  const log: string[] = [];
  const unsubscribed: number[] = [];
  let subs = 0;
  const conn = {
    uri,
    isAlive: () => state.alive,
    isBusy: () => state.busy,
    whenIdle: async () => !state.busy,
    close: async () => void log.push('closed'),
    hostname: async () => 'h',
    onMigrationEvents: async () => {
      const n = ++subs;
      await state.registering;
      return async () => void unsubscribed.push(n);
    },
  } as unknown as Connection;
  return { conn, log, unsubscribed };
}

function fakeHypervisor() {
  const made: ReturnType<typeof fakeConn>[] = [];
  const states: { alive: boolean; busy: boolean; registering?: Promise<void> }[] = [];
  const hv: Hypervisor = {
    open: async (uri) => {
      const s: { alive: boolean; busy: boolean; registering?: Promise<void> } = { alive: true, busy: false };
      states.push(s);
      const c = fakeConn(uri, s);
      made.push(c);
      return c.conn;
    },
  };
  return { hv, made, states };
}

describe('give-back rules', () => {
  const cases: { name: string; idleMs: number; max: number; at: { alive: boolean; busy: boolean }; closePool?: boolean; kept: boolean }[] = [
    { name: 'alive and idle: kept', idleMs: 1000, max: 2, at: { alive: true, busy: false }, kept: true },
    { name: 'transport gone: closed', idleMs: 1000, max: 2, at: { alive: false, busy: false }, kept: false },
    { name: 'a call still running (hung on a dead daemon): closed', idleMs: 1000, max: 2, at: { alive: true, busy: true }, kept: false },
    { name: 'reuse off (idle timeout 0): closed', idleMs: 0, max: 2, at: { alive: true, busy: false }, kept: false },
    { name: 'no room (max 0): closed', idleMs: 1000, max: 0, at: { alive: true, busy: false }, kept: false },
    { name: 'pool closed: closed', idleMs: 1000, max: 2, at: { alive: true, busy: false }, closePool: true, kept: false },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const f = fakeHypervisor();
      const p = pool(f.hv, c.idleMs, c.max);
      const lease = await p.open('qemu+tcp://h/system');
      Object.assign(f.states[0]!, c.at);
      if (c.closePool) await p.close();
      await lease.close();
      expect(f.made[0]!.log).toEqual(c.kept ? [] : ['closed']);
      expect(p.stats.idle).toBe(c.kept ? 1 : 0);
    });
  }

  it('keeps at most maxIdlePerUri per URI, and lends the most recently given back first', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv, 1000, 2);
    const leases = await Promise.all([1, 2, 3].map(() => p.open('u1')));
    for (const l of leases) await l.close();
    expect(f.made.map((m) => m.log)).toEqual([[], [], ['closed']]);
    await p.open('u1');
    await p.open('u2');
    expect(p.stats).toEqual({ opened: 4, reused: 1, idle: 1 });
    expect(f.made[3]!.conn.uri).toBe('u2');
  });

  it('a connection that died while idle is closed and not lent', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv);
    await (await p.open('u')).close();
    f.states[0]!.alive = false;
    const again = await p.open('u');
    expect(f.made[0]!.log).toEqual(['closed']);
    expect(p.stats).toEqual({ opened: 2, reused: 0, idle: 0 });
    expect(await again.hostname()).toBe('h');
  });

  it('an idle connection closes after the idle timeout', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv, 30);
    await (await p.open('u')).close();
    expect(p.stats.idle).toBe(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(f.made[0]!.log).toEqual(['closed']);
    expect(p.stats.idle).toBe(0);
  });

  it('a connection with a call hung behind its subscriptions is closed at once, not unsubscribed through the queue', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv);
    const lease = await p.open('u');
    await lease.onMigrationEvents({} as never, {});
    f.states[0]!.busy = true; // a call that never returns: an unsubscribe would queue behind it
    await lease.close();
    expect(f.made[0]!.log).toEqual(['closed']);
    expect(f.made[0]!.unsubscribed).toEqual([]);
  });

  it('a subscription still registering when the lease is given back is ended, and the caller told', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv);
    const lease = await p.open('u');
    let registered!: () => void;
    f.states[0]!.registering = new Promise((r) => (registered = r));
    const sub = lease.onMigrationEvents({} as never, {});
    const closed = lease.close();
    registered();
    await expect(sub).rejects.toBeInstanceOf(HandleReleasedError);
    await closed;
    expect(f.made[0]!.unsubscribed).toEqual([1]);
  });

  it('a connection older than maxAgeMs is neither kept nor lent', async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv, 60_000, 4, 40);
    const a = await p.open('u');
    await a.close();
    expect(p.stats.idle).toBe(1); // young enough when given back
    await new Promise((r) => setTimeout(r, 60));
    await (await p.open('u')).close();
    expect(f.made[0]!.log).toEqual(['closed']);
    expect(p.stats).toMatchObject({ opened: 2, reused: 0 });
    await new Promise((r) => setTimeout(r, 60));
    expect(f.made[1]!.log).toEqual([]); // idle, not lent: the next open closes it
    await p.open('u');
    expect(f.made[1]!.log).toEqual(['closed']);
  });

  it("ends the holder's event subscriptions before the next holder gets the connection", async () => {
    const f = fakeHypervisor();
    const p = pool(f.hv);
    const lease = await p.open('u');
    const off1 = await lease.onMigrationEvents({} as never, {});
    await lease.onMigrationEvents({} as never, {});
    await off1();
    await lease.close();
    expect(f.made[0]!.unsubscribed.sort()).toEqual([1, 2]);
    expect(f.made[0]!.unsubscribed).toHaveLength(2); // the one already ended is not ended twice
  });
});
