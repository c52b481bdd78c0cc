/**
 * Idempotency-Key on POST /vms/:name/migrate: a client that retries a request
 * (its connection dropped before the answer came) gets the task its first
 * request created instead of a 409 or, worse, a second migration after the
 * first one finished.
 *
 * The key is claimed in Redis (SET NX) with the id the task will have before
 * the job is added, so concurrent retries agree on one task. Keys are scoped
 * to the client (token name) and stored hashed; they live idempotency_ttl.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { migrationError } from '../shared/errors.js';
import type { Task } from '../shared/task.js';

export interface Claimed {
  task: Task;
  created: boolean;
  /** The same request was seen before: this is its task. */
  replayed: boolean;
}

export interface IdempotencyDeps {
  client: Redis;
  prefix: string;
  ttlSeconds: number;
  /** Bounds a Redis call and turns its failure into a 503 (the task store's guard). */
  redis: <T>(p: () => Promise<T>) => Promise<T>;
  getTask: (id: string) => Promise<Task | null>;
}

/** How long a retry waits for the first request's task to appear before answering 409. */
const IN_FLIGHT_WAIT_MS = 3000;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** A key is 1-255 visible ASCII characters (what clients put in a UUID or a request hash). */
export function validateIdempotencyKey(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(v)) {
    throw migrationError('BAD_REQUEST', { detail: 'Idempotency-Key must be 1 to 255 visible ASCII characters, sent once' });
  }
  return v;
}

/** What makes two requests "the same": the VM and the validated body, keys in a fixed order. */
export function fingerprint(vm: string, body: Record<string, unknown>): string {
  const sorted = Object.fromEntries(Object.entries(body).sort(([a], [b]) => a.localeCompare(b)));
  return sha256(JSON.stringify({ vm, body: sorted }));
}

export function createIdempotency(deps: IdempotencyDeps) {
  const { client, redis } = deps;
  return async function once(scope: string, key: string, print: string, create: (id: string) => Promise<{ task: Task; created: boolean }>): Promise<Claimed> {
    const k = `${deps.prefix}:idem:${sha256(`${scope}\0${key}`)}`;
    const end = Date.now() + IN_FLIGHT_WAIT_MS;
    for (;;) {
      const id = randomUUID();
      const won = await redis(() => client.set(k, JSON.stringify({ id, print }), 'EX', deps.ttlSeconds, 'NX'));
      if (won) {
        let r: { task: Task; created: boolean };
        try {
          r = await create(id);
        } catch (e) {
          await redis(() => client.del(k)).catch(() => undefined);
          throw e;
        }
        // Refused (another task runs for the VM): nothing to remember, a retry is judged afresh.
        if (!r.created) await redis(() => client.del(k));
        return { ...r, replayed: false };
      }
      const raw = await redis(() => client.get(k));
      if (raw) {
        const seen = JSON.parse(raw) as { id: string; print: string };
        if (seen.print !== print) throw migrationError('IDEMPOTENCY_MISMATCH');
        const task = await deps.getTask(seen.id);
        if (task) return { task, created: false, replayed: true };
      }
      // The first request is still adding its job, or gave its key back: look again shortly.
      if (Date.now() > end) throw migrationError('IDEMPOTENCY_IN_FLIGHT');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
}
