/**
 * Concurrency limits: the Lua acquire/renew/release against a real Redis
 * (127.0.0.1:6379, a random key prefix per run), and the pure policy.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../shared/config.js';
import { redisSlots, slotKeys, type SlotHosts, type Slots } from '../shared/limits.js';
import type { Step } from '../shared/stage.js';
import { LEASE_MARGIN_MS, leaseMs, limitReason, renewEveryMs, slotHosts, slotNeed, slotOnLeave, type Leaving } from '../worker/policy/limits.js';

const url = process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `kmtest-${randomUUID().slice(0, 8)}`;
const redis = new Redis(url, { maxRetriesPerRequest: 1 });
/** Several connections, as several worker processes would have. */
const others = Array.from({ length: 6 }, () => new Redis(url, { maxRetriesPerRequest: 1 }));
const limits = { outgoingPerHost: 2, incomingPerHost: 3, global: 4 };
const LEASE = 60_000;
let n = 0;
/** Fresh host names per test, so tests never share slot sets (the global set is per test prefix). */
const hostsFor = () => ({ a: `h${++n}a`, b: `h${n}b`, c: `h${n}c`, d: `h${n}d` });
const slotsOn = (r: Redis, p: string, lease = LEASE): Slots => redisSlots(r, p, limits, lease);
const members = (key: string) => redis.zrange(key, 0, -1);

beforeAll(async () => {
  await redis.ping();
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  for (const o of others) o.disconnect();
});

describe('slots in Redis', () => {
  it('lets exactly the limit through when many workers ask at once', async () => {
    const p = `${prefix}:race`;
    const { a, b } = hostsFor();
    const hosts: SlotHosts = { source: a, destination: b };
    // 30 jobs from 6 connections, all at once, same source host: 2 outgoing slots.
    const stores = others.map((o) => slotsOn(o, p));
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % stores.length]!.acquire(`job-${i}`, hosts)));
    const won = results.filter((r) => r.kind === 'acquired');
    expect(won).toHaveLength(2);
    const lost = results.filter((r) => r.kind === 'blocked');
    expect(lost).toHaveLength(28);
    expect(lost[0]).toEqual({ kind: 'blocked', limit: 'outgoing', count: 2, max: 2 });
    const [out, inn, global] = slotKeys(p, hosts);
    const winners = results.flatMap((r, i) => (r.kind === 'acquired' ? [`job-${i}`] : []));
    expect((await members(out)).sort()).toEqual(winners.sort());
    expect(await members(inn)).toHaveLength(2);
    expect(await members(global)).toHaveLength(2);
  });

  it('counts outgoing, incoming and global separately, and takes all three or none', async () => {
    const p = `${prefix}:three`;
    const { a, b, c, d } = hostsFor();
    const s = slotsOn(redis, p);
    // Incoming limit 3 on b: three different sources fill it.
    expect((await s.acquire('j1', { source: a, destination: b })).kind).toBe('acquired');
    expect((await s.acquire('j2', { source: c, destination: b })).kind).toBe('acquired');
    expect((await s.acquire('j3', { source: d, destination: b })).kind).toBe('acquired');
    expect(await s.acquire('j4', { source: `${d}x`, destination: b })).toEqual({ kind: 'blocked', limit: 'incoming', count: 3, max: 3 });
    // Refused: it holds nothing anywhere (no partial acquisition).
    for (const k of slotKeys(p, { source: `${d}x`, destination: b })) expect(await members(k)).not.toContain('j4');
    // Global limit 4: one more elsewhere fits, the next does not.
    expect((await s.acquire('j5', { source: `${a}y`, destination: `${b}y` })).kind).toBe('acquired');
    expect(await s.acquire('j6', { source: `${a}z`, destination: `${b}z` })).toEqual({ kind: 'blocked', limit: 'global', count: 4, max: 4 });
    // Incoming and global are both full now: the first full one (outgoing, incoming, global) is reported.
    expect(await s.acquire('j7', { source: a, destination: b })).toMatchObject({ kind: 'blocked', limit: 'incoming' });
  });

  it('re-acquiring is idempotent: the holder refreshes its lease and counts once', async () => {
    const p = `${prefix}:again`;
    const { a, b } = hostsFor();
    const hosts = { source: a, destination: b };
    const s = slotsOn(redis, p);
    expect(await s.acquire('j1', hosts)).toEqual({ kind: 'acquired', alreadyHeld: false, over: null });
    const [out] = slotKeys(p, hosts);
    const first = Number(await redis.zscore(out, 'j1'));
    await new Promise((r) => setTimeout(r, 20));
    expect(await s.acquire('j1', hosts)).toEqual({ kind: 'acquired', alreadyHeld: true, over: null });
    expect(Number(await redis.zscore(out, 'j1'))).toBeGreaterThan(first);
    expect(await redis.zcard(out)).toBe(1);
    // The job already holding its slot is not blocked by a full limit (it is one of the two).
    expect((await s.acquire('j2', hosts)).kind).toBe('acquired');
    expect(await s.acquire('j1', hosts)).toMatchObject({ kind: 'acquired', alreadyHeld: true });
  });

  it('a lapsed lease frees the slot, as when the worker holding it crashed', async () => {
    const p = `${prefix}:lease`;
    const { a, b } = hostsFor();
    const hosts = { source: a, destination: b };
    const short = slotsOn(redis, p, 150);
    expect((await short.acquire('j1', hosts)).kind).toBe('acquired');
    expect((await short.acquire('j2', hosts)).kind).toBe('acquired');
    expect((await short.acquire('j3', hosts)).kind).toBe('blocked');
    await new Promise((r) => setTimeout(r, 250));
    expect((await short.acquire('j3', hosts)).kind).toBe('acquired');
    // The keys themselves go away once every lease in them could have run out.
    const [out] = slotKeys(p, hosts);
    const ttl = await redis.pttl(out);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(150);
  });

  it('renewal keeps a living job its slot past the first lease', async () => {
    const p = `${prefix}:renew`;
    const { a, b } = hostsFor();
    const hosts = { source: a, destination: b };
    const s = slotsOn(redis, p, 200);
    await s.acquire('j1', hosts);
    await s.acquire('j2', hosts);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await s.renew('j1', hosts)).toBe(true);
    }
    // 400 ms later j2's lease is gone, j1's is not.
    expect(await s.acquire('j3', hosts)).toMatchObject({ kind: 'acquired' });
    expect(await s.acquire('j4', hosts)).toMatchObject({ kind: 'blocked', count: 2 });
    const [out] = slotKeys(p, hosts);
    expect((await members(out)).sort()).toEqual(['j1', 'j3']);
    // A renewal after a lapse says so, and takes the slot back: the job does run.
    await new Promise((r) => setTimeout(r, 250));
    expect(await s.renew('j1', hosts)).toBe(false);
    expect(await redis.zscore(out, 'j1')).not.toBeNull();
  });

  it('force takes the slot over a full limit and says which limit it went past', async () => {
    const p = `${prefix}:force`;
    const { a, b } = hostsFor();
    const hosts = { source: a, destination: b };
    const s = slotsOn(redis, p);
    await s.acquire('j1', hosts);
    await s.acquire('j2', hosts);
    expect(await s.acquire('j3', hosts, { force: true })).toEqual({ kind: 'acquired', alreadyHeld: false, over: { limit: 'outgoing', count: 2, max: 2 } });
    for (const k of slotKeys(p, hosts)) expect(await redis.zcard(k)).toBe(3);
    // Forced under the limit is a plain acquisition.
    const other = { source: `${a}o`, destination: `${b}o` };
    expect(await s.acquire('j9', other, { force: true })).toEqual({ kind: 'acquired', alreadyHeld: false, over: null });
    // Now 4 hold the global set (limit 4): the next forced one goes past it.
    expect(await s.acquire('j10', { source: `${a}p`, destination: `${b}p` }, { force: true })).toMatchObject({ over: { limit: 'global', count: 4, max: 4 } });
  });

  it('release frees all three slots, and releasing twice is harmless', async () => {
    const p = `${prefix}:release`;
    const { a, b } = hostsFor();
    const hosts = { source: a, destination: b };
    const s = slotsOn(redis, p);
    await s.acquire('j1', hosts);
    await s.acquire('j2', hosts);
    await s.release('j1', hosts);
    await s.release('j1', hosts);
    for (const k of slotKeys(p, hosts)) expect(await members(k)).toEqual(['j2']);
    expect((await s.acquire('j3', hosts)).kind).toBe('acquired');
  });
});

describe('limits policy', () => {
  it.each<[Step, ReturnType<typeof slotNeed>]>([
    ['check', 'none'], // read-only: runs while others copy
    ['connect', 'wait'],
    ['prepare', 'wait'],
    ['migrate', 'force'], // a copy may be running in libvirt
    ['recover', 'force'],
    ['finish', 'force'],
    ['done', 'none'],
  ])('stage %s needs a slot: %s', (step, want) => {
    expect(slotNeed(step)).toBe(want);
  });

  it.each<[Leaving, Step, 'release' | 'keep']>([
    ['ended', 'done', 'release'],
    ['ended', 'migrate', 'release'],
    ['retry', 'check', 'release'],
    ['retry', 'connect', 'release'],
    ['retry', 'prepare', 'release'],
    ['retry', 'migrate', 'keep'], // the copy may go on in libvirt while the job waits to retry
    ['retry', 'recover', 'keep'],
    ['retry', 'finish', 'keep'],
    ['lost', 'connect', 'keep'], // another worker owns the job (and the same job id holds the slot)
    ['lost', 'migrate', 'keep'],
    ['lost', 'done', 'keep'],
  ])('leaving %s at %s: %s the slots', (how, step, want) => {
    expect(slotOnLeave(how, step)).toBe(want);
  });

  it('leases outlive a crashed worker\'s takeover and are renewed twice per lock period', () => {
    const c = loadConfig({ overrides: { worker: { lock_duration: 30000, stalled_interval: 15000 } } });
    expect(leaseMs(c)).toBe(30000 + 15000 + LEASE_MARGIN_MS);
    expect(renewEveryMs(c)).toBe(15000);
    expect(renewEveryMs(c) * 2).toBeLessThan(leaseMs(c));
  });

  it('keys slots by host UUID, so two URIs of one host count once; URIs only when no UUID was read', () => {
    const request = { sourceUri: 'qemu+tcp://127.0.0.11/system', destinationUri: 'qemu+tcp://host2.example/system' };
    const check = { sourceHostUuid: 'u-1', destinationHostUuid: 'u-2', domainUuid: 'd', memoryKiB: 1, destinationHadDefinition: false };
    expect(slotHosts(request, { check })).toEqual({ source: 'u-1', destination: 'u-2' });
    expect(slotHosts({ ...request, sourceUri: 'qemu+ssh://alias/system' }, { check })).toEqual({ source: 'u-1', destination: 'u-2' });
    expect(slotHosts(request, {})).toEqual({ source: request.sourceUri, destination: request.destinationUri });
    expect(slotHosts(request, { check: { ...check, sourceHostUuid: '' } })).toEqual({ source: request.sourceUri, destination: 'u-2' });
  });

  it.each([
    [{ limit: 'outgoing', count: 2, max: 2 }, '127.0.0.11 already has 2 outgoing migrations (limit 2)'],
    [{ limit: 'outgoing', count: 1, max: 1 }, '127.0.0.11 already has 1 outgoing migration (limit 1)'],
    [{ limit: 'incoming', count: 3, max: 2 }, 'host2 already has 3 incoming migrations (limit 2)'],
    [{ limit: 'global', count: 10, max: 10 }, '10 migrations already running (global limit 10)'],
  ] as const)('%j reads "%s"', (hit, want) => {
    expect(limitReason(hit, { sourceUri: 'qemu+tcp://127.0.0.11/system', remoteHost: 'host2' })).toBe(want);
  });

  it('names a source without a host part by its URI', () => {
    expect(limitReason({ limit: 'outgoing', count: 2, max: 2 }, { sourceUri: 'qemu:///system', remoteHost: 'h' })).toBe('qemu:///system already has 2 outgoing migrations (limit 2)');
  });
});
