/**
 * Real migrations through the API between two lab hosts: real Redis, real
 * API and worker processes, real libvirtd and QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY, GUEST_DISK, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, killHost, labUp, resetGuest, startHost } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { stateOn, withConnection } from './helpers/guests.js';
import { api, startService, waitFor, waitTask, type Service, type Task } from './helpers/service.js';

const hv = createHypervisor();
let svc: Service;
let slow: Service;
let h1: Connection;

const onHost2 = <T>(fn: (c: Connection) => Promise<T>) => withConnection(hv, hostUri('host2'), fn);

beforeAll(async () => {
  await labUp();
  h1 = await hv.open(hostUri('host1'));
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') });
  // A bandwidth limit under lab-dirty's dirty rate: the copy never converges,
  // so the migration lasts until it is timed out or interrupted.
  slow = await startService({
    KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'),
    KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: '8',
    KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT: '10',
    KVM_MIGRATE_RETRY_ATTEMPTS: '2',
  });
});

afterAll(async () => {
  await svc?.stop();
  await slow?.stop();
  await h1?.close();
});

describe.each([GUEST_TINY, GUEST_DISK])('migrating %s', (guest) => {
  it('ends finished, with the guest running and persistent on the destination and gone from the source', async () => {
    await resetGuest(guest);
    const post = await api(svc.url, 'POST', `/vms/${guest}/migrate`, { remote_host: hostAddress('host2') });
    expect(post.status).toBe(202);
    const seen: string[] = [];
    const task = await waitTask(svc.url, post.body.id, 120_000, seen);
    expect(task.error).toBeNull();
    expect(task.status).toBe('finished');
    expect(task.message).toBe('Migrate finished');
    expect(seen[0]).toMatch(/^running:/);
    expect(seen.at(-1)).toBe('finished:done');
    expect(task.history.filter((h) => h.event === 'done').map((h) => h.stage)).toEqual(['check', 'connect', 'prepare', 'migrate', 'finish']);
    // The finished task keeps libvirt's final figures, including the real downtime.
    expect(task.progress).toMatchObject({ percent: 100, dataRemaining: 0 });
    expect((task.progress as { downtimeMs?: number }).downtimeMs).toBeGreaterThan(0);
    expect((task.progress as { dataProcessed?: number }).dataProcessed).toBeGreaterThan(0);
    expect(await onHost2((c) => stateOn(c, guest))).toEqual({ state: 'running', persistent: true });
    expect(await stateOn(h1, guest)).toBeNull();
  });
});

describe('a migration that does not converge', () => {
  it('is aborted at migration_destination_timeout and leaves the guest running on the source; the API and progress stay live meanwhile', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(slow.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: hostAddress('host2') });
    expect(post.status).toBe(202);
    const id = post.body.id;

    // While libvirt copies memory, the API answers at once and the worker keeps publishing samples.
    const latencies: number[] = [];
    const processed = new Set<number>();
    let task: Task;
    do {
      const t0 = performance.now();
      task = (await api(slow.url, 'GET', `/tasks/${id}`)).body;
      latencies.push(performance.now() - t0);
      if (task.stage === 'migrate' && task.progress) processed.add((task.progress as { dataProcessed?: number }).dataProcessed ?? -1);
      await new Promise((r) => setTimeout(r, 100));
    } while (task.status === 'running');

    expect(task.status).toBe('failed');
    expect(task.error?.code).toBe('KMIG0201E');
    expect(task.message).toMatch(/^KMIG0201E: Migration of lab-dirty did not finish within its deadline of 10 s/);
    expect(processed.size).toBeGreaterThanOrEqual(5);
    expect(Math.max(...latencies)).toBeLessThan(1000);
    expect(task.history.some((h) => h.stage === 'recover' && h.event === 'done')).toBe(true);
    expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
    expect(await onHost2((c) => stateOn(c, GUEST_DIRTY))).toBeNull();
  });
});

describe('the destination libvirtd dies in the middle of the copy', () => {
  it('fails the task with a clear message, the guest keeps running on the source, nothing is left on the destination', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(slow.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: hostAddress('host2') });
    expect(post.status).toBe(202);
    const id = post.body.id;
    await waitFor('memory copy to start', async () => {
      const t: Task = (await api(slow.url, 'GET', `/tasks/${id}`)).body;
      return t.stage === 'migrate' && (t.progress?.percent ?? 0) > 0;
    }, 30_000, 100);
    try {
      await killHost('host2');
      const task = await waitTask(slow.url, id, 60_000);
      expect(task.status).toBe('failed');
      expect(task.error?.code).toBe('KCHVM0058E');
      expect(task.message).toMatch(/^KCHVM0058E: Failed to migrate virtual machine lab-dirty due error: .+/);
      expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
    } finally {
      await startHost('host2');
    }
    await waitFor('host2 to have no lab-dirty left', () => onHost2(async (c) => (await stateOn(c, GUEST_DIRTY)) === null), 30_000, 500);
    expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
  });
});
