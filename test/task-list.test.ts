/**
 * GET /tasks in pages and GET /tasks/:id/series: a real API in this process
 * on real Redis, with 250 tasks entered by the task store as the API enqueues
 * them (no migration worker: a plain BullMQ worker ends the first few as
 * finished or failed, cancels make tombstones, the rest stay queued). Every
 * task appears exactly once across pages, in order, while tasks are added
 * between pages; the filters select what they say; bad parameters are 400s
 * that change nothing; the index follows the retention.
 */
import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberOf, TaskIndex } from '../api/task-index.js';
import { encodeCursor, MAX_EXAMINED, parseTaskListQuery } from '../api/task-list.js';
import { createTaskStore, type TaskStore } from '../api/tasks.js';
import { loadConfig } from '../shared/config.js';
import { initialCheckpoint, type MigrationRequest } from '../shared/job.js';
import { apiRedis, createQueue, JOB_NAME, workerRedis } from '../shared/queue.js';
import { redisSeriesStore } from '../shared/series.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api } from './helpers/service.js';

interface Model {
  id: string;
  vm: string;
  createdMs: number;
  src: string;
  dst: string;
  status: string;
}

let svc: InProc;
let store: TaskStore;
let redis: Redis;
let queue: ReturnType<typeof createQueue>;
const model: Model[] = [];
const base = Date.now() - 10 * 60_000;

const order = (a: Model, b: Model) => b.createdMs - a.createdMs || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0);
const ids = (list: { id: string }[]) => list.map((t) => t.id);
const expected = (keep: (m: Model) => boolean) => ids([...model].filter(keep).sort(order));

function request(vm: string, src: string, dst: string, at: number): MigrationRequest {
  return {
    vm, remoteHost: dst, sourceUri: `qemu+tcp://${src}/system`, destinationUri: `qemu+tcp://${dst}/system`, requestedAt: new Date(at).toISOString(),
    bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 60, keepSourceDefinition: false,
  };
}

async function add(vm: string, at: number, src = 'h1', dst = 'h2', status = 'running'): Promise<Model> {
  const r = await store.enqueue(request(vm, src, dst, at), new Date(at));
  expect(r.created).toBe(true);
  const m = { id: r.task.id, vm, createdMs: at, src: src.toLowerCase(), dst: dst.toLowerCase(), status };
  model.push(m);
  return m;
}

/** Every page from `path`, following Link; checks X-Next-Cursor agrees with it. */
async function walk(path: string, between?: () => Promise<void>): Promise<{ pages: { id: string; vm: string }[][] }> {
  const pages: { id: string; vm: string }[][] = [];
  let next: string | null = path;
  while (next) {
    const r = await api(svc.url, 'GET', next);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Array.isArray(r.body)).toBe(true);
    pages.push(r.body);
    const link = r.headers.get('link');
    const cursor = r.headers.get('x-next-cursor');
    next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    expect(cursor === null ? null : new URL(next!, svc.url).searchParams.get('cursor')).toBe(cursor);
    if (pages.length > 200) throw new Error('too many pages');
    await between?.();
  }
  return { pages };
}

beforeAll(async () => {
  svc = await startInProc();
  redis = apiRedis(svc.config);
  await new Promise((r) => redis.once('ready', r));
  queue = createQueue(svc.config, redis);
  store = createTaskStore(svc.config, queue, redis, () => redis.status === 'ready');
  // The first 20 are ended by a plain BullMQ worker: "fail-*" fail, the rest finish.
  const wconn = workerRedis(svc.config);
  const worker = new Worker(
    svc.config.redis.queue,
    async (job) => {
      if (String(job.data.request.vm).startsWith('fail-')) throw new UnrecoverableError('failed on purpose');
      return { step: 'done' };
    },
    { connection: wconn, prefix: svc.prefix },
  );
  // Three tasks share each millisecond: their order is by id.
  const at = (i: number) => base + Math.floor(i / 3) * 1000;
  const host = (i: number) => (i % 5 === 0 ? 'H4.Example' : i % 2 ? 'h3' : 'h2');
  const src = (i: number) => (i % 7 === 0 ? 'h9' : 'h1');
  for (let i = 0; i < 20; i++) await add(`${i % 2 ? 'fail' : 'ok'}-${String(i).padStart(3, '0')}`, at(i), src(i), host(i), i % 2 ? 'failed' : 'finished');
  for (let n = 0; n < 200; n++) {
    const left = await Promise.all(model.map((m) => store.get(m.id)));
    if (left.every((t) => t?.status !== 'running')) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await worker.close();
  wconn.disconnect();
  for (let i = 20; i < 250; i++) await add(`vm-${String(i).padStart(3, '0')}`, at(i), src(i), host(i));
  // Cancelled while queued: tombstones, listed through their index entries.
  for (const m of model.filter((_, i) => i >= 20 && i % 10 === 3)) {
    expect((await store.cancel(m.id, new Date())).status).toBe('killed');
    m.status = 'killed';
  }
}, 120_000);

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await svc?.close();
});

describe('GET /tasks in pages (real Redis, 250 tasks)', () => {
  it('the tasks are what the model says', async () => {
    const all = await store.list();
    expect(all.length).toBe(250);
    const byId = new Map(model.map((m) => [m.id, m]));
    for (const t of all) expect(t.status, t.vm).toBe(byId.get(t.id)!.status);
    expect(ids(all)).toEqual(expected(() => true));
  });

  it('every task appears exactly once across pages, newest first (id breaks ties), while tasks are added between pages', async () => {
    const before = expected(() => true);
    let added = 0;
    const { pages } = await walk('/tasks?limit=37', async () => {
      // Newer than every page already read, so never in a later one.
      await add(`new-${added++}`, Date.now(), 'h1', 'h8');
    });
    expect(pages.map((p) => p.length)).toEqual([37, 37, 37, 37, 37, 37, 28]);
    expect(ids(pages.flat())).toEqual(before);
    // Without a limit: 100 a page.
    const first = await api(svc.url, 'GET', '/tasks');
    expect(first.body.length).toBe(100);
    expect(ids(first.body)).toEqual(expected(() => true).slice(0, 100));
    expect(first.headers.get('link')).toMatch(/^<\/tasks\?cursor=[A-Za-z0-9_-]+>; rel="next"$/);
    // One page with everything: no next link.
    const whole = await api(svc.url, 'GET', '/tasks?limit=500');
    expect(ids(whole.body)).toEqual(expected(() => true));
    expect(whole.headers.get('link')).toBeNull();
    expect(whole.headers.get('x-next-cursor')).toBeNull();
  });

  it.each([
    ['vm=vm-042', (m: Model) => m.vm === 'vm-042'],
    ['vm=nothing-like-it', () => false],
    ['host=h4.EXAMPLE', (m: Model) => m.dst === 'h4.example'],
    ['host=h9', (m: Model) => m.src === 'h9'],
    ['host=h3', (m: Model) => m.dst === 'h3'],
    ['destination_host=h3', (m: Model) => m.dst === 'h3'],
    ['source_host=h9', (m: Model) => m.src === 'h9'],
    ['source_host=h1&destination_host=h2', (m: Model) => m.src === 'h1' && m.dst === 'h2'],
    ['status=killed', (m: Model) => m.status === 'killed'],
    ['status=finished,failed', (m: Model) => m.status === 'finished' || m.status === 'failed'],
    ['status=running', (m: Model) => m.status === 'running'],
    // Kimchi's patterns, matched from the start as before.
    [`status=${encodeURIComponent('fin|fail')}`, (m: Model) => m.status === 'finished' || m.status === 'failed'],
    ['status=r', (m: Model) => m.status === 'running'],
    [`target_uri=${encodeURIComponent('/vms/vm-1')}`, (m: Model) => m.vm.startsWith('vm-1')],
    [`status=running&target_uri=${encodeURIComponent('/vms/(ok|vm-2)')}`, (m: Model) => m.status === 'running' && m.vm.startsWith('vm-2')],
    [`since=${new Date(base + 20_000).toISOString()}&until=${new Date(base + 40_000).toISOString()}`, (m: Model) => m.createdMs >= base + 20_000 && m.createdMs < base + 40_000],
    [`until=${new Date(base + 5_000).toISOString()}`, (m: Model) => m.createdMs < base + 5_000],
    [`destination_host=h2&status=running&since=${new Date(base + 30_000).toISOString()}`, (m: Model) => m.dst === 'h2' && m.status === 'running' && m.createdMs >= base + 30_000],
    [`vm=vm-043&host=h2`, () => false],
  ])('%s selects what it says, in order, in pages too', async (query, keep) => {
    const want = expected(keep);
    const all = await api(svc.url, 'GET', `/tasks?limit=500&${query}`);
    expect(all.status, JSON.stringify(all.body)).toBe(200);
    expect(ids(all.body)).toEqual(want);
    const { pages } = await walk(`/tasks?limit=7&${query}`);
    expect(ids(pages.flat())).toEqual(want);
    // Full pages until the last (which may be empty: a full page links on while entries are left to look at).
    expect(pages.slice(0, -1).every((p) => p.length === 7)).toBe(true);
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(want.length / 7));
  });

  it('bad parameters are 400s with the reason, and change nothing', async () => {
    const before = await svc.snapshot();
    for (const q of [
      'limit=0', 'limit=501', 'limit=abc', 'limit=1&limit=2', 'cursor=garbage', `cursor=${encodeCursor('x')}`, 'since=yesterday', 'since=2026-01-01T10:00',
      'since=2026-02-01&until=2026-01-01', 'vm=a%2Fb', 'host=bad_host!', 'status=((', 'target_uri=((', 'stauts=failed',
    ]) {
      const r = await api(svc.url, 'GET', `/tasks?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.code, q).toBe('KMIG0001E');
      expect(r.body.reason, q).toMatch(/^KMIG0001E: Invalid request: /);
    }
    expect(await svc.snapshot()).toEqual(before);
  });

  it('entering the same task twice (an Idempotency-Key repaired twice) lists it once, with its first time', async () => {
    const id = randomUUID();
    const t0 = Date.now() - 1000;
    const first = await store.enqueue(request('twice', 'h1', 'h7', t0), new Date(t0), id);
    const again = await store.enqueue(request('twice', 'h1', 'h7', t0 + 500), new Date(t0 + 500), id);
    expect(again.task.id).toBe(id);
    expect(again.task.created_at).toBe(new Date(t0).toISOString());
    const listed = await api(svc.url, 'GET', '/tasks?destination_host=h7');
    expect(ids(listed.body)).toEqual([id]);
    expect(listed.body[0].created_at).toBe(new Date(t0).toISOString());
    model.push({ id, vm: 'twice', createdMs: t0, src: 'h1', dst: 'h7', status: 'running' });
  });

  it('a refused enqueue (the VM has its task) leaves no entry behind', async () => {
    const index = `${svc.prefix}:tasks:all`;
    const size = await redis.zcard(index);
    const r = await store.enqueue(request('vm-044', 'h1', 'h2', Date.now()), new Date());
    expect(r.created).toBe(false);
    expect(r.task.vm).toBe('vm-044');
    expect(await redis.zcard(index)).toBe(size);
    expect(ids((await api(svc.url, 'GET', '/tasks?vm=vm-044')).body)).toEqual(expected((m) => m.vm === 'vm-044'));
  });

  it("Kimchi's patterns have one time budget for the whole request: limit=1 with a catastrophic target_uri over every task is a 400 within it, not a budget per batch", async () => {
    // About a millisecond or two of backtracking on each task's /vms/<name>, well under the budget for one batch.
    const t0 = performance.now();
    const r = await api(svc.url, 'GET', `/tasks?limit=1&target_uri=${encodeURIComponent(`${'(.*)'.repeat(10)}Z`)}`);
    const took = performance.now() - t0;
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.reason).toBe('KMIG0001E: Invalid request: the filter expressions took longer than 100 ms; simplify them');
    expect(took).toBeLessThan(1000);
  });

  it(`entries whose task is gone are skipped; past ${MAX_EXAMINED} entries a short page still links to the rest`, async () => {
    const index = new TaskIndex(redis, svc.prefix);
    const ghosts = Array.from({ length: MAX_EXAMINED + 100 }, () => randomUUID());
    const future = Date.now() + 3600_000;
    for (let i = 0; i < ghosts.length; i += 500) await Promise.all(ghosts.slice(i, i + 500).map((id) => index.add({ id, createdMs: future, vm: 'ghost', sourceHost: 'h1', destinationHost: 'h2' })));
    try {
      const first = await api(svc.url, 'GET', '/tasks?limit=5');
      expect(first.status).toBe(200);
      expect(first.body).toEqual([]);
      const next = /^<([^>]+)>/.exec(first.headers.get('link') ?? '')?.[1];
      expect(next).toBeDefined();
      const second = await api(svc.url, 'GET', next!);
      expect(ids(second.body)).toEqual(expected(() => true).slice(0, 5));
    } finally {
      await index.remove(ghosts);
    }
    expect(await redis.hexists(`${svc.prefix}:tasks:meta`, ghosts[0]!)).toBe(0);
  }, 60_000);
});

describe('GET /tasks/:id/series', () => {
  it('a queued task has no points and no final figures yet; a recorded series comes back as stored', async () => {
    const m = model.find((x) => x.status === 'running')!;
    const empty = await api(svc.url, 'GET', `/tasks/${m.id}/series`);
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ id: m.id, status: 'running', interval_ms: null, points: [], final: null });
    const series = redisSeriesStore(redis, svc.prefix, svc.config.tasks.keep_finished);
    await series.replace(m.id, { intervalMs: 2000, points: [{ t: 1, percent: 0, dataRemaining: 10 }, { t: 2001, percent: 50, dataRemaining: 5 }] });
    const r = await api(svc.url, 'GET', `/tasks/${m.id}/series`);
    expect(r.body).toMatchObject({ id: m.id, interval_ms: 2000, points: [{ t: 1, percent: 0, dataRemaining: 10 }, { t: 2001, percent: 50, dataRemaining: 5 }], final: null });
  });

  it('an ended task has its final figures', async () => {
    const killed = model.find((x) => x.status === 'killed')!;
    const r = await api(svc.url, 'GET', `/tasks/${killed.id}/series`);
    expect(r.body).toMatchObject({ id: killed.id, status: 'killed', points: [], final: { status: 'killed', copyMs: null, downtimeMs: null } });
    expect(r.body.final.finished_at).not.toBeNull();
    const finished = model.find((x) => x.status === 'finished')!;
    expect((await api(svc.url, 'GET', `/tasks/${finished.id}/series`)).body.final).toMatchObject({ status: 'finished' });
  });

  it('an unknown task is a 404 with the task-not-found code', async () => {
    for (const id of [randomUUID(), 'meta', 'x'.repeat(300)]) {
      const r = await api(svc.url, 'GET', `/tasks/${id}/series`);
      expect(r.status).toBe(404);
      expect(r.body.code).toBe('KMIG0004E');
    }
  });
});

describe('the index keeps up with the retention', () => {
  it('a listing removes entries older than tasks.keep_finished whose task is gone, from every set, and keeps those whose task is still there', async () => {
    const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
    const config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: svc.config.redis.url, KVM_MIGRATE_TASKS_KEEP_FINISHED: '60' } });
    const r = apiRedis(config);
    await new Promise((ok) => r.once('ready', ok));
    const q = createQueue(config, r);
    let now = Date.now();
    const s = createTaskStore(config, q, r, () => r.status === 'ready', { now: () => now, trimEveryMs: 1000 });
    try {
      const old = now - 120_000;
      const alive = await s.enqueue(request('still-queued', 'h1', 'h2', old), new Date(old));
      const gone = await s.enqueue(request('removed', 'h1', 'h5', old), new Date(old));
      const young = await s.enqueue(request('young', 'h1', 'h5', now), new Date(now));
      await q.remove(gone.task.id);
      await q.remove(young.task.id);
      const keys = (await r.keys(`${prefix}:tasks:*`)).sort();
      expect(keys).toContain(`${prefix}:tasks:destination:h5`);
      await s.page(parseTaskListQuery({}));
      const members = async () => Object.fromEntries(await Promise.all(keys.filter((k) => !k.endsWith(':meta')).map(async (k) => [k.slice(prefix.length), await r.zrange(k, 0, -1)] as const)));
      const after = await members();
      expect(Object.values(after).flat().some((m) => m.endsWith(gone.task.id))).toBe(false);
      expect(after[':tasks:all']).toEqual([memberOf(old, alive.task.id), memberOf(now, young.task.id)].sort());
      expect(await r.hexists(`${prefix}:tasks:meta`, gone.task.id)).toBe(0);
      expect(await r.hexists(`${prefix}:tasks:meta`, alive.task.id)).toBe(1);
      // The young entry's task is gone too, but it is within the retention: skipped when read, removed later.
      expect(ids((await s.page(parseTaskListQuery({}))).tasks)).toEqual([alive.task.id]);
      now += 61_000;
      await s.page(parseTaskListQuery({}));
      expect(await r.zrange(`${prefix}:tasks:all`, 0, -1)).toEqual([memberOf(old, alive.task.id)]);
    } finally {
      const keys = await r.keys(`${prefix}:*`);
      if (keys.length) await r.del(...keys);
      await q.close();
      r.disconnect();
    }
  });
});

describe('an index entry and the task it stands for', () => {
  const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
  let r: Redis;
  let q: ReturnType<typeof createQueue>;
  let config: ReturnType<typeof loadConfig>;
  const tombKey = (id: string) => `${prefix}:tomb:${id}`;
  let index: TaskIndex;
  beforeAll(async () => {
    config = loadConfig({ env: { KVM_MIGRATE_REDIS_PREFIX: prefix, KVM_MIGRATE_REDIS_URL: svc.config.redis.url } });
    r = apiRedis(config);
    await new Promise((ok) => r.once('ready', ok));
    q = createQueue(config, r);
    index = new TaskIndex(r, prefix, (id) => [q.toKey(id), tombKey(id)]);
  });
  afterAll(async () => {
    const keys = await r.keys(`${prefix}:*`);
    if (keys.length) await r.del(...keys);
    await q.close();
    r.disconnect();
  });
  const entry = (id: string, at: number) => ({ id, createdMs: at, vm: 'guarded', sourceHost: 'h1', destinationHost: 'h6' });

  it('is removed only when neither its job nor its tombstone is there, from every set', async () => {
    const at = Date.now() - 5000;
    const [withJob, withTomb, bare] = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of [withJob, withTomb, bare]) await index.add(entry(id, at));
    await q.add(JOB_NAME, { request: request('guarded', 'h1', 'h6', at), checkpoint: initialCheckpoint(new Date(at)) }, { jobId: withJob, timestamp: at });
    await r.set(tombKey(withTomb), '{}', 'EX', 60);
    expect(await index.remove([withJob, withTomb, bare])).toBe(1);
    const sets = ['all', 'vm:guarded', 'host:h1', 'host:h6', 'source:h1', 'destination:h6'].map((k) => `${prefix}:tasks:${k}`);
    for (const k of sets) expect((await r.zrange(k, 0, -1)).sort(), k).toEqual([memberOf(at, withJob), memberOf(at, withTomb)].sort());
    expect(await r.hexists(`${prefix}:tasks:meta`, bare)).toBe(0);
    // Once the job and the tombstone are gone, so are their entries.
    await q.remove(withJob);
    await r.del(tombKey(withTomb));
    expect(await index.remove([withJob, withTomb, bare])).toBe(2);
    for (const k of sets) expect(await r.exists(k), k).toBe(0);
    expect(await r.hlen(`${prefix}:tasks:meta`)).toBe(0);
  });

  it('a request refused under an id (an Idempotency-Key claimed twice) cannot leave the job another request added under it unlisted', async () => {
    const store = createTaskStore(config, q, r, () => r.status === 'ready');
    // Request A, refused, removes the entry of the id it was given just before request B, which
    // entered the same id, adds its job: the worst moment for A.
    const racing = new Proxy(q, {
      get(target, prop) {
        if (prop === 'add') {
          return async (...a: Parameters<typeof q.add>) => {
            await index.remove([String(a[2]?.jobId)]);
            return target.add(...a);
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const b = createTaskStore(config, racing, r, () => r.status === 'ready');
    const at = Date.now();
    // The id comes from B's Idempotency-Key claim, as only such an id can be another request's too.
    const made = await b.enqueue(request('raced', 'h1', 'h6', at), new Date(at), randomUUID());
    expect(made.created).toBe(true);
    expect(ids((await store.page(parseTaskListQuery({ vm: 'raced' }))).tasks)).toEqual([made.task.id]);
    // A's removal once B's job is there changes nothing.
    expect(await index.remove([made.task.id])).toBe(0);
    expect(ids((await store.page(parseTaskListQuery({}))).tasks)).toContain(made.task.id);
  });
});
