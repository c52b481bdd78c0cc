/**
 * Stage `connect` (seed: "connect migration destination, guest vm
 * config/params transfer and setup"): open the destination, take the guest's
 * persistent definition and decide the migration flags. Read-only; the result
 * lives in the checkpoint so a resumed job migrates with the same parameters.
 */
import { MigrateFlag } from '../../shared/libvirt/types.js';
import { withSourceDomain } from './placement.js';
import type { Stage } from './stage.js';

export function migrationFlags(keepSourceDefinition: boolean): number {
  const base = MigrateFlag.LIVE | MigrateFlag.PEER2PEER | MigrateFlag.TUNNELLED | MigrateFlag.PERSIST_DEST;
  return keepSourceDefinition ? base : base | MigrateFlag.UNDEFINE_SOURCE;
}

export const connectStage: Stage = {
  name: 'connect',
  deadlineMs: (config) => config.stages.connect_deadline,
  async run(ctx) {
    const { request } = ctx;
    await ctx.destination(); // reachable now, or a transient fault to retry
    return withSourceDomain(ctx, async (domain) => {
      // The destination will keep the guest's persistent definition, not its live one,
      // so a later restart there boots what the owner configured. The XML itself is
      // read right before migrating: with secure details it must not sit in Redis.
      const persistent = await domain.isPersistent();
      await domain.xml({ migratable: true, inactive: persistent });
      return {
        next: 'prepare',
        results: { connect: { persistent, flags: migrationFlags(request.keepSourceDefinition) } },
        detail: `destination ${request.destinationUri} connected; ${persistent ? 'persistent' : 'transient'} guest`,
      };
    });
  },
};
