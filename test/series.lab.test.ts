/**
 * A finished migration can be plotted: lab-dirty migrated for real through
 * API and worker processes (real Redis, libvirtd, QEMU) leaves a series of
 * sampled points and final figures that agree with the task, listed by the
 * paged GET /tasks with its filters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DIRTY_RATE_MIBS, GUEST_DIRTY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import type { SeriesPoint } from '../shared/series.js';
import { api, startService, TOKENS, waitTask, type Service } from './helpers/service.js';

let svc: Service;

/** A point as GET /tasks/:id/series answers it: the type the worker records. */
type Point = SeriesPoint;

beforeAll(async () => {
  await labUp();
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') });
});

afterAll(async () => {
  await svc?.stop();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: DEFAULT_DIRTY_RATE_MIBS });
});

describe('a migration\'s progress series', () => {
  it('has points a second or more apart, in time order, with data remaining going down to the final figures, which match the task', async () => {
    // A guest that dirties less than the link copies: it converges, after several seconds of copying.
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 2 });
    const post = await api(svc.url, 'POST', `/vms/${GUEST_DIRTY}/migrate`, { remote_host: hostAddress('host2'), bandwidth: 8 });
    expect(post.status).toBe(202);
    const id = post.body.id as string;
    const task = await waitTask(svc.url, id, 180_000);
    expect(task.status, JSON.stringify(task.error)).toBe('finished');

    const r = await api(svc.url, 'GET', `/tasks/${id}/series`, undefined, { token: TOKENS.viewer });
    expect(r.status).toBe(200);
    const points = r.body.points as Point[];
    expect(r.body.id).toBe(id);
    expect(r.body.interval_ms).toBe(1000);
    expect(points.length, JSON.stringify(points)).toBeGreaterThanOrEqual(4);

    // Time only moves forward, a sampling interval or more between points (the final one may come sooner).
    const ts = points.map((p) => p.t);
    for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBeGreaterThan(0);
    for (let i = 1; i < ts.length - 1; i++) expect(ts[i]! - ts[i - 1]!).toBeGreaterThanOrEqual(1000);
    const elapsed = points.map((p) => p.elapsedMs).filter((e): e is number => e !== undefined);
    expect(elapsed.length).toBe(points.length);
    expect([...elapsed].sort((a, b) => a - b)).toEqual(elapsed);
    // The samples span the copy: from its start (the last point, below, is libvirt's total).
    const history = task.history as { stage: string; event: string; at: string }[];
    const copyStarted = Date.parse(history.find((h) => h.stage === 'migrate' && h.event === 'start')!.at);
    expect(ts[0]! - copyStarted).toBeGreaterThanOrEqual(0);
    expect(ts[0]! - copyStarted).toBeLessThan(5000);

    // Data remaining trends down: the first sample has the most left, the end nothing.
    const remaining = points.map((p) => p.dataRemaining!);
    expect(remaining.every((v) => typeof v === 'number')).toBe(true);
    expect(remaining[0]!).toBeGreaterThan(20 * 2 ** 20);
    expect(Math.max(...remaining)).toBe(remaining[0]);
    expect(remaining.at(-1)).toBe(0);
    const percents = points.map((p) => p.percent);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    expect(points.slice(0, -1).some((p) => (p.memoryBps ?? 0) > 0)).toBe(true);

    // The final figures are the task's, and the last point carries them too.
    const full = (await api(svc.url, 'GET', `/tasks/${id}`)).body;
    const p = full.progress;
    // All stages, from the history the worker wrote (started_at is only the last pickup's).
    const stages = full.history as { stage: string; event: string; at: string }[];
    const firstStart = Date.parse(stages.find((e) => e.event === 'start')!.at);
    const lastEntry = Date.parse(stages.at(-1)!.at);
    expect(r.body.final).toEqual({
      status: 'finished',
      started_at: full.started_at,
      finished_at: full.finished_at,
      durationMs: lastEntry - firstStart,
      copyMs: p.elapsedMs ?? null,
      downtimeMs: p.downtimeMs ?? null,
      dataProcessed: p.dataProcessed ?? null,
      dataTotal: p.dataTotal ?? null,
      dataRemaining: 0,
      iterations: p.iteration ?? null,
      averageBps: Math.round((p.dataProcessed / p.elapsedMs) * 1000),
      percent: 100,
    });
    expect(r.body.final.downtimeMs).toBeGreaterThan(0);
    expect(r.body.final.copyMs).toBeGreaterThan(2000);
    // The stages hold the copy, and ran between the request and the job's end.
    expect(r.body.final.durationMs).toBeGreaterThan(r.body.final.copyMs);
    expect(r.body.final.durationMs).toBeLessThanOrEqual(Date.parse(full.finished_at) - Date.parse(full.created_at));
    expect(points.at(-1)).toMatchObject({ percent: 100, dataRemaining: 0, dataProcessed: p.dataProcessed, elapsedMs: p.elapsedMs });

    // Listed by the paged listing, through the index the API wrote when it enqueued.
    const listed = await api(svc.url, 'GET', `/tasks?vm=${GUEST_DIRTY}&destination_host=${hostAddress('host2')}&status=finished&limit=1`);
    expect(listed.status).toBe(200);
    expect(listed.body.map((t: { id: string }) => t.id)).toEqual([id]);
    expect(listed.headers.get('link')).toBeNull();
  }, 240_000);
});
