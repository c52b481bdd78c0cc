/**
 * Stage `finish` (seed: "do finish if migration successful"): verify the guest
 * runs on the destination and is persistent there, and that the source no
 * longer holds it (unless configured to keep the definition).
 */
import { migrationError } from '../../shared/errors.js';
import { finalProgress } from '../policy/progress.js';
import { isActiveState, viewOn } from './placement.js';
import type { Stage } from './stage.js';

export const finishStage: Stage = {
  name: 'finish',
  deadlineMs: (config) => config.stages.finish_deadline,
  async run(ctx) {
    const { request } = ctx;
    const uuid = ctx.checkpoint.results.check?.domainUuid;
    const source = await ctx.source();
    // Two hosts, two connections: ask both at once. Nothing changes on the source unless the destination runs it.
    const [dstAsked, srcAsked] = await Promise.allSettled([
      (async () => viewOn(await ctx.destination(), request.vm, uuid))(),
      uuid ? source.lookupDomainByUUID(uuid) : source.lookupDomain(request.vm),
    ]);
    const d = srcAsked.status === 'fulfilled' ? srcAsked.value : null;
    if (dstAsked.status === 'rejected') {
      d?.free();
      throw dstAsked.reason;
    }
    if (srcAsked.status === 'rejected') throw srcAsked.reason;
    const dst = dstAsked.value;
    if (!dst || !isActiveState(dst.state)) {
      d?.free();
      throw migrationError('FINISH_FAILED', { name: request.vm, detail: `the destination reports it ${dst ? dst.state : 'missing'}` });
    }
    let sourceUndefined = true;
    if (d) {
      try {
        const { state } = await d.state();
        if (isActiveState(state)) {
          throw migrationError('FINISH_FAILED', { name: request.vm, detail: `it is still ${state} on the source as well` });
        }
        if (!request.keepSourceDefinition) {
          await d.undefine();
          ctx.log.info({ vm: request.vm }, 'undefined the leftover source definition');
        } else sourceUndefined = false;
      } finally {
        d.free();
      }
    }
    if (!dst.persistent) throw migrationError('FINISH_FAILED', { name: request.vm, detail: 'it runs on the destination but is not persistent there' });
    // Paused by the deadline action (or by libvirt at switch-over): it ran before, so it runs again.
    if (dst.state === 'paused' && ctx.checkpoint.results.prepare?.preState === 'running') {
      const d = await (await ctx.destination()).lookupDomainByUUID(dst.uuid);
      if (d) {
        try {
          await d.resume();
        } finally {
          d.free();
        }
        await ctx.note('finish', 'resumed the guest on the destination: it was running before the migration');
      }
    }
    await ctx.progress(finalProgress(ctx.checkpoint.results.migrate?.stats ?? {}));
    return { next: 'done', results: { finish: { persistent: dst.persistent, sourceUndefined } }, detail: `running and persistent on ${request.remoteHost}` };
  },
};
