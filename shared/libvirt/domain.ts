/**
 * Domain: a virDomainPtr with name and UUID read once (both are local to the
 * handle); everything else goes to the daemon, asynchronously.
 */
import type { Caller } from './call.js';
import { VirErrorCode, isVirError } from './errors.js';
import type { DomainInfoStruct, DomainPtr, Out, ParamsPtr } from './ffi.js';
import { NativeHandle } from './handle.js';
import { buildMigrateParams, paramsToFields } from './typed-params.js';
import type { Domain, DomainInfo, DomainState, JobStats, JobType, MigrateParams, XmlOptions } from './types.js';

/** virDomainState, by number. */
const DOMAIN_STATES: readonly DomainState[] = [
  'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended',
];
/** virDomainJobType, by number. */
const JOB_TYPES: readonly JobType[] = ['none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled'];

const XML_SECURE = 1 << 0;
const XML_INACTIVE = 1 << 1;
const XML_MIGRATABLE = 1 << 3;
const JOB_STATS_COMPLETED = 1 << 0;

/** virDomainUndefineFlagsValues. */
const UNDEFINE_MANAGED_SAVE = 1 << 0;
const UNDEFINE_SNAPSHOTS_METADATA = 1 << 1;
const UNDEFINE_NVRAM = 1 << 2;
const UNDEFINE_CHECKPOINTS_METADATA = 1 << 4;
/**
 * Tried in order: drivers reject flags they do not know with INVALID_ARG
 * (virCheckFlags) or do not implement UndefineFlags at all (NO_SUPPORT).
 */
const UNDEFINE_ATTEMPTS = [
  UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_NVRAM | UNDEFINE_CHECKPOINTS_METADATA,
  UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_NVRAM,
  UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA,
];
const FLAG_REJECTED: readonly number[] = [
  VirErrorCode.INVALID_ARG, VirErrorCode.NO_SUPPORT, VirErrorCode.ARGUMENT_UNSUPPORTED,
];

export function domainStateName(n: number): DomainState {
  return DOMAIN_STATES[n] ?? 'nostate';
}

export function jobTypeName(n: number): JobType {
  const t = JOB_TYPES[n];
  if (t === undefined) throw new RangeError(`unknown virDomainJobType ${n}`);
  return t;
}

export class LibvirtDomain extends NativeHandle<DomainPtr> implements Domain {
  readonly name: string;
  readonly uuid: string;
  readonly #c: Caller;

  /** Takes ownership of `ptr` (one reference, released by free()). */
  constructor(caller: Caller, ptr: DomainPtr) {
    const { api } = caller.lv;
    super(caller.lv, ptr, 'domain', (p) => caller.int(api.virDomainFree, p).then(() => undefined));
    this.#c = caller;
    this.name = api.virDomainGetName(ptr) ?? '';
    const buf = Buffer.alloc(37); // VIR_UUID_STRING_BUFLEN
    api.virDomainGetUUIDString(ptr, buf);
    this.uuid = buf.toString('latin1', 0, 36);
  }

  state(): Promise<{ state: DomainState; reason: number }> {
    return this.use(async (p) => {
      const state: Out<number> = [0];
      const reason: Out<number> = [0];
      await this.#c.int(this.#c.lv.api.virDomainGetState, p, state, reason, 0);
      return { state: domainStateName(state[0]), reason: reason[0] };
    });
  }

  info(): Promise<DomainInfo> {
    return this.use(async (p) => {
      const out: Partial<DomainInfoStruct> = {};
      await this.#c.int(this.#c.lv.api.virDomainGetInfo, p, out);
      return {
        state: domainStateName(out.state ?? 0),
        maxMemKiB: Number(out.maxMem ?? 0),
        memoryKiB: Number(out.memory ?? 0),
        vcpus: out.nrVirtCpu ?? 0,
        cpuTimeNs: Number(out.cpuTime ?? 0),
      };
    });
  }

  isActive(): Promise<boolean> {
    return this.use(async (p) => (await this.#c.int(this.#c.lv.api.virDomainIsActive, p)) === 1);
  }

  isPersistent(): Promise<boolean> {
    return this.use(async (p) => (await this.#c.int(this.#c.lv.api.virDomainIsPersistent, p)) === 1);
  }

  xml(opts: XmlOptions = {}): Promise<string> {
    const flags =
      (opts.migratable ? XML_MIGRATABLE : 0) | (opts.inactive ? XML_INACTIVE : 0) | (opts.secure ? XML_SECURE : 0);
    return this.use((p) => this.#c.some(this.#c.lv.api.virDomainGetXMLDesc, p, flags));
  }

  migrateToURI3(destinationUri: string, params: MigrateParams, flags: number): Promise<void> {
    return this.use(async (p) => {
      const tp = buildMigrateParams(this.#c.lv, params);
      try {
        // Unqueued: jobStats, abortJob and tuning calls must run while it does.
        await this.#c.intUnqueued(this.#c.lv.api.virDomainMigrateToURI3, p, destinationUri, tp.ptr, tp.count, flags);
      } finally {
        tp.free(); // only now: the pool thread read the array until the call returned
      }
    });
  }

  migrateSetMaxDowntime(ms: number): Promise<void> {
    return this.use(async (p) => void (await this.#c.int(this.#c.lv.api.virDomainMigrateSetMaxDowntime, p, ms, 0)));
  }

  migrateSetMaxSpeed(mibPerSecond: number): Promise<void> {
    return this.use(async (p) => void (await this.#c.int(this.#c.lv.api.virDomainMigrateSetMaxSpeed, p, mibPerSecond, 0)));
  }

  migrateGetMaxSpeed(): Promise<number> {
    return this.use(async (p) => {
      const bw: Out<number | bigint> = [0];
      await this.#c.int(this.#c.lv.api.virDomainMigrateGetMaxSpeed, p, bw, 0);
      return Number(bw[0]);
    });
  }

  jobStats(opts: { completed?: boolean } = {}): Promise<JobStats> {
    return this.use(async (p) => {
      const { lv } = this.#c;
      const type: Out<number> = [0];
      const params: Out<ParamsPtr | null> = [null];
      const count: Out<number> = [0];
      const flags = opts.completed ? JOB_STATS_COMPLETED : 0;
      await this.#c.int(lv.api.virDomainGetJobStats, p, type, params, count, flags);
      const ptr = params[0];
      if (ptr === null) return { type: jobTypeName(type[0]), fields: {} };
      try {
        return { type: jobTypeName(type[0]), fields: paramsToFields(lv.decodeTypedParams(ptr, count[0])) };
      } finally {
        lv.api.virTypedParamsFree(ptr, count[0]);
      }
    });
  }

  abortJob(): Promise<void> {
    return this.#simple('virDomainAbortJob');
  }

  start(): Promise<void> {
    return this.#simple('virDomainCreate');
  }

  resume(): Promise<void> {
    return this.#simple('virDomainResume');
  }

  suspend(): Promise<void> {
    return this.#simple('virDomainSuspend');
  }

  destroy(): Promise<void> {
    return this.#simple('virDomainDestroy');
  }

  undefine(): Promise<void> {
    return this.use(async (p) => {
      const { api } = this.#c.lv;
      for (const flags of UNDEFINE_ATTEMPTS) {
        try {
          await this.#c.int(api.virDomainUndefineFlags, p, flags);
          return;
        } catch (e) {
          if (!isVirError(e) || !FLAG_REJECTED.includes(e.code)) throw e;
        }
      }
      await this.#c.int(api.virDomainUndefine, p);
    });
  }

  /** The pointer for `op`, which the handle cannot be released under (event registration). */
  pinned<R>(op: (ptr: DomainPtr) => Promise<R>): Promise<R> {
    return this.use(op);
  }

  free(): void {
    void this.releaseHandle().catch(() => undefined);
  }

  #simple(
    name: 'virDomainAbortJob' | 'virDomainCreate' | 'virDomainResume' | 'virDomainSuspend' | 'virDomainDestroy',
  ): Promise<void> {
    return this.use(async (p) => void (await this.#c.int(this.#c.lv.api[name], p)));
  }
}
