/**
 * Figure 7 of the issue: parallel migrations. Throw-away diskless guests on
 * host1, migrated to host2 one after another (the sum of their times) and all
 * at once (POST them together; the time until the last one finished), by the
 * same service in the same run, under the default concurrency limits and
 * under limits raised to the number of guests. Between measurements a second
 * service (source host2) brings them back, not timed.
 */
import { randomUUID } from 'node:crypto';
import { detectVirtType } from '../../lab/config.js';
import { hostUri, labUp } from '../../lab/lab.js';
import { loadConfig } from '../../shared/config.js';
import { createHypervisor } from '../../shared/libvirt/index.js';
import type { Connection } from '../../shared/libvirt/types.js';
import { removeDomain } from '../../test/helpers/guests.js';
import { startService, type Service } from '../../test/helpers/service.js';
import { median, ms } from '../lib/stats.js';
import type { Bench, BenchContext, Figure } from '../lib/types.js';
import { migrateByApi, openHosts, sleep, type LabHost } from './common.js';

/** Several clients poll at once here: a coarser interval keeps the polling from loading the two cores the guests share. */
const POLL_MS = 50;
const SETTLE_MS = 500;

/** 64 MiB, one vCPU, no disk and nothing to boot: SeaBIOS idles, and the copy is as small as lab-tiny's. */
function throwawayXml(name: string): string {
  return `<domain type='${detectVirtType()}'>
  <name>${name}</name>
  <uuid>${randomUUID()}</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><controller type='usb' model='none'/><memballoon model='none'/></devices>
</domain>`;
}

async function removeAll(conns: Record<LabHost, Connection>, names: string[]): Promise<void> {
  for (const h of ['host1', 'host2'] as const) for (const n of names) await removeDomain(conns[h], n);
}

/** Limits that let `n` migrations run out of one host into another at once. */
const raised = (n: number) => ({
  KVM_MIGRATE_LIMITS_OUTGOING_PER_HOST: String(n),
  KVM_MIGRATE_LIMITS_INCOMING_PER_HOST: String(n),
  KVM_MIGRATE_WORKER_CONCURRENCY: String(n),
});

interface Timed {
  totalMs: number;
  perMigrationMs: number[];
}

async function sequential(svc: Service, names: string[]): Promise<Timed> {
  const per: number[] = [];
  for (const n of names) {
    per.push((await migrateByApi(svc, n, 'host2', { follow: { pollMs: POLL_MS } })).ms);
    await sleep(SETTLE_MS);
  }
  return { totalMs: per.reduce((a, b) => a + b, 0), perMigrationMs: per };
}

async function parallel(svc: Service, names: string[], to: LabHost = 'host2'): Promise<Timed> {
  const runs = await Promise.all(names.map((n) => migrateByApi(svc, n, to, { follow: { pollMs: POLL_MS } })));
  const start = Math.min(...runs.map((r) => r.sentAt));
  const end = Math.max(...runs.map((r) => r.seenAt));
  await sleep(SETTLE_MS);
  return { totalMs: end - start, perMigrationMs: runs.map((r) => r.ms) };
}

export const parallelBench: Bench = {
  name: 'parallel',
  lab: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const n = ctx.quick ? 2 : 6;
    const names = Array.from({ length: n }, (_, i) => `bench-parallel-${i + 1}`);
    await labUp();
    const hv = createHypervisor();
    const conns = await openHosts(hv);
    const services: Service[] = [];
    const start = async (env: Record<string, string>) => {
      const s = await startService({ KVM_MIGRATE_API_RATE_LIMIT: '1000000', ...env });
      services.push(s);
      return s;
    };
    try {
      await removeAll(conns, names);
      for (const name of names) {
        const d = await conns.host1.defineDomain(throwawayXml(name));
        await d.start();
        d.free();
      }
      const defaults = await start({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') });
      const wide = ctx.quick ? null : await start({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1'), ...raised(n) });
      const back = await start({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host2'), ...raised(n) });
      const bringBack = () => parallel(back, names, 'host1');
      const limits = loadConfig({ env: defaults.env }).limits;
      const concurrency = loadConfig({ env: defaults.env }).worker.concurrency;

      // Sequential first and last (full mode), so a drift of the machine during the run weighs on both sides.
      const seq1 = await sequential(defaults, names);
      await bringBack();
      const parDefault = await parallel(defaults, names);
      await bringBack();
      let parRaised: Timed | null = null;
      let seq2: Timed | null = null;
      if (wide) {
        parRaised = await parallel(wide, names);
        await bringBack();
        seq2 = await sequential(defaults, names);
        await bringBack();
      }
      const seqSum = seq2 ? (seq1.totalMs + seq2.totalMs) / 2 : seq1.totalMs;
      const seqPer = [...seq1.perMigrationMs, ...(seq2?.perMigrationMs ?? [])];
      const figure = (id: string, what: string, t: Timed, limitText: string): Figure => ({
        id,
        figure: 7,
        title: `${n} migrations at once, ${what}, against the sum of their sequential times`,
        goal: 'no fixed goal: reported (expected below 1 when the limits allow more than one at a time)',
        value: `${(t.totalMs / seqSum).toFixed(2)} (all at once ${ms(t.totalMs)}, one after another ${ms(seqSum)}; median per migration ${ms(median(t.perMigrationMs))} at once, ${ms(median(seqPer))} alone)`,
        meets: null,
        data: { guests: n, ratio: t.totalMs / seqSum, parallel: t, sequentialSumMs: seqSum, sequential: [seq1, seq2].filter(Boolean), limits: limitText, pollMs: POLL_MS },
        method:
          `${n} throw-away guests (64 MiB, diskless, nothing to boot) on host1, migrated to host2 by one service (API + one worker, source host1): one after another (the sum of POST → finished) ` +
          `${seq2 ? 'at the start and the end of the run (the mean of the two sums)' : ''}, and all POSTed at once (the first POST to the last task seen finished). Limits: ${limitText}. ` +
          `Tasks polled every ${POLL_MS} ms. A second service brings the guests back between measurements, not timed.`,
        note:
          `All at once, each migration took ${ms(median(t.perMigrationMs))} (median, from its POST, waiting in the queue included) against ${ms(median(seqPer))} alone: ` +
          'two cores run every guest (TCG), both libvirt daemons and the service, so migrations that overlap slow each other down; on hosts with cores to spare ' +
          'and a network as the bottleneck, the ratio depends on the link instead.',
      });
      const defaultText = `defaults: limits.outgoing_per_host ${limits.outgoing_per_host}, limits.incoming_per_host ${limits.incoming_per_host}, limits.global ${limits.global}, worker.concurrency ${concurrency}, limits.wait_poll ${limits.wait_poll} ms`;
      const out = [figure('parallel.default_limits', 'default limits', parDefault, defaultText)];
      if (parRaised) out.push(figure('parallel.raised_limits', `limits raised to ${n}`, parRaised, `outgoing_per_host, incoming_per_host and worker.concurrency ${n}; global ${limits.global}`));
      ctx.log(`parallel: ${out.map((f) => `${f.id} ${f.value}`).join('; ')}`);
      return out;
    } finally {
      await Promise.all(services.map((s) => s.stop()));
      await removeAll(conns, names).catch(() => undefined);
      await conns.close();
    }
  },
};
