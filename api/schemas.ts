/**
 * What a request may carry, as zod schemas: the API validates with them
 * (api/validate.ts) and the OpenAPI document is generated from them
 * (api/openapi.ts), so the two cannot disagree. Each error message says what
 * is wrong and what is allowed; api/validate.ts turns the first issue into a
 * catalogue error.
 */
import { z } from 'zod';
import { REMOTE_HOST } from '../shared/remote-host.js';
import { verboseParam } from './peer-policy.js';

/** remote_host's rule lives in shared/ so workers check every job against it too (worker/admit.ts). */
export { REMOTE_HOST };

const unbracket = (v: string) => (v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v);

export const RemoteHost = z
  .string({ error: (iss) => (iss.input === undefined ? "'remote_host' is required" : 'it must be a string') })
  .regex(REMOTE_HOST, { error: (iss) => JSON.stringify(String(iss.input).slice(0, 80)) })
  // Examples describe what is sent, so they go on the schema before the transform.
  .meta({ examples: ['host2', '127.0.0.12', '[fe80::1]'] })
  .transform(unbracket)
  .meta({
    description: 'The destination host: a host name or an IPv4 or IPv6 address (IPv6 may be in brackets). The destination libvirt URI is libvirt.destination_uri_template with this host.',
  });

/** A whole number in a range, with one message for every way it can be wrong. */
function wholeNumber(key: string, min: number, max: number, unit: string) {
  const error = `'${key}' must be a whole number of ${unit} from ${min} to ${max}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
}

const bandwidthError = `'bandwidth' must be a whole number of MiB/s (or "unlimited") from 1 to 1048576`;
export const Bandwidth = z
  .union([wholeNumber('bandwidth', 1, 1_048_576, 'MiB/s (or "unlimited")'), z.literal('unlimited')], { error: bandwidthError })
  .meta({ description: 'Largest transfer rate in MiB/s, or "unlimited".', examples: [64, 'unlimited'] });

// libvirt ignores a max downtime under 100 ms (the seed says so too): refuse it rather than pretend.
export const MaxDowntime = wholeNumber('max_downtime', 100, 600_000, 'milliseconds').meta({
  description: 'Longest the guest may be paused at the switch-over, in ms.',
  examples: [500],
});

const DryRun = z.boolean({ error: "'dry_run' must be true or false" }).default(false).meta({
  description: 'true: run every capability check now (the precheck) and enqueue nothing.',
});

/** Per-migration policy a client may set in the POST body (all optional). */
export const policyShape = {
  bandwidth: Bandwidth.optional(),
  max_downtime: MaxDowntime.optional(),
  deadline: wholeNumber('deadline', 1, 2_000_000, 'seconds').optional().meta({
    description: 'Seconds the copy may run before deadline_action (instead of migration_destination_timeout).',
    examples: [600],
  }),
  deadline_action: z
    .enum(['abort', 'pause'], { error: `'deadline_action' is "abort" (stop and recover on the source) or "pause" (pause the guest so the copy completes)` })
    .optional()
    .meta({ description: 'At the deadline: "abort" aborts and recovers on the source; "pause" pauses the guest so the copy completes, then resumes it on the destination.' }),
  auto_converge: z
    .boolean({ error: `'auto_converge' must be true or false` })
    .optional()
    .meta({ description: 'QEMU throttles the guest while the copy does not converge.' }),
  compression: z
    .enum(['xbzrle', 'none'], { error: `'compression' is "xbzrle" or "none": multithreaded and multifd compression need a non-tunnelled or parallel transport` })
    .optional()
    .meta({ description: 'xbzrle: send the changes of pages sent before. Other methods need a transport this service does not use.' }),
};

/** Kimchi's body had these; kvm-migrate connects libvirt to libvirt and takes no credentials. */
export const KIMCHI_ONLY = ['user', 'password', 'enable_rdma'] as const;
/** Things libvirt can do, but not with the tunnelled transport this service uses. */
export const NOT_WITH_TUNNEL: Record<string, string> = {
  post_copy: 'post-copy is not available with tunnelled transport; use deadline_action "pause" to force completion',
  parallel: 'parallel connections are not available with tunnelled transport',
};

const migrateShape = { remote_host: RemoteHost, dry_run: DryRun, ...policyShape };
const MIGRATE_KEYS = Object.keys(migrateShape);

/** Why a property the migrate body does not take is refused. */
export function unknownMigrateKey(k: string): string {
  if ((KIMCHI_ONLY as readonly string[]).includes(k)) return `property '${k}' is not supported: the source libvirtd connects to the destination libvirtd itself, no credentials are passed through the API`;
  if (Object.hasOwn(NOT_WITH_TUNNEL, k)) return NOT_WITH_TUNNEL[k]!;
  return `unknown property '${k.slice(0, 64)}'; allowed: ${MIGRATE_KEYS.join(', ')}`;
}

export const MigrateBody = z
  .strictObject(migrateShape, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') return unknownMigrateKey(iss.keys[0] ?? '');
      if (iss.code === 'invalid_type') return 'the body must be a JSON object such as {"remote_host": "host2"}';
      return undefined;
    },
  })
  .meta({
    description: 'Migrate a guest (or, with dry_run, only check that it can be). Every property but remote_host is optional; properties not listed are refused, Kimchi\'s user, password and enable_rdma included (no credentials travel through the API), as are post_copy and parallel (not available with tunnelled transport).',
  });

export type MigrateBody = z.output<typeof MigrateBody>;
export type PolicyBody = Omit<MigrateBody, 'remote_host' | 'dry_run'>;

export const TuneBody = z
  .strictObject(
    { bandwidth: Bandwidth.optional(), max_downtime: MaxDowntime.optional() },
    {
      error: (iss) => {
        if (iss.code === 'unrecognized_keys') return `'${(iss.keys[0] ?? '').slice(0, 64)}' cannot change while a migration runs; only bandwidth and max_downtime can`;
        if (iss.code === 'invalid_type') return 'the body must be a JSON object such as {"bandwidth": 32}';
        return undefined;
      },
    },
  )
  .refine((b) => b.bandwidth !== undefined || b.max_downtime !== undefined, { error: 'give bandwidth, max_downtime or both' })
  // The refinement above, as JSON Schema says it: the object has only these two properties.
  .meta({ minProperties: 1, description: 'The limits that can change while the copy runs: bandwidth, max_downtime or both.' });

export type TuneBody = z.output<typeof TuneBody>;

export const VmName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^/\x00-\x1f\x7f]*$/)
  .meta({
    description: 'The guest\'s libvirt name: 1 to 255 characters (Unicode code points) without "/" or control characters. Characters that mean something in a URL are percent-encoded in the path.',
    examples: ['lab-tiny'],
  });

export const TaskId = z.string().meta({ description: 'A task id (the UUID the migration request answered with).', examples: ['4f7c2a1e-8d0b-4c55-9a51-0c1d2e3f4a5b'] });

export const VmParams = z.object({ name: VmName });
export const TaskParams = z.object({ id: TaskId });

/** Kimchi's UI sends filters as regular expressions, matched from the start of the value. */
export const filterPattern = (param: string) =>
  z
    .string({ error: `filter '${param}' must be one regular expression of at most 200 characters` })
    .max(200, { error: `filter '${param}' must be one regular expression of at most 200 characters` })
    .transform((v, ctx) => {
      try {
        return new RegExp(v);
      } catch {
        ctx.issues.push({ code: 'custom', input: v, message: `filter '${param}' is not a valid regular expression` });
        return z.NEVER;
      }
    })
    .optional();

/** GET /peers: ?verbose=true (or 1, or empty) gives objects; false, 0 or nothing gives Kimchi's URLs. */
export const PeersQuery = z.object({
  verbose: z
    .enum(['true', '1', '', 'false', '0'], { error: "'verbose' is true or false" })
    .optional()
    .transform((v) => verboseParam(v) === true)
    .meta({ description: 'true (or 1, or empty): one object per peer; false, 0 or absent: Kimchi\'s list of https://host:port.', examples: ['true'] }),
});

/** Idempotency-Key on POST /vms/:name/migrate: what clients put in a UUID or a request hash. */
export const IdempotencyKey = z
  .string()
  .regex(/^[\x21-\x7e]{1,255}$/)
  .meta({
    description: '1 to 255 visible ASCII characters, sent once. A retry of the same request by the same client within api.idempotency_ttl gets the same task (202, Idempotent-Replayed: true), even after it ended; the same key with a different body is a 422 KMIG0023E. Ignored with dry_run.',
    examples: ['9b2f6d1c-6a55-4c1e-a3a8-2f0e4d7b9c10'],
  });

export const MigrateHeaders = z.object({ 'Idempotency-Key': IdempotencyKey.optional() });

/** POST /session: the token a browser trades for a session cookie. */
export const SessionBody = z
  .object({ token: z.string().min(1).max(512).meta({ description: 'A token from auth.tokens.', examples: ['<the token>'] }) })
  .meta({ description: 'The token to log in with. It is checked like a bearer token, under the same failure brake; a missing or wrong one is a 401.' });
