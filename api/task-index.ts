/**
 * The task index: what GET /tasks pages through instead of reading every job.
 *
 * Each task is one member "<created ms, 15 digits>:<id>" in a sorted set whose
 * scores are all 0, so Redis orders members by those bytes: by creation time,
 * then by id. Reading newest first from just below a member is one ZRANGE
 * BYLEX REV, however many tasks there are, and a page boundary never moves
 * when tasks are added. The same member goes into one set per VM, per host
 * (source or destination), per source host and per destination host, so a
 * filtered listing reads only the tasks it can show. The API writes the index
 * when it enqueues; entries whose task is gone are skipped when read, and
 * removed once older than the retention.
 */
import type { Redis } from 'ioredis';

const WIDTH = 15;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface IndexEntry {
  id: string;
  createdMs: number;
  vm: string;
  sourceHost: string;
  destinationHost: string;
}

export const memberOf = (createdMs: number, id: string) => `${String(Math.max(0, Math.trunc(createdMs))).padStart(WIDTH, '0')}:${id}`;

export function parseMember(m: string): { createdMs: number; id: string } | null {
  const i = m.indexOf(':');
  if (i !== WIDTH || !/^\d+$/.test(m.slice(0, i)) || !UUID.test(m.slice(i + 1))) return null;
  return { createdMs: Number(m.slice(0, i)), id: m.slice(i + 1) };
}

/** Lex bounds for members created at or after `ms` ("[…"), or before it ("(…"). */
export const atOrAfter = (ms: number) => `[${String(Math.max(0, Math.trunc(ms))).padStart(WIDTH, '0')}`;
export const before = (ms: number) => `(${String(Math.max(0, Math.trunc(ms))).padStart(WIDTH, '0')}`;

/** Host names compare without case and without IPv6 brackets. */
export const normHost = (h: string) => h.toLowerCase().replace(/^\[(.*)\]$/, '$1');

/** The host of a libvirt URI; a URI without one (qemu:///system) means this host. */
export function hostOfUri(uri: string): string {
  try {
    return normHost(new URL(uri).hostname) || 'localhost';
  } catch {
    return 'localhost';
  }
}

const ADD_ONCE = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return redis.call('HGET', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[3]) end
return ARGV[2]`;

/**
 * Removes one entry unless a key that holds its task exists (KEYS[2..n+1]):
 * checked and done in one step, so a job added under the same id meanwhile
 * (an Idempotency-Key repaired by another request) keeps its entry.
 */
const REMOVE_UNLESS_HELD = `
local n = tonumber(ARGV[4])
for i = 2, n + 1 do if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = n + 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[3]) end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1`;

export type IndexSet = { kind: 'all' } | { kind: 'vm' | 'host' | 'source' | 'destination'; value: string };

export class TaskIndex {
  /**
   * `holders(id)`: the keys that hold a task while it is kept (its job, its
   * tombstone); an entry is never removed while one of them exists.
   */
  constructor(
    private readonly client: Redis,
    private readonly prefix: string,
    private readonly holders: (id: string) => string[] = () => [],
  ) {}

  key(set: IndexSet): string {
    if (set.kind === 'all') return `${this.prefix}:tasks:all`;
    const value = set.kind === 'vm' ? set.value : normHost(set.value);
    return `${this.prefix}:tasks:${set.kind}:${value}`;
  }

  private get metaKey() {
    return `${this.prefix}:tasks:meta`;
  }

  private keysOf(e: Omit<IndexEntry, 'id' | 'createdMs'>): string[] {
    const sets: IndexSet[] = [
      { kind: 'all' },
      { kind: 'vm', value: e.vm },
      { kind: 'host', value: e.sourceHost },
      { kind: 'host', value: e.destinationHost },
      { kind: 'source', value: e.sourceHost },
      { kind: 'destination', value: e.destinationHost },
    ];
    return [...new Set(sets.map((s) => this.key(s)))];
  }

  /**
   * Enters a task once: an id already entered (a repeated add of one
   * Idempotency-Key's task) keeps its first entry. Returns the entry's
   * creation time, which the job must carry as its own.
   */
  async add(e: IndexEntry): Promise<number> {
    // The meta (what it takes to remove the entry from every set later) doubles as the "entered" mark.
    const meta = JSON.stringify({ c: e.createdMs, vm: e.vm, s: e.sourceHost, d: e.destinationHost });
    const stored = (await this.client.eval(ADD_ONCE, 1 + this.keysOf(e).length, this.metaKey, ...this.keysOf(e), e.id, meta, memberOf(e.createdMs, e.id))) as string;
    const c = (JSON.parse(stored) as { c?: unknown }).c;
    return typeof c === 'number' ? c : e.createdMs;
  }

  /** Removes the entries of `ids` whose task no holder key holds; returns how many went. */
  async remove(ids: string[]): Promise<number> {
    if (!ids.length) return 0;
    const metas = await this.client.hmget(this.metaKey, ...ids);
    const p = this.client.pipeline();
    ids.forEach((id, i) => {
      const raw = metas[i];
      if (!raw) return;
      const meta = JSON.parse(raw) as { c: number; vm: string; s: string; d: string };
      const held = this.holders(id);
      const sets = this.keysOf({ vm: meta.vm, sourceHost: meta.s, destinationHost: meta.d });
      p.eval(REMOVE_UNLESS_HELD, 1 + held.length + sets.length, this.metaKey, ...held, ...sets, id, raw, memberOf(meta.c, id), held.length);
    });
    const res = (await p.exec()) ?? [];
    return res.reduce((n, [err, v]) => {
      if (err) throw err;
      return n + Number(v);
    }, 0);
  }

  /** Up to `count` members of `set`, newest first, from `from` (a lex bound, "+" for the newest) down to `to` ("-" for the oldest). */
  range(set: IndexSet, from: string, to: string, count: number): Promise<string[]> {
    return this.client.zrange(this.key(set), from, to, 'BYLEX', 'REV', 'LIMIT', 0, count);
  }

  /**
   * Removes up to `batch` entries created before `cutoffMs` whose task is
   * gone (`alive` says which are not). A task still running past the
   * retention keeps its entry. Returns how many went.
   */
  async trim(cutoffMs: number, alive: (ids: string[]) => Promise<boolean[]>, batch: number): Promise<number> {
    const old = await this.client.zrange(this.key({ kind: 'all' }), '-', before(cutoffMs), 'BYLEX', 'LIMIT', 0, batch);
    const parsed = old.map(parseMember);
    const ids = parsed.flatMap((p) => (p ? [p.id] : []));
    const live = await alive(ids);
    const removed = await this.remove(ids.filter((_, i) => !live[i]));
    // Members that are no entry at all (written by something else) go too.
    const junk = old.filter((_, i) => !parsed[i]);
    if (junk.length) await this.client.zrem(this.key({ kind: 'all' }), ...junk);
    return removed + junk.length;
  }
}
