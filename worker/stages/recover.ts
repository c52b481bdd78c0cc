/**
 * Stage `recover` (seed: "recover if failed"): reconcile both hosts so the
 * guest runs exactly once. Decides from observed libvirt state only:
 * - running on the source: resume it if the failed migration left it paused,
 *   and remove what the migration left on the destination;
 * - running on the destination only: the migration did complete; finish it;
 * - running nowhere because of this migration: start it on the source;
 * - state unknown (destination unreachable, source not running): retry later.
 */
import { migrationError } from '../../shared/errors.js';
import type { Domain } from '../../shared/libvirt/types.js';
import { observePlacement, type Placement } from './placement.js';
import type { Stage, StageContext, StageOutcome } from './stage.js';

async function abortRunningJob(ctx: StageContext): Promise<string | null> {
  const source = await ctx.source();
  const d = await source.lookupDomain(ctx.request.vm);
  if (!d) return null;
  try {
    const job = await d.jobStats().catch(() => ({ type: 'none' as const }));
    if (job.type !== 'unbounded' && job.type !== 'bounded') return null;
    await d.abortJob().catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const j = await d.jobStats().catch(() => ({ type: 'none' as const }));
      if (j.type !== 'unbounded' && j.type !== 'bounded') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return 'aborted the libvirt migration job still running on the source';
  } finally {
    d.free();
  }
}

/** Removes an incoming copy the failed migration left on the destination. */
async function cleanDestination(ctx: StageContext, p: Placement, actions: string[]): Promise<void> {
  const dst = p.destination;
  if (p.destinationError) {
    actions.push(`could not look at the destination (${p.destinationError}); libvirt discards an unfinished incoming guest when its daemon restarts`);
    return;
  }
  if (!dst) return;
  const ours = dst.uuid === ctx.checkpoint.results.check?.domainUuid;
  if (!ours) return;
  const conn = await ctx.destination();
  const d = await conn.lookupDomainByUUID(dst.uuid);
  if (!d) return;
  try {
    if (dst.state !== 'shutoff') {
      await d.destroy();
      actions.push(`destroyed the unfinished copy on the destination (was ${dst.state})`);
    }
    if (dst.persistent && !ctx.checkpoint.results.check?.destinationHadDefinition && (await d.isPersistent().catch(() => false))) {
      await d.undefine();
      actions.push('removed the definition the migration left on the destination');
    }
  } finally {
    d.free();
  }
}

/** Runs `fn` on the guest's source handle, freeing it whatever happens. */
async function onSource(ctx: StageContext, fn: (d: Domain) => Promise<void>): Promise<boolean> {
  const uuid = ctx.checkpoint.results.check?.domainUuid;
  const src = await ctx.source();
  const d = uuid ? await src.lookupDomainByUUID(uuid) : await src.lookupDomain(ctx.request.vm);
  if (!d) return false;
  try {
    await fn(d);
    return true;
  } finally {
    d.free();
  }
}

/**
 * A guest running nowhere is started on the source only when this migration
 * is why: it ran before, a migration was started and did not complete, and
 * the destination holds no definition of it. A guest its owner shut down stays down.
 */
export function shouldRestartOnSource(cp: StageContext['checkpoint'], destinationHasDefinition: boolean): boolean {
  const pre = cp.results.prepare?.preState;
  const m = cp.results.migrate;
  return (pre === 'running' || pre === 'paused') && !!m?.startedAt && m.outcome !== 'completed' && !destinationHasDefinition;
}

export const recoverStage: Stage = {
  name: 'recover',
  deadlineMs: (config) => config.stages.recover_deadline,
  async run(ctx): Promise<StageOutcome> {
    const actions: string[] = [];
    const aborted = await abortRunningJob(ctx);
    if (aborted) actions.push(aborted);
    const p = await observePlacement(ctx);
    const vm = ctx.request.vm;
    switch (p.on) {
      case 'destination': {
        // Been here before: finish already failed once with the guest on the destination.
        if (ctx.checkpoint.results.recover?.guestOn === 'destination') {
          throw migrationError('RECOVERY_INCOMPLETE', { name: vm, detail: `it runs on the destination but could not be finished there (${ctx.checkpoint.error?.reason ?? 'unknown'}); left for an operator` });
        }
        return { next: 'finish', clearError: true, results: { recover: { actions, guestOn: 'destination' } }, detail: 'the guest runs on the destination: the migration completed after all' };
      }
      case 'both': {
        // Only an incoming copy that never started (paused on the destination) is safe to drop.
        if (p.source?.state === 'running' && p.destination?.state === 'paused') {
          await cleanDestination(ctx, p, actions);
          return { next: 'done', results: { recover: { actions, guestOn: 'source' } }, detail: actions.join('; ') };
        }
        throw migrationError('RECOVERY_INCOMPLETE', { name: vm, detail: `the guest is active on both hosts (source ${p.source?.state}, destination ${p.destination?.state}); left untouched for an operator` });
      }
      case 'source': {
        if (p.source?.state === 'paused' && ctx.checkpoint.results.prepare?.preState === 'running') {
          await onSource(ctx, (d) => d.resume());
          actions.push('resumed the guest on the source (the failed migration had paused it)');
        }
        await cleanDestination(ctx, p, actions);
        return { next: 'done', results: { recover: { actions, guestOn: 'source' } }, detail: actions.join('; ') || 'the guest runs on the source' };
      }
      case 'nowhere': {
        if (!shouldRestartOnSource(ctx.checkpoint, p.destination !== null)) {
          const why = p.destination ? 'the destination holds its definition' : 'it was not running because of this migration';
          return { next: 'done', results: { recover: { actions, guestOn: 'nowhere' } }, detail: `the guest runs on neither host and was left so: ${why}` };
        }
        const started = await onSource(ctx, async (d) => {
          await d.start();
          if (ctx.checkpoint.results.prepare?.preState === 'paused') await d.suspend();
        });
        if (!started) throw migrationError('RECOVERY_INCOMPLETE', { name: vm, detail: 'the guest runs nowhere and the source no longer defines it' });
        actions.push('started the guest on the source: the failed migration left it running on neither host');
        return { next: 'done', results: { recover: { actions, guestOn: 'source' } }, detail: actions.join('; ') };
      }
      case 'unknown':
        throw migrationError('TRANSIENT', { detail: `cannot tell where ${vm} runs: the source is not running it and the destination cannot be reached (${p.destinationError})` });
    }
  },
};
