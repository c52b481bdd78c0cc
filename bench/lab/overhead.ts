/**
 * Figures 1 and 2: a guest migrated back and forth, alternating `virsh
 * migrate` (the service's flags, bandwidth and max downtime) with
 * kvm-migrate's POST /vms/:name/migrate, and where kvm-migrate's time goes
 * outside the libvirt call. lab-tiny (a copy well under a second: the fixed
 * cost at its most visible), then, in full mode, a guest with 48 MiB to copy
 * at 16 MiB/s (a few seconds), through the same warm services.
 *
 * A round is four migrations: A 1→2, B 2→1, B 1→2, A 2→1, so each direction
 * gets one pair (A and B the same way), each method goes first in one of
 * them, and the guest ends where it started. Rounds swap A and B.
 */
import { Redis } from 'ioredis';
import { GUEST_TINY, labUp, resetGuest } from '../../lab/lab.js';
import { createHypervisor } from '../../shared/libvirt/index.js';
import type { Connection } from '../../shared/libvirt/types.js';
import { ms } from '../lib/stats.js';
import type { Bench, BenchContext, Figure } from '../lib/types.js';
import {
  checkpointOf, historyAt, migrateByApi, migrateByVirsh, openHosts, sleep, startLabServices, virshPlan,
  type ApiRun, type LabHost, type LabServices, type VirshPlan,
} from './common.js';
import { createFiller, FILLER, FILLER_MIB, removeFiller } from './filler.js';
import { overheadFigure, serviceTimeFigure } from './overhead-figures.js';

/** Between two migrations: libvirt tears the source's qemu down after the call returns. */
const SETTLE_MS = 300;
/** The bandwidth cap of the longer variant, for both sides. */
const LONG_BANDWIDTH_MIBS = 16;

export type Method = 'virsh' | 'api';

export interface Pair {
  direction: string;
  first: Method;
  virshMs: number;
  apiMs: number;
  /** libvirt's own time_elapsed for each side's copy: shows whether the copy itself ran slower. */
  virshLibvirtMs: number | null;
  apiLibvirtMs: number | null;
}

/** Phases of one kvm-migrate migration, ms, from the client's clock and the task's history. */
export interface Phases {
  request: number;
  queue: number;
  check: number;
  connectPrepare: number;
  migrateSetup: number;
  libvirtCall: number;
  migrateTeardown: number;
  finish: number;
  completion: number;
  total: number;
  outside: number;
}

export function phasesOf(run: ApiRun, call: { start: number; end: number }): Phases {
  const h = run.task.history;
  const at = (stage: string, event: 'queued' | 'start' | 'done') => {
    const t = historyAt(h, stage, event);
    if (t === null) throw new Error(`task ${run.task.id} has no ${stage} ${event} in its history`);
    return t;
  };
  const queued = at('queue', 'queued');
  const checkStart = at('check', 'start');
  const checkDone = at('check', 'done');
  const migrateStart = at('migrate', 'start');
  const migrateDone = at('migrate', 'done');
  const finishDone = at('finish', 'done');
  const libvirtCall = call.end - call.start;
  return {
    request: queued - run.sentAt,
    queue: checkStart - queued,
    check: checkDone - checkStart,
    connectPrepare: migrateStart - checkDone,
    migrateSetup: call.start - migrateStart,
    libvirtCall,
    migrateTeardown: migrateDone - call.end,
    finish: finishDone - migrateDone,
    completion: run.seenAt - finishDone,
    total: run.ms,
    outside: run.ms - libvirtCall,
  };
}

async function completedElapsed(conn: Connection, vm: string): Promise<number | null> {
  const d = await conn.lookupDomain(vm);
  if (!d) return null;
  try {
    const v = (await d.jobStats({ completed: true })).fields.time_elapsed;
    return typeof v === 'number' ? v : null;
  } finally {
    d.free();
  }
}

interface Env {
  svcs: LabServices;
  conns: Awaited<ReturnType<typeof openHosts>>;
  redis: Redis;
}

export interface Measured {
  vm: string;
  plan: VirshPlan;
  pairs: Pair[];
  phases: Phases[];
}

/** `rounds` rounds of four migrations of `vm` (on host1 before and after), plus `warmups` through the services first. */
async function measure(ctx: BenchContext, env: Env, vm: string, rounds: number, warmups: number, bandwidthMiBs?: number): Promise<Measured> {
  const { svcs, conns, redis } = env;
  const plan = virshPlan(svcs.config, bandwidthMiBs ?? svcs.config.migration_max_bandwidth);
  const body = bandwidthMiBs === undefined ? {} : { bandwidth: bandwidthMiBs };
  const pairs: Pair[] = [];
  const phases: Phases[] = [];
  const one = async (m: Method, from: LabHost, to: LabHost): Promise<{ ms: number; libvirtMs: number | null }> => {
    let r: { ms: number; libvirtMs: number | null };
    if (m === 'api') {
      const svc = svcs.of(from);
      const run = await migrateByApi(svc, vm, to, { follow: 'events', body });
      const mig = (await checkpointOf(redis, svc, svcs.config, run.task.id))?.results.migrate;
      if (!mig?.callStartedAt || !mig.callEndedAt) throw new Error(`task ${run.task.id}: the checkpoint does not bracket the libvirt call`);
      phases.push(phasesOf(run, { start: Date.parse(mig.callStartedAt), end: Date.parse(mig.callEndedAt) }));
      r = { ms: run.ms, libvirtMs: run.task.progress?.elapsedMs ?? null };
    } else {
      const { ms: t } = await migrateByVirsh(conns, vm, from, to, plan);
      r = { ms: t, libvirtMs: await completedElapsed(conns[to], vm) };
    }
    await sleep(SETTLE_MS);
    return r;
  };
  // Warm-up, not counted: a long-running service has its code compiled and its connections to Redis open.
  for (let i = 0; i < warmups; i++) {
    await one('api', 'host1', 'host2');
    await one('api', 'host2', 'host1');
  }
  phases.length = 0;
  for (let r = 0; r < rounds; r++) {
    const [a, b]: [Method, Method] = r % 2 === 0 ? ['virsh', 'api'] : ['api', 'virsh'];
    const m1 = await one(a, 'host1', 'host2');
    const m2 = await one(b, 'host2', 'host1');
    const m3 = await one(b, 'host1', 'host2');
    const m4 = await one(a, 'host2', 'host1');
    const pair = (direction: string, first: Method, x: typeof m1, y: typeof m1): Pair => {
      const [v, k] = first === 'virsh' ? [x, y] : [y, x];
      return { direction, first, virshMs: v.ms, apiMs: k.ms, virshLibvirtMs: v.libvirtMs, apiLibvirtMs: k.libvirtMs };
    };
    pairs.push(pair('host1→host2', a, m1, m3), pair('host2→host1', b, m2, m4));
    ctx.log(`overhead ${vm}: round ${r + 1}/${rounds}: ${pairs.slice(-2).map((p) => `${p.direction} virsh ${ms(p.virshMs)} kvm-migrate ${ms(p.apiMs)}`).join('; ')}`);
  }
  return { vm, plan, pairs, phases };
}

export const overheadBench: Bench = {
  name: 'overhead',
  lab: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    await labUp();
    await resetGuest(GUEST_TINY);
    const hv = createHypervisor();
    const conns = await openHosts(hv);
    const svcs = await startLabServices();
    const redis = new Redis(String(svcs.of('host1').env.KVM_MIGRATE_REDIS_URL));
    const env = { svcs, conns, redis };
    try {
      const warmups = ctx.quick ? 0 : 3;
      const tiny = await measure(ctx, env, GUEST_TINY, ctx.quick ? 1 : 8, warmups);
      const figures = [overheadFigure('overhead.e2e', tiny, warmups), serviceTimeFigure(tiny)];
      if (!ctx.quick) {
        await createFiller(conns);
        try {
          const long = await measure(ctx, env, FILLER, 2, 0, LONG_BANDWIDTH_MIBS);
          figures.push(overheadFigure('overhead.e2e_long', long, warmups, `${FILLER_MIB} MiB at ${LONG_BANDWIDTH_MIBS} MiB/s`));
        } finally {
          await removeFiller(conns);
        }
      }
      return figures;
    } finally {
      redis.disconnect();
      await svcs.stop();
      await conns.close();
      await resetGuest(GUEST_TINY);
    }
  },
};
