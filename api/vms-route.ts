/**
 * GET /vms: the source host's guests, so a client (the migrations page's
 * form above all) can offer names instead of making the user type them.
 * Bounded like every source call: a hung libvirtd is a 503, not a hang.
 */
import type { Express, NextFunction, Request, Response } from 'express';
import { isMigrationError, migrationError } from '../shared/errors.js';
import type { Domain } from '../shared/libvirt/types.js';
import { withTimeout } from '../shared/timeout.js';
import type { ApiDeps } from './app.js';

export interface VmSummary {
  name: string;
  uuid: string;
  state: string;
  persistent: boolean;
  /** The id of the VM's queued or running migration, or null. */
  migration: string | null;
}

async function describe(d: Domain): Promise<Omit<VmSummary, 'migration'>> {
  const [{ state }, persistent] = await Promise.all([d.state(), d.isPersistent()]);
  return { name: d.name, uuid: d.uuid, state, persistent };
}

export function addVmRoutes(app: Express, deps: Pick<ApiDeps, 'source' | 'tasks' | 'config'>): void {
  const { config } = deps;
  app.get('/vms', (_req: Request, res: Response, next: NextFunction) => {
    const ms = config.libvirt.lookup_timeout;
    const listed = (async () => {
      const conn = await deps.source.connection();
      const domains = await conn.listDomains();
      try {
        return await Promise.all(domains.map(describe));
      } finally {
        for (const d of domains) d.free();
      }
    })();
    withTimeout(listed, ms, () => migrationError('SOURCE_UNAVAILABLE', { detail: `listing the guests took longer than ${ms} ms` }))
      .catch((e: unknown) => {
        if (isMigrationError(e)) throw e;
        throw migrationError('SOURCE_UNAVAILABLE', { detail: e instanceof Error ? e.message : String(e) });
      })
      .then(async (vms) => {
        vms.sort((a, b) => a.name.localeCompare(b.name));
        const active = await Promise.all(vms.map((vm) => deps.tasks.activeFor(config.libvirt.source_uri, vm.name)));
        res.json(vms.map((vm, i): VmSummary => ({ ...vm, migration: active[i] ?? null })));
      })
      .catch(next);
  });
}
