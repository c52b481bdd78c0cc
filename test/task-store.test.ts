/**
 * The task store's cancel rules against real Redis (no libvirt needed): a job
 * that never started leaves the queue; one that started stays for a worker to
 * abort and recover; one past the copy cannot be cancelled.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTaskStore, type TaskStore } from '../api/tasks.js';
import { loadConfig } from '../shared/config.js';
import { cancelKey } from '../shared/control.js';
import { isMigrationError } from '../shared/errors.js';
import type { Checkpoint, MigrationRequest } from '../shared/job.js';
import { apiRedis, createQueue } from '../shared/queue.js';

const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379' } });
let redis: Redis;
let store: TaskStore;
let queue: ReturnType<typeof createQueue>;
const now = new Date();

const request = (vm: string): MigrationRequest => ({
  vm, remoteHost: 'h2', sourceUri: 'qemu+tcp://h1/system', destinationUri: 'qemu+tcp://h2/system', requestedAt: now.toISOString(),
  bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
});

/** Rewrites the checkpoint as a worker would have left it. */
async function leave(id: string, checkpoint: Checkpoint) {
  const job = await queue.getJob(id);
  await job!.updateData({ ...job!.data, checkpoint });
}

const codeOf = (e: unknown) => (isMigrationError(e) ? e.code : String(e));

beforeAll(async () => {
  redis = apiRedis(config);
  await new Promise((r) => redis.once('ready', r));
  queue = createQueue(config, redis);
  store = createTaskStore(config, queue, redis, () => redis.status === 'ready');
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await queue.close();
  redis.disconnect();
});

describe('cancel', () => {
  it('takes a job that never started out of the queue: killed at once, VM free again', async () => {
    const { task } = await store.enqueue(request('vm-a'), now);
    const killed = await store.cancel(task.id, now);
    expect(killed.status).toBe('killed');
    expect(await queue.getJob(task.id)).toBeUndefined();
    expect((await store.get(task.id))?.status).toBe('killed');
    expect(await store.activeFor('qemu+tcp://h1/system', 'vm-a')).toBeNull();
  });

  it('leaves a job that started (a crashed worker left it waiting) for a worker to abort and recover', async () => {
    const { task } = await store.enqueue(request('vm-b'), now);
    await leave(task.id, { step: 'migrate', results: { migrate: { startedAt: now.toISOString() } }, history: [{ at: now.toISOString(), stage: 'migrate', event: 'start' }] });
    expect(await (await queue.getJob(task.id))!.getState()).toBe('waiting');
    const t = await store.cancel(task.id, now);
    expect(t.status).toBe('running');
    expect(await queue.getJob(task.id)).toBeDefined();
    expect(await redis.exists(cancelKey(prefix, task.id))).toBe(1);
    expect(await store.activeFor('qemu+tcp://h1/system', 'vm-b')).toBe(task.id);
  });

  it('refuses once the copy is over and the job reconciles or finishes (409 KMIG0012E)', async () => {
    const { task } = await store.enqueue(request('vm-c'), now);
    await leave(task.id, { step: 'recover', results: {}, history: [{ at: now.toISOString(), stage: 'migrate', event: 'start' }] });
    expect(codeOf(await store.cancel(task.id, now).catch((e) => e))).toBe('KMIG0012E');
  });

  it('refuses an ended task (409 KMIG0010E) and an unknown one (404)', async () => {
    const { task } = await store.enqueue(request('vm-d'), now);
    await store.cancel(task.id, now);
    expect(codeOf(await store.cancel(task.id, now).catch((e) => e))).toBe('KMIG0010E');
    expect(codeOf(await store.cancel(randomUUID(), now).catch((e) => e))).toBe('KMIG0004E');
    expect(codeOf(await store.cancel('meta', now).catch((e) => e))).toBe('KMIG0004E');
  });
});
