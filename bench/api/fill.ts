/**
 * Fills a Redis prefix with N stored tasks as the service leaves them: jobs
 * added with the API's job options and entered in the task index the way
 * api/tasks.ts enqueue does, then ended by a BullMQ worker (most finished,
 * some failed), with the newest few still queued. A history of ended tasks
 * is what a store of 100,000 tasks really is (tasks.keep_finished keeps a
 * week of them); a queue of 100,000 waiting migrations is not.
 *
 * Each job carries the checkpoint and progress a real migration leaves (the
 * stage history, libvirt's final figures), so the tasks the listing reads
 * and serialises are as large as real ones.
 */
import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { backfillKeys } from '../../api/task-backfill.js';
import { hostOfUri, normHost, TaskIndex } from '../../api/task-index.js';
import { destinationUri, type Config } from '../../shared/config.js';
import { migrationError } from '../../shared/errors.js';
import type { Checkpoint, MigrationJobData, MigrationRequest } from '../../shared/job.js';
import { createQueue, JOB_NAME, jobOptions, vmLockKey } from '../../shared/queue.js';

export interface FillPlan {
  count: number;
  /** Every n-th task failed (the rest of the ended ones finished). */
  failedEvery: number;
  /** The newest tasks stay queued (running), as in a live service. */
  queued: number;
  /** Creation times one every spacingMs up to now: 5 s puts 100,000 within tasks.keep_finished's week. */
  spacingMs: number;
  /** VMs the tasks cycle through, and destination hosts. */
  vms: number;
  destinations: string[];
}

export const fillPlan = (count: number): FillPlan => ({ count, failedEvery: 20, queued: Math.min(50, Math.floor(count / 10)), spacingMs: 5000, vms: 500, destinations: ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5'] });

const iso = (ms: number) => new Date(ms).toISOString();

/** The job data a migration leaves once it ended (finished, or failed in the migrate stage). */
export function endedData(request: MigrationRequest, createdMs: number, failed: boolean): { data: MigrationJobData; progress: object } {
  const at = (s: number) => iso(createdMs + s * 1000);
  const stages = ['check', 'connect', 'prepare', 'migrate'];
  const history: Checkpoint['history'] = [{ at: at(0), stage: 'queue', event: 'queued' }];
  stages.forEach((stage, i) => {
    history.push({ at: at(i + 1), stage, event: 'start' });
    if (stage !== 'migrate') history.push({ at: at(i + 1.2), stage, event: 'done', detail: stage === 'check' ? '9 checks passed' : undefined });
  });
  const stats = { timeElapsed: 4210, dataTotal: 1111490560, dataProcessed: 268435456, dataRemaining: 0, memTotal: 1073741824, memProcessed: 268435456, memBps: 125829120, memDirtyRate: 1048576, memIteration: 3, downtime: 42, setupTime: 12 };
  const checkpoint: Checkpoint = failed
    ? {
        step: 'done',
        results: { migrate: { startedAt: at(4), endedAt: at(8), outcome: 'failed' }, recover: { actions: ['aborted the libvirt job', 'guest running on the source'], guestOn: 'source' } },
        history: [...history, { at: at(8), stage: 'migrate', event: 'error', detail: 'operation failed: migration job: unexpectedly failed' }, { at: at(9), stage: 'recover', event: 'done', detail: 'guest running on the source' }],
        error: migrationError('MIGRATION_FAILED', { name: request.vm, detail: 'operation failed: migration job: unexpectedly failed' }).toJSON(),
      }
    : {
        step: 'done',
        results: { migrate: { startedAt: at(4), endedAt: at(8), outcome: 'completed', stats }, finish: { persistent: true, sourceUndefined: true } },
        history: [...history, { at: at(8), stage: 'migrate', event: 'done', detail: 'completed in 4.2 s, downtime 42 ms' }, { at: at(8.5), stage: 'finish', event: 'start' }, { at: at(9), stage: 'finish', event: 'done' }],
      };
  const progress = { percent: failed ? 61 : 100, dataTotal: stats.dataTotal, dataProcessed: stats.dataProcessed, dataRemaining: 0, memoryBps: stats.memBps, iteration: 3, elapsedMs: 4210, ...(failed ? {} : { downtimeMs: 42 }) };
  return { data: { request, checkpoint }, progress };
}

export function requestFor(config: Config, vm: string, remoteHost: string, createdMs: number): MigrationRequest {
  return {
    vm,
    remoteHost,
    sourceUri: config.libvirt.source_uri,
    destinationUri: destinationUri(config.libvirt.destination_uri_template, remoteHost),
    requestedAt: iso(createdMs),
    bandwidth: config.migration_max_bandwidth,
    downtimeMs: config.migration_downtime,
    timeoutSeconds: config.migration_destination_timeout,
    keepSourceDefinition: config.libvirt.keep_source_definition,
    deadlineAction: 'abort',
    autoConverge: false,
    compression: null,
  };
}

const BATCH = 1000;

/** Adds `plan.count` tasks under config.redis.prefix; returns how long it took. */
export async function fillTasks(config: Config, plan: FillPlan, now = Date.now()): Promise<{ ms: number; failed: number; queued: number }> {
  const t0 = performance.now();
  const client = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  // Every task here is entered as the API enters it: the prefix is one an API started on while
  // it was empty, which found nothing to bring into the index (task-backfill.ts) and said so.
  await client.set(backfillKeys(config.redis.prefix).done, JSON.stringify({ at: new Date(now).toISOString(), jobs: 0, tombstones: 0 }));
  const queue = createQueue(config, client);
  const index = new TaskIndex(client, config.redis.prefix);
  const source = hostOfUri(config.libvirt.source_uri);
  const ended = plan.count - plan.queued;
  const progressOf = new Map<string, object>();
  let failed = 0;
  const add = async (from: number, to: number) => {
    for (let b = from; b < to; b += BATCH) {
      const jobs = [];
      const entries: Parameters<TaskIndex['add']>[0][] = [];
      for (let i = b; i < Math.min(to, b + BATCH); i++) {
        const id = randomUUID();
        const createdMs = now - (plan.count - i) * plan.spacingMs;
        const vm = `vm-${String(i % plan.vms).padStart(4, '0')}`;
        const host = plan.destinations[i % plan.destinations.length]!;
        const request = requestFor(config, vm, host, createdMs);
        const fail = i % plan.failedEvery === 0;
        const { data, progress } = i < ended ? endedData(request, createdMs, fail) : { data: { request, checkpoint: { step: 'check' as const, results: {}, history: [{ at: iso(createdMs), stage: 'queue', event: 'queued' as const }] } }, progress: null };
        if (i < ended) progressOf.set(id, { ...progress, fail });
        if (i < ended && fail) failed++;
        entries.push({ id, createdMs, vm, sourceHost: source, destinationHost: normHost(host) });
        // The per-VM lock would refuse a VM's second task while its first is stored unended: one lock per task here.
        jobs.push({ name: JOB_NAME, data, opts: { ...jobOptions(config, id, vmLockKey(config.libvirt.source_uri, `${vm}#${i}`)), timestamp: createdMs } });
      }
      // ioredis writes every call without waiting for the answer before: a batch is one pipeline.
      await Promise.all(entries.map((e) => index.add(e)));
      await queue.addBulk(jobs);
    }
  };
  await add(0, ended);
  // BullMQ's own worker ends the jobs, so completed and failed jobs are exactly what BullMQ stores.
  const connection = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const worker = new Worker<MigrationJobData>(
    config.redis.queue,
    async (job) => {
      const p = progressOf.get(String(job.id)) as { fail: boolean } | undefined;
      if (!p) throw new UnrecoverableError('not a fill job');
      const { fail, ...progress } = p;
      await job.updateProgress(progress);
      if (fail) throw new UnrecoverableError(job.data.checkpoint?.error?.reason ?? 'failed');
    },
    { connection, prefix: config.redis.prefix, concurrency: 200, autorun: false },
  );
  if (ended > 0) {
    const done = new Promise<void>((resolve) => {
      let n = 0;
      const tick = () => ++n === ended && resolve();
      worker.on('completed', tick);
      worker.on('failed', tick);
    });
    void worker.run();
    await done;
  }
  await worker.close();
  connection.disconnect();
  await add(ended, plan.count);
  await queue.close();
  client.disconnect();
  return { ms: performance.now() - t0, failed, queued: plan.queued };
}

/** Removes every key of a prefix (SCAN + UNLINK in batches: no KEYS on a large store). */
export async function dropPrefix(url: string, prefix: string): Promise<number> {
  const client = new Redis(url);
  let n = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 2000);
      cursor = next;
      if (keys.length) n += await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return n;
}
