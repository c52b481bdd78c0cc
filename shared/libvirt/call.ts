/**
 * Running libvirt calls off the main thread and turning failures into VirError.
 *
 * libvirt keeps the last error per thread, and `.async` calls run on libuv
 * pool threads, so the main thread cannot ask virGetLastError()
 * (LIBVIRT-FFI.md pitfall 1). Two traces reach the main thread: the
 * connection's error handler (matched to calls by attribution.ts) and the
 * copy libvirt keeps on the connection (virConnCopyLastError, last failure
 * wins), used as the fallback and cleared after every failure so it is
 * never stale.
 *
 * A Caller runs one call at a time per connection, so every report has
 * exactly one suspect. migrateToURI3 is the exception (it runs for minutes
 * and the monitor must poll beside it); only another call failing in the
 * same instant can then take its error or give it one.
 */
import { VirError, VirErrorCode, type VirErrorInfo } from './errors.js';
import { Attribution } from './attribution.js';
import type { ConnPtr, ErrorSink, Libvirt, NativeFn } from './ffi.js';

/** Runs `fn` on a pool thread; rejects only when koffi itself fails. */
export function callAsync<A extends unknown[], R>(fn: NativeFn<A, R>, ...args: A): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    try {
      fn.async(...args, (err: unknown, result: R) => (err ? reject(err) : resolve(result)));
    } catch (e) {
      reject(e); // koffi's async queue is full, or an argument did not convert
    }
  });
}

function unexplained(what: string): VirErrorInfo {
  return { code: VirErrorCode.INTERNAL_ERROR, domain: 0, level: 2, message: `${what} failed without a libvirt error` };
}

/**
 * virConnectOpen has no connection to report through: its errors reach the
 * process-wide handler. Opens run concurrently (they may hang), so prefer
 * the report that names the host we were opening.
 */
export async function openConnection(
  lv: Libvirt,
  fn: NativeFn<[string], ConnPtr | null>,
  uri: string,
): Promise<ConnPtr> {
  const id = lv.openErrors.begin();
  try {
    const ptr = await callAsync(fn, uri);
    if (ptr !== null) return ptr;
    const host = hostOf(uri);
    const own = lv.openErrors.claim(id, host === '' ? undefined : (info) => info.message.includes(host));
    throw new VirError(own ?? unexplained(`virConnectOpen(${uri})`));
  } finally {
    lv.openErrors.end(id);
  }
}

function hostOf(uri: string): string {
  try {
    return new URL(uri).hostname;
  } catch {
    return '';
  }
}

/**
 * A connection's view of the C API: every call async and queued, every
 * failure a VirError. Domains, pools and volumes share their connection's
 * Caller, since libvirt reports their errors through the connection.
 */
export class Caller implements ErrorSink {
  readonly #errors = new Attribution();
  /** Settles when the call queued last is done. */
  #tail: Promise<void> = Promise.resolve();
  /** Calls queued or running, the long unqueued one included. */
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(
    readonly lv: Libvirt,
    readonly conn: ConnPtr,
    /** The Connection wrapper: handles keep it reachable, so it is not finalized under them. */
    readonly owner: object,
  ) {
    lv.routeErrors(conn, this);
  }

  /** Whether a call is queued or running on this connection (one may hang on a dead daemon). */
  get busy(): boolean {
    return this.#inFlight > 0;
  }

  /** Resolves once no call is queued or running (at once if none is). */
  idle(): Promise<void> {
    return this.#inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #left(): void {
    if (--this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  record(info: VirErrorInfo): void {
    this.#errors.record(info);
  }

  /** For calls returning int: -1 means failure. */
  int<A extends unknown[]>(fn: NativeFn<A, number>, ...args: A): Promise<number> {
    return this.#queued(() => this.#run(fn, args, (rc) => rc < 0));
  }

  /** As int(), but beside the queue: for the long call others must not wait behind. */
  async intUnqueued<A extends unknown[]>(fn: NativeFn<A, number>, ...args: A): Promise<number> {
    this.#inFlight++;
    try {
      return await this.#run(fn, args, (rc) => rc < 0);
    } finally {
      this.#left();
    }
  }

  /** For unsigned results where 0 means failure (virNodeGetFreeMemory). */
  async nonZero<A extends unknown[]>(fn: NativeFn<A, number | bigint>, ...args: A): Promise<number> {
    return Number(await this.#queued(() => this.#run(fn, args, (v) => Number(v) === 0)));
  }

  /** For calls returning a pointer or a string: NULL means failure. */
  async some<A extends unknown[], R>(fn: NativeFn<A, R | null>, ...args: A): Promise<R> {
    return (await this.#queued(() => this.#run(fn, args, (r) => r === null || r === undefined))) as R;
  }

  /** Lookups: NULL with `notFound` (e.g. VIR_ERR_NO_DOMAIN) is an answer, not an error. */
  async lookup<A extends unknown[], R>(notFound: number, fn: NativeFn<A, R | null>, ...args: A): Promise<R | null> {
    try {
      return await this.some(fn, ...args);
    } catch (e) {
      if (e instanceof VirError && e.code === notFound) return null;
      throw e;
    }
  }

  async #queued<R>(op: () => Promise<R>): Promise<R> {
    const before = this.#tail;
    let done!: () => void;
    this.#tail = new Promise<void>((resolve) => (done = resolve));
    this.#inFlight++;
    try {
      await before;
      return await op();
    } finally {
      this.#left();
      done();
    }
  }

  async #run<A extends unknown[], R>(fn: NativeFn<A, R>, args: A, failed: (r: R) => boolean): Promise<R> {
    const id = this.#errors.begin();
    try {
      const result = await callAsync(fn, ...args);
      if (failed(result)) {
        const own = this.#errors.claim(id);
        const copied = this.lv.takeConnError(this.conn);
        throw new VirError(own ?? copied ?? unexplained(fn.info.name));
      }
      return result;
    } finally {
      this.#errors.end(id);
    }
  }
}
