/**
 * Errors raised by the libvirt binding.
 *
 * Errors cross process boundaries (BullMQ stores them in Redis), so callers
 * match on `name` and `code`, never only on `instanceof`; `toJSON()` keeps
 * every field when an error is serialised.
 */

/**
 * virErrorNumber, libvirt 9.0 (`/usr/include/libvirt/virterror.h`).
 * Numbers are libvirt's ABI and never change; names drop the VIR_ERR_ prefix.
 */
export const VirErrorCode = {
  OK: 0, INTERNAL_ERROR: 1, NO_MEMORY: 2, NO_SUPPORT: 3, UNKNOWN_HOST: 4,
  NO_CONNECT: 5, INVALID_CONN: 6, INVALID_DOMAIN: 7, INVALID_ARG: 8,
  OPERATION_FAILED: 9, GET_FAILED: 10, POST_FAILED: 11, HTTP_ERROR: 12,
  SEXPR_SERIAL: 13, NO_XEN: 14, XEN_CALL: 15, OS_TYPE: 16, NO_KERNEL: 17,
  NO_ROOT: 18, NO_SOURCE: 19, NO_TARGET: 20, NO_NAME: 21, NO_OS: 22,
  NO_DEVICE: 23, NO_XENSTORE: 24, DRIVER_FULL: 25, CALL_FAILED: 26,
  XML_ERROR: 27, DOM_EXIST: 28, OPERATION_DENIED: 29, OPEN_FAILED: 30,
  READ_FAILED: 31, PARSE_FAILED: 32, CONF_SYNTAX: 33, WRITE_FAILED: 34,
  XML_DETAIL: 35, INVALID_NETWORK: 36, NETWORK_EXIST: 37, SYSTEM_ERROR: 38,
  RPC: 39, GNUTLS_ERROR: 40, NO_DOMAIN: 42, NO_NETWORK: 43, INVALID_MAC: 44,
  AUTH_FAILED: 45, INVALID_STORAGE_POOL: 46, INVALID_STORAGE_VOL: 47,
  NO_STORAGE_POOL: 49, NO_STORAGE_VOL: 50, INVALID_NODE_DEVICE: 52,
  NO_NODE_DEVICE: 53, NO_SECURITY_MODEL: 54, OPERATION_INVALID: 55,
  NO_INTERFACE: 57, INVALID_INTERFACE: 58, MULTIPLE_INTERFACES: 59,
  INVALID_NWFILTER: 61, NO_NWFILTER: 62, BUILD_FIREWALL: 63,
  INVALID_SECRET: 65, NO_SECRET: 66, CONFIG_UNSUPPORTED: 67,
  OPERATION_TIMEOUT: 68, MIGRATE_PERSIST_FAILED: 69, HOOK_SCRIPT_FAILED: 70,
  INVALID_DOMAIN_SNAPSHOT: 71, NO_DOMAIN_SNAPSHOT: 72, INVALID_STREAM: 73,
  ARGUMENT_UNSUPPORTED: 74, STORAGE_PROBE_FAILED: 75, STORAGE_POOL_BUILT: 76,
  SNAPSHOT_REVERT_RISKY: 77, OPERATION_ABORTED: 78, AUTH_CANCELLED: 79,
  NO_DOMAIN_METADATA: 80, MIGRATE_UNSAFE: 81, OVERFLOW: 82,
  BLOCK_COPY_ACTIVE: 83, OPERATION_UNSUPPORTED: 84, SSH: 85,
  AGENT_UNRESPONSIVE: 86, RESOURCE_BUSY: 87, ACCESS_DENIED: 88,
  DBUS_SERVICE: 89, STORAGE_VOL_EXIST: 90, CPU_INCOMPATIBLE: 91,
  XML_INVALID_SCHEMA: 92, MIGRATE_FINISH_OK: 93, AUTH_UNAVAILABLE: 94,
  NO_SERVER: 95, NO_CLIENT: 96, AGENT_UNSYNCED: 97, LIBSSH: 98,
  DEVICE_MISSING: 99, INVALID_NWFILTER_BINDING: 100, NO_NWFILTER_BINDING: 101,
  INVALID_DOMAIN_CHECKPOINT: 102, NO_DOMAIN_CHECKPOINT: 103,
  NO_DOMAIN_BACKUP: 104, INVALID_NETWORK_PORT: 105, NETWORK_PORT_EXIST: 106,
  NO_NETWORK_PORT: 107, NO_HOSTNAME: 108, CHECKPOINT_INCONSISTENT: 109,
  MULTIPLE_DOMAINS: 110,
} as const;

export type VirErrorCodeName = keyof typeof VirErrorCode;

/** virErrorDomain values that show up in our logs most (the full enum is long). */
export const VirErrorDomain = {
  NONE: 0, RPC: 7, QEMU: 10, TEST: 12, REMOTE: 13, STORAGE: 18, DOMAIN: 20,
} as const;

const codeNames = new Map<number, string>(
  Object.entries(VirErrorCode).map(([name, code]) => [code, `VIR_ERR_${name}`]),
);

/** 'VIR_ERR_NO_DOMAIN' for 42; numbers newer than libvirt 9.0 keep the number. */
export function virErrorCodeName(code: number): string {
  return codeNames.get(code) ?? `VIR_ERR_${code}`;
}

/** The fields of libvirt's virError that we keep. */
export interface VirErrorInfo {
  code: number;
  domain: number;
  message: string;
  level: number;
}

/** A failure reported by libvirt itself, with libvirt's own numbers and text. */
export class VirError extends Error {
  override readonly name = 'VirError';
  /** virErrorNumber, see VirErrorCode. */
  readonly code: number;
  /** e.g. 'VIR_ERR_NO_DOMAIN'. */
  readonly codeName: string;
  /** virErrorDomain: the libvirt subsystem that raised it. */
  readonly domain: number;
  /** virErrorLevel: 1 warning, 2 error. */
  readonly level: number;

  constructor(info: VirErrorInfo, options?: { cause?: unknown }) {
    super(info.message, options);
    this.code = info.code;
    this.codeName = virErrorCodeName(info.code);
    this.domain = info.domain;
    this.level = info.level;
  }

  toJSON(): VirErrorInfo & { name: string; codeName: string } {
    return {
      name: this.name,
      code: this.code,
      codeName: this.codeName,
      domain: this.domain,
      level: this.level,
      message: this.message,
    };
  }
}

/** True for VirError instances and for their JSON/structured-clone copies. */
export function isVirError(e: unknown): e is VirError {
  if (e instanceof VirError) return true;
  if (typeof e !== 'object' || e === null) return false;
  const o = e as { name?: unknown; code?: unknown };
  return o.name === 'VirError' && typeof o.code === 'number';
}

/** Tests `e` against one code without the caller importing the class. */
export function isVirErrorCode(e: unknown, code: number): boolean {
  return isVirError(e) && e.code === code;
}

/**
 * One of our own deadlines expired (libvirt has none for connection setup).
 * The native call may still be running on a pool thread; the binding cleans
 * up whatever it returns late.
 */
export class LibvirtTimeoutError extends Error {
  override readonly name = 'LibvirtTimeoutError';
  readonly operation: string;
  readonly timeoutMs: number;

  constructor(operation: string, timeoutMs: number) {
    super(`libvirt ${operation} did not finish within ${timeoutMs} ms`);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }

  toJSON(): { name: string; message: string; operation: string; timeoutMs: number } {
    return { name: this.name, message: this.message, operation: this.operation, timeoutMs: this.timeoutMs };
  }
}

export function isLibvirtTimeoutError(e: unknown): e is LibvirtTimeoutError {
  if (e instanceof LibvirtTimeoutError) return true;
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'LibvirtTimeoutError';
}
