/**
 * A worker killed with SIGKILL in the middle of the memory copy: the libvirt
 * migration goes on without it (peer-to-peer: the source libvirtd drives it),
 * another worker takes the stalled job over, resumes at the migrate stage,
 * re-attaches to the running libvirt job instead of starting a second one,
 * and finishes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { stateOn } from './helpers/guests.js';
import { api, startService, waitFor, waitTask, type Service, type Task } from './helpers/service.js';

const hv = createHypervisor();
let svc: Service;
let h1: Connection;

beforeAll(async () => {
  await labUp();
  h1 = await hv.open(hostUri('host1'));
  svc = await startService({
    KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'),
    // Slow enough to kill the worker mid-copy, fast enough to converge afterwards.
    KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: '8',
    KVM_MIGRATE_WORKER_LOCK_DURATION: '4000',
    KVM_MIGRATE_WORKER_STALLED_INTERVAL: '1000',
  });
});

afterAll(async () => {
  await svc?.stop();
  await h1?.close();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
});

describe('a worker killed mid-copy', () => {
  it('leaves a job that another worker re-attaches to and finishes', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 1 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: hostAddress('host2') });
    expect(post.status).toBe(202);
    const id = post.body.id;
    await waitFor('memory copy under way', async () => {
      const t: Task = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
      return t.stage === 'migrate' && (t.progress?.percent ?? 0) > 5;
    }, 30_000, 100);

    const [first] = svc.workers;
    first!.kill('SIGKILL');
    await new Promise((r) => first!.once('exit', r));
    // The libvirt job outlives the client that started it.
    const src = await h1.lookupDomain(GUEST_DIRTY);
    expect((await src!.jobStats()).type).toBe('unbounded');
    src!.free();

    await svc.startWorker();
    const task = await waitTask(svc.url, id, 90_000);
    expect(task.error).toBeNull();
    expect(task.status).toBe('finished');
    const resumed = task.history.filter((h) => h.event === 'resume');
    expect(resumed.map((h) => h.stage)).toEqual(['migrate']);
    expect(task.history.filter((h) => h.event === 'step' && h.stage === 'migrate')).toHaveLength(1); // one libvirt migration, never two
    expect(task.history.find((h) => h.stage === 'migrate' && h.event === 'done')?.detail).toMatch(/re-attached/);
    const h2 = await hv.open(hostUri('host2'));
    try {
      expect(await stateOn(h2, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
    } finally {
      await h2.close();
    }
    expect(await stateOn(h1, GUEST_DIRTY)).toBeNull();
  });
});
