/**
 * Storage pools and volumes. Pool name/UUID and volume name/key are local
 * to the handle; a volume's path is a daemon call on remote connections,
 * so volumes are built asynchronously (`LibvirtVolume.wrap`).
 */
import type { Caller } from './call.js';
import { VirErrorCode } from './errors.js';
import type { PoolInfoStruct, PoolPtr, VolInfoStruct, VolPtr } from './ffi.js';
import { NativeHandle } from './handle.js';
import type { PoolState, StoragePool, StorageVolume } from './types.js';

/** virStoragePoolState, by number. */
const POOL_STATES: readonly PoolState[] = ['inactive', 'building', 'running', 'degraded', 'inaccessible'];

export class LibvirtPool extends NativeHandle<PoolPtr> implements StoragePool {
  readonly name: string;
  readonly uuid: string;
  readonly #c: Caller;

  /** Takes ownership of `ptr`. */
  constructor(caller: Caller, ptr: PoolPtr) {
    const { api } = caller.lv;
    super(caller.lv, ptr, 'storage pool', (p) => caller.int(api.virStoragePoolFree, p).then(() => undefined));
    this.#c = caller;
    this.name = api.virStoragePoolGetName(ptr) ?? '';
    const buf = Buffer.alloc(37);
    api.virStoragePoolGetUUIDString(ptr, buf);
    this.uuid = buf.toString('latin1', 0, 36);
  }

  info(): Promise<{ state: PoolState; capacity: number; allocation: number; available: number }> {
    return this.use(async (p) => {
      const out: Partial<PoolInfoStruct> = {};
      await this.#c.int(this.#c.lv.api.virStoragePoolGetInfo, p, out);
      return {
        state: POOL_STATES[out.state ?? 0] ?? 'inaccessible',
        capacity: Number(out.capacity ?? 0),
        allocation: Number(out.allocation ?? 0),
        available: Number(out.available ?? 0),
      };
    });
  }

  xml(): Promise<string> {
    return this.use((p) => this.#c.some(this.#c.lv.api.virStoragePoolGetXMLDesc, p, 0));
  }

  refresh(): Promise<void> {
    return this.use(async (p) => void (await this.#c.int(this.#c.lv.api.virStoragePoolRefresh, p, 0)));
  }

  lookupVolume(name: string): Promise<StorageVolume | null> {
    return this.use(async (p) => {
      const vol = await this.#c.lookup(VirErrorCode.NO_STORAGE_VOL, this.#c.lv.api.virStorageVolLookupByName, p, name);
      return vol === null ? null : LibvirtVolume.wrap(this.#c, vol);
    });
  }

  createVolume(xml: string): Promise<StorageVolume> {
    return this.use(async (p) => {
      const vol = await this.#c.some(this.#c.lv.api.virStorageVolCreateXML, p, xml, 0);
      return LibvirtVolume.wrap(this.#c, vol);
    });
  }

  free(): void {
    void this.releaseHandle().catch(() => undefined);
  }
}

export class LibvirtVolume extends NativeHandle<VolPtr> implements StorageVolume {
  readonly name: string;
  readonly key: string;
  readonly path: string;
  readonly #c: Caller;

  private constructor(caller: Caller, ptr: VolPtr, path: string) {
    const { api } = caller.lv;
    super(caller.lv, ptr, 'storage volume', (p) => caller.int(api.virStorageVolFree, p).then(() => undefined));
    this.#c = caller;
    this.name = api.virStorageVolGetName(ptr) ?? '';
    this.key = api.virStorageVolGetKey(ptr) ?? '';
    this.path = path;
  }

  /** Takes ownership of `ptr`, freeing it if the path cannot be read. */
  static async wrap(caller: Caller, ptr: VolPtr): Promise<LibvirtVolume> {
    try {
      const path = await caller.some(caller.lv.api.virStorageVolGetPath, ptr);
      return new LibvirtVolume(caller, ptr, path);
    } catch (e) {
      caller.lv.api.virStorageVolFree.async(ptr, () => undefined);
      throw e;
    }
  }

  pool(): Promise<StoragePool> {
    return this.use(async (p) => new LibvirtPool(this.#c, await this.#c.some(this.#c.lv.api.virStoragePoolLookupByVolume, p)));
  }

  info(): Promise<{ type: number; capacity: number; allocation: number }> {
    return this.use(async (p) => {
      const out: Partial<VolInfoStruct> = {};
      await this.#c.int(this.#c.lv.api.virStorageVolGetInfo, p, out);
      return { type: out.type ?? 0, capacity: Number(out.capacity ?? 0), allocation: Number(out.allocation ?? 0) };
    });
  }

  delete(): Promise<void> {
    return this.use(async (p) => void (await this.#c.int(this.#c.lv.api.virStorageVolDelete, p, 0)));
  }

  free(): void {
    void this.releaseHandle().catch(() => undefined);
  }
}
