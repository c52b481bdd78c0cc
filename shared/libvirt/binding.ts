/**
 * createHypervisor(): the koffi-backed implementation of the Hypervisor port.
 *
 * Opening is the one call with no connection to read errors from, and the
 * one that can hang (a host that drops SYNs, a daemon that never answers),
 * so it gets its own deadline and reads its error from the process-wide
 * error handler (see ffi.ts).
 */
import { callAsync, openConnection } from './call.js';
import { LibvirtConnection } from './connection.js';
import { watchDomains } from './domain-watch.js';
import { LibvirtTimeoutError } from './errors.js';
import { type ConnPtr, type Libvirt, loadLibvirt } from './ffi.js';
import type { Connection, Hypervisor, OpenOptions } from './types.js';

export interface HypervisorOptions {
  /** Deadline for open() when the caller gives none. Default 30 000 ms. */
  defaultOpenTimeoutMs?: number;
  /**
   * Client keepalive set on every new connection (virConnectSetKeepAlive):
   * a dead peer is noticed after about interval × (count + 1) seconds.
   * Default 5 s × 3; false leaves libvirt's own setting.
   */
  keepAlive?: { intervalSec: number; count: number } | false;
}

export interface HypervisorStats {
  /** Connections this Hypervisor opened and has not closed yet, late opens included. */
  openConnections: number;
  /** Connections that opened after their deadline and were closed unused. */
  lateOpensClosed: number;
  /** Process-wide: whether libvirt's event loop is being driven right now. */
  eventLoopRunning: boolean;
  /** Process-wide: completed event loop iterations. */
  eventLoopIterations: number;
}

export interface LibvirtHypervisor extends Hypervisor {
  stats(): HypervisorStats;
}

const DEFAULT_OPEN_TIMEOUT_MS = 30_000;
const DEFAULT_KEEPALIVE = { intervalSec: 5, count: 3 };
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout's limit

export function createHypervisor(options: HypervisorOptions = {}): LibvirtHypervisor {
  const defaultTimeoutMs = options.defaultOpenTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
  const keepAlive = options.keepAlive ?? DEFAULT_KEEPALIVE;
  let openConnections = 0;
  let lateOpensClosed = 0;

  const closed = (lv: Libvirt) => () => {
    openConnections--;
    lv.loop.release();
  };

  /** A connection that opened after its caller gave up: nobody will use it. */
  const closeLate = (lv: Libvirt, ptr: ConnPtr) => {
    void callAsync(lv.api.virConnectClose, ptr)
      .catch(() => undefined)
      .finally(() => {
        lateOpensClosed++;
        closed(lv)();
      });
  };

  async function open(uri: string, opts: OpenOptions = {}): Promise<Connection> {
    const lv = loadLibvirt();
    const timeoutMs = opts.timeoutMs ?? defaultTimeoutMs;
    if (!(timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS)) {
      throw new RangeError(`timeoutMs must be in (0, ${MAX_TIMER_MS}], got ${timeoutMs}`);
    }
    // Running before the open, so the daemon's keepalive pings are answered from the start.
    lv.loop.acquire();
    openConnections++;
    const fn = opts.readonly ? lv.api.virConnectOpenReadOnly : lv.api.virConnectOpen;
    const opening = openConnection(lv, fn, uri);

    const ptr = await new Promise<ConnPtr>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new LibvirtTimeoutError(`open ${uri}`, timeoutMs));
        // The pool thread is still inside virConnectOpen; clean up when it returns.
        opening.then(
          (late) => closeLate(lv, late),
          () => closed(lv)(),
        );
      }, timeoutMs);
      opening.then(
        (p) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(p);
        },
        (e: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          closed(lv)();
          reject(e);
        },
      );
    });

    const conn = new LibvirtConnection(lv, ptr, uri, closed(lv));
    if (keepAlive !== false) {
      try {
        await conn.setKeepAlive(keepAlive.intervalSec, keepAlive.count);
      } catch (e) {
        await conn.close();
        throw e;
      }
    }
    return conn;
  }

  return {
    open,
    watchDomains: (uri, onEvent, opts) => watchDomains(loadLibvirt(), uri, onEvent, { timeoutMs: defaultTimeoutMs, ...opts }),
    stats: () => {
      const lv = loadLibvirt();
      return {
        openConnections,
        lateOpensClosed,
        eventLoopRunning: lv.loop.running,
        eventLoopIterations: lv.loop.iterations,
      };
    },
  };
}
