/**
 * The queue's series at /metrics (bullmq_job_count, bullmq_job_completed_total,
 * bullmq_job_failed_total), against real queues in real Redis (a private key
 * prefix): `queueExposition` gives exactly the text BullMQ's
 * exportPrometheusMetrics gives for the same queue state, while reading one
 * point of BullMQ's per-minute lists where BullMQ reads all of them (a week,
 * 10,080 points each, with the workers' metrics on).
 */
import { randomUUID } from 'node:crypto';
import { MetricsTime, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { queueExposition } from '../api/metrics.js';
import { parseExposition } from './helpers/prom.js';

const url = process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const conn = new Redis(url, { maxRetriesPerRequest: null });
const queues: Queue[] = [];
const workerConns: Redis[] = [];

/** A queue that ran `ok` jobs to completion and failed `bad`, with one waiting and one delayed; its workers keep BullMQ's metrics. */
async function ranQueue(name: string, ok: number, bad: number): Promise<Queue> {
  const queue = new Queue(name, { connection: conn, prefix });
  queues.push(queue);
  let left = ok + bad;
  const wconn = conn.duplicate();
  workerConns.push(wconn);
  const done = new Promise<void>((resolve) => {
    const worker = new Worker(
      name,
      async (job) => {
        if (job.data.fail) throw new UnrecoverableError('refused');
        return 'ok';
      },
      { connection: wconn, prefix, metrics: { maxDataPoints: MetricsTime.ONE_WEEK } },
    );
    const end = () => {
      if (--left === 0) void worker.close().then(resolve);
    };
    worker.on('completed', end).on('failed', end);
  });
  await queue.addBulk(Array.from({ length: ok + bad }, (_, i) => ({ name: 'migrate', data: { fail: i < bad } })));
  await done;
  await queue.add('migrate', {});
  await queue.add('migrate', {}, { delay: 3_600_000 });
  return queue;
}

/** A week of per-minute points, as a queue's lists hold after its workers ran that long. */
async function weekOfPoints(queue: Queue): Promise<void> {
  for (const type of ['completed', 'failed']) {
    const key = queue.toKey(`metrics:${type}:data`);
    const have = await conn.llen(key);
    await conn.rpush(key, ...Array.from({ length: MetricsTime.ONE_WEEK - have }, (_, i) => String(i % 7)));
  }
}

let queue: Queue;
beforeAll(async () => {
  queue = await ranQueue('migrations', 5, 3);
  await weekOfPoints(queue);
});

afterAll(async () => {
  for (const q of queues) await q.close();
  const keys = await conn.keys(`${prefix}:*`);
  if (keys.length) await conn.del(...keys);
  for (const c of workerConns) c.disconnect();
  conn.disconnect();
});

describe('the queue exposition', () => {
  it("is BullMQ's exportPrometheusMetrics text, byte for byte, on the same queue", async () => {
    const ours = await queueExposition(queue);
    expect(ours).toBe(await queue.exportPrometheusMetrics());
    const x = parseExposition(`${ours}\n`);
    expect(x.types.get('bullmq_job_count')).toBe('gauge');
    expect(x.types.get('bullmq_job_completed_total')).toBe('counter');
    expect(x.types.get('bullmq_job_failed_total')).toBe('counter');
    expect(x.get('bullmq_job_completed_total', { queue: 'migrations' })).toBe(5);
    expect(x.get('bullmq_job_failed_total', { queue: 'migrations' })).toBe(3);
    expect(x.get('bullmq_job_count', { queue: 'migrations', state: 'completed' })).toBe(5);
    expect(x.get('bullmq_job_count', { queue: 'migrations', state: 'failed' })).toBe(3);
    expect(x.get('bullmq_job_count', { queue: 'migrations', state: 'waiting' })).toBe(1);
    expect(x.get('bullmq_job_count', { queue: 'migrations', state: 'delayed' })).toBe(1);
    expect(x.get('bullmq_job_count', { queue: 'migrations', state: 'active' })).toBe(0);
  });

  it('escapes a queue name the way BullMQ does', async () => {
    const odd = await ranQueue('mig"ra\\tions', 1, 1);
    expect(await queueExposition(odd)).toBe(await odd.exportPrometheusMetrics());
    expect(parseExposition(`${await queueExposition(odd)}\n`).get('bullmq_job_completed_total', { queue: 'mig"ra\\tions' })).toBe(1);
  });

  it('is the same on an empty queue that never kept metrics', async () => {
    const empty = new Queue('nothing-yet', { connection: conn, prefix });
    queues.push(empty);
    expect(await queueExposition(empty)).toBe(await empty.exportPrometheusMetrics());
  });

  it("reads the newest point of BullMQ's per-minute lists, not the week BullMQ reads", async () => {
    const spy = vi.spyOn(queue, 'getMetrics');
    try {
      await queueExposition(queue);
      expect(spy.mock.calls).toEqual([
        ['completed', 0, 0],
        ['failed', 0, 0],
      ]);
      const ours = await Promise.all(spy.mock.results.map((r) => r.value as ReturnType<Queue['getMetrics']>));
      expect(ours.map((m) => m.data.length)).toEqual([1, 1]);
      expect(ours.map((m) => m.count)).toEqual([MetricsTime.ONE_WEEK, MetricsTime.ONE_WEEK]);

      spy.mockClear();
      await queue.exportPrometheusMetrics();
      const bull = await Promise.all(spy.mock.results.map((r) => r.value as ReturnType<Queue['getMetrics']>));
      expect(bull.map((m) => m.data.length)).toEqual([MetricsTime.ONE_WEEK, MetricsTime.ONE_WEEK]);
    } finally {
      spy.mockRestore();
    }
  });
});
