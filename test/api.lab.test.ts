/**
 * The API against real Redis and the real lab, without a worker: validation,
 * lookups, one migration per VM, task listing and the precheck.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DISK, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { api, startService, type Service } from './helpers/service.js';

let svc: Service;
let h1: Connection;
const hv = createHypervisor();
const dest = () => hostAddress('host2');

beforeAll(async () => {
  await labUp();
  await resetGuest(GUEST_TINY);
  await resetGuest(GUEST_DISK);
  h1 = await hv.open(hostUri('host1'));
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') }, 0);
});

afterAll(async () => {
  await svc?.stop();
  await h1?.close();
});

describe('POST /vms/:name/migrate: bad input changes nothing', () => {
  it.each([
    ['not JSON', '{"remote_host":', 400, 'KMIG0001E'],
    ['an array', '[]', 400, 'KMIG0001E'],
    ['an unknown property', { remote_host: '127.0.0.12', colour: 'red' }, 400, 'KMIG0001E'],
    ["Kimchi's password", { remote_host: '127.0.0.12', password: 'x' }, 400, 'KMIG0001E'],
    ['no remote_host', {}, 400, 'KMIG0001E'],
    ['a remote_host that injects into the URI', { remote_host: '127.0.0.12/system?socket=/x' }, 400, 'KCHVM0060E'],
    ['a numeric remote_host', { remote_host: 12 }, 400, 'KCHVM0060E'],
  ])('%s → %i %s', async (_what, body, status, code) => {
    const r = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, body);
    expect(r.status).toBe(status);
    expect(r.body.code).toBe(code);
    expect(r.body.reason).toMatch(new RegExp(`^${code}: `));
    expect((await api(svc.url, 'GET', '/tasks')).body).toEqual([]);
  });

  it('refuses a body over 16 KiB with 413', async () => {
    const r = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: 'x'.repeat(20_000) });
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('KMIG0009E');
  });

  it('answers 404 KCHVM0002E for a VM the source does not have', async () => {
    const r = await api(svc.url, 'POST', '/vms/no-such-guest/migrate', { remote_host: dest() });
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ code: 'KCHVM0002E', reason: 'KCHVM0002E: Virtual machine no-such-guest does not exist on the source host' });
  });

  it('handles a VM name with XML and shell metacharacters as a plain name', async () => {
    const r = await api(svc.url, 'POST', `/vms/${encodeURIComponent("x'><y$(id)")}/migrate`, { remote_host: dest() });
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('KCHVM0002E');
  });

  it('answers 404 with a code for unknown tasks and routes', async () => {
    expect((await api(svc.url, 'GET', '/tasks/00000000-0000-0000-0000-000000000000')).body.code).toBe('KMIG0004E');
    // Queue-internal key names are no task ids.
    for (const [method, path] of [['GET', '/tasks/meta'], ['DELETE', '/tasks/meta'], ['GET', '/tasks/meta/events'], ['PATCH', '/tasks/meta']] as const) {
      const r = await api(svc.url, method, path, method === 'PATCH' ? { bandwidth: 5 } : undefined);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body.code).toBe('KMIG0004E');
    }
    const r = await api(svc.url, 'GET', '/nope');
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('KMIG0008E');
  });
});

describe('the precheck (dry_run) runs every check now and enqueues nothing', () => {
  it('clears a guest that can move', async () => {
    const r = await api(svc.url, 'POST', `/vms/${GUEST_DISK}/migrate`, { remote_host: dest(), dry_run: true });
    expect(r.status).toBe(200);
    expect(r.body.ready).toBe(true);
    expect(r.body.checks).toHaveLength(9);
    expect(r.body.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
    expect((await api(svc.url, 'GET', '/tasks')).body).toEqual([]);
  });

  it('reports the same host by UUID with 422 KCHVM0055E', async () => {
    const r = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: hostAddress('host1'), dry_run: true });
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('KMIG0100E');
    expect(r.body.blockers.map((b: { code: string }) => b.code)).toContain('KCHVM0055E');
  });

  it('reports an unreachable destination quickly with KCHVM0090E', async () => {
    const t0 = Date.now();
    const r = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: '127.0.0.99', dry_run: true });
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(r.status).toBe(422);
    expect(r.body.blockers.map((b: { code: string }) => b.code)).toEqual(['KCHVM0090E']);
    expect(r.body.blockers[0].reason).toMatch(/127\.0\.0\.99/);
  });
});

describe('one migration per VM, as tasks', () => {
  it('queues a migration (202 + Location), refuses a second one with 409 naming the first, and lists it', async () => {
    const first = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest() });
    expect(first.status).toBe(202);
    expect(first.headers.get('location')).toBe(`/tasks/${first.body.id}`);
    expect(first.body).toMatchObject({ status: 'running', target_uri: `/vms/${GUEST_TINY}`, message: 'The request is being processing.' });
    expect(first.body.id).toMatch(/^[0-9a-f-]{36}$/);

    const again = await Promise.all([1, 2, 3].map(() => api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest() })));
    for (const r of again) {
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('KMIG0003E');
      expect(r.body.task.id).toBe(first.body.id);
      expect(r.body.reason).toContain(first.body.id);
    }
    const all = (await api(svc.url, 'GET', '/tasks')).body;
    expect(all.map((t: { id: string }) => t.id)).toEqual([first.body.id]);
    expect((await api(svc.url, 'GET', `/tasks?status=running&target_uri=${encodeURIComponent('^/vms/lab-t')}`)).body).toHaveLength(1);
    expect((await api(svc.url, 'GET', '/tasks?status=finished')).body).toHaveLength(0);
    expect((await api(svc.url, 'GET', `/tasks?target_uri=${encodeURIComponent('^/vms/other$')}`)).body).toHaveLength(0);
    expect((await api(svc.url, 'GET', '/tasks?target_uri=((')).status).toBe(400);
    expect((await api(svc.url, 'GET', `/tasks/${first.body.id}`)).body.id).toBe(first.body.id);
  });
});
