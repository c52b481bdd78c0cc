/**
 * Stage 2 of the proposal, for real: live progress over server-sent events,
 * cancel from the API process while a separate worker process runs the job,
 * per-migration deadlines with both actions, live tuning, and the
 * convergence schedule stepping downtime up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { stateOn, withConnection } from './helpers/guests.js';
import { api, startService, waitFor, waitTask, type Service, type Task } from './helpers/service.js';
import { readEvents } from './helpers/sse.js';

const hv = createHypervisor();
let svc: Service;
let h1: Connection;
const dest = () => hostAddress('host2');

type FullTask = Task & {
  progress: (Task['progress'] & { dataProcessed?: number; dataTotal?: number; memoryBps?: number; downtimeMs?: number; iteration?: number }) | null;
  policy: { in_force: { bandwidth: number | string; max_downtime: number | null; operator_tuned: boolean } | null };
};

const onHost2 = <T>(fn: (c: Connection) => Promise<T>) => withConnection(hv, hostUri('host2'), fn);

const copying = async (id: string, minPercent = 1) =>
  waitFor('the memory copy to be under way', async () => {
    const t: FullTask = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
    return t.stage === 'migrate' && (t.progress?.percent ?? 0) >= minPercent ? t : null;
  }, 60_000, 100);

beforeAll(async () => {
  await labUp();
  h1 = await hv.open(hostUri('host1'));
  svc = await startService({
    KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'),
    KVM_MIGRATE_CONVERGENCE_CEILING: '5000',
    KVM_MIGRATE_CONVERGENCE_STEPS: '4',
  });
});

afterAll(async () => {
  await svc?.stop();
  await h1?.close();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
  await resetGuest(GUEST_TINY);
});

describe('migrateMonitor over server-sent events', () => {
  it('streams the current state first, then progress that never goes backwards, then the final figures', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 2 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 16 });
    expect(post.status).toBe(202);
    const events = await readEvents(`${svc.url}/tasks/${post.body.id}/events`);
    const tasks = events.map((e) => JSON.parse(e.data) as FullTask);
    expect(events.every((e) => e.event === 'task')).toBe(true);
    expect(tasks[0]?.status).toBe('running');
    const samples = tasks.filter((t) => t.stage === 'migrate' && t.progress && (t.progress.dataProcessed ?? 0) > 0);
    expect(new Set(samples.map((t) => t.progress!.dataProcessed)).size).toBeGreaterThanOrEqual(3);
    const percents = samples.map((t) => t.progress!.percent);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(Math.max(...percents)).toBeLessThan(100);
    expect(samples.some((t) => /^copying memory: \d+%, \d+ MiB\/s, iteration \d+/.test(t.message))).toBe(true);
    const last = tasks.at(-1)!;
    expect(last.status).toBe('finished');
    expect(last.progress).toMatchObject({ percent: 100 });
    expect(last.progress!.downtimeMs).toBeGreaterThan(0);
    expect(last.progress!.dataProcessed).toBeGreaterThan(48 * 2 ** 20);
    expect(last.policy.in_force?.bandwidth).toBe(16);
    // The final figures came with libvirt's JOB_COMPLETED event.
    expect(last.history.find((h) => h.stage === 'migrate' && h.event === 'done')?.detail).toMatch(/^libvirt reports the migration completed: [\d.]+ MiB in [\d.]+ s, downtime \d+ ms \(JOB_COMPLETED event\)$/);
  });
});

describe('migrateCancel', () => {
  it('cancels mid-copy from the API while another process runs the job: killed, guest on the source, nothing on the destination', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 8, deadline: 120 });
    const id = post.body.id;
    await copying(id, 5);
    const t0 = Date.now();
    const del = await api(svc.url, 'DELETE', `/tasks/${id}`);
    expect(del.status).toBe(202);
    const task = await waitTask(svc.url, id, 30_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(task.status).toBe('killed');
    expect(task.error?.code).toBe('KMIG0204E');
    expect(task.history.some((h) => h.stage === 'recover' && h.event === 'done')).toBe(true);
    expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
    expect(await onHost2((c) => stateOn(c, GUEST_DIRTY))).toBeNull();
    const again = await api(svc.url, 'DELETE', `/tasks/${id}`);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('KMIG0010E');
  });

  it('takes a queued migration out of the queue (Kimchi action style), which frees the VM for a new one', async () => {
    await resetGuest(GUEST_TINY);
    const idle = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') }, 0);
    try {
      const post = await api(idle.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest() });
      expect(post.status, JSON.stringify(post.body)).toBe(202);
      const cancel = await api(idle.url, 'POST', `/vms/${GUEST_TINY}/migrate_cancel`);
      expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
      expect(cancel.body).toMatchObject({ id: post.body.id, status: 'killed' });
      expect((await api(idle.url, 'GET', `/tasks/${post.body.id}`)).body.status).toBe('killed');
      expect((await api(idle.url, 'GET', '/tasks?status=killed')).body).toHaveLength(1);
      expect((await api(idle.url, 'POST', `/vms/${GUEST_TINY}/migrate_cancel`)).body.code).toBe('KMIG0011E');
      expect((await api(idle.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest() })).status).toBe(202);
    } finally {
      await idle.stop();
    }
  });
});

describe('per-migration deadline', () => {
  it('with action abort: aborts at the deadline and recovers on the source', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 8, deadline: 4, deadline_action: 'abort' });
    const task = await waitTask(svc.url, post.body.id, 60_000);
    expect(task.status).toBe('failed');
    expect(task.error?.code).toBe('KMIG0201E');
    expect(await stateOn(h1, GUEST_DIRTY)).toEqual({ state: 'running', persistent: true });
    expect(await onHost2((c) => stateOn(c, GUEST_DIRTY))).toBeNull();
  });

  it('with action pause: pauses the guest so the copy completes, and it runs on the destination', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 8, deadline: 4, deadline_action: 'pause' });
    const task = await waitTask(svc.url, post.body.id, 90_000);
    expect(task.error).toBeNull();
    expect(task.status).toBe('finished');
    expect(task.history.some((h) => h.event === 'decision' && /paused the guest so the copy completes/.test(h.detail ?? ''))).toBe(true);
    expect(await onHost2((c) => stateOn(c, GUEST_DIRTY))).toEqual({ state: 'running', persistent: true });
    expect(await stateOn(h1, GUEST_DIRTY)).toBeNull();
  });
});

describe('PATCH while the copy runs', () => {
  it('changes the bandwidth (seen in the transfer rate) and the max downtime in force', async () => {
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 4, deadline: 120 });
    const id = post.body.id;
    await copying(id, 1);
    await new Promise((r) => setTimeout(r, 2000));
    const before: FullTask = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
    const slow = before.progress?.memoryBps ?? 0;
    const patch = await api(svc.url, 'PATCH', `/tasks/${id}`, { bandwidth: 32, max_downtime: 800 });
    expect(patch.status).toBe(200);
    expect(patch.body.policy.in_force).toMatchObject({ bandwidth: 32, max_downtime: 800, operator_tuned: true });
    const fast = await waitFor('a faster transfer rate', async () => {
      const t: FullTask = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
      return (t.progress?.memoryBps ?? 0) > 3 * slow ? t.progress!.memoryBps! : null;
    }, 20_000, 250);
    expect(slow).toBeGreaterThan(0);
    expect(slow).toBeLessThan(6 * 2 ** 20);
    expect(fast).toBeGreaterThan(12 * 2 ** 20);
    const task = (await api(svc.url, 'GET', `/tasks/${id}`)).body as FullTask;
    expect(task.history.some((h) => h.event === 'decision' && /operator set bandwidth 32 MiB\/s and max downtime 800 ms/.test(h.detail ?? ''))).toBe(true);
    expect((await api(svc.url, 'PATCH', `/tasks/${id}`, { deadline: 5 })).status).toBe(400);
    await api(svc.url, 'DELETE', `/tasks/${id}`);
    await waitTask(svc.url, id, 30_000);
  });
});

describe('convergence', () => {
  it('steps the max downtime up while a guest does not converge, recording why, until it does', async () => {
    // The guest dirties faster than the link copies (with margin for a loaded machine):
    // what is left stays at its 48 MiB working set, so only a ~3 s downtime lets it finish.
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 32 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: dest(), bandwidth: 16, max_downtime: 300, deadline: 120 });
    const seen = (await readEvents(`${svc.url}/tasks/${post.body.id}/events`)).map((e) => JSON.parse(e.data) as FullTask);
    // While it does not converge the task says so, and promises no ETA.
    const stuck = seen.filter((t) => (t.progress as { converging?: boolean } | null)?.converging === false);
    expect(stuck.length).toBeGreaterThan(0);
    expect(stuck.every((t) => (t.progress as { etaSeconds?: number }).etaSeconds === undefined && /not converging yet/.test(t.message))).toBe(true);
    const task = seen.at(-1)!;
    const steps = task.history.filter((h) => h.event === 'decision' && /without converging/.test(h.detail ?? ''));
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(steps[0]!.detail).toMatch(/max downtime 300 → 606 ms \(step 1 of 4\)/);
    expect(task.status).toBe('finished');
    expect(task.policy.in_force!.max_downtime!).toBeGreaterThan(300);
  });
});

describe('auto-converge and compression', () => {
  it('are accepted by libvirt with tunnelled transport and the migration finishes', async () => {
    await resetGuest(GUEST_TINY);
    const post = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest(), auto_converge: true, compression: 'xbzrle' });
    expect(post.status).toBe(202);
    expect(post.body.policy).toMatchObject({ auto_converge: true, compression: 'xbzrle' });
    const task = await waitTask(svc.url, post.body.id, 60_000);
    expect(task.error).toBeNull();
    expect(task.status).toBe('finished');
    expect(await onHost2((c) => stateOn(c, GUEST_TINY))).toEqual({ state: 'running', persistent: true });
  });

  it('refuse what tunnelled transport cannot do, saying why', async () => {
    for (const [body, why] of [
      [{ post_copy: true }, /post-copy is not available with tunnelled transport/],
      [{ compression: 'zstd' }, /"xbzrle" or "none"/],
      [{ max_downtime: 50 }, /'max_downtime' must be a whole number of milliseconds from 100/],
      [{ deadline_action: 'postcopy' }, /"abort".*or "pause"/],
    ] as const) {
      const r = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: dest(), ...body });
      expect(r.status).toBe(400);
      expect(r.body.reason).toMatch(why);
    }
  });
});
