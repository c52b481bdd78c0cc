/**
 * The lab itself: brings it up (idempotent, so it is cheap when it already
 * runs), puts the guests on host1 and checks what every integration test
 * relies on. It leaves the lab up for the suites that follow; `npm run lab --
 * down` removes it. Like every suite that moves lab guests, it must not run
 * concurrently with another such suite.
 *
 * Needs root and libvirtd (CI installs both); skipped otherwise, with the reason.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostUri, LAB_GUESTS, labStatus, labUp, POOL_NAME, resetGuest, type LabStatus } from '../lab/lab.js';

const why = process.getuid?.() !== 0 ? 'needs root' : !existsSync('/usr/sbin/libvirtd') ? 'libvirtd is not installed' : null;

const virsh = (uri: string, ...args: string[]) => execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });

describe.skipIf(why !== null)(`lab${why ? ` (skipped: ${why})` : ''}`, () => {
  let first: LabStatus;

  beforeAll(async () => {
    await labUp();
    // labUp leaves a guest where another suite migrated it; put them home
    for (const g of LAB_GUESTS) await resetGuest(g);
    first = await labStatus();
  }, 180_000);

  it('runs two hosts with different host UUIDs on their own loopback addresses', () => {
    expect(first.up).toBe(true);
    const [h1, h2] = first.hosts;
    expect(h1).toMatchObject({ name: 'host1', address: '127.0.0.11', uri: 'qemu+tcp://127.0.0.11/system', running: true });
    expect(h2).toMatchObject({ name: 'host2', address: '127.0.0.12', uri: 'qemu+tcp://127.0.0.12/system', running: true });
    expect(h1?.pid).toBeGreaterThan(0);
    expect(new Set(first.hosts.map((h) => h.hostUuid)).size).toBe(first.hosts.length);
  });

  it('runs the three lab guests on host1', () => {
    expect(first.guests.map((g) => [g.name, g.host, g.state])).toEqual(LAB_GUESTS.map((g) => [g, 'host1', 'running']));
  });

  it('has the shared pool active on every host, with the same volumes', () => {
    const lists = first.hosts.map((h) => {
      expect(virsh(h.uri, 'pool-info', POOL_NAME)).toMatch(/State:\s+running/);
      return virsh(h.uri, 'vol-list', POOL_NAME);
    });
    expect(lists[0]).toContain('lab-disk');
    for (const l of lists) expect(l).toBe(lists[0]);
    // the disk guest's source path is a lab-shared volume on every host
    const source = /<source dev='([^']+)'/.exec(virsh(hostUri('host1'), 'dumpxml', 'lab-disk'))?.[1] ?? '';
    for (const h of first.hosts) expect(virsh(h.uri, 'vol-pool', source).trim()).toBe(POOL_NAME);
  });

  it('is idempotent: a second labUp keeps the same daemons', async () => {
    const again = await labUp();
    expect(again.hosts.map((h) => h.pid)).toEqual(first.hosts.map((h) => h.pid));
    expect((await labStatus()).up).toBe(true);
  }, 60_000);
});
