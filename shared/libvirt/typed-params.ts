/**
 * virTypedParameter arrays: built with libvirt's own virTypedParamsAdd*
 * helpers (so libvirt owns the layout and the strings), decoded through
 * ffi.ts, freed with virTypedParamsFree once nothing uses them.
 */
import { VirError, VirErrorCode } from './errors.js';
import type { Libvirt, NativeFn, Out, ParamsPtr, TypedParam } from './ffi.js';
import type { MigrateParams } from './types.js';

/** VIR_MIGRATE_PARAM_* keys, libvirt-domain.h. */
export const MigrateParam = {
  DEST_XML: 'destination_xml',
  PERSIST_XML: 'persistent_xml',
  DEST_NAME: 'destination_name',
  BANDWIDTH: 'bandwidth',
  COMPRESSION: 'compression',
} as const;

type AddFn<V> = NativeFn<[Out<ParamsPtr | null>, Out<number>, Out<number>, string, V], number>;

/**
 * A params array under construction. The add calls are sync: they only
 * reallocate local memory. Call free() after the call that used the array
 * has resolved, never before: the pool thread reads it.
 */
export class TypedParams {
  readonly #lv: Libvirt;
  readonly #ptr: Out<ParamsPtr | null> = [null];
  readonly #count: Out<number> = [0];
  readonly #max: Out<number> = [0];

  constructor(lv: Libvirt) {
    this.#lv = lv;
  }

  get ptr(): ParamsPtr | null {
    return this.#ptr[0];
  }

  get count(): number {
    return this.#count[0];
  }

  addString(name: string, value: string): this {
    return this.#add(this.#lv.api.virTypedParamsAddString, name, value);
  }

  /** Repeats `name` once per value, as libvirt expects for list parameters. */
  addStringList(name: string, values: readonly string[]): this {
    return this.#add(this.#lv.api.virTypedParamsAddStringList, name, [...values, null]);
  }

  addULLong(name: string, value: number | bigint): this {
    return this.#add(this.#lv.api.virTypedParamsAddULLong, name, value);
  }

  addLLong(name: string, value: number | bigint): this {
    return this.#add(this.#lv.api.virTypedParamsAddLLong, name, value);
  }

  addInt(name: string, value: number): this {
    return this.#add(this.#lv.api.virTypedParamsAddInt, name, value);
  }

  addUInt(name: string, value: number): this {
    return this.#add(this.#lv.api.virTypedParamsAddUInt, name, value);
  }

  addDouble(name: string, value: number): this {
    return this.#add(this.#lv.api.virTypedParamsAddDouble, name, value);
  }

  addBoolean(name: string, value: boolean): this {
    return this.#add(this.#lv.api.virTypedParamsAddBoolean, name, value ? 1 : 0);
  }

  decode(): TypedParam[] {
    const ptr = this.#ptr[0];
    return ptr === null ? [] : this.#lv.decodeTypedParams(ptr, this.#count[0]);
  }

  free(): void {
    const ptr = this.#ptr[0];
    if (ptr !== null) this.#lv.api.virTypedParamsFree(ptr, this.#count[0]);
    this.#ptr[0] = null;
    this.#count[0] = 0;
    this.#max[0] = 0;
  }

  #add<V>(fn: AddFn<V>, name: string, value: V): this {
    // Sync on the main thread, so the thread-local error is ours to read.
    if (fn(this.#ptr, this.#count, this.#max, name, value) < 0) {
      throw new VirError(
        this.#lv.threadError() ?? {
          code: VirErrorCode.INTERNAL_ERROR, domain: 0, level: 2, message: `cannot add typed parameter '${name}'`,
        },
      );
    }
    return this;
  }
}

/** The virDomainMigrateToURI3 parameters for `params`; the caller frees them. */
export function buildMigrateParams(lv: Libvirt, params: MigrateParams): TypedParams {
  const tp = new TypedParams(lv);
  try {
    if (params.destinationXml !== undefined) tp.addString(MigrateParam.DEST_XML, params.destinationXml);
    if (params.persistentXml !== undefined) tp.addString(MigrateParam.PERSIST_XML, params.persistentXml);
    if (params.destinationName !== undefined) tp.addString(MigrateParam.DEST_NAME, params.destinationName);
    if (params.bandwidthMiBs !== undefined) {
      if (!Number.isSafeInteger(params.bandwidthMiBs) || params.bandwidthMiBs < 0) {
        throw new RangeError(`bandwidthMiBs must be a non-negative integer, got ${params.bandwidthMiBs}`);
      }
      tp.addULLong(MigrateParam.BANDWIDTH, params.bandwidthMiBs);
    }
    if (params.compression !== undefined && params.compression.length > 0) {
      tp.addStringList(MigrateParam.COMPRESSION, params.compression);
    }
    return tp;
  } catch (e) {
    tp.free();
    throw e;
  }
}

/** Job stats keep libvirt's field names; 64-bit counters become numbers, booleans 0/1. */
export function paramsToFields(params: readonly TypedParam[]): Record<string, number | string> {
  const fields: Record<string, number | string> = {};
  for (const { field, value } of params) {
    fields[field] = typeof value === 'string' ? value : typeof value === 'boolean' ? (value ? 1 : 0) : Number(value);
  }
  return fields;
}
