/**
 * One migration per VM under a flood: 1,000 concurrent POSTs for 50 real
 * (defined, not running) guests on lab host1 through a real API process.
 * Exactly 50 tasks exist afterwards; every other answer is a 409 naming the
 * VM's task, or, for requests sent with one Idempotency-Key, that same task.
 * No worker runs, so nothing moves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostAddress, hostUri, labUp } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { guestXml, removeDomain } from './helpers/guests.js';
import { api, startService, type Service } from './helpers/service.js';

const VMS = Array.from({ length: 50 }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
const PER_VM = 20;
const hv = createHypervisor();
let h1: Connection;
let svc: Service;

beforeAll(async () => {
  await labUp();
  h1 = await hv.open(hostUri('host1'));
  for (const vm of VMS) {
    await removeDomain(h1, vm);
    (await h1.defineDomain(guestXml(vm))).free();
  }
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_API_RATE_LIMIT: '100000' }, 0);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  for (const vm of VMS) await removeDomain(h1, vm).catch(() => undefined);
  await h1?.close();
});

describe('1,000 concurrent requests for 50 VMs', () => {
  it('create exactly 50 tasks; the rest get 409 naming the task, or the same task under the same Idempotency-Key', async () => {
    // Half the VMs are asked for by a client that retries with one key per VM.
    const keyed = new Set(VMS.filter((_, i) => i % 2 === 0));
    const requests = VMS.flatMap((vm) => Array.from({ length: PER_VM }, () => vm));
    requests.sort(() => Math.random() - 0.5);
    const t0 = Date.now();
    const answers = await Promise.all(
      requests.map(async (vm) => ({
        vm,
        ...(await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress('host2') }, keyed.has(vm) ? { headers: { 'idempotency-key': `key-${vm}` } } : {})),
      })),
    );
    const ms = Date.now() - t0;
    const byVm = new Map<string, typeof answers>();
    for (const a of answers) byVm.set(a.vm, [...(byVm.get(a.vm) ?? []), a]);
    const codes = answers.reduce<Record<number, number>>((m, a) => ((m[a.status] = (m[a.status] ?? 0) + 1), m), {});
    console.log(`1000 POSTs in ${ms} ms:`, codes);

    const created = new Set<string>();
    for (const [vm, list] of byVm) {
      const accepted = list.filter((a) => a.status === 202);
      const ids = new Set(accepted.map((a) => a.body.id));
      expect(ids.size, vm).toBe(1);
      const id = [...ids][0] as string;
      created.add(id);
      for (const a of list) {
        if (a.status === 202) continue;
        expect(a.status, `${vm}: ${JSON.stringify(a.body)}`).toBe(409);
        expect(a.body.code).toBe('KMIG0003E');
        expect(a.body.task.id).toBe(id);
        expect(a.body.reason).toContain(id);
      }
      // A client retrying with its key always gets the task, never a 409.
      if (keyed.has(vm)) expect(accepted.length, vm).toBe(PER_VM);
    }
    expect(created.size).toBe(50);
    expect(answers.every((a) => a.status === 202 || a.status === 409)).toBe(true);
    // The queue agrees: exactly one task per VM.
    const tasks = (await api(svc.url, 'GET', '/tasks')).body as { id: string; vm: string }[];
    expect(tasks.length).toBe(50);
    expect(new Set(tasks.map((t) => t.vm))).toEqual(new Set(VMS));
    expect(new Set(tasks.map((t) => t.id))).toEqual(created);
  }, 180_000);

  it('replays a keyed request from Redis even once the VM has left the source (as after a finished migration)', async () => {
    const vm = VMS[0]!;
    const key = { 'idempotency-key': `key-${vm}` };
    const first = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress('host2') }, { headers: key });
    expect(first.status).toBe(202);
    await removeDomain(h1, vm);
    const again = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress('host2') }, { headers: key });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    // Without the key the VM is simply not there.
    expect((await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress('host2') })).status).toBe(404);
  });
});
