/**
 * The API's view of the source host: one libvirt connection, reopened when
 * it dies, and every lookup bounded by libvirt.lookup_timeout so a hung
 * libvirtd turns into a 503, not a hung request.
 *
 * Whether a VM is there (every POST asks) is answered from the source's VM
 * names (vm-names.ts) when they hold it: a libvirt lookup is two calls
 * through libuv's thread pool, queued one at a time on the connection, the
 * largest cost of a POST (BENCHMARKS.md, figure 4). The names come from a
 * watch of their own (Hypervisor.watchDomains), started with the first
 * question; a name they do not hold is still looked up. The names are
 * dropped, whole, when the watch's connection dies or the source connection
 * is reopened, and a new watch is started (at most once per WATCH_RETRY_MS).
 */
import type { Config } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { Connection, Domain, DomainWatch, Hypervisor } from '../shared/libvirt/types.js';
import { withTimeout } from '../shared/timeout.js';
import { VmNameView } from './vm-names.js';

export interface SourceHost {
  /** The domain, or null when the source has no such VM. Throws SOURCE_UNAVAILABLE. */
  lookup(name: string): Promise<Domain | null>;
  /** Whether the source has the VM: from its known names, else a lookup. Throws SOURCE_UNAVAILABLE. */
  exists(name: string): Promise<boolean>;
  /** How many names the source's watch holds, or null with no working watch (for tests and diagnostics). */
  knownNames(): number | null;
  connection(): Promise<Connection>;
  close(): Promise<void>;
}

const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  withTimeout(p, ms, () => migrationError('SOURCE_UNAVAILABLE', { detail: `${what} took longer than ${ms} ms` }));

/** Least time between two watches started, so a source that keeps failing is not hammered. */
export const WATCH_RETRY_MS = 5000;
/** Longest a watch may take to open and list the source's domains. */
const WATCH_START_MS = 30_000;

export interface SourceHostOptions {
  /** Clock for the watch's retry spacing (default: the system's). */
  now?: () => number;
}

export function createSourceHost(config: Config, hypervisor: Hypervisor, opts: SourceHostOptions = {}): SourceHost {
  const now = opts.now ?? Date.now;
  let conn: Connection | null = null;
  let opening: Promise<Connection> | null = null;
  let closed = false;
  /** The current watch and the names it keeps; null when there is none (yet, or any more). */
  let names: { view: VmNameView; watch: DomainWatch | null } | null = null;
  let lastWatchStart = Number.NEGATIVE_INFINITY;
  const dropNames = () => {
    const w = names;
    names = null;
    void w?.watch?.close().catch(() => undefined);
  };
  const startWatch = () => {
    if (closed || names || !hypervisor.watchDomains || now() - lastWatchStart < WATCH_RETRY_MS) return;
    lastWatchStart = now();
    const current: { view: VmNameView; watch: DomainWatch | null } = { view: new VmNameView(), watch: null };
    names = current;
    // A watch that never finishes starting (a daemon that stopped answering) is given up, and
    // closed if it starts later; lookups answer meanwhile, and another is tried.
    setTimeout(() => {
      if (names === current && !current.watch) names = null;
    }, Math.max(WATCH_START_MS, config.libvirt.lookup_timeout)).unref();
    hypervisor.watchDomains(config.libvirt.source_uri, (e) => current.view.apply(e), { timeoutMs: config.libvirt.lookup_timeout }).then(
      (watch) => {
        // Dropped (or closed) while it was starting: nobody will read it.
        if (names !== current) return void watch.close().catch(() => undefined);
        current.watch = watch;
        current.view.fill(watch.listed);
      },
      () => {
        if (names === current) names = null; // tried again after WATCH_RETRY_MS; lookups meanwhile
      },
    );
  };
  /** true only when the watch says the VM is there. */
  const known = (name: string): boolean => {
    if (names?.watch && !names.watch.isAlive()) dropNames();
    if (!names) startWatch();
    return names?.view.filled === true && names.view.has(name);
  };
  const connection = async (): Promise<Connection> => {
    if (conn?.isAlive()) return conn;
    if (!opening) {
      const stale = conn;
      conn = null;
      // A reopened source may have changed while nobody watched: its names are asked again.
      if (stale) dropNames();
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
  const lookup = async (name: string): Promise<Domain | null> => {
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
  };
  return {
    connection,
    lookup,
    async exists(name) {
      if (known(name)) return true;
      const d = await lookup(name);
      d?.free();
      return d !== null;
    },
    knownNames: () => (names?.watch && names.view.filled && names.watch.isAlive() ? names.view.size : null),
    async close() {
      closed = true;
      dropNames();
      await conn?.close().catch(() => undefined);
      conn = null;
    },
  };
}
