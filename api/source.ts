/**
 * The API's view of the source host: one libvirt connection, reopened when
 * it dies, and every lookup bounded by libvirt.lookup_timeout so a hung
 * libvirtd turns into a 503, not a hung request.
 */
import type { Config } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { Connection, Domain, Hypervisor } from '../shared/libvirt/types.js';
import { withTimeout } from '../shared/timeout.js';

export interface SourceHost {
  /** The domain, or null when the source has no such VM. Throws SOURCE_UNAVAILABLE. */
  lookup(name: string): Promise<Domain | null>;
  connection(): Promise<Connection>;
  close(): Promise<void>;
}

const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  withTimeout(p, ms, () => migrationError('SOURCE_UNAVAILABLE', { detail: `${what} took longer than ${ms} ms` }));

export function createSourceHost(config: Config, hypervisor: Hypervisor): SourceHost {
  let conn: Connection | null = null;
  let opening: Promise<Connection> | null = null;
  const connection = async (): Promise<Connection> => {
    if (conn?.isAlive()) return conn;
    if (!opening) {
      const stale = conn;
      conn = null;
      void stale?.close().catch(() => undefined);
      opening = hypervisor
        .open(config.libvirt.source_uri, { timeoutMs: config.libvirt.lookup_timeout })
        .then((c) => (conn = c))
        .catch((e: unknown) => {
          throw migrationError('SOURCE_UNAVAILABLE', { detail: e instanceof Error ? e.message : String(e) });
        })
        .finally(() => (opening = null));
    }
    return opening;
  };
  return {
    connection,
    async lookup(name) {
      // One budget for connecting and looking up together.
      const deadline = Date.now() + config.libvirt.lookup_timeout;
      const c = await bounded(connection(), config.libvirt.lookup_timeout, 'connecting to the source libvirt');
      const pending = c.lookupDomain(name).catch((e: unknown) => {
        throw migrationError('SOURCE_UNAVAILABLE', { detail: e instanceof Error ? e.message : String(e) });
      });
      try {
        return await bounded(pending, Math.max(1, deadline - Date.now()), 'looking the VM up');
      } catch (e) {
        // A lookup that answers after we gave up still holds a handle: free it then.
        void pending.then((d) => d?.free()).catch(() => undefined);
        throw e;
      }
    },
    async close() {
      await conn?.close().catch(() => undefined);
      conn = null;
    },
  };
}
