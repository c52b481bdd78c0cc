/**
 * Generated requests for fuzzing the API (fast-check), and a driver that
 * sends them and counts the answers. Shared by the fuzz test (an API in the
 * test process) and the fault suite (a real API process).
 *
 * Traffic stays on 127.0.0.1: a precheck (which opens the destination) is
 * only ever sent with a 127.0.0.0/8 remote_host, and nothing else reaches a
 * host named in a request (no worker runs while fuzzing).
 */
import fc from 'fast-check';
import { TOKENS } from './service.js';

const nasty = fc.constantFrom('test', 'lab-tiny', '<x/>', "a'b\"c", '$(reboot)', '`id`', '; rm -rf /', '..', '%2F', '%00', '%E0%A4%A', 'é', '\u202e', ' ', '%20', 'a'.repeat(300), '{{host}}', 'qemu:///system');
const segment = fc.oneof({ arbitrary: fc.constant('test'), weight: 3 }, nasty, fc.string({ maxLength: 40 }).map(encodeURIComponent), fc.uuid(), fc.stringMatching(/^[%a-zA-Z0-9._~-]{0,30}$/));
const path = fc.oneof(
  segment.map((n) => `/vms/${n}/migrate`),
  segment.map((n) => `/vms/${n}/migrate_cancel`),
  segment.map((n) => `/tasks/${n}`),
  segment.map((n) => `/tasks/${n}/events`),
  fc.constant('/tasks'),
  fc.constant('/health'),
  fc.tuple(fc.constantFrom('/tasks', '/tasks?status=', '/tasks?target_uri='), fc.string({ maxLength: 30 })).map(([p, q]) => `${p}${p.includes('=') ? encodeURIComponent(q) : ''}`),
  fc.string({ maxLength: 60 }).map((s) => `/${encodeURIComponent(s)}`),
);
const method = fc.constantFrom('GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'HEAD', 'OPTIONS');
// Mostly valid tokens, so most requests get past the front door and reach the handlers.
const auth = fc.oneof(
  { arbitrary: fc.constant(`Bearer ${TOKENS.operator}`), weight: 12 },
  { arbitrary: fc.constant(`Bearer ${TOKENS.viewer}`), weight: 3 },
  { arbitrary: fc.constant(undefined), weight: 1 },
  { arbitrary: fc.constantFrom(`bearer ${TOKENS.operator}`, 'Bearer', 'Basic Zm9vOmJhcg==', `Bearer ${TOKENS.operator} extra`), weight: 1 },
  { arbitrary: fc.string({ maxLength: 80 }).map((s) => `Bearer ${s.replace(/[\r\n]/g, '')}`), weight: 1 },
);
const hostValue = fc.oneof(fc.constantFrom('127.0.0.12', '127.0.0.1', '[::1]', 'host2', 'a/b', 'h@x', 'h:22', 'h?x=1', '', 'x'.repeat(300)), fc.string({ maxLength: 30 }), fc.integer(), fc.constant(null));
const field = fc.constantFrom('remote_host', 'dry_run', 'bandwidth', 'max_downtime', 'deadline', 'deadline_action', 'auto_converge', 'compression', 'user', 'password', 'post_copy', '__proto__', 'constructor');
const value = fc.oneof(hostValue, fc.boolean(), fc.double(), fc.integer({ min: -1e9, max: 1e12 }), fc.constantFrom('unlimited', 'abort', 'pause', 'xbzrle', 'none'), fc.json({ maxDepth: 2 }));
const objectBody = fc.dictionary(field, value, { maxKeys: 5 });
const validish = fc.record(
  {
    remote_host: fc.constantFrom('host2', '127.0.0.12', 'h2.example'),
    bandwidth: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.constant('unlimited')),
    max_downtime: fc.integer({ min: 100, max: 5000 }),
    deadline_action: fc.constantFrom('abort', 'pause'),
  },
  { requiredKeys: ['remote_host'] },
);
const body: fc.Arbitrary<string | undefined> = fc.oneof(
  fc.constant(undefined),
  { arbitrary: validish.map((o) => JSON.stringify(o)), weight: 3 },
  objectBody.map((o) => JSON.stringify(o)),
  fc.record({ remote_host: hostValue }).map((o) => JSON.stringify(o)),
  fc.json().map((j) => j),
  fc.string({ maxLength: 200 }),
  fc.constantFrom('{', '[]', 'null', '"x"', '{"remote_host":', '\u0000', '{"a":'.repeat(4000)),
);
// Mostly what a real client sends (JSON, no Origin), so requests reach the handlers; sometimes anything.
const rare = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 9 }, { arbitrary: a, weight: 1 });
const header = fc
  .record({
    'content-type': fc.oneof(
      { arbitrary: fc.constant('application/json'), weight: 8 },
      { arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', ''), weight: 2 },
    ),
    'idempotency-key': rare(fc.oneof(fc.uuid(), fc.string({ maxLength: 300 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')))),
    origin: rare(fc.constantFrom('https://evil.example', 'null')),
    'sec-fetch-site': rare(fc.constantFrom('cross-site', 'same-origin', 'none')),
    'content-encoding': rare(fc.constantFrom('gzip', 'identity', 'br')),
  })
  .map((h) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>);
export const request = fc.record({ method, path, auth, body, headers: header });

/** A precheck opens the destination: keep it on the loopback whatever was generated. */
export function safe(r: { method: string; path: string; auth: string | undefined; body: string | undefined; headers: Record<string, string> }) {
  if (r.body && /dry_run/.test(r.body)) {
    try {
      const b = JSON.parse(r.body);
      if (b && typeof b === 'object' && b.dry_run === true && !/^127\./.test(String(b.remote_host))) r.body = JSON.stringify({ ...b, remote_host: '127.0.0.1' });
    } catch {
      /* not JSON: never reaches the checks */
    }
  }
  return r;
}


export interface FuzzResult {
  /** Answers by HTTP status. */
  statuses: Record<number, number>;
  answered: number;
  /** Every 5xx answer and every request that got no answer, described. */
  failures: string[];
}

/** Sends `runs` generated requests (seeded) to `url`, `concurrency` at a time. */
export async function fuzz(url: string, runs: number, seed: number, concurrency = 16): Promise<FuzzResult> {
  const samples = fc.sample(request, { numRuns: runs, seed }).map(safe);
  const statuses = new Map<number, number>();
  const failures: string[] = [];
  let next = 0;
  const one = async () => {
    while (next < samples.length) {
      const r = samples[next++]!;
      const headers: Record<string, string> = { ...r.headers };
      if (r.auth !== undefined) headers.authorization = r.auth;
      let status: number;
      let answer = '';
      try {
        const res = await fetch(`${url}${r.path}`, {
          method: r.method,
          headers,
          ...(r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD' ? { body: r.body } : {}),
          signal: AbortSignal.timeout(15_000),
        });
        // An event stream runs until its task ends: the status is all that matters here.
        if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) await res.body?.cancel();
        else answer = (await res.text()).slice(0, 300);
        status = res.status;
      } catch (e) {
        const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
        // fetch itself refuses some generated header values before sending: not the API's answer.
        if ((e as Error).name === 'TypeError' && !cause.startsWith('UND_ERR') && cause !== 'ECONNRESET' && cause !== 'ECONNREFUSED') continue;
        failures.push(`${r.method} ${r.path}: no answer (${cause})`);
        continue;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status >= 500) failures.push(`${r.method} ${r.path} ${JSON.stringify(r.headers)} ${String(r.body).slice(0, 200)} → ${status} ${answer}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
  const sorted = Object.fromEntries([...statuses].sort(([a], [b]) => a - b));
  return { statuses: sorted, answered: [...statuses.values()].reduce((a, b) => a + b, 0), failures };
}
