/**
 * Connection: one virConnectPtr. Closing waits for calls still running on
 * it; domains, pools and volumes keep their own reference in libvirt, so
 * they stay usable after close() until they are freed.
 */
import { Caller, callAsync } from './call.js';
import { VirErrorCode, isVirError } from './errors.js';
import { ConnectionEvents } from './events.js';
import type { ConnPtr, DomainPtr, HeapPtr, Libvirt, NativeFn, NodeInfoStruct, Out, PoolPtr } from './ffi.js';
import { NativeHandle } from './handle.js';
import { LibvirtDomain } from './domain.js';
import { LibvirtPool, LibvirtVolume } from './storage.js';
import type { Connection, Domain, MigrationEventHandlers, NodeInfo, StoragePool, StorageVolume } from './types.js';

export class LibvirtConnection extends NativeHandle<ConnPtr> implements Connection {
  readonly uri: string;
  readonly #c: Caller;
  readonly #events: ConnectionEvents;
  /** remember(): facts of the host computed once for this connection's life. */
  readonly #facts = new Map<string, Promise<unknown>>();

  /** Takes ownership of `ptr`; `onClosed` runs once the pointer is closed (or finalized). */
  constructor(lv: Libvirt, ptr: ConnPtr, uri: string, onClosed: () => void) {
    const events = new ConnectionEvents(lv);
    super(lv, ptr, 'connection', async (p) => {
      try {
        // Subscriptions end first: deregistering needs the open pointer, and
        // their koffi callbacks may only go once libvirt has let go of them.
        await events.endAll(p);
        await callAsync(lv.api.virConnectClose, p); // remote: a goodbye RPC, so async
      } finally {
        onClosed();
      }
    });
    this.uri = uri;
    this.#c = new Caller(lv, ptr, this);
    this.#events = events;
  }

  close(): Promise<void> {
    return this.releaseHandle();
  }

  /**
   * virConnectSetKeepAlive. Resolves false where the driver has no keepalive
   * (local drivers such as test:///); other failures reject.
   */
  setKeepAlive(intervalSec: number, count: number): Promise<boolean> {
    return this.use(async (p) => {
      try {
        await this.#c.int(this.#c.lv.api.virConnectSetKeepAlive, p, intervalSec, count);
        return true;
      } catch (e) {
        if (isVirError(e) && e.code === VirErrorCode.NO_SUPPORT) return false;
        throw e;
      }
    });
  }

  isAlive(): boolean {
    const p = this.peek();
    return p !== null && this.#c.lv.api.virConnectIsAlive(p) === 1;
  }

  isBusy(): boolean {
    return this.#c.busy;
  }

  async whenIdle(withinMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), withinMs)));
    try {
      return await Promise.race([this.#c.idle().then(() => true as const), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  remember<T>(key: string, compute: () => Promise<T>): Promise<T> {
    let p = this.#facts.get(key) as Promise<T> | undefined;
    if (!p) {
      p = compute();
      this.#facts.set(key, p);
      // A failure is not a fact: the next caller asks again.
      p.catch(() => this.#facts.delete(key));
    }
    return p;
  }

  capabilities(): Promise<string> {
    return this.use((p) => this.#c.some(this.#c.lv.api.virConnectGetCapabilities, p));
  }

  hypervisorType(): Promise<string> {
    return this.use((p) => this.#c.some(this.#c.lv.api.virConnectGetType, p));
  }

  hostname(): Promise<string> {
    return this.use((p) => this.#c.some(this.#c.lv.api.virConnectGetHostname, p));
  }

  nodeInfo(): Promise<NodeInfo> {
    return this.use(async (p) => {
      const out: Partial<NodeInfoStruct> = {};
      await this.#c.int(this.#c.lv.api.virNodeGetInfo, p, out);
      return { model: out.model ?? '', memoryKiB: Number(out.memory ?? 0), cpus: out.cpus ?? 0, mhz: out.mhz ?? 0 };
    });
  }

  freeMemory(): Promise<number> {
    return this.use((p) => this.#c.nonZero(this.#c.lv.api.virNodeGetFreeMemory, p));
  }

  lookupDomain(name: string): Promise<Domain | null> {
    return this.use(async (p) => {
      const dom = await this.#c.lookup(VirErrorCode.NO_DOMAIN, this.#c.lv.api.virDomainLookupByName, p, name);
      return dom === null ? null : new LibvirtDomain(this.#c, dom);
    });
  }

  lookupDomainByUUID(uuid: string): Promise<Domain | null> {
    return this.use(async (p) => {
      const dom = await this.#c.lookup(VirErrorCode.NO_DOMAIN, this.#c.lv.api.virDomainLookupByUUIDString, p, uuid);
      return dom === null ? null : new LibvirtDomain(this.#c, dom);
    });
  }

  listDomains(): Promise<Domain[]> {
    return this.use(async (p) => {
      const ptrs = await this.#listAll<DomainPtr>(this.#c.lv.api.virConnectListAllDomains, p);
      return ptrs.map((d) => new LibvirtDomain(this.#c, d));
    });
  }

  defineDomain(xml: string): Promise<Domain> {
    return this.use(async (p) => new LibvirtDomain(this.#c, await this.#c.some(this.#c.lv.api.virDomainDefineXML, p, xml)));
  }

  createDomain(xml: string): Promise<Domain> {
    return this.use(
      async (p) => new LibvirtDomain(this.#c, await this.#c.some(this.#c.lv.api.virDomainCreateXML, p, xml, 0)),
    );
  }

  lookupPool(name: string): Promise<StoragePool | null> {
    return this.use(async (p) => {
      const pool = await this.#c.lookup(VirErrorCode.NO_STORAGE_POOL, this.#c.lv.api.virStoragePoolLookupByName, p, name);
      return pool === null ? null : new LibvirtPool(this.#c, pool);
    });
  }

  listPools(): Promise<StoragePool[]> {
    return this.use(async (p) => {
      const ptrs = await this.#listAll<PoolPtr>(this.#c.lv.api.virConnectListAllStoragePools, p);
      return ptrs.map((pool) => new LibvirtPool(this.#c, pool));
    });
  }

  lookupVolumeByPath(path: string): Promise<StorageVolume | null> {
    return this.use(async (p) => {
      const vol = await this.#c.lookup(VirErrorCode.NO_STORAGE_VOL, this.#c.lv.api.virStorageVolLookupByPath, p, path);
      return vol === null ? null : LibvirtVolume.wrap(this.#c, vol);
    });
  }

  onMigrationEvents(domain: Domain, handlers: MigrationEventHandlers): Promise<() => Promise<void>> {
    if (!(domain instanceof LibvirtDomain)) {
      return Promise.reject(new TypeError('onMigrationEvents needs a Domain from this libvirt binding'));
    }
    // libvirt keeps the domain's UUID to filter on, so the handle is only needed while registering.
    return this.use((p) => domain.pinned((d) => this.#events.subscribe(this.#c, p, d, handlers)));
  }

  /** virConnectListAll*: libvirt hands over an array of new references, which we free() after copying. */
  async #listAll<P extends bigint>(
    fn: NativeFn<[ConnPtr, Out<HeapPtr | null>, number], number>,
    p: ConnPtr,
  ): Promise<P[]> {
    const { lv } = this.#c;
    const out: Out<HeapPtr | null> = [null];
    const count = await this.#c.int(fn, p, out, 0);
    const array = out[0];
    if (array === null) return [];
    try {
      return lv.decodePointers<P>(array, count);
    } finally {
      lv.freeHeap(array);
    }
  }
}
