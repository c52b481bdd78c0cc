/**
 * With events.ts (domain events), the only module that imports koffi: the
 * libvirt C API we use, and the few helpers that read libvirt-owned memory.
 *
 * koffi 3 gives every pointer as an untyped BigInt, and passing a domain
 * where a connection is expected crashes the process, so each handle kind
 * is a branded type. Type names registered with koffi are process-global,
 * and so are libvirt's error handler and event loop: `loadLibvirt()` binds
 * everything once and memoizes the result (the one module-level value).
 */
import koffi, { type LibraryHandle } from 'koffi';
import { Attribution } from './attribution.js';
import type { VirErrorInfo } from './errors.js';
import { EventLoop } from './event-loop.js';

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type ConnPtr = Brand<bigint, 'virConnectPtr'>;
export type DomainPtr = Brand<bigint, 'virDomainPtr'>;
export type PoolPtr = Brand<bigint, 'virStoragePoolPtr'>;
export type VolPtr = Brand<bigint, 'virStorageVolPtr'>;
/** virTypedParameterPtr: an array of 96-byte entries allocated by libvirt. */
export type ParamsPtr = Brand<bigint, 'virTypedParameterPtr'>;
/** Memory allocated by libvirt with g_malloc (freed with free()). */
export type HeapPtr = Brand<bigint, 'heap'>;
/** A JS function registered with koffi, callable from C. */
export type CallbackPtr = Brand<bigint, 'callback'>;

/** A bound C function: a sync call, and `.async` which runs it on a libuv pool thread. */
export interface NativeFn<A extends unknown[], R> {
  (...args: A): R;
  async(...args: [...A, (err: unknown, result: R) => void]): void;
  readonly info: { readonly name: string };
}

/** `_Out_ T *` parameters take a one-element array that koffi fills in. */
export type Out<T> = [T];

export interface NodeInfoStruct { model: string; memory: number | bigint; cpus: number; mhz: number }
export interface DomainInfoStruct {
  state: number; maxMem: number | bigint; memory: number | bigint; nrVirtCpu: number; cpuTime: number | bigint;
}
export interface PoolInfoStruct { state: number; capacity: number | bigint; allocation: number | bigint; available: number | bigint }
export interface VolInfoStruct { type: number; capacity: number | bigint; allocation: number | bigint }

/** One decoded virTypedParameter; `type` is virTypedParameterType (1 INT ... 7 STRING). */
export interface TypedParam { field: string; type: number; value: number | bigint | string | boolean }

type TypedParamsOut = [Out<ParamsPtr | null>, Out<number>, Out<number>];

function declare(lib: LibraryHandle) {
  const fn = <A extends unknown[], R>(proto: string) => lib.func(proto) as unknown as NativeFn<A, R>;
  return {
    virInitialize: fn<[], number>('int virInitialize(void)'),
    virEventRegisterDefaultImpl: fn<[], number>('int virEventRegisterDefaultImpl(void)'),
    virEventRunDefaultImpl: fn<[], number>('int virEventRunDefaultImpl(void)'),
    virEventAddTimeout: fn<[number, CallbackPtr, null, null], number>(
      'int virEventAddTimeout(int frequency, virEventTimeoutCallback *cb, void *opaque, void *ff)'),
    virEventRemoveTimeout: fn<[number], number>('int virEventRemoveTimeout(int timer)'),
    virSetErrorFunc: fn<[null, CallbackPtr], void>('void virSetErrorFunc(void *userData, virErrorFunc *handler)'),
    virConnSetErrorFunc: fn<[ConnPtr, bigint, CallbackPtr], void>(
      'void virConnSetErrorFunc(virConnectPtr conn, void *userData, virErrorFunc *handler)'),
    virConnCopyLastError: fn<[ConnPtr, Buffer], number>('int virConnCopyLastError(virConnectPtr conn, void *to)'),
    virConnResetLastError: fn<[ConnPtr], void>('void virConnResetLastError(virConnectPtr conn)'),
    virCopyLastError: fn<[Buffer], number>('int virCopyLastError(void *to)'),
    virResetError: fn<[Buffer], void>('void virResetError(void *err)'),

    virConnectOpen: fn<[string], ConnPtr | null>('virConnectPtr virConnectOpen(const char *name)'),
    virConnectOpenReadOnly: fn<[string], ConnPtr | null>('virConnectPtr virConnectOpenReadOnly(const char *name)'),
    virConnectClose: fn<[ConnPtr], number>('int virConnectClose(virConnectPtr conn)'),
    virConnectIsAlive: fn<[ConnPtr], number>('int virConnectIsAlive(virConnectPtr conn)'),
    virConnectSetKeepAlive: fn<[ConnPtr, number, number], number>(
      'int virConnectSetKeepAlive(virConnectPtr conn, int interval, unsigned int count)'),
    // `char *!`: the string is ours to free, koffi frees it after copying.
    virConnectGetCapabilities: fn<[ConnPtr], string | null>('char *! virConnectGetCapabilities(virConnectPtr conn)'),
    virConnectGetType: fn<[ConnPtr], string | null>('const char *virConnectGetType(virConnectPtr conn)'),
    virConnectGetHostname: fn<[ConnPtr], string | null>('char *! virConnectGetHostname(virConnectPtr conn)'),
    virNodeGetInfo: fn<[ConnPtr, Partial<NodeInfoStruct>], number>(
      'int virNodeGetInfo(virConnectPtr conn, _Out_ virNodeInfo *info)'),
    virNodeGetFreeMemory: fn<[ConnPtr], number | bigint>('unsigned long long virNodeGetFreeMemory(virConnectPtr conn)'),
    virConnectListAllDomains: fn<[ConnPtr, Out<HeapPtr | null>, number], number>(
      'int virConnectListAllDomains(virConnectPtr conn, _Out_ void **domains, unsigned int flags)'),
    virConnectListAllStoragePools: fn<[ConnPtr, Out<HeapPtr | null>, number], number>(
      'int virConnectListAllStoragePools(virConnectPtr conn, _Out_ void **pools, unsigned int flags)'),

    virDomainLookupByName: fn<[ConnPtr, string], DomainPtr | null>(
      'virDomainPtr virDomainLookupByName(virConnectPtr conn, const char *name)'),
    virDomainLookupByUUIDString: fn<[ConnPtr, string], DomainPtr | null>(
      'virDomainPtr virDomainLookupByUUIDString(virConnectPtr conn, const char *uuid)'),
    virDomainDefineXML: fn<[ConnPtr, string], DomainPtr | null>(
      'virDomainPtr virDomainDefineXML(virConnectPtr conn, const char *xml)'),
    virDomainCreateXML: fn<[ConnPtr, string, number], DomainPtr | null>(
      'virDomainPtr virDomainCreateXML(virConnectPtr conn, const char *xml, unsigned int flags)'),
    virDomainFree: fn<[DomainPtr], number>('int virDomainFree(virDomainPtr dom)'),
    virDomainGetName: fn<[DomainPtr], string | null>('const char *virDomainGetName(virDomainPtr dom)'),
    virDomainGetUUIDString: fn<[DomainPtr, Buffer], number>('int virDomainGetUUIDString(virDomainPtr dom, void *buf)'),
    virDomainGetState: fn<[DomainPtr, Out<number>, Out<number>, number], number>(
      'int virDomainGetState(virDomainPtr dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)'),
    virDomainGetInfo: fn<[DomainPtr, Partial<DomainInfoStruct>], number>(
      'int virDomainGetInfo(virDomainPtr dom, _Out_ virDomainInfo *info)'),
    virDomainIsActive: fn<[DomainPtr], number>('int virDomainIsActive(virDomainPtr dom)'),
    virDomainIsPersistent: fn<[DomainPtr], number>('int virDomainIsPersistent(virDomainPtr dom)'),
    virDomainGetXMLDesc: fn<[DomainPtr, number], string | null>(
      'char *! virDomainGetXMLDesc(virDomainPtr dom, unsigned int flags)'),
    virDomainMigrateToURI3: fn<[DomainPtr, string, ParamsPtr | null, number, number], number>(
      'int virDomainMigrateToURI3(virDomainPtr dom, const char *dconnuri, void *params, unsigned int nparams, unsigned int flags)'),
    virDomainMigrateSetMaxDowntime: fn<[DomainPtr, number, number], number>(
      'int virDomainMigrateSetMaxDowntime(virDomainPtr dom, unsigned long long downtime, unsigned int flags)'),
    virDomainMigrateSetMaxSpeed: fn<[DomainPtr, number, number], number>(
      'int virDomainMigrateSetMaxSpeed(virDomainPtr dom, unsigned long bandwidth, unsigned int flags)'),
    virDomainMigrateGetMaxSpeed: fn<[DomainPtr, Out<number | bigint>, number], number>(
      'int virDomainMigrateGetMaxSpeed(virDomainPtr dom, _Out_ unsigned long *bandwidth, unsigned int flags)'),
    virDomainGetJobStats: fn<[DomainPtr, Out<number>, Out<ParamsPtr | null>, Out<number>, number], number>(
      'int virDomainGetJobStats(virDomainPtr dom, _Out_ int *type, _Out_ void **params, _Out_ int *nparams, unsigned int flags)'),
    virDomainAbortJob: fn<[DomainPtr], number>('int virDomainAbortJob(virDomainPtr dom)'),
    virDomainCreate: fn<[DomainPtr], number>('int virDomainCreate(virDomainPtr dom)'),
    virDomainResume: fn<[DomainPtr], number>('int virDomainResume(virDomainPtr dom)'),
    virDomainSuspend: fn<[DomainPtr], number>('int virDomainSuspend(virDomainPtr dom)'),
    virDomainDestroy: fn<[DomainPtr], number>('int virDomainDestroy(virDomainPtr dom)'),
    virDomainUndefineFlags: fn<[DomainPtr, number], number>('int virDomainUndefineFlags(virDomainPtr dom, unsigned int flags)'),
    virDomainUndefine: fn<[DomainPtr], number>('int virDomainUndefine(virDomainPtr dom)'),

    virStoragePoolLookupByName: fn<[ConnPtr, string], PoolPtr | null>(
      'virStoragePoolPtr virStoragePoolLookupByName(virConnectPtr conn, const char *name)'),
    virStoragePoolLookupByVolume: fn<[VolPtr], PoolPtr | null>(
      'virStoragePoolPtr virStoragePoolLookupByVolume(virStorageVolPtr vol)'),
    virStoragePoolFree: fn<[PoolPtr], number>('int virStoragePoolFree(virStoragePoolPtr pool)'),
    virStoragePoolGetName: fn<[PoolPtr], string | null>('const char *virStoragePoolGetName(virStoragePoolPtr pool)'),
    virStoragePoolGetUUIDString: fn<[PoolPtr, Buffer], number>('int virStoragePoolGetUUIDString(virStoragePoolPtr pool, void *buf)'),
    virStoragePoolGetInfo: fn<[PoolPtr, Partial<PoolInfoStruct>], number>(
      'int virStoragePoolGetInfo(virStoragePoolPtr pool, _Out_ virStoragePoolInfo *info)'),
    virStoragePoolGetXMLDesc: fn<[PoolPtr, number], string | null>(
      'char *! virStoragePoolGetXMLDesc(virStoragePoolPtr pool, unsigned int flags)'),
    virStoragePoolRefresh: fn<[PoolPtr, number], number>('int virStoragePoolRefresh(virStoragePoolPtr pool, unsigned int flags)'),
    virStorageVolLookupByName: fn<[PoolPtr, string], VolPtr | null>(
      'virStorageVolPtr virStorageVolLookupByName(virStoragePoolPtr pool, const char *name)'),
    virStorageVolLookupByPath: fn<[ConnPtr, string], VolPtr | null>(
      'virStorageVolPtr virStorageVolLookupByPath(virConnectPtr conn, const char *path)'),
    virStorageVolCreateXML: fn<[PoolPtr, string, number], VolPtr | null>(
      'virStorageVolPtr virStorageVolCreateXML(virStoragePoolPtr pool, const char *xml, unsigned int flags)'),
    virStorageVolFree: fn<[VolPtr], number>('int virStorageVolFree(virStorageVolPtr vol)'),
    virStorageVolGetName: fn<[VolPtr], string | null>('const char *virStorageVolGetName(virStorageVolPtr vol)'),
    virStorageVolGetKey: fn<[VolPtr], string | null>('const char *virStorageVolGetKey(virStorageVolPtr vol)'),
    // A remote call on remote connections, unlike name and key.
    virStorageVolGetPath: fn<[VolPtr], string | null>('char *! virStorageVolGetPath(virStorageVolPtr vol)'),
    virStorageVolGetInfo: fn<[VolPtr, Partial<VolInfoStruct>], number>(
      'int virStorageVolGetInfo(virStorageVolPtr vol, _Out_ virStorageVolInfo *info)'),
    virStorageVolDelete: fn<[VolPtr, number], number>('int virStorageVolDelete(virStorageVolPtr vol, unsigned int flags)'),

    // Typed params are built with libvirt's helpers: local memory work, fine to call sync.
    virTypedParamsAddString: fn<[...TypedParamsOut, string, string], number>(
      'int virTypedParamsAddString(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, const char *value)'),
    virTypedParamsAddStringList: fn<[...TypedParamsOut, string, (string | null)[]], number>(
      'int virTypedParamsAddStringList(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, const char **values)'),
    virTypedParamsAddULLong: fn<[...TypedParamsOut, string, number | bigint], number>(
      'int virTypedParamsAddULLong(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, unsigned long long value)'),
    virTypedParamsAddLLong: fn<[...TypedParamsOut, string, number | bigint], number>(
      'int virTypedParamsAddLLong(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, long long value)'),
    virTypedParamsAddInt: fn<[...TypedParamsOut, string, number], number>(
      'int virTypedParamsAddInt(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, int value)'),
    virTypedParamsAddUInt: fn<[...TypedParamsOut, string, number], number>(
      'int virTypedParamsAddUInt(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, unsigned int value)'),
    virTypedParamsAddDouble: fn<[...TypedParamsOut, string, number], number>(
      'int virTypedParamsAddDouble(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, double value)'),
    virTypedParamsAddBoolean: fn<[...TypedParamsOut, string, number], number>(
      'int virTypedParamsAddBoolean(_Inout_ void **params, _Inout_ int *nparams, _Inout_ int *maxparams, const char *name, int value)'),
    virTypedParamsFree: fn<[ParamsPtr, number], void>('void virTypedParamsFree(void *params, int nparams)'),
  };
}

export type LibvirtApi = ReturnType<typeof declare>;

/** Receives the errors libvirt reports for one connection, as they happen. */
export interface ErrorSink {
  record(info: VirErrorInfo): void;
}

export interface Libvirt {
  readonly api: LibvirtApi;
  /** Runs libvirt's default event loop while connections need it (keepalive, close detection). */
  readonly loop: EventLoop;
  /** Safety net for handles nobody freed; process-wide so it outlives the objects it watches. */
  readonly reaper: FinalizationRegistry<() => void>;
  /**
   * Sends `conn`'s errors to `sink` (virConnSetErrorFunc) while the sink is
   * reachable; the sink is held weakly, so routing never keeps a Caller alive.
   */
  routeErrors(conn: ConnPtr, sink: ErrorSink): void;
  /** Errors with no connection to route to: the only trace of a failed virConnectOpen. */
  readonly openErrors: Attribution;
  /** The connection's last error, then cleared so a later failure cannot reuse it. */
  takeConnError(conn: ConnPtr): VirErrorInfo | null;
  /** The calling thread's last error: only meaningful after a sync call. */
  threadError(): VirErrorInfo | null;
  /** The handles of a virConnectListAll* array, branded as the caller's kind. */
  decodePointers<P extends bigint>(ptr: HeapPtr, count: number): P[];
  /** free() for arrays libvirt hands over (virConnectListAll*). */
  freeHeap(ptr: HeapPtr): void;
  decodeTypedParams(ptr: ParamsPtr, count: number): TypedParam[];
}

const TYPED_PARAM_SIZE = 96; // char field[80]; int type; union value at 88 (x86-64)

let loaded: Libvirt | undefined;

export function loadLibvirt(): Libvirt {
  loaded ??= bind();
  return loaded;
}

function bind(): Libvirt {
  const lib = koffi.load('libvirt.so.0');
  koffi.pointer('virConnectPtr', koffi.opaque('virConnect'));
  koffi.pointer('virDomainPtr', koffi.opaque('virDomain'));
  koffi.pointer('virStoragePoolPtr', koffi.opaque('virStoragePool'));
  koffi.pointer('virStorageVolPtr', koffi.opaque('virStorageVol'));
  const virError = koffi.struct('virError', {
    code: 'int', domain: 'int', message: 'const char *', level: 'int',
    conn: 'void *', dom: 'void *', str1: 'const char *', str2: 'const char *', str3: 'const char *',
    int1: 'int', int2: 'int', net: 'void *',
  });
  koffi.struct('virNodeInfo', {
    model: koffi.array('char', 32, 'String'), memory: 'unsigned long', cpus: 'unsigned int',
    mhz: 'unsigned int', nodes: 'unsigned int', sockets: 'unsigned int', cores: 'unsigned int', threads: 'unsigned int',
  });
  koffi.struct('virDomainInfo', {
    state: 'unsigned char', maxMem: 'unsigned long', memory: 'unsigned long',
    nrVirtCpu: 'unsigned short', cpuTime: 'unsigned long long',
  });
  koffi.struct('virStoragePoolInfo', {
    state: 'int', capacity: 'unsigned long long', allocation: 'unsigned long long', available: 'unsigned long long',
  });
  koffi.struct('virStorageVolInfo', { type: 'int', capacity: 'unsigned long long', allocation: 'unsigned long long' });
  koffi.proto('void virErrorFunc(void *userData, void *error)');
  koffi.proto('void virEventTimeoutCallback(int timer, void *opaque)');
  const api = declare(lib);

  const toInfo = (e: { code: number; domain: number; message: string | null; level: number }): VirErrorInfo =>
    ({ code: e.code, domain: e.domain, message: e.message ?? `libvirt error ${e.code}`, level: e.level });

  // libvirt calls the handler on the failing thread, before the failing API
  // returns; koffi blocks that thread until this runs on the main thread, so
  // the virError is still valid here. userData is a route id for connection
  // errors, NULL for the rest. Without a handler libvirt prints to stderr.
  const openErrors = new Attribution();
  const routes = new Map<number, WeakRef<ErrorSink>>();
  let lastRoute = 0;
  const reaper = new FinalizationRegistry<() => void>((release) => release());
  const handler = koffi.register((ud: bigint | null, err: unknown) => {
    if (err === null) return;
    const info = toInfo(koffi.decode(err, virError));
    // A route that is gone belonged to a connection nobody can call any more.
    if (ud === null) openErrors.record(info);
    else routes.get(Number(ud))?.deref()?.record(info);
  }, 'virErrorFunc *') as CallbackPtr;

  // The wake-up timeout only has to make virEventRunDefaultImpl return.
  const wake = koffi.register(() => undefined, 'virEventTimeoutCallback *') as CallbackPtr;

  if (api.virInitialize() < 0) throw new Error('virInitialize failed');
  api.virSetErrorFunc(null, handler);
  // Must precede the first virConnectOpen: remote connections decide at open
  // whether they can use keepalive, which needs an event loop.
  if (api.virEventRegisterDefaultImpl() < 0) throw new Error('virEventRegisterDefaultImpl failed');

  const takeFrom = (buf: Buffer): VirErrorInfo | null => {
    const info = toInfo(koffi.decode(buf, virError));
    api.virResetError(buf); // frees the message copied into buf
    return info.code === 0 ? null : info;
  };

  return {
    api,
    loop: new EventLoop(api, wake),
    reaper,
    routeErrors(conn, sink) {
      const id = ++lastRoute;
      routes.set(id, new WeakRef(sink));
      reaper.register(sink, () => routes.delete(id));
      api.virConnSetErrorFunc(conn, BigInt(id), handler);
    },
    openErrors,
    takeConnError(conn) {
      const buf = Buffer.alloc(koffi.sizeof(virError));
      if (api.virConnCopyLastError(conn, buf) <= 0) return null;
      api.virConnResetLastError(conn);
      return takeFrom(buf);
    },
    threadError() {
      const buf = Buffer.alloc(koffi.sizeof(virError));
      return api.virCopyLastError(buf) <= 0 ? null : takeFrom(buf);
    },
    decodePointers: <P extends bigint>(ptr: HeapPtr, count: number) =>
      (count === 0 ? [] : (koffi.decode(ptr, 'void *', count) as P[])),
    freeHeap: (ptr) => koffi.free(ptr),
    decodeTypedParams(ptr, count) {
      const out: TypedParam[] = [];
      for (let i = 0; i < count; i++) out.push(decodeParam(ptr, i * TYPED_PARAM_SIZE));
      return out;
    },
  };
}

function decodeParam(ptr: ParamsPtr, base: number): TypedParam {
  const field = koffi.decode(ptr, base, 'char', -1) as string;
  const type = koffi.decode(ptr, base + 80, 'int') as number;
  const at = base + 88;
  switch (type) {
    case 1: return { field, type, value: koffi.decode(ptr, at, 'int') as number };
    case 2: return { field, type, value: koffi.decode(ptr, at, 'unsigned int') as number };
    case 3: return { field, type, value: koffi.decode(ptr, at, 'long long') as number | bigint };
    case 4: return { field, type, value: koffi.decode(ptr, at, 'unsigned long long') as number | bigint };
    case 5: return { field, type, value: koffi.decode(ptr, at, 'double') as number };
    case 6: return { field, type, value: (koffi.decode(ptr, at, 'char') as number) !== 0 };
    case 7: return { field, type, value: (koffi.decode(ptr, at, 'const char *') as string | null) ?? '' };
    default: throw new Error(`typed parameter '${field}' has unknown type ${type}`);
  }
}
