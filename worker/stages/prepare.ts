/**
 * Stage `prepare` (seed: "migration source prepare"): record the guest's state
 * before migrating, so recovery knows whether to resume it, and work out the
 * limits in force. The per-VM lock is BullMQ's deduplication id, taken at enqueue.
 */
import { effectiveDowntime } from '../../shared/config.js';
import { migrationError } from '../../shared/errors.js';
import { withSourceDomain } from './placement.js';
import type { Stage } from './stage.js';

export const prepareStage: Stage = {
  name: 'prepare',
  deadlineMs: (config) => config.stages.prepare_deadline,
  async run(ctx) {
    const { request } = ctx;
    return withSourceDomain(ctx, async (domain) => {
      const { state } = await domain.state();
      if (state !== 'running' && state !== 'paused') throw migrationError('BAD_STATE', { name: request.vm, state });
      // A resumed prepare keeps the first observation: the guest may be paused by us since.
      const preState = ctx.checkpoint.results.prepare?.preState ?? state;
      const downtimeMs = effectiveDowntime(request.downtimeMs);
      const bandwidthMiBs = request.bandwidth === 'unlimited' ? null : request.bandwidth;
      return {
        next: 'migrate',
        results: { prepare: { preState, downtimeMs, bandwidthMiBs } },
        detail: `guest ${preState}; max downtime ${downtimeMs === null ? "libvirt's default" : `${downtimeMs} ms`}; bandwidth ${bandwidthMiBs === null ? 'unlimited' : `${bandwidthMiBs} MiB/s`}`,
      };
    });
  },
};
