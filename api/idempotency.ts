/**
 * Idempotency-Key on POST /vms/:name/migrate: a client that retries a request
 * (its connection dropped before the answer came) gets the task its first
 * request created, never a 409 and never a second migration.
 *
 * The key is claimed in Redis (SET NX) with the id the task will have before
 * the job is added. Whoever finds a claim without its task (the first request
 * died between claim and add, or is still adding) adds the job under the
 * claimed id itself: BullMQ ignores a second add of one job id, so concurrent
 * and repaired requests agree on one task and no claim is ever left orphaned.
 * Keys are scoped to the client (token name), stored hashed, and live
 * api.idempotency_ttl (never longer than tasks are kept, so a key cannot
 * outlive its task and re-create it).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { migrationError } from '../shared/errors.js';
import type { Task } from '../shared/task.js';
import { IdempotencyKey } from './schemas.js';

export interface Claimed {
  task: Task;
  created: boolean;
  /** The same request was seen before: this is its task. */
  replayed: boolean;
}

type Create = (id: string) => Promise<{ task: Task; created: boolean }>;

export interface Idempotency {
  /** The task an earlier request with this key made, or null; 422 when the key came with a different request. */
  replay(scope: string, key: string, print: string): Promise<Task | null>;
  /** Runs `create` under the key: at most one task per (client, key). */
  once(scope: string, key: string, print: string, create: Create): Promise<Claimed>;
}

export interface IdempotencyDeps {
  client: Redis;
  prefix: string;
  ttlSeconds: number;
  /** Bounds a Redis call and turns its failure into a 503 (the task store's guard). */
  redis: <T>(p: () => Promise<T>) => Promise<T>;
  getTask: (id: string) => Promise<Task | null>;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** Deletes the claim only if it is still the one this request saw (another may have replaced it). */
const DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** A key is 1-255 visible ASCII characters (what clients put in a UUID or a request hash). */
export function validateIdempotencyKey(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !IdempotencyKey.safeParse(v).success) {
    throw migrationError('BAD_REQUEST', { detail: 'Idempotency-Key must be 1 to 255 visible ASCII characters, sent once' });
  }
  return v;
}

/** What makes two requests "the same": the VM and the validated body, keys in a fixed order. */
export function fingerprint(vm: string, body: object): string {
  const sorted = Object.fromEntries(Object.entries(body).sort(([a], [b]) => a.localeCompare(b)));
  return sha256(JSON.stringify({ vm, body: sorted }));
}

export function createIdempotency(deps: IdempotencyDeps): Idempotency {
  const { client, redis } = deps;
  const keyOf = (scope: string, key: string) => `${deps.prefix}:idem:${sha256(`${scope}\0${key}`)}`;
  const read = async (k: string, print: string) => {
    const raw = await redis(() => client.get(k));
    if (!raw) return null;
    const seen = JSON.parse(raw) as { id: string; print: string };
    if (seen.print !== print) throw migrationError('IDEMPOTENCY_MISMATCH');
    return { raw, id: seen.id };
  };
  return {
    async replay(scope, key, print) {
      const seen = await read(keyOf(scope, key), print);
      return seen ? deps.getTask(seen.id) : null;
    },
    async once(scope, key, print, create) {
      const k = keyOf(scope, key);
      // Twice at most: a claim given back between our SET and GET is claimed afresh.
      for (let round = 0; round < 2; round++) {
        const value = JSON.stringify({ id: randomUUID(), print });
        if (await redis(() => client.set(k, value, 'EX', deps.ttlSeconds, 'NX'))) {
          // A failure here keeps the claim: the retry finds it and adds the job under its id.
          const r = await create((JSON.parse(value) as { id: string }).id);
          // Refused (another task runs for the VM): nothing to remember, a retry is judged afresh.
          if (!r.created) await redis(() => client.eval(DELETE_IF, 1, k, value));
          return { ...r, replayed: false };
        }
        const seen = await read(k, print);
        if (!seen) continue;
        const task = await deps.getTask(seen.id);
        if (task) return { task, created: false, replayed: true };
        // Claimed, no task yet: add it under the claimed id (safe to repeat).
        const r = await create(seen.id);
        if (r.task.id === seen.id) return { task: r.task, created: false, replayed: true };
        await redis(() => client.eval(DELETE_IF, 1, k, seen.raw));
        return { ...r, replayed: false };
      }
      throw migrationError('IDEMPOTENCY_IN_FLIGHT');
    },
  };
}
