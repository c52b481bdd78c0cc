/**
 * The libvirt port: the typed interfaces the rest of kvm-migrate talks to.
 *
 * Only `shared/libvirt/ffi.ts`, `events.ts` and `binding.ts` know that koffi
 * exists. Stages, checks and the API depend on these interfaces, so unit tests
 * can hand them fakes and the lab can hand them real hosts.
 */

/** Domain states from virDomainState, by name so they survive JSON and logs. */
export type DomainState =
  | 'nostate'
  | 'running'
  | 'blocked'
  | 'paused'
  | 'shutdown'
  | 'shutoff'
  | 'crashed'
  | 'pmsuspended';

/** virDomainJobType, by name. */
export type JobType = 'none' | 'bounded' | 'unbounded' | 'completed' | 'failed' | 'cancelled';

/** virDomainMigrateFlags values used by the service (libvirt's own numbers). */
export const MigrateFlag = {
  LIVE: 1 << 0,
  PEER2PEER: 1 << 1,
  TUNNELLED: 1 << 2,
  PERSIST_DEST: 1 << 3,
  UNDEFINE_SOURCE: 1 << 4,
  PAUSED: 1 << 5,
  NON_SHARED_DISK: 1 << 6,
  NON_SHARED_INC: 1 << 7,
  CHANGE_PROTECTION: 1 << 8,
  UNSAFE: 1 << 9,
  OFFLINE: 1 << 10,
  COMPRESSED: 1 << 11,
  ABORT_ON_ERROR: 1 << 12,
  AUTO_CONVERGE: 1 << 13,
} as const;

/** Typed parameters for virDomainMigrateToURI3 (VIR_MIGRATE_PARAM_*). */
export interface MigrateParams {
  /** VIR_MIGRATE_PARAM_DEST_XML: the domain XML the destination starts with. */
  destinationXml?: string;
  /** VIR_MIGRATE_PARAM_PERSIST_XML: the definition made persistent on the destination. */
  persistentXml?: string;
  /** VIR_MIGRATE_PARAM_DEST_NAME */
  destinationName?: string;
  /** VIR_MIGRATE_PARAM_BANDWIDTH in MiB/s; omitted means unlimited. */
  bandwidthMiBs?: number;
  /** VIR_MIGRATE_PARAM_COMPRESSION, e.g. 'xbzrle'. */
  compression?: string[];
}

/** One sample of virDomainGetJobStats. `fields` keeps libvirt's names (VIR_DOMAIN_JOB_*). */
export interface JobStats {
  type: JobType;
  fields: Record<string, number | string>;
}

/** virNodeInfo, reduced to what the checks use. */
export interface NodeInfo {
  model: string;
  memoryKiB: number;
  cpus: number;
  mhz: number;
}

/** virDomainInfo. */
export interface DomainInfo {
  state: DomainState;
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

export interface XmlOptions {
  /** VIR_DOMAIN_XML_MIGRATABLE */
  migratable?: boolean;
  /** VIR_DOMAIN_XML_INACTIVE */
  inactive?: boolean;
  /** VIR_DOMAIN_XML_SECURE */
  secure?: boolean;
}

export interface OpenOptions {
  /** Give up (and close whatever opens late) after this many ms. */
  timeoutMs?: number;
  readonly?: boolean;
}

export interface Hypervisor {
  /** virConnectOpen(Auth), async, bounded by `timeoutMs`. */
  open(uri: string, opts?: OpenOptions): Promise<Connection>;
  /**
   * Watches every domain of `uri` over a connection of its own: lists them
   * once, then reports each lifecycle change (VIR_DOMAIN_EVENT_ID_LIFECYCLE,
   * any domain) to `onEvent` on the JS main thread, in libvirt's order,
   * until close(). Events from before the listing may still arrive after it:
   * apply the listing first, then the events. Optional: a port without
   * events (a test fake) leaves it out, and its users ask libvirt instead.
   */
  watchDomains?(uri: string, onEvent: (e: DomainLifecycle) => void, opts?: OpenOptions): Promise<DomainWatch>;
}

/** One lifecycle change of a watched host's domain. */
export interface DomainLifecycle {
  name: string;
  uuid: string;
  /** virDomainEventType by name: 'defined', 'undefined', 'started', 'stopped', ... ('event-N' for newer ones). */
  event: string;
  detail: number;
}

export interface DomainWatch {
  /** Every domain (active and inactive) when the watch started: name → UUID. */
  readonly listed: ReadonlyMap<string, string>;
  /** false once the watch's connection is gone or closed: changes since then were not reported. */
  isAlive(): boolean;
  /** Stops the events and closes the connection; idempotent. */
  close(): Promise<void>;
}

/**
 * Handlers for Connection.onMigrationEvents. They run on the JS main thread,
 * after libvirt's event loop has been released (never inside the native
 * callback); none runs once unsubscribe has been called. A handler that
 * throws raises an uncaught exception, as an EventEmitter listener would.
 */
export interface MigrationEventHandlers {
  /** VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION: a new pass over memory started. */
  iteration?: (iteration: number) => void;
  /** VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: final job statistics (same field names as jobStats().fields, e.g. 'downtime', 'data_total', 'time_elapsed'). */
  jobCompleted?: (fields: Record<string, number | string>) => void;
  /** VIR_DOMAIN_EVENT_ID_LIFECYCLE: event and detail numbers, plus the event name (e.g. 'suspended', 'resumed', 'stopped'). */
  lifecycle?: (event: string, detail: number) => void;
}

export interface Connection {
  readonly uri: string;
  close(): Promise<void>;
  /** virConnectIsAlive: false once the transport is gone. */
  isAlive(): boolean;
  /** A call made through this connection (or a domain, pool or volume from it) is still queued or running. */
  isBusy(): boolean;
  /** Waits (at most `withinMs`) until no call is queued or running: true once idle, false if one still is. */
  whenIdle(withinMs: number): Promise<boolean>;
  /**
   * Facts about the host that hold for as long as this connection is open
   * (its capabilities: UUID, architecture; the hypervisor type), computed at
   * most once per connection. A failed computation is not remembered.
   */
  remember<T>(key: string, compute: () => Promise<T>): Promise<T>;
  capabilities(): Promise<string>;
  /** virConnectGetType, e.g. "QEMU". */
  hypervisorType(): Promise<string>;
  hostname(): Promise<string>;
  nodeInfo(): Promise<NodeInfo>;
  /** virNodeGetFreeMemory, bytes. */
  freeMemory(): Promise<number>;

  /** null when the domain does not exist (VIR_ERR_NO_DOMAIN), never throws for that. */
  lookupDomain(name: string): Promise<Domain | null>;
  lookupDomainByUUID(uuid: string): Promise<Domain | null>;
  /** virConnectListAllDomains, active and inactive. */
  listDomains(): Promise<Domain[]>;
  /** virDomainDefineXML */
  defineDomain(xml: string): Promise<Domain>;
  /** virDomainCreateXML: a transient, running domain. */
  createDomain(xml: string): Promise<Domain>;

  /** null when no such pool. */
  lookupPool(name: string): Promise<StoragePool | null>;
  listPools(): Promise<StoragePool[]>;
  /** virStorageVolLookupByPath; null when no pool holds that path. */
  lookupVolumeByPath(path: string): Promise<StorageVolume | null>;

  /** Subscribes to one domain's migration events; returns an unsubscribe function (idempotent). */
  onMigrationEvents(domain: Domain, handlers: MigrationEventHandlers): Promise<() => Promise<void>>;
}

export interface Domain {
  readonly name: string;
  readonly uuid: string;
  state(): Promise<{ state: DomainState; reason: number }>;
  info(): Promise<DomainInfo>;
  isActive(): Promise<boolean>;
  isPersistent(): Promise<boolean>;
  xml(opts?: XmlOptions): Promise<string>;

  /** virDomainMigrateToURI3; resolves when the migration job ends. */
  migrateToURI3(destinationUri: string, params: MigrateParams, flags: number): Promise<void>;
  migrateSetMaxDowntime(ms: number): Promise<void>;
  migrateSetMaxSpeed(mibPerSecond: number): Promise<void>;
  migrateGetMaxSpeed(): Promise<number>;
  /** virDomainGetJobStats; `completed` asks for the last completed job's stats. */
  jobStats(opts?: { completed?: boolean }): Promise<JobStats>;
  abortJob(): Promise<void>;

  start(): Promise<void>;
  resume(): Promise<void>;
  suspend(): Promise<void>;
  destroy(): Promise<void>;
  /** virDomainUndefineFlags with flags libvirt needs for managed save, snapshots, nvram. */
  undefine(): Promise<void>;
  /** Releases the handle now instead of at garbage collection. */
  free(): void;
}

export type PoolState = 'inactive' | 'building' | 'running' | 'degraded' | 'inaccessible';

export interface StoragePool {
  readonly name: string;
  readonly uuid: string;
  info(): Promise<{ state: PoolState; capacity: number; allocation: number; available: number }>;
  xml(): Promise<string>;
  refresh(): Promise<void>;
  lookupVolume(name: string): Promise<StorageVolume | null>;
  /** virStorageVolCreateXML */
  createVolume(xml: string): Promise<StorageVolume>;
  free(): void;
}

export interface StorageVolume {
  readonly name: string;
  readonly key: string;
  readonly path: string;
  /** The pool that holds this volume (virStoragePoolLookupByVolume). */
  pool(): Promise<StoragePool>;
  info(): Promise<{ type: number; capacity: number; allocation: number }>;
  delete(): Promise<void>;
  free(): void;
}
