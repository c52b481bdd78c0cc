/**
 * Concurrency limits across worker processes: three workers (six job slots
 * between them) and outgoing_per_host=2. Five guests leave host1 at once;
 * never more than two copies run out of host1 (libvirt sampled while they
 * run, and the tasks' own history), the others wait in the queue saying why,
 * use no attempts, and all end on host2. A job waiting for a slot can still
 * be cancelled.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_TINY } from '../lab/config.js';
import { fillerConsole, fillerXml } from '../lab/filler.js';
import { hostAddress, hostUri, labStatus, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import type { Connection } from '../shared/libvirt/types.js';
import { removeDomain, stateOn, withConnection } from './helpers/guests.js';
import { api, logsOf, startService, waitFor, waitTask, type Service, type Task } from './helpers/service.js';

const hv = createHypervisor();
const LIMIT = 2;
const GUESTS = Array.from({ length: 5 }, (_, i) => `lab-limit-${i + 1}`);
const consoleOf = fillerConsole;
const WAITING = 'waiting for a migration slot: 127.0.0.11 already has 2 outgoing migrations (limit 2)';
/** The task fields this file reads beyond the helper's. */
type FullTask = Omit<Task, 'history'> & { vm: string; attempts: number; queue_state: string; history: { at: string; stage: string; event: string; detail?: string }[] };
let svc: Service;
let h1: Connection;

async function removeFillers(): Promise<void> {
  for (const uri of [hostUri('host1'), hostUri('host2')]) {
    await withConnection(hv, uri, async (c) => {
      for (const g of GUESTS) await removeDomain(c, g);
    });
  }
  for (const g of GUESTS) rmSync(consoleOf(g), { force: true });
}

beforeAll(async () => {
  await labUp();
  await resetGuest(GUEST_TINY);
  await removeFillers();
  h1 = await hv.open(hostUri('host1'));
  for (const g of GUESTS) {
    const d = await h1.defineDomain(await fillerXml(g));
    await d.start();
    d.free();
  }
  await waitFor('the guests to fill their memory', async () => GUESTS.every((g) => existsSync(consoleOf(g)) && readFileSync(consoleOf(g), 'latin1').includes('region filled')), 60_000, 200);
  svc = await startService(
    {
      KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'),
      KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: '16',
      KVM_MIGRATE_LIMITS_OUTGOING_PER_HOST: String(LIMIT),
      // Above the outgoing limit, so the outgoing one is what keeps them apart.
      KVM_MIGRATE_LIMITS_INCOMING_PER_HOST: '3',
      KVM_MIGRATE_LIMITS_WAIT_POLL: '300',
      // One job at a time per process: the two copies the limit lets run side by side are then
      // necessarily in two processes, however the three happen to poll the queue.
      KVM_MIGRATE_WORKER_CONCURRENCY: '1',
    },
    3,
  );
});

afterAll(async () => {
  await svc?.stop();
  await h1?.close();
  await removeFillers();
  await resetGuest(GUEST_TINY);
});

/** Most intervals open at one moment. */
function maxOverlap(spans: [number, number][]): number {
  const edges = spans.flatMap(([a, b]) => [[a, 1], [b, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let open = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (open += d));
  return max;
}

const at = (t: FullTask, stage: string, event: string) => Date.parse(t.history.find((h) => h.stage === stage && h.event === event)?.at ?? 'x');

describe('outgoing_per_host across three worker processes', () => {
  it('runs at most two copies out of host1 at once; the rest wait in the queue saying why, without using attempts, and all finish', async () => {
    const started = Date.now();
    const posts = await Promise.all(GUESTS.map((g) => api(svc.url, 'POST', `/vms/${g}/migrate`, { remote_host: hostAddress('host2') })));
    expect(posts.map((p) => p.status)).toEqual(GUESTS.map(() => 202));
    const ids: string[] = posts.map((p) => p.body.id);

    // Sample libvirt (the truth: copies running out of host1) and the tasks (what clients see) until all end.
    let done = false;
    const copying: number[] = [];
    const sampleLibvirt = (async () => {
      while (!done) {
        let n = 0;
        for (const g of GUESTS) {
          const d = await h1.lookupDomain(g);
          if (!d) continue;
          const job = await d.jobStats().catch(() => null);
          d.free();
          if (job?.type === 'unbounded' || job?.type === 'bounded') n++;
        }
        copying.push(n);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const waitedMessages = new Map<string, Set<string>>();
    const sampleTasks = (async () => {
      while (!done) {
        await Promise.all(ids.map(async (id) => {
          const t: FullTask = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
          if (t.status === 'running' && t.message.startsWith('waiting for a migration slot')) {
            (waitedMessages.get(id) ?? waitedMessages.set(id, new Set()).get(id)!).add(`${t.message} (attempts ${t.attempts})`);
          }
        }));
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    const tasks = (await Promise.all(ids.map((id) => waitTask(svc.url, id, 80_000)))) as FullTask[];
    done = true;
    await Promise.all([sampleLibvirt, sampleTasks]);
    const elapsed = Date.now() - started;

    for (const t of tasks) {
      expect(t.error, t.vm).toBeNull();
      expect(t.status).toBe('finished');
      // BullMQ counts the attempt that completed: one, however often the job went back to wait for a slot.
      expect(t.attempts, `${t.vm} attempts; history ${JSON.stringify(t.history.map((h) => `${h.stage}:${h.event}`))}`).toBe(1);
      expect(t.history.filter((h) => h.event === 'retry' || h.event === 'resume')).toEqual([]);
      // A task that waited for its slot checks again before it moves; one that did not, checks once.
      const waitedHere = t.history.some((h) => h.event === 'decision' && /^waiting for a migration slot/.test(h.detail ?? ''));
      expect(t.history.filter((h) => h.event === 'done').map((h) => h.stage)).toEqual([...(waitedHere ? ['check'] : []), 'check', 'connect', 'prepare', 'migrate', 'finish']);
      expect(t.history.some((h) => h.detail === 'checking again after waiting for a migration slot')).toBe(waitedHere);
    }
    for (const g of GUESTS) {
      expect(await withConnection(hv, hostUri('host2'), (c) => stateOn(c, g))).toEqual({ state: 'running', persistent: true });
      expect(await stateOn(h1, g)).toBeNull();
    }

    // Never more than the limit: in libvirt, and over the whole span a task held its slot (connect start to finish done).
    const maxCopying = Math.max(...copying);
    expect(copying.length).toBeGreaterThan(10);
    expect(maxCopying).toBeLessThanOrEqual(LIMIT);
    const held = tasks.map((t): [number, number] => [at(t, 'connect', 'start'), at(t, 'finish', 'done')]);
    const copies = tasks.map((t): [number, number] => [at(t, 'migrate', 'start'), at(t, 'migrate', 'done')]);
    expect(held.flat().every(Number.isFinite)).toBe(true);
    expect(maxOverlap(held)).toBeLessThanOrEqual(LIMIT);
    // And the limit is what kept them apart: two did run side by side.
    expect(maxOverlap(copies)).toBe(LIMIT);

    // The ones that waited said why while they waited, noted it once, and how long it took.
    const waited = tasks.filter((t) => t.history.some((h) => h.detail?.startsWith('waiting for a migration slot')));
    expect(waited.length).toBeGreaterThanOrEqual(GUESTS.length - LIMIT);
    const waits = new Map<string, number>();
    for (const t of waited) {
      expect(t.history.filter((h) => h.event === 'decision' && h.detail?.startsWith('waiting for a migration slot')).map((h) => h.detail)).toEqual([WAITING]);
      const got = t.history.filter((h) => h.detail?.startsWith('got a migration slot after'));
      expect(got).toHaveLength(1);
      waits.set(t.id, Number(/after ([\d.]+) s/.exec(got[0]!.detail!)?.[1]));
    }
    // Clients saw the reason (and no attempt used) while it waited; the tasks are looked at every ~150 ms, so a wait under a second may slip through.
    expect(waitedMessages.size).toBeGreaterThanOrEqual(1);
    for (const t of waited) {
      if ((waits.get(t.id) ?? 0) >= 1 || waitedMessages.has(t.id)) expect([...(waitedMessages.get(t.id) ?? [])], t.vm).toEqual([`${WAITING} (attempts 0)`]);
    }
    // Each waiting job went through a worker many times (BullMQ's started count), none of them an attempt.
    const redis = new Redis(svc.env.KVM_MIGRATE_REDIS_URL as string);
    const pickedUp = await Promise.all(waited.map((t) => redis.hget(`${svc.prefix}:migrations:${t.id}`, 'ats').then(Number)));
    redis.disconnect();
    expect(Math.max(...pickedUp)).toBeGreaterThan(3);

    // Several processes took part: the limit held across them, not inside one.
    const workersThatMigrated = svc.workers.filter((w) => logsOf(w).some((l) => l.includes('"migration finished"')));
    expect(workersThatMigrated.length).toBeGreaterThanOrEqual(2);

    console.log(
      `limits.lab: ${GUESTS.length} migrations in ${(elapsed / 1000).toFixed(1)} s; at most ${maxCopying} copies seen in libvirt (${copying.length} samples), ` +
        `${maxOverlap(held)} slot holders at once, limit ${LIMIT}; ${waited.length} waited ${[...waits.values()].map((w) => `${w} s`).join(', ')}; ` +
        `${workersThatMigrated.length} of ${svc.workers.length} workers ran migrations; the waiting ones were picked up ${pickedUp.join(', ')} times`,
    );
  }, 100_000);
});

describe('a migration waiting for a slot', () => {
  it('can be cancelled: it ends killed before connect, and the guest stays on host1', async () => {
    // A service that looks again only every 30 s: a kill within seconds proves the cancel brought the job forward.
    const svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_LIMITS_OUTGOING_PER_HOST: String(LIMIT), KVM_MIGRATE_LIMITS_WAIT_POLL: '30000' }, 1);
    // Fill host1's outgoing slots with two leases no worker holds, as two long migrations would.
    const host1 = (await labStatus()).hosts.find((h) => h.name === 'host1')!.hostUuid;
    const redis = new Redis(svc.env.KVM_MIGRATE_REDIS_URL as string);
    const key = `${svc.prefix}:slots:out:${host1}`;
    try {
      await redis.zadd(key, Date.now() + 60_000, 'placeholder-1', Date.now() + 60_000, 'placeholder-2');
      const post = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: hostAddress('host2') });
      expect(post.status).toBe(202);
      const id = post.body.id;
      const waiting = await waitFor('the task to wait for a slot', async () => {
        const t: FullTask = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
        return t.status === 'running' && t.message === WAITING && t.queue_state === 'delayed' ? t : null;
      }, 30_000, 100);
      expect(waiting.stage).toBe('connect');
      const asked = Date.now();
      const del = await api(svc.url, 'DELETE', `/tasks/${id}`);
      expect(del.status).toBe(202);
      const task = await waitTask(svc.url, id, 20_000);
      const took = Date.now() - asked;
      expect(task.status).toBe('killed');
      expect(task.error?.code).toBe('KMIG0204E');
      expect(task.history.some((h) => h.stage === 'connect' && h.event === 'start')).toBe(false);
      expect(task.history.at(-1)).toMatchObject({ stage: 'connect', event: 'decision', detail: 'cancelled before the migration started' });
      // Promoted out of the delay: killed within seconds, not at the next look 30 s later.
      expect(took).toBeLessThan(5000);
      expect(await stateOn(h1, GUEST_TINY)).toEqual({ state: 'running', persistent: true });
      expect(await withConnection(hv, hostUri('host2'), (c) => stateOn(c, GUEST_TINY))).toBeNull();
      // It never held a slot.
      expect(await redis.zrange(key, 0, -1)).toEqual(['placeholder-1', 'placeholder-2']);
      console.log(`limits.lab: cancel of a waiting migration answered ${del.status}, task killed ${took} ms after the request`);
    } finally {
      await redis.del(key);
      redis.disconnect();
      await svc.stop();
    }
  }, 60_000);
});
