/**
 * Migration slots: the concurrency limits (outgoing per source host, incoming
 * per destination host, global) kept in Redis, so they hold across every
 * worker process on every machine.
 *
 * Each limit is a sorted set of job ids scored by lease expiry (ms, Redis
 * clock): a crashed worker's slot frees itself when its lease runs out, and a
 * living worker renews its lease while the job runs. One Lua script takes all
 * three slots or none, so two workers can never both take the last one.
 * Redis's own clock (TIME) judges expiry: workers on machines whose clocks
 * disagree still agree on whose lease has run out.
 */
import type { Redis } from 'ioredis';

export type LimitName = 'outgoing' | 'incoming' | 'global';

/** The limit that stopped (or, forced, was exceeded by) an acquisition. */
export interface LimitHit {
  limit: LimitName;
  /** Jobs holding that slot set, this one not counted. */
  count: number;
  max: number;
}

export type AcquireResult =
  /** Taken now (over = the limit a forced acquisition went past), or already held (lease refreshed). */
  | { kind: 'acquired'; alreadyHeld: boolean; over: LimitHit | null }
  | ({ kind: 'blocked' } & LimitHit);

/** Identities of the two hosts: host UUIDs where known, so two URIs for one host count once. */
export interface SlotHosts {
  source: string;
  destination: string;
}

export interface SlotLimits {
  outgoingPerHost: number;
  incomingPerHost: number;
  global: number;
}

/** The port the runner uses; Redis below, an in-memory stand-in in unit tests. */
export interface Slots {
  /** Takes the job's three slots, or says which limit is full. `force` takes them even over a limit. */
  acquire(jobId: string, hosts: SlotHosts, opts?: { force?: boolean }): Promise<AcquireResult>;
  /** Extends the job's lease; returns false when the slots had lapsed (they are taken back regardless). */
  renew(jobId: string, hosts: SlotHosts): Promise<boolean>;
  release(jobId: string, hosts: SlotHosts): Promise<void>;
}

export const slotKeys = (prefix: string, hosts: SlotHosts) => [`${prefix}:slots:out:${hosts.source}`, `${prefix}:slots:in:${hosts.destination}`, `${prefix}:slots:global`] as const;

// Keys are dropped once every lease in them could have run out, so hosts that
// are gone leave nothing behind; a key's TTL only ever grows here.
const PRELUDE = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local function hold(key)
  redis.call('ZADD', key, now + lease, ARGV[1])
  if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
end
`;

/**
 * KEYS: out, in, global. ARGV: job id, lease ms, max out, max in, max global, force (1/0).
 * Returns {status, limit, count, max}; status is held, acquired, forced or blocked.
 */
const ACQUIRE = `${PRELUDE}
local names = {'outgoing', 'incoming', 'global'}
local mine = 0
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then mine = mine + 1 end
end
if mine == 3 then
  for i = 1, 3 do hold(KEYS[i]) end
  return {'held', '', 0, 0}
end
local hit = nil
for i = 1, 3 do
  local others = redis.call('ZCARD', KEYS[i])
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then others = others - 1 end
  local max = tonumber(ARGV[2 + i])
  if not hit and others >= max then hit = {names[i], others, max} end
end
if hit and ARGV[6] ~= '1' then return {'blocked', hit[1], hit[2], hit[3]} end
for i = 1, 3 do hold(KEYS[i]) end
if hit then return {'forced', hit[1], hit[2], hit[3]} end
return {'acquired', '', 0, 0}
`;

/** KEYS: out, in, global. ARGV: job id, lease ms. Returns how many of the three had lapsed. */
const RENEW = `${PRELUDE}
local lapsed = 0
for i = 1, 3 do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if not score or tonumber(score) <= now then lapsed = lapsed + 1 end
  hold(KEYS[i])
end
return lapsed
`;

type Reply = [string, string, number, number];
interface SlotCommands {
  kvmMigrateAcquireSlots(k1: string, k2: string, k3: string, ...argv: (string | number)[]): Promise<Reply>;
  kvmMigrateRenewSlots(k1: string, k2: string, k3: string, ...argv: (string | number)[]): Promise<number>;
}

/** Slots in Redis under `prefix`. `leaseMs` must outlive a crashed worker's takeover (see worker/policy/limits.ts). */
export function redisSlots(redis: Redis, prefix: string, limits: SlotLimits, leaseMs: number): Slots {
  redis.defineCommand('kvmMigrateAcquireSlots', { numberOfKeys: 3, lua: ACQUIRE });
  redis.defineCommand('kvmMigrateRenewSlots', { numberOfKeys: 3, lua: RENEW });
  const cmd = redis as unknown as SlotCommands;
  return {
    async acquire(jobId, hosts, opts = {}) {
      const [status, limit, count, max] = await cmd.kvmMigrateAcquireSlots(
        ...slotKeys(prefix, hosts), jobId, leaseMs, limits.outgoingPerHost, limits.incomingPerHost, limits.global, opts.force ? 1 : 0,
      );
      const hit = { limit: limit as LimitName, count: Number(count), max: Number(max) };
      if (status === 'blocked') return { kind: 'blocked', ...hit };
      return { kind: 'acquired', alreadyHeld: status === 'held', over: status === 'forced' ? hit : null };
    },
    async renew(jobId, hosts) {
      return (await cmd.kvmMigrateRenewSlots(...slotKeys(prefix, hosts), jobId, leaseMs)) === 0;
    },
    async release(jobId, hosts) {
      const m = redis.multi();
      for (const k of slotKeys(prefix, hosts)) m.zrem(k, jobId);
      await m.exec();
    },
  };
}
