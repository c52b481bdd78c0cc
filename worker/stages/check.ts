/**
 * Stage `check` (seed: "migration source check"): every capability check,
 * all blockers at once. Read-only, so running it again after a crash is safe.
 */
import { migrationError, type ErrorJSON } from '../../shared/errors.js';
import { runChecks } from '../../shared/checks/index.js';
import { withSourceDomain } from './placement.js';
import type { Stage } from './stage.js';

/** One error for the task: the first blocker's code, every blocker's text. */
export function blockedError(blockers: ErrorJSON[]): ErrorJSON {
  const first = blockers[0] ?? migrationError('INTERNAL', { detail: 'blocked without a blocker' }).toJSON();
  return { code: first.code, key: first.key, reason: blockers.map((b) => b.reason).join('; '), details: { blockers } };
}

export const checkStage: Stage = {
  name: 'check',
  deadlineMs: (config) => config.stages.check_deadline,
  async run(ctx) {
    const { request } = ctx;
    return withSourceDomain(ctx, async (domain, source) => {
      const report = await runChecks({
        hypervisor: ctx.hypervisor,
        source,
        domain,
        remoteHost: request.remoteHost,
        destinationUri: request.destinationUri,
        connectTimeoutMs: ctx.config.libvirt.connect_timeout,
      });
      if (!report.ok) return { next: 'done', error: blockedError(report.blockers), detail: `${report.blockers.length} blocker(s)` };
      const { facts } = report;
      const dest = facts.destination.reachable ? facts.destination.host : null;
      return {
        next: 'connect',
        results: {
          check: {
            sourceHostUuid: facts.source?.uuid ?? '',
            destinationHostUuid: dest?.uuid ?? '',
            domainUuid: facts.vm.uuid,
            memoryKiB: facts.vm.memoryKiB,
            // A stale inactive copy on the destination is not ours to remove during recovery.
            destinationHadDefinition: facts.destination.reachable && facts.destination.clashes.some((c) => c.uuid === facts.vm.uuid),
          },
        },
        detail: `${report.results.length} checks passed`,
      };
    });
  },
};
