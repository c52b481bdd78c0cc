/**
 * Every capability check's negative case, for real: the task ends failed
 * with the check's code (and the precheck answers 422 with it), and the guest
 * is untouched.
 */
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { guestXml, removeDomain, stateOn } from './helpers/guests.js';
import { api, startService, waitTask, type Service } from './helpers/service.js';

const hv = createHypervisor();
let svc: Service;
let h1: Connection;
let h2: Connection;
const localDir = `/var/tmp/kvm-migrate-test-${randomUUID().slice(0, 8)}`;
const HOSTDEV = 'kmtest-hostdev';
const LOCAL = 'kmtest-localdisk';

beforeAll(async () => {
  await labUp();
  await resetGuest(GUEST_TINY);
  h1 = await hv.open(hostUri('host1'));
  h2 = await hv.open(hostUri('host2'));
  // Retries allowed, so "failed checks are not retried" below is the policy speaking, not the config.
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_RETRY_ATTEMPTS: '3' });

  // A guest with a PCI device passed through cannot start here (no such device), so it is defined only.
  await removeDomain(h1, HOSTDEV);
  await h1.defineDomain(guestXml(HOSTDEV, `<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x7f' slot='0x1f' function='0x7'/></source></hostdev>`));

  // A running guest whose disk is a plain file outside any storage pool.
  mkdirSync(localDir, { recursive: true });
  writeFileSync(`${localDir}/disk.img`, Buffer.alloc(1024 * 1024));
  await removeDomain(h1, LOCAL);
  const local = await h1.defineDomain(guestXml(LOCAL, `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${localDir}/disk.img'/><target dev='vda' bus='virtio'/></disk>`));
  await local.start();
  local.free();
});

afterAll(async () => {
  await svc?.stop();
  if (h1) {
    await removeDomain(h1, HOSTDEV);
    await removeDomain(h1, LOCAL);
    await h1.close();
  }
  if (h2) {
    await removeDomain(h2, GUEST_TINY);
    await h2.close();
  }
  await resetGuest(GUEST_TINY);
  rmSync(localDir, { recursive: true, force: true });
});

async function expectBlocked(vm: string, remoteHost: string, code: string) {
  const before = await stateOn(h1, vm);
  const pre = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: remoteHost, dry_run: true });
  expect(pre.status).toBe(422);
  expect(pre.body.blockers.map((b: { code: string }) => b.code)).toContain(code);

  const post = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: remoteHost });
  expect(post.status).toBe(202);
  const task = await waitTask(svc.url, post.body.id, 60_000);
  expect(task.status).toBe('failed');
  expect(task.error?.details?.blockers?.map((b) => b.code)).toContain(code);
  expect(task.message).toContain(`${code}: `);
  expect(task.message).toMatch(/^[A-Z]+\d{4}E: /);
  // Failed checks are not retried and touch nothing.
  expect(task.history.filter((h) => h.event === 'start').map((h) => h.stage)).toEqual(['check']);
  expect(await stateOn(h1, vm)).toEqual(before);
  return task;
}

describe('capability checks fail the task with their code and leave the guest alone', () => {
  it('PCI passthrough: KMIG0101E', async () => {
    const t = await expectBlocked(HOSTDEV, hostAddress('host2'), 'KMIG0101E');
    expect(t.message).toMatch(/pci 0000:7f:1f\.7/);
    expect(await stateOn(h2, HOSTDEV)).toBeNull();
  });

  it('a disk outside any shared pool: KMIG0102E', async () => {
    const t = await expectBlocked(LOCAL, hostAddress('host2'), 'KMIG0102E');
    expect(t.message).toContain(`${localDir}/disk.img`);
    expect(await stateOn(h2, LOCAL)).toBeNull();
  });

  it('the destination is the source itself (same host UUID): KCHVM0055E', async () => {
    await expectBlocked(GUEST_TINY, hostAddress('host1'), 'KCHVM0055E');
  });

  it('an unreachable destination: KCHVM0090E', async () => {
    const t = await expectBlocked(GUEST_TINY, '127.0.0.99', 'KCHVM0090E');
    expect(t.message).toMatch(/qemu\+tcp:\/\/127\.0\.0\.99\/system/);
  });

  it('a domain of the same name on the destination: KMIG0106E', async () => {
    await removeDomain(h2, GUEST_TINY);
    const clash = await h2.defineDomain(guestXml(GUEST_TINY));
    clash.free();
    await expectBlocked(GUEST_TINY, hostAddress('host2'), 'KMIG0106E');
    expect((await stateOn(h2, GUEST_TINY))?.state).toBe('shutoff');
  });
});
