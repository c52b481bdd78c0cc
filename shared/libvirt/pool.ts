/**
 * Connection reuse for workers. A job's connections go back to an idle set
 * when the job closes them, and the next job opening the same URI takes one
 * that is still alive and has no call left running on it, instead of paying
 * for a new one: a TCP handshake, authentication and the remote driver's
 * open, then the goodbye RPC at close (about 5 ms per connection on the lab,
 * and a short migration opens four). What a connection remembers about its
 * host (Connection.remember: capabilities, hypervisor type) is reused with it.
 *
 * A lent connection is a Lease: the caller sees an ordinary Connection whose
 * close() gives it back. A connection is given back only when nothing it
 * still does could reach the next holder: its migration-event subscriptions
 * are ended first, and one with a call still running (a call hung on a dead
 * daemon, left behind by a stage that timed out) or whose transport is gone
 * is closed instead, exactly as without the pool. Idle connections close
 * after `idleMs`.
 */
import { HandleReleasedError } from './handle.js';
import type { Connection, Domain, Hypervisor, MigrationEventHandlers, OpenOptions } from './types.js';

export interface PoolOptions {
  /** How long a connection nobody uses stays open; 0: never kept. */
  idleMs: number;
  /** Idle connections kept per URI at most; more are closed when given back. */
  maxIdlePerUri: number;
  /**
   * Oldest a connection may be and still be lent (default 10 min): one that
   * keeps being reused would otherwise never be opened again, and a host
   * name that moved would keep pointing at the old host here.
   */
  maxAgeMs?: number;
  /**
   * How long a give-back waits for calls still running on the connection
   * (a handle's free() is a call too) before closing it instead. Default 1 s:
   * libvirt answers in milliseconds, and a call hung on a dead daemon never.
   */
  settleMs?: number;
}

interface Idle {
  conn: Connection;
  timer: NodeJS.Timeout;
}

const DEFAULT_MAX_AGE_MS = 10 * 60_000;

export interface PoolStats {
  opened: number;
  reused: number;
  idle: number;
}

export class ConnectionPool implements Hypervisor {
  readonly #idle = new Map<string, Idle[]>();
  /** When each connection the pool opened was opened. */
  readonly #openedAt = new WeakMap<Connection, number>();
  #closed = false;
  #opened = 0;
  #reused = 0;

  constructor(
    private readonly inner: Hypervisor,
    private readonly opts: PoolOptions,
  ) {}

  get stats(): PoolStats {
    let idle = 0;
    for (const list of this.#idle.values()) idle += list.length;
    return { opened: this.#opened, reused: this.#reused, idle };
  }

  async open(uri: string, opts: OpenOptions = {}): Promise<Connection> {
    const key = `${opts.readonly ? 'ro' : 'rw'} ${uri}`;
    const list = this.#idle.get(key) ?? [];
    // Most recently given back first: the least likely to have gone stale.
    for (let e = list.pop(); e; e = list.pop()) {
      clearTimeout(e.timer);
      if (e.conn.isAlive() && !e.conn.isBusy() && !this.#tooOld(e.conn)) {
        this.#reused++;
        return new Lease(e.conn, (c, end) => this.#giveBack(key, c, end));
      }
      void e.conn.close().catch(() => undefined);
    }
    const conn = await this.inner.open(uri, opts);
    this.#openedAt.set(conn, Date.now());
    this.#opened++;
    return new Lease(conn, (c, end) => this.#giveBack(key, c, end));
  }

  /** Closes every idle connection; connections lent out close when given back. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    await Promise.all(all.map((e) => (clearTimeout(e.timer), e.conn.close().catch(() => undefined))));
  }

  #tooOld(conn: Connection): boolean {
    return Date.now() - (this.#openedAt.get(conn) ?? 0) > (this.opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS);
  }

  /**
   * Kept only if wanted, alive, and idle within settleMs. Not idle (a call hung
   * on a dead daemon): closed without ending the subscriptions first, since
   * their deregistration would queue behind that call for ever; closing ends
   * them without queueing.
   */
  async #giveBack(key: string, conn: Connection, endSubscriptions: () => Promise<void>): Promise<void> {
    const wanted = () => !this.#closed && this.opts.idleMs > 0 && (this.#idle.get(key)?.length ?? 0) < this.opts.maxIdlePerUri && conn.isAlive() && !this.#tooOld(conn);
    if (!wanted() || !(await conn.whenIdle(this.opts.settleMs ?? 1000))) return conn.close();
    // The next holder must not receive this holder's events.
    await endSubscriptions();
    if (!wanted()) return conn.close();
    const list = this.#idle.get(key) ?? [];
    const timer = setTimeout(() => {
      const at = list.findIndex((e) => e.conn === conn);
      if (at >= 0) list.splice(at, 1);
      void conn.close().catch(() => undefined);
    }, this.opts.idleMs);
    // The timer alone must not keep the process alive (libvirt's event loop, running while any connection is open, does).
    timer.unref();
    list.push({ conn, timer });
    this.#idle.set(key, list);
  }
}

/** A connection lent by the pool: every call goes to it until close(), which gives it back. */
class Lease implements Connection {
  readonly uri: string;
  #conn: Connection | null;
  #closing: Promise<void> | null = null;
  readonly #subscriptions = new Set<() => Promise<void>>();

  constructor(
    conn: Connection,
    /** Gives the connection back; `endSubscriptions` before anyone else may have it. */
    private readonly giveBack: (conn: Connection, endSubscriptions: () => Promise<void>) => Promise<void>,
  ) {
    this.#conn = conn;
    this.uri = conn.uri;
  }

  get #c(): Connection {
    if (!this.#conn) throw new HandleReleasedError('connection handle was already released');
    return this.#conn;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const conn = this.#conn;
      this.#conn = null;
      if (!conn) return;
      await this.giveBack(conn, async () => void (await Promise.all([...this.#subscriptions].map((off) => off().catch(() => undefined)))));
    })();
    return this.#closing;
  }

  isAlive(): boolean {
    return this.#conn !== null && this.#conn.isAlive();
  }
  isBusy(): boolean {
    return this.#conn !== null && this.#conn.isBusy();
  }
  whenIdle(withinMs: number): Promise<boolean> {
    return this.#call((c) => c.whenIdle(withinMs));
  }

  // Every call below is asynchronous for the caller, a released lease included.
  #call<R>(f: (c: Connection) => Promise<R>): Promise<R> {
    try {
      return f(this.#c);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  remember<T>(key: string, compute: () => Promise<T>): Promise<T> {
    return this.#call((c) => c.remember(key, compute));
  }
  capabilities = () => this.#call((c) => c.capabilities());
  hypervisorType = () => this.#call((c) => c.hypervisorType());
  hostname = () => this.#call((c) => c.hostname());
  nodeInfo = () => this.#call((c) => c.nodeInfo());
  freeMemory = () => this.#call((c) => c.freeMemory());
  lookupDomain = (name: string) => this.#call((c) => c.lookupDomain(name));
  lookupDomainByUUID = (uuid: string) => this.#call((c) => c.lookupDomainByUUID(uuid));
  listDomains = () => this.#call((c) => c.listDomains());
  defineDomain = (xml: string) => this.#call((c) => c.defineDomain(xml));
  createDomain = (xml: string) => this.#call((c) => c.createDomain(xml));
  lookupPool = (name: string) => this.#call((c) => c.lookupPool(name));
  listPools = () => this.#call((c) => c.listPools());
  lookupVolumeByPath = (path: string) => this.#call((c) => c.lookupVolumeByPath(path));

  async onMigrationEvents(domain: Domain, handlers: MigrationEventHandlers): Promise<() => Promise<void>> {
    const off = await this.#call((c) => c.onMigrationEvents(domain, handlers));
    // Given back while registering: the subscription must not stay with the connection.
    if (this.#conn === null) {
      await off().catch(() => undefined);
      throw new HandleReleasedError('connection handle was already released');
    }
    let ended: Promise<void> | null = null;
    const unsubscribe = () => {
      ended ??= (this.#subscriptions.delete(unsubscribe), off());
      return ended;
    };
    this.#subscriptions.add(unsubscribe);
    return unsubscribe;
  }
}
