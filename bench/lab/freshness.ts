/**
 * Figure 6 of the issue: progress freshness. During a slow migration
 * (lab-dirty, bandwidth capped so the copy runs for as long as we watch),
 * the bench polls the source domain's job statistics itself every 20 ms on
 * its own libvirt connection, noting when data_processed changes, and reads
 * the task's event stream (SSE) noting when each new value arrives. For every
 * libvirt change, the delay is the time until the first event showing a value
 * at least as new. The migration is cancelled at the end (the guest stays on
 * host1).
 */
import { GUEST_DIRTY, hostAddress, hostUri, labUp, resetGuest } from '../../lab/lab.js';
import { loadConfig } from '../../shared/config.js';
import { createHypervisor } from '../../shared/libvirt/index.js';
import type { Task } from '../../shared/task.js';
import { readEvents } from '../../test/helpers/sse.js';
import { api, startService, waitTask } from '../../test/helpers/service.js';
import { ms, percentile, summary } from '../lib/stats.js';
import type { Bench, BenchContext, Figure } from '../lib/types.js';
import { sleep, wallNow } from './common.js';

const VM = GUEST_DIRTY;
const GOAL_MS = 500;
/** Far below lab-dirty's dirty rate: the copy cannot converge while we watch. */
const BANDWIDTH_MIBS = 8;
const LIBVIRT_POLL_MS = 20;

interface Sample {
  t: number;
  v: number;
}

/** For each libvirt change, ms until the first SSE event with a value at least as new; changes no event caught up with are left out. */
export function freshnessDelays(libvirt: Sample[], sse: Sample[]): number[] {
  const out: number[] = [];
  let j = 0;
  for (const c of libvirt) {
    while (j < sse.length && sse[j]!.v < c.v) j++;
    if (j >= sse.length) break;
    out.push(sse[j]!.t - c.t);
  }
  return out;
}

export interface FreshnessRun {
  delays: number[];
  libvirtChanges: number;
  sseEvents: number;
  progressIntervalMs: number;
}

/** One watched migration with the given service environment. */
export async function watchFreshness(ctx: BenchContext, watchMs: number, env: Record<string, string> = {}): Promise<FreshnessRun> {
  await resetGuest(VM);
  const svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_API_RATE_LIMIT: '1000000', ...env });
  const hv = createHypervisor();
  const conn = await hv.open(hostUri('host1'), { timeoutMs: 10_000 });
  const dom = await conn.lookupDomain(VM);
  if (!dom) throw new Error(`${VM} is not on host1`);
  const libvirt: Sample[] = [];
  const sse: Sample[] = [];
  let id: string | null = null;
  try {
    const post = await api(svc.url, 'POST', `/vms/${VM}/migrate`, { remote_host: hostAddress('host2'), bandwidth: BANDWIDTH_MIBS });
    if (post.status !== 202) throw new Error(`POST answered ${post.status}: ${JSON.stringify(post.body)}`);
    id = (post.body as Task).id;
    const stream = readEvents(`${svc.url}/tasks/${id}/events`, (e) => {
      const t = wallNow();
      const v = (JSON.parse(e.data) as Task).progress?.dataProcessed;
      if (typeof v === 'number' && v !== sse.at(-1)?.v) sse.push({ t, v });
    }, watchMs + 120_000);
    // The bench's own view of libvirt, from the first sample the copy shows until the watch ends.
    const end = wallNow() + watchMs + 10_000;
    let started: number | null = null;
    while (wallNow() < end && (started === null || wallNow() < started + watchMs)) {
      const s = await dom.jobStats().catch(() => null);
      const v = s && (s.type === 'bounded' || s.type === 'unbounded') ? s.fields.data_processed : undefined;
      if (typeof v === 'number' && v !== libvirt.at(-1)?.v) {
        libvirt.push({ t: wallNow(), v });
        started ??= wallNow();
      }
      await sleep(LIBVIRT_POLL_MS);
    }
    const cancel = await api(svc.url, 'DELETE', `/tasks/${id}`);
    if (cancel.status !== 202 && cancel.status !== 200) {
      const t = (await api(svc.url, 'GET', `/tasks/${id}`)).body as Task;
      throw new Error(`the migration ended before the watch did (${t.status}: ${t.message}); cancel answered ${cancel.status}`);
    }
    await stream;
    const progressIntervalMs = loadConfig({ env: svc.env }).worker.progress_interval;
    const delays = freshnessDelays(libvirt, sse);
    ctx.log(`freshness: ${libvirt.length} libvirt changes, ${sse.length} SSE values, p50 ${ms(percentile(delays, 50))}, p99 ${ms(percentile(delays, 99))}`);
    return { delays, libvirtChanges: libvirt.length, sseEvents: sse.length, progressIntervalMs };
  } finally {
    dom.free();
    await conn.close();
    if (id) await waitTask(svc.url, id, 120_000).catch(() => undefined);
    await svc.stop();
    await resetGuest(VM);
  }
}

export const freshnessBench: Bench = {
  name: 'freshness',
  lab: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    await labUp();
    const run = await watchFreshness(ctx, ctx.quick ? 3_000 : 20_000);
    const p50 = percentile(run.delays, 50);
    const p99 = percentile(run.delays, 99);
    return [
      {
        id: 'progress.freshness',
        figure: 6,
        title: 'Progress freshness: a libvirt job-stats change to the SSE event at a client',
        goal: `≤ ${GOAL_MS / 1000} s (p99 of the delay)`,
        value: `p50 ${ms(p50)}, p99 ${ms(p99)} (${run.delays.length} libvirt changes, ${run.sseEvents} events)`,
        meets: run.delays.length > 0 && p99 <= GOAL_MS,
        data: { delays: summary(run.delays), samples: run.delays, libvirtChanges: run.libvirtChanges, sseEvents: run.sseEvents, progressIntervalMs: run.progressIntervalMs, bandwidthMiBs: BANDWIDTH_MIBS },
        method:
          `${VM} (dirtying far faster than it is copied) migrated host1 → host2 at ${BANDWIDTH_MIBS} MiB/s and cancelled after the watch. The bench polls the source domain's ` +
          `job statistics every ${LIBVIRT_POLL_MS} ms on its own connection (a change is seen up to ${LIBVIRT_POLL_MS} ms late, which makes the delays look shorter by as much) ` +
          'and reads GET /tasks/:id/events; for each change of data_processed, the delay until the first event with a value at least as large. ' +
          `What bounds it: the worker samples libvirt every worker.progress_interval (${run.progressIntervalMs} ms); each sample's BullMQ progress event wakes the task's event streams (api/task-events.ts).`,
        ...(p99 > GOAL_MS
          ? {
              note:
                `The delay is at most worker.progress_interval (${run.progressIntervalMs} ms) plus the Redis round trips and the wake-up of the stream. ` +
                'A shorter interval costs one libvirt job-stats call and one Redis write per running migration per sample.',
            }
          : {
              note:
                'Met by two changes: worker.progress_interval 500 → 250 ms, and event streams woken by their job\'s BullMQ progress events instead of only looking at their task ' +
                '(every 250 ms, then 100 ms). With the old defaults the same measurement gave p50 345 ms, p99 672 ms; with the interval at 250 ms and streams looking every 100 ms, p50 159 ms, p99 322 ms. ' +
                'The cost: one more libvirt job-stats call and Redis write per running migration every 250 ms, and one QueueEvents reader (a blocking Redis connection) per API process.',
            }),
      },
    ];
  },
};
