/**
 * Reading tasks in one script (api/task-read.ts): the hash decoded as BullMQ
 * decodes it (table-tested), and, against real Redis, the same task as
 * BullMQ's own Job.fromId and getState give toTask, in every state a job
 * passes through, plus tombstones and ids with nothing behind them.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTasks, taskFromHash, type ReadKeys } from '../api/task-read.js';
import { loadConfig } from '../shared/config.js';
import { initialCheckpoint, type MigrationJobData, type MigrationRequest } from '../shared/job.js';
import { apiRedis, createQueue, JOB_NAME } from '../shared/queue.js';
import { toTask, type StateClass } from '../shared/task.js';

const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379' } });
const now = new Date('2026-11-20T10:00:00.000Z');
const request = (vm: string): MigrationRequest => ({
  vm, remoteHost: 'h2', sourceUri: 'qemu+tcp://h1/system', destinationUri: 'qemu+tcp://h2/system', requestedAt: now.toISOString(),
  bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
});
const data = (vm: string): MigrationJobData => ({ request: request(vm), checkpoint: initialCheckpoint(now) });

describe('taskFromHash', () => {
  const base = ['data', JSON.stringify(data('vm-a')), 'timestamp', String(now.getTime())];
  it.each([
    { what: 'a fresh job: no attempts, no progress, no times', flat: base, expect: { attempts: 0, started_at: null, finished_at: null } },
    { what: 'attempts under BullMQ\'s short field (atm)', flat: [...base, 'atm', '2'], expect: { attempts: 2 } },
    { what: 'attempts under the long field', flat: [...base, 'attemptsMade', '3'], expect: { attempts: 3 } },
    { what: 'processed and finished times of a finished job', state: 'completed', flat: [...base, 'processedOn', String(now.getTime() + 1000), 'finishedOn', String(now.getTime() + 5000)], expect: { started_at: '2026-11-20T10:00:01.000Z', finished_at: '2026-11-20T10:00:05.000Z' } },
    { what: 'a zero time as BullMQ reads it: not set', flat: [...base, 'processedOn', '0'], expect: { started_at: null } },
  ])('$what', ({ flat, state, expect: want }) => {
    expect(taskFromHash('3f0b8a9e-0000-4000-8000-000000000001', state ?? 'waiting', flat)).toMatchObject(want);
  });

  it.each([
    { what: 'no data', flat: ['timestamp', '1'] },
    { what: 'data that is not JSON', flat: ['data', '{oops', 'timestamp', '1'] },
    { what: 'a job of something else (no request)', flat: ['data', '{"x":1}', 'timestamp', '1'] },
  ])('is null for $what', ({ flat }) => {
    expect(taskFromHash('3f0b8a9e-0000-4000-8000-000000000001', 'waiting', flat)).toBeNull();
  });
});

describe('readTasks against BullMQ on real Redis', () => {
  let redis: Redis;
  let queue: ReturnType<typeof createQueue>;
  let worker: Worker;
  let keys: ReadKeys;
  const tombKey = (id: string) => `${prefix}:tomb:${id}`;

  beforeAll(async () => {
    redis = apiRedis(config);
    await new Promise((r) => redis.once('ready', r));
    queue = createQueue(config, redis);
    // No processor: jobs are taken and ended by hand, as a worker would.
    worker = new Worker(queue.name, null, { connection: new Redis(config.redis.url, { maxRetriesPerRequest: null }), prefix: config.redis.prefix, autorun: false });
    const k = queue.keys;
    keys = {
      completed: k.completed!, failed: k.failed!, delayed: k.delayed!, prioritized: k.prioritized!, active: k.active!, waitingChildren: k['waiting-children']!,
      job: (id) => queue.toKey(id), tomb: tombKey,
    };
  });

  afterAll(async () => {
    await worker.close();
    const all = await redis.keys(`${prefix}:*`);
    if (all.length) await redis.del(...all);
    await queue.close();
    redis.disconnect();
  });

  /** What GET /tasks/:id rendered before: BullMQ's Job.fromId and getState through toTask. */
  async function bullmqTask(id: string) {
    const job = await queue.getJob(id);
    return toTask({
      id, state: await job!.getState(), data: job!.data, failedReason: job!.failedReason, progress: job!.progress, timestamp: job!.timestamp,
      processedOn: job!.processedOn, finishedOn: job!.finishedOn, attemptsMade: job!.attemptsMade,
    });
  }

  const add = async (vm: string, opts: { delay?: number; attempts?: number } = {}) => {
    const id = randomUUID();
    await queue.add(JOB_NAME, data(vm), { jobId: id, timestamp: now.getTime(), ...opts });
    return id;
  };

  it('renders each state as BullMQ\'s own reading does', async () => {
    const waiting = await add('vm-wait');
    const delayed = await add('vm-delay', { delay: 60_000 });
    const token = 'tok-1';
    // Taken in the order added: the waiting one first; the delayed one is not due.
    const taken = [await add('vm-active'), await add('vm-done'), await add('vm-failed', { attempts: 1 })];
    const jobs = [];
    for (let i = 0; i < 4; i++) jobs.push(await worker.getNextJob(token));
    const byId = new Map(jobs.map((j) => [j!.id, j!]));
    expect([...byId.keys()].sort()).toEqual([waiting, ...taken].sort());
    await byId.get(taken[0]!)!.updateProgress({ percent: 40 });
    await byId.get(taken[1]!)!.moveToCompleted('ok', token, false);
    await byId.get(taken[2]!)!.moveToFailed(new Error('KCHVM0001E: failed on purpose'), token, false);
    const ids = [waiting, delayed, ...taken];
    const read = await readTasks(redis, keys, ids);
    expect(read.map((t) => t?.status)).toEqual(['running', 'running', 'running', 'finished', 'failed']);
    for (const [i, id] of ids.entries()) expect(read[i], id).toEqual(await bullmqTask(id));

    // A status filter's classes: jobs of other classes read as null, the rest exactly as unfiltered.
    const only = async (classes: StateClass[]) => (await readTasks(redis, keys, ids, classes)).map((t, i) => (t ? (expect(t).toEqual(read[i]), t.status) : null));
    expect(await only(['failed'])).toEqual([null, null, null, null, 'failed']);
    expect(await only(['completed', 'failed'])).toEqual([null, null, null, 'finished', 'failed']);
    expect(await only(['other'])).toEqual(['running', 'running', 'running', null, null]);
    expect(await only(['other', 'completed', 'failed'])).toEqual(read.map((t) => t!.status));
    expect(await only([])).toEqual([null, null, null, null, null]);
  });

  it('gives a removed job\'s tombstone, and null where there is nothing', async () => {
    const id = await add('vm-tomb');
    const task = await bullmqTask(id);
    await queue.remove(id);
    const killed = { ...task, status: 'killed' };
    await redis.set(tombKey(id), JSON.stringify(killed));
    const nothing = randomUUID();
    expect(await readTasks(redis, keys, [id, nothing])).toEqual([killed, null]);
    // A tombstone reads whatever the filter: it is small, and the listing's own filter sees its status.
    expect(await readTasks(redis, keys, [id, nothing], ['completed'])).toEqual([killed, null]);
    expect(await readTasks(redis, keys, [])).toEqual([]);
  });
});
