/**
 * Retention on real Redis: finished and failed tasks stay queryable for
 * tasks.keep_finished (7 days by default) and go after it, cancelled-while-
 * queued tasks (tombstones) too. A plain BullMQ worker ends the jobs here:
 * what is tested is the queue's keeping, not a migration.
 */
import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createTaskStore } from '../api/tasks.js';
import { loadConfig } from '../shared/config.js';
import type { MigrationRequest } from '../shared/job.js';
import { apiRedis, createQueue, workerRedis } from '../shared/queue.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(keep?: number) {
  const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
  const config = loadConfig({
    env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379', ...(keep ? { KVM_MIGRATE_TASKS_KEEP_FINISHED: String(keep) } : {}) },
  });
  const redis = apiRedis(config);
  await new Promise((r) => redis.once('ready', r));
  const queue = createQueue(config, redis);
  const store = createTaskStore(config, queue, redis, () => redis.status === 'ready');
  const wconn = workerRedis(config);
  // Jobs for VMs named "fail-*" fail for good, the rest complete.
  const worker = new Worker(
    config.redis.queue,
    async (job) => {
      if (String(job.data.request.vm).startsWith('fail-')) throw new UnrecoverableError('failed on purpose');
      return { step: 'done' };
    },
    { connection: wconn, prefix, autorun: true },
  );
  cleanups.push(async () => {
    await worker.close();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queue.close();
    redis.disconnect();
    wconn.disconnect();
  });
  const request = (vm: string): MigrationRequest => ({
    vm, remoteHost: 'h2', sourceUri: 'qemu+tcp://h1/system', destinationUri: 'qemu+tcp://h2/system', requestedAt: new Date().toISOString(),
    bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
  });
  const ended = async (id: string) => {
    for (let i = 0; i < 100; i++) {
      const t = await store.get(id);
      if (t && t.status !== 'running') return t;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`task ${id} did not end`);
  };
  return { config, redis, queue, store, request, ended, prefix, worker };
}

describe('retention', () => {
  it('keeps finished and failed tasks for 7 days by default: the jobs carry that age', async () => {
    const { config, store, queue, request, ended } = await setup();
    expect(config.tasks.keep_finished).toBeGreaterThanOrEqual(7 * 24 * 3600);
    const ok = await store.enqueue(request('vm-ok'), new Date());
    const bad = await store.enqueue(request('fail-vm'), new Date());
    expect((await ended(ok.task.id)).status).toBe('finished');
    expect((await ended(bad.task.id)).status).toBe('failed');
    const job = await queue.getJob(ok.task.id);
    expect(job?.opts.removeOnComplete).toEqual({ age: 7 * 24 * 3600 });
    expect(job?.opts.removeOnFail).toEqual({ age: 7 * 24 * 3600 });
    expect((await store.list()).map((t) => t.id).sort()).toEqual([ok.task.id, bad.task.id].sort());
  });

  it('drops tasks older than keep_finished and keeps younger ones (2 s here)', async () => {
    const { store, request, ended, redis, prefix, worker } = await setup(2);
    const old = await store.enqueue(request('vm-old'), new Date());
    const oldFail = await store.enqueue(request('fail-old'), new Date());
    await ended(old.task.id);
    await ended(oldFail.task.id);
    // A task cancelled while queued leaves a tombstone with the same lifetime. The worker
    // here ends jobs at once, so pause it to be sure this one is still queued.
    await worker.pause();
    const gone = await store.enqueue(request('vm-cancelled'), new Date());
    expect((await store.cancel(gone.task.id, new Date())).status).toBe('killed');
    worker.resume();
    const ttl = await redis.ttl(`${prefix}:tomb:${gone.task.id}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2);
    expect((await store.get(gone.task.id))?.status).toBe('killed');
    expect(await store.get(old.task.id)).not.toBeNull();
    await new Promise((r) => setTimeout(r, 3000));
    // BullMQ trims by age when the next job ends.
    const young = await store.enqueue(request('vm-young'), new Date());
    const youngFail = await store.enqueue(request('fail-young'), new Date());
    await ended(young.task.id);
    await ended(youngFail.task.id);
    expect(await store.get(old.task.id)).toBeNull();
    expect(await store.get(oldFail.task.id)).toBeNull();
    expect(await store.get(young.task.id)).not.toBeNull();
    expect(await store.get(youngFail.task.id)).not.toBeNull();
    expect(await redis.exists(`${prefix}:tomb:${gone.task.id}`)).toBe(0);
    expect(await store.get(gone.task.id)).toBeNull();
  });
});
