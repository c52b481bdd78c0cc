/**
 * Figure 3: precheck latency for a guest with a disk. POST /vms/lab-disk/migrate
 * {remote_host, dry_run: true} against a real API (source host1) and the lab's
 * host2: every check runs, the shared pool's write probe included. lab-tiny
 * (no disk) is measured alongside, so the disk checks' share shows.
 */
import { GUEST_DISK, GUEST_TINY, hostAddress, hostUri, labUp, resetGuest } from '../../lab/lab.js';
import { api, startService, type Service } from '../../test/helpers/service.js';
import { ms, percentile, summary } from '../lib/stats.js';
import type { Bench, BenchContext, Figure } from '../lib/types.js';
import { wallNow } from './common.js';

const GOAL_MS = 50;

async function prechecks(svc: Service, vm: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = wallNow();
    const r = await api(svc.url, 'POST', `/vms/${vm}/migrate`, { remote_host: hostAddress('host2'), dry_run: true });
    out.push(wallNow() - t0);
    if (r.status !== 200 || (r.body as { ready?: boolean }).ready !== true) throw new Error(`precheck of ${vm} answered ${r.status}: ${JSON.stringify(r.body)}`);
  }
  return out;
}

export const precheckBench: Bench = {
  name: 'precheck',
  lab: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const n = ctx.quick ? 3 : 50;
    const warm = ctx.quick ? 1 : 10;
    await labUp();
    await resetGuest(GUEST_DISK);
    await resetGuest(GUEST_TINY);
    // No worker: a dry run never reaches the queue.
    const svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), KVM_MIGRATE_API_RATE_LIMIT: '1000000' }, 0);
    try {
      // Warm-up, not counted: the first requests compile the code paths and open the source connection.
      await prechecks(svc, GUEST_DISK, warm);
      await prechecks(svc, GUEST_TINY, warm);
      // Interleaved in blocks, so a noisy moment on the shared machine hits both guests alike.
      const disk: number[] = [];
      const tiny: number[] = [];
      const block = ctx.quick ? n : 10;
      for (let done = 0; done < n; done += block) {
        const k = Math.min(block, n - done);
        disk.push(...(await prechecks(svc, GUEST_DISK, k)));
        tiny.push(...(await prechecks(svc, GUEST_TINY, k)));
      }
      ctx.log(`precheck: ${GUEST_DISK} p50 ${ms(percentile(disk, 50))}, ${GUEST_TINY} p50 ${ms(percentile(tiny, 50))} (${n} each)`);
      const p50 = percentile(disk, 50);
      const p99 = percentile(disk, 99);
      return [
        {
          id: 'precheck.latency',
          figure: 3,
          title: `Precheck latency for a guest with a disk (${GUEST_DISK}, dry_run)`,
          goal: `≤ ${GOAL_MS} ms p50`,
          value: `p50 ${ms(p50)}, p99 ${ms(p99)} (${n} requests; without a disk, ${GUEST_TINY}: p50 ${ms(percentile(tiny, 50))})`,
          meets: p50 <= GOAL_MS,
          data: { disk: summary(disk), diskless: summary(tiny), samples: { disk, diskless: tiny }, warmup: warm },
          method:
            `POST /vms/:name/migrate {remote_host: 127.0.0.12, dry_run: true} to one API (source host1, no worker), one request at a time, timed by the client. ` +
            `Each opens the destination, reads both hosts' capabilities, looks for a clashing domain, finds the disk's pool on both hosts and writes, reads back ` +
            `and deletes a probe volume through the shared pool. ${GUEST_DISK} and ${GUEST_TINY} alternate in blocks of 10; ${warm} warm-up requests each first, not counted.`,
          ...(p50 > GOAL_MS
            ? { note: `Over the goal. The difference to ${GUEST_TINY} (${ms(percentile(disk, 50) - percentile(tiny, 50))}) is what the disk checks cost: finding the pool on both hosts and the write probe.` }
            : {}),
        },
      ];
    } finally {
      await svc.stop();
      await resetGuest(GUEST_DISK);
    }
  },
};
