/**
 * One configuration schema for the API, the workers and the CLI tools.
 *
 * Every key has a doc string, a default, a format and an environment variable
 * (KVM_MIGRATE_<PATH>), and can come from a JSON file. `loadConfig` takes the
 * environment and file as arguments so tests and tools never share state.
 */
import { isIP } from 'node:net';
import convict from 'convict';

/** Bandwidth as the seed spells it: 'unlimited' or a whole number of MiB/s. */
function bandwidth(val: unknown): void {
  if (val === 'unlimited') return;
  if (typeof val === 'number' && Number.isInteger(val) && val > 0) return;
  throw new Error("must be 'unlimited' or a positive whole number of MiB/s");
}

function positiveInt(val: unknown): void {
  if (typeof val !== 'number' || !Number.isInteger(val) || val <= 0) {
    throw new Error('must be a positive whole number');
  }
}

/** Timers in Node hold at most 2^31-1 ms (about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
function timerMs(val: unknown): void {
  positiveInt(val);
  if ((val as number) > MAX_TIMER_MS) throw new Error(`must be at most ${MAX_TIMER_MS} ms`);
}
function timerSeconds(val: unknown): void {
  positiveInt(val);
  if ((val as number) * 1000 > MAX_TIMER_MS - 120_000) throw new Error('must be at most 2000000 seconds (about 23 days)');
}

function nonNegativeInt(val: unknown): void {
  if (typeof val !== 'number' || !Number.isInteger(val) || val < 0) {
    throw new Error('must be a whole number, 0 or more');
  }
}

/** The template must put the host somewhere, or every migration goes to one place. */
function uriTemplate(val: unknown): void {
  if (typeof val !== 'string' || !val.includes('{host}')) {
    throw new Error("must be a libvirt URI containing '{host}', e.g. qemu+tcp://{host}/system");
  }
  if (!/^[a-z0-9+]+:\/\//.test(val)) throw new Error('must start with a libvirt scheme, e.g. qemu+tcp://');
}

function redisUrl(val: unknown): void {
  if (typeof val !== 'string' || !/^rediss?:\/\/.+/.test(val)) {
    throw new Error('must be a redis:// or rediss:// URL');
  }
}

const millis = (doc: string, def: number, env: string) => ({ doc, format: timerMs, default: def, env });

export type Role = 'viewer' | 'operator';
export interface TokenConfig {
  name: string;
  role: Role;
  token: string;
}

/** Bearer tokens: long enough not to be guessed, named so logs and limits can say who without saying the secret. */
function tokens(val: unknown): void {
  if (!Array.isArray(val)) throw new Error('must be a list of {name, role, token}');
  // Entries are named by position: a malformed entry may have a piece of a secret where its name should be.
  const names = new Map<string, number>();
  (val as Partial<TokenConfig>[]).forEach((t, i) => {
    const at = `entry ${i + 1}`;
    if (typeof t !== 'object' || t === null) throw new Error(`${at} is not {name, role, token}`);
    if (typeof t.name !== 'string' || !/^[A-Za-z0-9_.@-]{1,64}$/.test(t.name)) throw new Error(`${at}: the name must be 1-64 characters of A-Z a-z 0-9 _ . @ -`);
    if (names.has(t.name)) throw new Error(`${at}: the name is already used by entry ${names.get(t.name)! + 1}`);
    names.set(t.name, i);
    if (t.role !== 'viewer' && t.role !== 'operator') throw new Error(`${at}: the role must be viewer or operator`);
    if (typeof t.token !== 'string' || t.token.length < 16 || t.token.length > 512 || !/^[\x21-\x2b\x2d-\x7e]+$/.test(t.token)) {
      throw new Error(`${at}: the token must be 16-512 printable characters without spaces or commas`);
    }
  });
}

/**
 * The environment form of auth.tokens: a JSON list, or "name:role:token"
 * entries separated by commas (a token may itself contain ':').
 */
export function parseTokens(raw: string): unknown {
  const text = raw.trim();
  if (text.startsWith('[')) return JSON.parse(text);
  if (!text) return [];
  return text.split(',').map((entry) => {
    const [name, role, ...rest] = entry.trim().split(':');
    return { name, role, token: rest.join(':') };
  });
}

function origins(val: unknown): void {
  if (!Array.isArray(val)) throw new Error('must be a list of origins');
  for (const o of val) {
    if (typeof o !== 'string' || !/^https?:\/\/[^/\s]+$/.test(o)) throw new Error(`${String(o).slice(0, 80)} is not an origin such as https://dashboard.example.com`);
  }
}

/** RFC 1123 host name (labels of letters, digits and hyphens) or an IP address. */
const HOST_NAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
function validHost(v: unknown): boolean {
  return typeof v === 'string' && (isIP(v) !== 0 || HOST_NAME.test(v));
}

/**
 * A static peer is "host", "host:port", "[v6]" or "[v6]:port". Its host may
 * become a remote_host, so it is held to the same rule as one.
 */
export function splitPeer(entry: string): { host: string; port?: number } | null {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(entry) ?? (isIP(entry) === 6 ? [entry, entry, undefined] : /^([^:]+)(?::(\d{1,5}))?$/.exec(entry));
  if (!m || !validHost(m[1])) return null;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return null;
  return { host: m[1]!, ...(port !== undefined ? { port } : {}) };
}

function staticPeers(val: unknown): void {
  if (!Array.isArray(val)) throw new Error('must be a list of host names or addresses');
  for (const p of val) {
    if (typeof p !== 'string' || !splitPeer(p)) throw new Error(`${String(p).slice(0, 80)} is not a host name or address with an optional :port`);
  }
}

export const schema = {
  migration_destination_timeout: {
    doc: 'Maximum time in seconds a migration may run before it is aborted and the guest recovered on the source (the seed: 21600 should be enough on one LAN).',
    format: timerSeconds,
    default: 21600,
    env: 'KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT',
  },
  migration_max_bandwidth: {
    doc: "Migration bandwidth limit in MiB/s, or 'unlimited' (libvirt's default).",
    format: bandwidth,
    default: 'unlimited' as number | 'unlimited',
    env: 'KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH',
  },
  migration_downtime: {
    doc: 'Maximum allowed downtime of a live migration in milliseconds; values below 100 are ignored (libvirt keeps its own default). If liveness does not matter, set a very high value such as 600000.',
    format: nonNegativeInt,
    default: 500,
    env: 'KVM_MIGRATE_MIGRATION_DOWNTIME',
  },
  convergence: {
    ceiling: millis('Highest max downtime in ms the convergence schedule raises to when a copy does not converge; at or below the start, the schedule never raises.', 2000, 'KVM_MIGRATE_CONVERGENCE_CEILING'),
    steps: { doc: 'Steps of the convergence schedule from the starting max downtime to the ceiling.', format: positiveInt, default: 5, env: 'KVM_MIGRATE_CONVERGENCE_STEPS' },
    step_delay_per_gib: millis('Least time in ms between two downtime steps, per GiB of guest data (never under 1 s).', 2000, 'KVM_MIGRATE_CONVERGENCE_STEP_DELAY_PER_GIB'),
  },
  redis: {
    url: { doc: 'Redis URL used by the API and the workers.', format: redisUrl, default: 'redis://127.0.0.1:6379', env: 'KVM_MIGRATE_REDIS_URL', sensitive: true },
    prefix: {
      doc: "Key prefix for every Redis key (BullMQ prefix). Wrap it in braces, e.g. '{kvm-migrate}', for Redis Cluster.",
      format: (v: unknown) => {
        if (typeof v !== 'string' || !/^[A-Za-z0-9_{}:.-]{1,64}$/.test(v)) throw new Error('must be 1-64 characters of A-Z a-z 0-9 _ { } : . -');
      },
      default: 'kvm-migrate',
      env: 'KVM_MIGRATE_REDIS_PREFIX',
    },
    queue: { doc: 'Name of the BullMQ queue that carries migrations.', format: String, default: 'migrations', env: 'KVM_MIGRATE_REDIS_QUEUE' },
  },
  libvirt: {
    source_uri: { doc: 'libvirt URI of the source host whose guests this service migrates.', format: String, default: 'qemu:///system', env: 'KVM_MIGRATE_LIBVIRT_SOURCE_URI' },
    destination_uri_template: {
      doc: "How remote_host becomes the destination libvirt URI; '{host}' is replaced by remote_host. Peer-to-peer: the source libvirtd opens it, so it must be reachable from the source host.",
      format: uriTemplate,
      default: 'qemu+tcp://{host}/system',
      env: 'KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE',
    },
    connect_timeout: millis('Longest wait in ms for a libvirt connection to open (reachability check).', 5000, 'KVM_MIGRATE_LIBVIRT_CONNECT_TIMEOUT'),
    lookup_timeout: millis('Longest wait in ms for the API to look a guest up on the source before answering 503.', 3000, 'KVM_MIGRATE_LIBVIRT_LOOKUP_TIMEOUT'),
    idle_connection_timeout: {
      doc: "How long in ms a worker keeps a libvirt connection no job uses, for the next job to the same host (with what it read of the host's capabilities); 0: every job opens and closes its own.",
      format: (v: unknown) => (nonNegativeInt(v), v === 0 ? undefined : timerMs(v)),
      default: 60000,
      env: 'KVM_MIGRATE_LIBVIRT_IDLE_CONNECTION_TIMEOUT',
    },
    keep_source_definition: {
      doc: 'Keep the (inactive) guest definition on the source after a successful migration instead of undefining it.',
      format: Boolean,
      default: false,
      env: 'KVM_MIGRATE_LIBVIRT_KEEP_SOURCE_DEFINITION',
    },
  },
  api: {
    host: { doc: 'Address the API listens on.', format: String, default: '127.0.0.1', env: 'KVM_MIGRATE_API_HOST' },
    port: { doc: 'TCP port the API listens on (0 picks a free port).', format: 'port', default: 8010, env: 'KVM_MIGRATE_API_PORT' },
    cors_origins: {
      doc: 'Origins allowed to call the API from a browser (CORS), comma-separated. Empty: no CORS headers, browsers on other origins are refused.',
      format: origins,
      default: [] as string[],
      env: 'KVM_MIGRATE_API_CORS_ORIGINS',
    },
    rate_limit: {
      doc: 'Requests per minute one client (token) may make to the routes that change something (POST, PATCH, DELETE), per API process; more get 429.',
      format: positiveInt,
      default: 120,
      env: 'KVM_MIGRATE_API_RATE_LIMIT',
    },
    auth_failure_limit: {
      doc: 'Failed authentications one client address may make per minute (per API process) before a wrong token gets 429 instead of 401; a right token always passes.',
      format: positiveInt,
      default: 60,
      env: 'KVM_MIGRATE_API_AUTH_FAILURE_LIMIT',
    },
    streams_per_client: {
      doc: 'Event streams (GET /tasks/:id/events) one client (token) may hold open at once, per API process; more get 429.',
      format: positiveInt,
      default: 32,
      env: 'KVM_MIGRATE_API_STREAMS_PER_CLIENT',
    },
    idempotency_ttl: {
      doc: 'How long in seconds an Idempotency-Key is remembered: a retried POST with the same key within it gets the same task. At most tasks.keep_finished, so a key never outlives its task.',
      format: positiveInt,
      default: 24 * 3600,
      env: 'KVM_MIGRATE_API_IDEMPOTENCY_TTL',
    },
    public_origin: {
      doc: "The origin browsers use to reach the API, e.g. https://migrate.example.com behind a TLS-terminating proxy. A write from a browser session is accepted when its Origin is this (or the origin the request itself names: its Host over the scheme the API sees), for browsers that send no Sec-Fetch-Site. Empty: only the request's own.",
      format: (v: unknown) => {
        if (v !== '' && (typeof v !== 'string' || !/^https?:\/\/[^/\s]+$/.test(v))) throw new Error('must be empty or an origin such as https://migrate.example.com (scheme and host, an optional port, no path)');
      },
      default: '',
      env: 'KVM_MIGRATE_API_PUBLIC_ORIGIN',
    },
  },
  auth: {
    enabled: {
      doc: 'Require authentication (a bearer token, or a browser session made from one with POST /session) on every route but the public ones: /health, /healthz, /readyz, /openapi.json, the login page and its files, the page assets under /ui/, POST and DELETE /session. Without it an API client gets 401; a browser opening / or /admin/queues is sent to /login. Turn off only on a trusted, single-user host: everyone is then an operator.',
      format: Boolean,
      default: true,
      env: 'KVM_MIGRATE_AUTH_ENABLED',
    },
    tokens: {
      doc: 'Bearer tokens with their role (viewer: read tasks and events; operator: also migrate, cancel, tune), as a JSON list of {name, role, token} or "name:role:token,...".',
      format: tokens,
      default: [] as TokenConfig[],
      env: 'KVM_MIGRATE_AUTH_TOKENS',
      sensitive: true,
    },
    session_ttl: {
      doc: 'How long in seconds a browser session (POST /session, the login page) lasts; the cookie and its Redis entry expire together. A session also ends once the token it was made with is no longer configured with that name and role.',
      format: positiveInt,
      default: 8 * 3600,
      env: 'KVM_MIGRATE_AUTH_SESSION_TTL',
    },
    cookie_secure: {
      doc: "When the session cookie is marked Secure (sent back over https only): auto when the login came over https (a TLS socket, or X-Forwarded-Proto: https from a proxy), always, or never. Behind a TLS-terminating proxy that sets no X-Forwarded-Proto, use always.",
      format: ['auto', 'always', 'never'],
      default: 'auto' as 'auto' | 'always' | 'never',
      env: 'KVM_MIGRATE_AUTH_COOKIE_SECURE',
    },
  },
  worker: {
    concurrency: { doc: 'Migrations one worker process runs at the same time.', format: positiveInt, default: 2, env: 'KVM_MIGRATE_WORKER_CONCURRENCY' },
    progress_interval: millis('How often in ms the migrate stage samples libvirt job statistics; event streams are woken by each sample, so it bounds how old the progress a client sees can be.', 250, 'KVM_MIGRATE_WORKER_PROGRESS_INTERVAL'),
    lock_duration: millis(
      "How long in ms a worker's lock on a job lasts without renewal; a crashed worker's job is taken over after it expires. Renewed every half of it while the worker lives.",
      30000,
      'KVM_MIGRATE_WORKER_LOCK_DURATION',
    ),
    stalled_interval: millis('How often in ms workers look for jobs whose lock expired (crashed workers) and take them over.', 15000, 'KVM_MIGRATE_WORKER_STALLED_INTERVAL'),
  },
  stages: {
    check_deadline: millis('Deadline in ms of the check stage (all capability checks).', 60000, 'KVM_MIGRATE_STAGES_CHECK_DEADLINE'),
    connect_deadline: millis('Deadline in ms of the connect stage.', 30000, 'KVM_MIGRATE_STAGES_CONNECT_DEADLINE'),
    prepare_deadline: millis('Deadline in ms of the prepare stage.', 30000, 'KVM_MIGRATE_STAGES_PREPARE_DEADLINE'),
    recover_deadline: millis('Deadline in ms of the recover stage.', 120000, 'KVM_MIGRATE_STAGES_RECOVER_DEADLINE'),
    finish_deadline: millis('Deadline in ms of the finish stage.', 60000, 'KVM_MIGRATE_STAGES_FINISH_DEADLINE'),
  },
  retry: {
    attempts: { doc: 'Attempts per job for transient faults (connection refused or reset, libvirt timeouts), the first included.', format: positiveInt, default: 5, env: 'KVM_MIGRATE_RETRY_ATTEMPTS' },
    backoff: millis('First retry delay in ms; it doubles with every attempt.', 1000, 'KVM_MIGRATE_RETRY_BACKOFF'),
  },
  limits: {
    outgoing_per_host: { doc: 'Migrations that may run out of one source host at the same time, counted across every worker process (in Redis); more wait in the queue.', format: positiveInt, default: 2, env: 'KVM_MIGRATE_LIMITS_OUTGOING_PER_HOST' },
    incoming_per_host: { doc: 'Migrations that may run into one destination host at the same time, counted across every worker process; more wait in the queue.', format: positiveInt, default: 2, env: 'KVM_MIGRATE_LIMITS_INCOMING_PER_HOST' },
    global: { doc: 'Migrations that may run at the same time in the whole service, whatever the hosts; more wait in the queue.', format: positiveInt, default: 10, env: 'KVM_MIGRATE_LIMITS_GLOBAL' },
    wait_poll: millis('How often in ms a migration waiting for a slot looks again.', 2000, 'KVM_MIGRATE_LIMITS_WAIT_POLL'),
    max_wait: {
      doc: 'Longest a migration waits for a slot, in seconds, before its task fails (KMIG0207E); nothing has moved by then.',
      format: positiveInt,
      default: 24 * 3600,
      env: 'KVM_MIGRATE_LIMITS_MAX_WAIT',
    },
  },
  tasks: {
    keep_finished: { doc: 'How long in seconds finished and failed tasks stay queryable.', format: positiveInt, default: 7 * 24 * 3600, env: 'KVM_MIGRATE_TASKS_KEEP_FINISHED' },
  },
  federation: {
    enabled: {
      doc: 'Advertise this service with SLP as service:wokd (as Kimchi peers do) and list the peers found by SLP and federation.static_peers on GET /peers. Off: GET /peers answers [] and nothing is sent or listened for.',
      format: Boolean,
      default: false,
      env: 'KVM_MIGRATE_FEDERATION_ENABLED',
    },
    advertise_host: {
      doc: "Host name or address put into the advertised URL service:wokd://<host>:<port>; peers reach this service there. Empty: this machine's host name.",
      format: (v: unknown) => {
        if (v !== '' && !validHost(v)) throw new Error('must be empty, a host name or an IP address');
      },
      default: '',
      env: 'KVM_MIGRATE_FEDERATION_ADVERTISE_HOST',
    },
    advertise_port: { doc: 'Port put into the advertised URL; 0: api.port (or the port the API really listens on when api.port is 0).', format: 'port', default: 0, env: 'KVM_MIGRATE_FEDERATION_ADVERTISE_PORT' },
    static_peers: {
      doc: 'Peers that join the discovered ones, as a JSON list or comma-separated, each a host name or address with an optional :port (default: the advertised port); [::1]:8001 for IPv6 with a port.',
      format: staticPeers,
      default: [] as string[],
      env: 'KVM_MIGRATE_FEDERATION_STATIC_PEERS',
    },
    require_peer: {
      doc: 'Refuse a migration (and its precheck) whose remote_host is not a known peer (KMIG0040E, listing the known peers). Needs federation.enabled.',
      format: Boolean,
      default: false,
      env: 'KVM_MIGRATE_FEDERATION_REQUIRE_PEER',
    },
    refresh_interval: millis('How often in ms the peer list is discovered again, in the background; requests always get the last list found.', 60000, 'KVM_MIGRATE_FEDERATION_REFRESH_INTERVAL'),
  },
  slp: {
    port: { doc: 'UDP port of SLP (RFC 2608): the service agent listens on it and discovery asks it. 427 needs root or CAP_NET_BIND_SERVICE.', format: 'port', default: 427, env: 'KVM_MIGRATE_SLP_PORT' },
    interfaces: {
      doc: 'IPv4 addresses of the interfaces the SLP service agent listens on, as a JSON list or comma-separated; discovery multicasts on the first. Empty: the default interface.',
      format: (v: unknown) => {
        // IPv4 only: SLP here runs over udp4 sockets (an IPv6 address would fail at the first search).
        if (!Array.isArray(v) || !v.every((a) => typeof a === 'string' && isIP(a) === 4)) throw new Error('must be a list of IPv4 addresses');
      },
      default: [] as string[],
      env: 'KVM_MIGRATE_SLP_INTERFACES',
    },
    deadline: millis('Longest one discovery (a multicast Service Request and its retransmissions) waits for answers, in ms; openslp waits up to 5750.', 6000, 'KVM_MIGRATE_SLP_DEADLINE'),
    register_with_slpd: {
      doc: "With federation on, also register the service's URLs with a local openSLP slpd (127.0.0.1, slp.port) when one answers, so Kimchi's `slptool findsrvs` sees them through it; one bounded wait at start when none does.",
      format: Boolean,
      default: true,
      env: 'KVM_MIGRATE_SLP_REGISTER_WITH_SLPD',
    },
  },
  log: {
    level: { doc: 'Lowest level of log lines written (pino levels).', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', env: 'KVM_MIGRATE_LOG_LEVEL' },
  },
};

export interface Config {
  migration_destination_timeout: number;
  migration_max_bandwidth: number | 'unlimited';
  migration_downtime: number;
  convergence: { ceiling: number; steps: number; step_delay_per_gib: number };
  redis: { url: string; prefix: string; queue: string };
  libvirt: {
    source_uri: string;
    destination_uri_template: string;
    connect_timeout: number;
    lookup_timeout: number;
    idle_connection_timeout: number;
    keep_source_definition: boolean;
  };
  api: { host: string; port: number; cors_origins: string[]; rate_limit: number; auth_failure_limit: number; streams_per_client: number; idempotency_ttl: number; public_origin: string };
  auth: { enabled: boolean; tokens: TokenConfig[]; session_ttl: number; cookie_secure: 'auto' | 'always' | 'never' };
  worker: { concurrency: number; progress_interval: number; lock_duration: number; stalled_interval: number };
  stages: { check_deadline: number; connect_deadline: number; prepare_deadline: number; recover_deadline: number; finish_deadline: number };
  retry: { attempts: number; backoff: number };
  limits: { outgoing_per_host: number; incoming_per_host: number; global: number; wait_poll: number; max_wait: number };
  tasks: { keep_finished: number };
  federation: { enabled: boolean; advertise_host: string; advertise_port: number; static_peers: string[]; require_peer: boolean; refresh_interval: number };
  slp: { port: number; interfaces: string[]; deadline: number; register_with_slpd: boolean };
  log: { level: string };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  file?: string;
  /** Values that win over file and environment (tests, the demo). */
  overrides?: DeepPartial<Config>;
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/**
 * Convict reads list-valued variables as JSON only; the comma forms people
 * type into a shell become JSON here. The token list's error never echoes it.
 */
function listsAsJson(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  const origins = env.KVM_MIGRATE_API_CORS_ORIGINS?.trim();
  if (origins && !origins.startsWith('[')) out.KVM_MIGRATE_API_CORS_ORIGINS = JSON.stringify(origins.split(',').map((o) => o.trim()).filter(Boolean));
  for (const key of ['KVM_MIGRATE_FEDERATION_STATIC_PEERS', 'KVM_MIGRATE_SLP_INTERFACES']) {
    const raw = env[key]?.trim();
    if (raw !== undefined && !raw.startsWith('[')) out[key] = JSON.stringify(raw.split(',').map((o) => o.trim()).filter(Boolean));
  }
  const toks = env.KVM_MIGRATE_AUTH_TOKENS;
  if (toks !== undefined) {
    try {
      out.KVM_MIGRATE_AUTH_TOKENS = JSON.stringify(parseTokens(toks));
    } catch {
      throw new Error('auth.tokens: KVM_MIGRATE_AUTH_TOKENS must be a JSON list or "name:role:token" entries separated by commas');
    }
  }
  return out;
}

/** Builds and validates a configuration; throws ConfigError naming the bad key. */
export function loadConfig(opts: LoadOptions = {}): Config {
  let env = opts.env ?? {};
  try {
    env = listsAsJson(env);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  const conf = convict(schema as never, { env, args: [] });
  const file = opts.file ?? env.KVM_MIGRATE_CONFIG;
  try {
    if (file) conf.loadFile(file);
    if (opts.overrides) conf.load(opts.overrides);
    // Numbers from the environment arrive as strings; the bandwidth key takes both forms.
    const bw = conf.get('migration_max_bandwidth' as never) as unknown;
    if (typeof bw === 'string' && /^\d+$/.test(bw)) conf.set('migration_max_bandwidth' as never, Number(bw) as never);
    conf.validate({ allowed: 'strict' });
    // Requiring a peer with discovery off would refuse every migration.
    if (conf.get('federation.require_peer' as never) && !conf.get('federation.enabled' as never)) {
      throw new Error('federation.require_peer: needs federation.enabled, or no remote_host could ever be a known peer');
    }
    // A remembered key must not outlive its task (it would create it again): the default
    // shrinks to a shorter retention, a value set on purpose is refused.
    const keep = conf.get('tasks.keep_finished' as never) as number;
    if ((conf.get('api.idempotency_ttl' as never) as number) > keep) {
      if (conf.get('api.idempotency_ttl' as never) !== conf.default('api.idempotency_ttl' as never)) {
        throw new Error('api.idempotency_ttl: must be at most tasks.keep_finished, or a remembered key could outlive its task and create it again');
      }
      conf.set('api.idempotency_ttl' as never, keep as never);
    }
  } catch (err) {
    // Convict names the key; add where it can be set, since most values come from the environment.
    const lines = (err as Error).message.split('\n').map((line) => {
      const row = describeSchema().find((r) => line.startsWith(`${r.key}:`));
      return row ? `${line} (key ${row.key}, environment variable ${row.env})` : line;
    });
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  return conf.getProperties() as unknown as Config;
}

/** Flattened rows of the schema (key, env, default, doc) for README tables and --help. */
export function describeSchema(): { key: string; env: string; default: unknown; doc: string }[] {
  const rows: { key: string; env: string; default: unknown; doc: string }[] = [];
  const walk = (node: Record<string, unknown>, path: string[]) => {
    for (const [k, v] of Object.entries(node)) {
      const entry = v as Record<string, unknown>;
      if ('doc' in entry && 'default' in entry) {
        rows.push({ key: [...path, k].join('.'), env: String(entry.env), default: entry.default, doc: String(entry.doc) });
      } else walk(entry, [...path, k]);
    }
  };
  walk(schema as unknown as Record<string, unknown>, []);
  return rows;
}

/** The seed: "anything below 100ms is ignored". null means leave libvirt's default. */
export function effectiveDowntime(ms: number): number | null {
  return ms >= 100 ? ms : null;
}

/** Builds the destination libvirt URI from a validated remote_host. */
export function destinationUri(template: string, remoteHost: string): string {
  const host = remoteHost.includes(':') && !remoteHost.startsWith('[') ? `[${remoteHost}]` : remoteHost;
  return template.replaceAll('{host}', host);
}
