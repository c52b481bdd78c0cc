/**
 * A worker killed with SIGKILL in the middle of the memory copy: the libvirt
 * migration goes on without it (peer-to-peer: the source libvirtd drives it),
 * another worker takes the stalled job over, resumes at the migrate stage,
 * re-attaches to the running libvirt job instead of starting a second one,
 * and finishes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, killHost, labUp, resetGuest, startHost } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { stateOn, withConnection } from './helpers/guests.js';
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
    expect(await withConnection(hv, hostUri('host2'), (h2) => stateOn(h2, GUEST_DIRTY))).toEqual({ state: 'running', persistent: true });
    expect(await stateOn(h1, GUEST_DIRTY)).toBeNull();
  });
});

describe('a transient fault', () => {
  it('is retried with backoff until the source libvirtd is back, then the migration finishes', async () => {
    await resetGuest(GUEST_TINY);
    const quiet = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_RETRY_BACKOFF: '1000', KVM_MIGRATE_RETRY_ATTEMPTS: '6' }, 0);
    try {
      const post = await api(quiet.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: hostAddress('host2') });
      expect(post.status).toBe(202);
      // The source daemon dies (its guests keep running) before any worker looks at the job.
      await h1.close();
      expect(await killHost('host1')).toBe(true);
      await quiet.startWorker();
      await waitFor('a retry', async () => ((await api(quiet.url, 'GET', `/tasks/${post.body.id}`)).body as Task).history.some((h) => h.event === 'retry'), 20_000);
      await startHost('host1');
      const task = await waitTask(quiet.url, post.body.id, 90_000);
      expect(task.status).toBe('finished');
      const retries = task.history.filter((h) => h.event === 'retry');
      expect(retries.length).toBeGreaterThanOrEqual(1);
      expect(retries[0]?.detail).toMatch(/^attempt 1\/6: KMIG0206E: Transient fault, will retry: .*Connection refused/);
      expect(task.history.filter((h) => h.event === 'resume').length).toBe(retries.length);
    } finally {
      await startHost('host1');
      h1 = await hv.open(hostUri('host1'));
      await quiet.stop();
    }
  });
});

describe('a cancel for a job whose worker died mid-copy', () => {
  it('does not just drop the job: the next worker aborts the still-running copy, recovers, and the task ends killed', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const crashy = await startService({
      KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'),
      KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: '8',
      KVM_MIGRATE_WORKER_LOCK_DURATION: '4000',
      KVM_MIGRATE_WORKER_STALLED_INTERVAL: '1000',
    });
    try {
      const post = await api(crashy.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: hostAddress('host2') });
      const id = post.body.id;
      await waitFor('memory copy under way', async () => {
        const t: Task = (await api(crashy.url, 'GET', `/tasks/${id}`)).body;
        return t.stage === 'migrate' && (t.progress?.percent ?? 0) > 2;
      }, 30_000, 100);
      const [first] = crashy.workers;
      first!.kill('SIGKILL');
      await new Promise((r) => first!.once('exit', r));
      // No worker holds the job now; the libvirt copy goes on. The cancel waits in Redis.
      const del = await api(crashy.url, 'DELETE', `/tasks/${id}`);
      expect(del.status).toBe(202);
      await crashy.startWorker();
      const task = await waitTask(crashy.url, id, 60_000);
      expect(task.status).toBe('killed');
      expect(task.error?.code).toBe('KMIG0204E');
      expect(task.history.some((h) => h.stage === 'recover' && h.event === 'done')).toBe(true);
      expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
      expect(await withConnection(hv, hostUri('host2'), (h2) => stateOn(h2, GUEST_DIRTY))).toBeNull();
    } finally {
      await crashy.stop();
    }
  });
});
