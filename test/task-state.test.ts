/**
 * The task store reads a job's state itself (one pipeline for a whole page,
 * without scanning the wait list): on real Redis it must agree with BullMQ's
 * getJobState in every state a migration job passes through.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskIndex } from '../api/task-index.js';
import { createTaskStore, type TaskStore } from '../api/tasks.js';
import { loadConfig } from '../shared/config.js';
import { initialCheckpoint, type MigrationJobData } from '../shared/job.js';
import { apiRedis, createQueue, JOB_NAME, workerRedis } from '../shared/queue.js';

const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379' } });
const redis = apiRedis(config);
const queue = createQueue(config, redis);
let store: TaskStore;

const data = (vm: string): MigrationJobData => ({
  request: {
    vm, remoteHost: 'h2', sourceUri: 'qemu+tcp://h1/system', destinationUri: 'qemu+tcp://h2/system', requestedAt: new Date().toISOString(),
    bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
  },
  checkpoint: initialCheckpoint(new Date()),
});

beforeAll(async () => {
  await new Promise((r) => redis.once('ready', r));
  store = createTaskStore(config, queue, redis, () => redis.status === 'ready');
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await queue.close();
  redis.disconnect();
});

describe('job states', () => {
  it('agree with BullMQ for waiting (also the oldest of 300, at the far end of the wait list), delayed, prioritized, active, completed and failed jobs', async () => {
    const waiting = Array.from({ length: 300 }, () => randomUUID());
    await queue.addBulk(waiting.map((id, i) => ({ name: JOB_NAME, data: data(`w-${i}`), opts: { jobId: id } })));
    const add = (vm: string, opts: object) => queue.add(JOB_NAME, data(vm), { jobId: randomUUID(), ...opts }).then((j) => String(j.id));
    const delayed = await add('delayed', { delay: 60_000 });
    const prioritized = await add('prioritized', { priority: 5 });
    // One at a time, oldest first: the first fails, the second completes, the third is held.
    const conn = workerRedis(config);
    const seen: string[] = [];
    const worker = new Worker<MigrationJobData>(
      config.redis.queue,
      async (job) => {
        seen.push(String(job.id));
        if (seen.length === 1) throw new Error('failed on purpose');
        if (seen.length === 2) return { step: 'done' };
        return new Promise(() => undefined);
      },
      { connection: conn, prefix, concurrency: 1 },
    );
    try {
      for (let i = 0; i < 200 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toEqual(waiting.slice(0, 3));
      const ids = [waiting[3]!, waiting[299]!, delayed, prioritized, ...seen];
      const bull = await Promise.all(ids.map((id) => queue.getJobState(id)));
      expect(bull).toEqual(['waiting', 'waiting', 'delayed', 'prioritized', 'failed', 'completed', 'active']);
      expect(await Promise.all(ids.map(async (id) => (await store.get(id))?.queue_state))).toEqual(bull);
      // A listing's page reads them all in one go: the same states.
      const index = new TaskIndex(redis, prefix);
      for (const id of ids) await index.add({ id, createdMs: (await queue.getJob(id))!.timestamp, vm: 'v', sourceHost: 'h1', destinationHost: 'h2' });
      const { tasks } = await store.page({ limit: 500, after: null, params: {} });
      const byId = new Map(tasks.map((t) => [t.id, t.queue_state]));
      expect(ids.map((id) => byId.get(id))).toEqual(bull);
    } finally {
      await worker.close(true);
      conn.disconnect();
    }
  }, 30_000);
});
