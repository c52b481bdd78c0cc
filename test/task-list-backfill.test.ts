/**
 * Upgrading to the task index: tasks a version without it left in Redis (jobs
 * in every state, a tombstone in the old `<prefix>:tombs` set) are listed by
 * GET /tasks once an API has started on the same prefix, each exactly once,
 * with two API replicas starting together and after a restart; jobs that are
 * no task are not entered. Real Redis, real APIs in this process.
 */
import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backfillIndex, backfillKeys } from '../api/task-backfill.js';
import { createTaskStore } from '../api/tasks.js';
import { loadConfig } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import { initialCheckpoint, type MigrationJobData, type MigrationRequest } from '../shared/job.js';
import { apiRedis, createQueue, JOB_NAME, jobOptions, vmLockKey, workerRedis } from '../shared/queue.js';
import { toTask } from '../shared/task.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api } from './helpers/service.js';

const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379' } });
let redis: Redis;
let queue: ReturnType<typeof createQueue>;
const started: InProc[] = [];
/** id → status, of every task the listing must show. */
const want = new Map<string, string>();

function request(vm: string, dst = 'h2'): MigrationRequest {
  return {
    vm, remoteHost: dst, sourceUri: 'qemu+tcp://h1/system', destinationUri: `qemu+tcp://${dst}/system`, requestedAt: new Date().toISOString(),
    bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
  };
}

/** A job as a version without the index added it: no entry, BullMQ's own timestamp. */
async function oldJob(vm: string, extra: object = {}): Promise<string> {
  const id = randomUUID();
  const r = request(vm);
  const data: MigrationJobData = { request: r, checkpoint: initialCheckpoint(new Date()) };
  await queue.add(JOB_NAME, data, { ...jobOptions(config, id, vmLockKey(r.sourceUri, r.vm)), ...extra });
  await new Promise((ok) => setTimeout(ok, 3));
  return id;
}

const start = () => startInProc({ KVM_MIGRATE_REDIS_PREFIX: prefix }).then((s) => (started.push(s), s));
const listed = async (svc: InProc, query = '') => {
  const r = await api(svc.url, 'GET', `/tasks?limit=500${query}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as { id: string; status: string; created_at: string; vm: string }[];
};
const backfillLines = () => started.flatMap((s) => s.logs).filter((l) => l.includes('task index: every task kept from before it is entered'));

async function doneMarker(): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const v = await redis.get(backfillKeys(prefix).done);
    if (v) return v;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error('the backfill did not finish in 10 s');
}

beforeAll(async () => {
  redis = apiRedis(config);
  await new Promise((ok) => redis.once('ready', ok));
  queue = createQueue(config, redis);
  // Ended by a plain worker: one finished, one failed.
  const finished = await oldJob('old-ok');
  const failed = await oldJob('fail-old');
  const wconn = workerRedis(config);
  const worker = new Worker(
    config.redis.queue,
    async (job) => {
      if (String(job.data.request.vm).startsWith('fail-')) throw new UnrecoverableError('failed on purpose');
      return { step: 'done' };
    },
    { connection: wconn, prefix },
  );
  for (let i = 0; i < 200 && ((await queue.getJobState(finished)) !== 'completed' || (await queue.getJobState(failed)) !== 'failed'); i++) await new Promise((ok) => setTimeout(ok, 50));
  await worker.close();
  wconn.disconnect();
  want.set(finished, 'finished').set(failed, 'failed');
  // Still queued, waiting and delayed.
  want.set(await oldJob('old-queued-1'), 'running').set(await oldJob('old-queued-2'), 'running').set(await oldJob('old-delayed', { delay: 3600_000 }), 'running');
  // Cancelled while queued by the old version: the job gone, a tombstone listed in <prefix>:tombs.
  const cancelled = randomUUID();
  const t0 = Date.now() - 5000;
  const r = request('old-cancelled');
  const error = migrationError('CANCELLED', { name: r.vm }).toJSON();
  const tomb = toTask({ id: cancelled, state: 'failed', data: { request: r, checkpoint: { step: 'done', results: {}, history: [], error } }, timestamp: t0, finishedOn: t0 + 1000, attemptsMade: 0 });
  await redis.multi().set(`${prefix}:tomb:${cancelled}`, JSON.stringify(tomb), 'EX', 3600).zadd(`${prefix}:tombs`, t0 + 1000, cancelled).exec();
  want.set(cancelled, 'killed');
  // A tombstone that expired (still in the set) and jobs that are no task: nothing to list.
  await redis.zadd(`${prefix}:tombs`, t0, randomUUID());
  await queue.add('other', { hello: 1 } as never, { jobId: 'not-a-task' });
  await queue.add('other', { hello: 2 } as never, { jobId: randomUUID() });
  // One the new version enqueued (entered already) while the old one's tasks were there.
  const store = createTaskStore(config, queue, redis, () => redis.status === 'ready');
  want.set((await store.enqueue(request('new-one', 'h3'), new Date())).task.id, 'running');
}, 30_000);

afterAll(async () => {
  for (const s of started) await s.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await queue?.close();
  redis?.disconnect();
});

describe('tasks kept from before the task index', () => {
  it('are not listed before an API started on the prefix', async () => {
    expect(await redis.zcard(`${prefix}:tasks:all`)).toBe(1);
  });

  it('are listed exactly once, newest first, once two API replicas started at the same time; one of them entered them', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    const marker = JSON.parse(await doneMarker()) as { jobs: number; tombstones: number };
    // Every job of the queue was read (the new one's add kept its entry), the live tombstone only.
    expect(marker).toMatchObject({ jobs: 6, tombstones: 1 });
    expect(backfillLines()).toHaveLength(1);
    for (const svc of [a!, b!]) {
      const tasks = await listed(svc);
      expect(tasks.map((t) => t.id).sort()).toEqual([...want.keys()].sort());
      expect(Object.fromEntries(tasks.map((t) => [t.id, t.status]))).toEqual(Object.fromEntries(want));
      const order = [...tasks].sort((x, y) => y.created_at.localeCompare(x.created_at) || (y.id < x.id ? -1 : y.id > x.id ? 1 : 0));
      expect(tasks.map((t) => t.id)).toEqual(order.map((t) => t.id));
    }
    // Through the per-VM and per-host sets as well.
    expect((await listed(a!, '&vm=old-cancelled')).map((t) => t.status)).toEqual(['killed']);
    expect((await listed(a!, '&source_host=h1&destination_host=h2')).length).toBe(want.size - 1);
    expect(await redis.exists(backfillKeys(prefix).lock)).toBe(0);
  }, 30_000);

  it('are entered once per prefix: a restarted API does not run it again, and the listing stays the same', async () => {
    const marker = await doneMarker();
    for (const s of started.splice(0)) await s.close();
    const c = await start();
    await new Promise((ok) => setTimeout(ok, 300));
    expect(await redis.get(backfillKeys(prefix).done)).toBe(marker);
    expect(backfillLines()).toHaveLength(0);
    expect((await listed(c)).map((t) => t.id).sort()).toEqual([...want.keys()].sort());
    expect(await backfillIndex({ client: redis, queue, prefix })).toEqual({ state: 'already' });
  }, 30_000);

  it('a run that finds another holding the lock leaves it alone', async () => {
    const other = `kmtest-${randomUUID().slice(0, 8)}`;
    const keys = backfillKeys(other);
    await redis.set(keys.lock, 'someone-else', 'PX', 5000);
    try {
      expect(await backfillIndex({ client: redis, queue, prefix: other })).toEqual({ state: 'busy' });
      expect(await redis.get(keys.lock)).toBe('someone-else');
      expect(await redis.exists(keys.done)).toBe(0);
    } finally {
      await redis.del(keys.lock);
    }
  });
});
