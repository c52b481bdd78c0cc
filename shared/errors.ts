/**
 * The one error catalogue. Every error a client or operator can see has a
 * stable code here; Kimchi's codes are reused where Kimchi had one
 * (KCHVMxxxxE), the rest are kvm-migrate's own (KMIGxxxxE).
 *
 * Errors cross process boundaries through Redis, so consumers match on
 * `code` / `name`, never on `instanceof` alone.
 */

export interface ErrorDef {
  code: string;
  /** HTTP status when this error answers a request directly. */
  http: number;
  /** Transient faults are retried with backoff; everything else fails at once. */
  retryable: boolean;
  text: (p: Record<string, string>) => string;
}

const def = (code: string, http: number, retryable: boolean, text: ErrorDef['text']): ErrorDef => ({ code, http, retryable, text });

export const Catalogue = {
  // Requests
  VM_NOT_FOUND: def('KCHVM0002E', 404, false, (p) => `Virtual machine ${p.name} does not exist on the source host`),
  REMOTE_HOST_INVALID: def('KCHVM0060E', 400, false, (p) => `remote_host must be a host name or an IP address: ${p.detail}`),
  BAD_REQUEST: def('KMIG0001E', 400, false, (p) => `Invalid request: ${p.detail}`),
  MIGRATION_IN_PROGRESS: def('KMIG0003E', 409, false, (p) => `Virtual machine ${p.name} is already being migrated by task ${p.task}`),
  TASK_NOT_FOUND: def('KMIG0004E', 404, false, (p) => `Task ${p.id} does not exist`),
  SOURCE_UNAVAILABLE: def('KMIG0005E', 503, true, (p) => `The source libvirt host cannot be reached right now: ${p.detail}`),
  QUEUE_UNAVAILABLE: def('KMIG0006E', 503, true, (p) => `The migration queue (Redis) cannot be reached right now: ${p.detail}`),
  TASK_ENDED: def('KMIG0010E', 409, false, (p) => `Task ${p.id} already ended (${p.status}); there is nothing to ${p.what}`),
  CANCEL_TOO_LATE: def('KMIG0012E', 409, false, (p) => `Task ${p.id} can no longer be cancelled: it is in stage ${p.stage}, reconciling a migration that already completed or failed`),
  NO_ACTIVE_MIGRATION: def('KMIG0011E', 404, false, (p) => `Virtual machine ${p.name} has no queued or running migration`),
  ROUTE_NOT_FOUND: def('KMIG0008E', 404, false, (p) => `No such resource: ${p.method} ${p.path}`),
  BODY_TOO_LARGE: def('KMIG0009E', 413, false, () => 'The request body is too large'),
  UNAUTHENTICATED: def('KMIG0020E', 401, false, (p) => `Authentication required: ${p.detail}`),
  FORBIDDEN: def('KMIG0021E', 403, false, (p) => `${p.who} has role ${p.role}; ${p.method} ${p.path} needs role operator`),
  RATE_LIMITED: def('KMIG0022E', 429, false, (p) => `Too many requests that change something: at most ${p.limit} a minute per client; retry in ${p.retry} s`),
  IDEMPOTENCY_MISMATCH: def('KMIG0023E', 422, false, () => 'This Idempotency-Key was already used for a different request; use a new key for a new request'),
  IDEMPOTENCY_IN_FLIGHT: def('KMIG0024E', 409, false, () => 'A request with this Idempotency-Key is still being processed; retry in a moment'),
  UNSUPPORTED_MEDIA_TYPE: def('KMIG0025E', 415, false, (p) => `The body must be JSON sent with Content-Type: application/json, not ${p.type}`),
  CROSS_SITE: def('KMIG0026E', 403, false, (p) => `Requests that change something are refused from ${p.origin}: ${p.why ?? 'it is not in api.cors_origins'}`),
  DASHBOARD_REFUSED: def('KMIG0029E', 403, false, (p) => `The queue dashboard does not allow this: ${p.what}; ${p.instead}`),
  TOO_MANY_STREAMS: def('KMIG0028E', 429, false, (p) => `${p.who} already has ${p.limit} event streams open; close one, or poll GET /tasks/:id`),
  AUTH_FAILURES: def('KMIG0027E', 429, false, (p) => `Too many failed authentications from this address (more than ${p.limit} a minute); retry in ${p.retry} s`),
  NOT_A_PEER: def('KMIG0040E', 422, false, (p) => `${p.host} is not a known peer, and federation.require_peer is on; known peers: ${p.peers}`),
  MIGRATION_BLOCKED: def('KMIG0100E', 422, false, (p) => `Virtual machine ${p.name} cannot be migrated to ${p.host}: ${p.count} blocker(s)`),

  // Capability checks: each blocker has its own code and says what to fix.
  DEST_UNREACHABLE: def('KCHVM0090E', 422, false, (p) => `Cannot connect to the remote libvirt at ${p.uri}: ${p.detail}. Check that libvirtd listens there and that this service and the source host can reach it`),
  SAME_HOST: def('KCHVM0055E', 422, false, (p) => `Migrating to the host itself is not allowed: ${p.host} has the same host UUID (${p.uuid}) as the source`),
  HYPERVISOR_MISMATCH: def('KCHVM0065E', 422, false, (p) => `The hosts run different hypervisors: source ${p.source}, destination ${p.destination}`),
  ARCH_MISMATCH: def('KCHVM0064E', 422, false, (p) => `The hosts have different CPU architectures: source ${p.source}, destination ${p.destination}`),
  CAPS_UNREADABLE: def('KCHVM0066E', 422, false, (p) => `Could not compare the hosts' hypervisor and architecture: ${p.detail}`),
  BAD_STATE: def('KCHVM0057E', 422, false, (p) => `Live migration needs a running or paused guest; ${p.name} is ${p.state}. Start it first`),
  PCI_PASSTHROUGH: def('KMIG0101E', 422, false, (p) => `Guest ${p.name} has host devices passed through (${p.devices}); detach them before migrating`),
  DISK_NOT_SHARED: def('KMIG0102E', 422, false, (p) => `Disk ${p.target} (${p.path}) is not in any storage pool on the source; move it to a shared pool`),
  POOL_NOT_ON_DEST: def('KMIG0103E', 422, false, (p) => `Disk ${p.target} (${p.path}) in pool ${p.pool} is not visible on the destination: ${p.detail}`),
  POOL_NOT_WRITABLE: def('KMIG0104E', 422, false, (p) => `The destination cannot write to pool ${p.pool}: ${p.detail}`),
  POOL_NOT_SHARED: def('KMIG0105E', 422, false, (p) => `Pool ${p.pool} is not shared between the hosts: ${p.detail}`),
  NAME_CLASH: def('KMIG0106E', 422, false, (p) => `The destination already has a domain ${p.detail}; remove or rename it there first`),
  DEST_NO_MEMORY: def('KMIG0107E', 422, false, (p) => `The destination has ${p.free} MiB free, the guest needs ${p.need} MiB`),

  // Running a migration
  MIGRATION_FAILED: def('KCHVM0058E', 500, false, (p) => `Failed to migrate virtual machine ${p.name} due error: ${p.detail}`),
  MIGRATION_TIMEOUT: def('KMIG0201E', 500, false, (p) => `Migration of ${p.name} did not finish within its deadline of ${p.seconds} s (the request's deadline, else migration_destination_timeout); it was aborted and the guest keeps running on the source`),
  STAGE_TIMEOUT: def('KMIG0202E', 500, true, (p) => `Stage ${p.stage} did not finish within ${p.ms} ms`),
  RECOVERY_INCOMPLETE: def('KMIG0203E', 500, false, (p) => `Recovery of ${p.name} is incomplete: ${p.detail}`),
  CANCELLED: def('KMIG0204E', 409, false, (p) => `Migration of ${p.name} was cancelled`),
  FINISH_FAILED: def('KMIG0205E', 500, false, (p) => `Migration of ${p.name} could not be verified on the destination: ${p.detail}`),
  SLOT_WAIT_TIMEOUT: def('KMIG0207E', 503, false, (p) => `Migration of ${p.name} waited ${p.seconds} s (limits.max_wait) for a migration slot and was given up; nothing was moved. Last reason: ${p.reason}`),
  FOREIGN_JOB: def('KMIG0208E', 422, false, (p) => `The migration job for ${p.name} was refused without contacting libvirt: ${p.detail}. Workers run only jobs made by the API with their own libvirt.source_uri and libvirt.destination_uri_template; start it again with POST /vms/:name/migrate`),
  TRANSIENT: def('KMIG0206E', 503, true, (p) => `Transient fault, will retry: ${p.detail}`),
  INTERNAL: def('KMIG0299E', 500, false, (p) => `Internal error: ${p.detail}`),
} as const;

export type ErrorKey = keyof typeof Catalogue;

/** The error every layer of kvm-migrate throws and stores. */
export class MigrationError extends Error {
  override name = 'MigrationError';
  readonly key: ErrorKey;
  readonly code: string;
  readonly http: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(key: ErrorKey, params: Record<string, string> = {}, details?: Record<string, unknown>) {
    const d = Catalogue[key];
    super(`${d.code}: ${d.text(params)}`);
    this.key = key;
    this.code = d.code;
    this.http = d.http;
    this.retryable = d.retryable;
    this.details = details;
  }

  /** What is stored in job data and returned to clients: `reason` starts with the code. */
  toJSON(): ErrorJSON {
    return { code: this.code, key: this.key, reason: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export interface ErrorJSON {
  code: string;
  key: string;
  reason: string;
  details?: Record<string, unknown>;
}

export function isMigrationError(e: unknown): e is MigrationError {
  return e instanceof MigrationError || (typeof e === 'object' && e !== null && (e as { name?: string }).name === 'MigrationError');
}

export function migrationError(key: ErrorKey, params: Record<string, string> = {}, details?: Record<string, unknown>): MigrationError {
  return new MigrationError(key, params, details);
}

/** Rebuilds the JSON form of an error from a stored one, e.g. a job's data. */
export function errorJSON(e: unknown): ErrorJSON {
  if (isMigrationError(e)) return e.toJSON();
  const msg = e instanceof Error ? e.message : String(e);
  return new MigrationError('INTERNAL', { detail: msg }).toJSON();
}
