/**
 * The worker's connection pool against real remote libvirt daemons: a
 * connection comes back to the next holder still working, and one whose
 * daemon died while it sat idle is never lent: the next holder gets a new
 * connection to the restarted daemon, which reads the host afresh.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostUri, killHost, labUp, startHost } from '../lab/lab.js';
import { hostFacts } from '../shared/checks/gather.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import { ConnectionPool } from '../shared/libvirt/pool.js';

const pool = new ConnectionPool(createHypervisor(), { idleMs: 60_000, maxIdlePerUri: 2 });

beforeAll(async () => {
  await labUp();
});
afterAll(async () => {
  await startHost('host2');
  await pool.close();
});

describe('connection pool on the lab', () => {
  it('lends a remote connection again, with the host facts it read', async () => {
    const a = await pool.open(hostUri('host2'), { timeoutMs: 5000 });
    const facts = await hostFacts(a);
    expect(facts.arch).toBe('x86_64');
    await a.close();
    const b = await pool.open(hostUri('host2'), { timeoutMs: 5000 });
    expect(pool.stats).toMatchObject({ opened: 1, reused: 1 });
    let asked = false;
    expect(await b.remember('host-facts', async () => ((asked = true), null))).toMatchObject({ uuid: facts.uuid, arch: 'x86_64' });
    expect(asked).toBe(false);
    expect((await hostFacts(b)).freeMemoryBytes).toBeGreaterThan(0);
    await b.close();
  });

  it('a connection whose daemon died while idle is not lent; the next one reaches the restarted daemon', async () => {
    const a = await pool.open(hostUri('host2'), { timeoutMs: 5000 });
    const before = await hostFacts(a);
    await a.close();
    const { opened } = pool.stats;
    expect(await killHost('host2')).toBe(true);
    await startHost('host2');
    // libvirt's event loop sees the socket close when the daemon dies; the pool asks virConnectIsAlive before lending.
    const b = await pool.open(hostUri('host2'), { timeoutMs: 5000 });
    expect(pool.stats.opened).toBe(opened + 1);
    const after = await hostFacts(b);
    expect(after.uuid).toBe(before.uuid);
    expect(await b.hostname()).toBeTruthy();
    await b.close();
  });
});
