/**
 * The API over fetch: one request, its JSON answer, and the two ways a
 * request goes wrong before there is an answer (unreachable, timed out).
 */
import { isObject, type ErrorBody } from './types.js';

/** Exit codes, as documented in the help. */
export const EXIT = { OK: 0, TASK_FAILED: 1, USAGE: 2, UNREACHABLE: 3, REFUSED: 4, INTERRUPTED: 130 } as const;

/** A failure that ends the command: what to print and which exit code to use. */
export class CliFailure extends Error {
  override name = 'CliFailure';
  constructor(
    message: string,
    readonly exitCode: number,
    /** The API's error answer, printed as is with --json. */
    readonly body?: unknown,
    /** For an unreachable API: the network cause ("ECONNREFUSED"). */
    readonly detail?: string,
  ) {
    super(message);
  }
}

export interface Answer {
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined when the body is empty or not JSON. */
  json: unknown;
  /** The start of a body that is not JSON (a proxy's error page, say), for messages. */
  text: string;
}

/** Cause of a fetch failure in a person's words: "ECONNREFUSED", "getaddrinfo ENOTFOUND x". */
export function networkCause(e: unknown): string {
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) return 'no answer in time';
  const cause = (e as { cause?: unknown })?.cause as { code?: string; message?: string; errors?: { code?: string }[] } | undefined;
  return cause?.code ?? cause?.errors?.find((x) => x.code)?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
}

export class Api {
  constructor(
    readonly base: string,
    private readonly token?: string,
  ) {}

  /** Headers every request carries: the bearer token, when there is one. */
  auth(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  unreachable(e: unknown): CliFailure {
    const cause = networkCause(e);
    const hint =
      cause === 'no answer in time'
        ? 'The service may be overloaded; try again, or check its log.'
        : 'Is the service running there? Point the client at it with --api URL or KVM_MIGRATE_API.';
    return new CliFailure(`cannot reach the kvm-migrate API at ${this.base} (${cause}). ${hint}`, EXIT.UNREACHABLE, undefined, cause);
  }

  /** Any HTTP answer is returned, whatever its status; only a missing answer throws (exit 3). */
  async request(method: string, path: string, opts: { body?: unknown; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Answer> {
    let res: Response;
    let raw: string;
    try {
      res = await fetch(this.url(path), {
        method,
        headers: { accept: 'application/json', ...this.auth(), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 30_000)]) : AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      });
      raw = await res.text();
    } catch (e) {
      throw this.unreachable(e);
    }
    let json: unknown;
    try {
      json = raw ? JSON.parse(raw) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text: json === undefined ? raw.slice(0, 200).trim() : '' };
  }

  /** A non-2xx answer as a failure: 5xx → exit 3, 4xx → exit 4, the API's reason first. */
  failure(a: Answer, what: string): CliFailure {
    const body = isObject(a.json) ? (a.json as ErrorBody) : undefined;
    const reason = body?.reason ?? (body?.code ? String(body.code) : a.text ? `HTTP ${a.status}: ${a.text}` : `HTTP ${a.status}`);
    if (a.status >= 500) {
      return new CliFailure(`${what} failed: the service answered ${a.status}: ${reason}\nThis is on the service's side; try again shortly, or check the service's log.`, EXIT.UNREACHABLE, a.json);
    }
    let hint = '';
    if (body?.code === 'KMIG0001E' && /unknown property/.test(reason)) hint = '\nThe service may be older than this client and not know this option yet.';
    if (a.status === 401) hint = this.token ? '\nThe token was refused; check KVM_MIGRATE_TOKEN or --token-file.' : '\nSet KVM_MIGRATE_TOKEN (or --token-file FILE) to a token the service knows.';
    if (a.status === 403) hint = '\nThis needs an operator token.';
    if (body?.code === 'KMIG0008E') hint = `\nThe service at ${this.base} does not offer this request; it may be older than this client, or --api points elsewhere.`;
    return new CliFailure(`${what}: ${reason}${hint}`, a.status >= 400 && a.status < 500 ? EXIT.REFUSED : EXIT.UNREACHABLE, a.json);
  }
}
