/**
 * Event streams are woken by their job's BullMQ events (api/task-events.ts),
 * against a real queue in real Redis (a private key prefix): a wait armed
 * with a 20 s fallback ends at the job's progress and at its removal, an
 * event for another job does not end it, and close() releases every wait.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { queueSignals } from '../api/task-events.js';
import { loadConfig } from '../shared/config.js';

const url = process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const config = loadConfig({ env: { KVM_MIGRATE_REDIS_URL: url, KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_QUEUE: 'signals' } });
const conn = new Redis(url, { maxRetriesPerRequest: null });
const queue = new Queue('signals', { connection: conn, prefix });
const signals = queueSignals(config, { warn: () => undefined, info: () => undefined });
const FALLBACK_MS = 20_000;

/** Which settles first: the wait, or `ms`. */
const outcome = (p: Promise<void>, ms: number) => Promise.race([p.then(() => 'woken' as const), new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms))]);

afterAll(async () => {
  await signals.close();
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  conn.disconnect();
});

describe('task signals', () => {
  it("wakes a wait at its own job's events (progress, removal) and not at another job's", async () => {
    // The first wait opens the QueueEvents reader, which sees only events made after it reads: prime it.
    const probe = await queue.add('x', {}, { jobId: `probe-${randomUUID()}` });
    for (let n = 0, deadline = Date.now() + 10_000; Date.now() < deadline; n++) {
      const w = signals.next(String(probe.id), FALLBACK_MS);
      await probe.updateProgress(n);
      if ((await outcome(w, 200)) === 'woken') break;
    }
    const a = await queue.add('x', {}, { jobId: `a-${randomUUID()}` });
    const b = await queue.add('x', {}, { jobId: `b-${randomUUID()}` });

    let wait = signals.next(String(a.id), FALLBACK_MS);
    await b.updateProgress(10);
    expect(await outcome(wait, 500)).toBe('still waiting');
    await a.updateProgress(20);
    expect(await outcome(wait, 3000)).toBe('woken');

    wait = signals.next(String(a.id), FALLBACK_MS);
    await a.remove();
    expect(await outcome(wait, 3000)).toBe('woken');
  });

  it('without an event a wait ends after its fallback time', async () => {
    const wait = signals.next(`quiet-${randomUUID()}`, 150);
    expect(await outcome(wait, 100)).toBe('still waiting');
    expect(await outcome(wait, 3000)).toBe('woken');
  });

  it('with Redis unreachable: waits end at their fallback, the outage is logged once, close() is bounded', async () => {
    const down = loadConfig({ env: { KVM_MIGRATE_REDIS_URL: 'redis://127.0.0.1:1', KVM_MIGRATE_REDIS_PREFIX: prefix } });
    const warned: string[] = [];
    const own = queueSignals(down, { warn: (_o, m) => void warned.push(m), info: () => undefined });
    const wait = own.next('x', 300);
    expect(await outcome(wait, 100)).toBe('still waiting');
    expect(await outcome(wait, 3000)).toBe('woken');
    await new Promise((r) => setTimeout(r, 2500)); // several reconnect attempts
    expect(warned).toHaveLength(1);
    const t = Date.now();
    await own.close();
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it('close() ends every wait at once', async () => {
    const own = queueSignals(config, { warn: () => undefined, info: () => undefined });
    const waits = [own.next('x', FALLBACK_MS), own.next('y', FALLBACK_MS)];
    await own.close();
    expect(await outcome(Promise.all(waits).then(() => undefined), 1000)).toBe('woken');
  });
});
