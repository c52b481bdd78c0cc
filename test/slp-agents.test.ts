/**
 * The SLP agents over real UDP: two network namespaces made for this run,
 * joined by a veth pair, each agent a process inside one of them
 * (test/helpers/slp-node.ts). Traffic never leaves the namespaces. Needs
 * root (ip netns); no libvirt lab.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { FoundService, Round, ServiceAgentStats } from '../shared/slp/agent.js';
import { makeNetPair } from './helpers/netns.js';

const pair = makeNetPair('slp', 3);
const NS_A = pair.nsA;
const NS_B = pair.nsB;
const A = pair.a;
const B = pair.b as [string, string, string];
const root = new URL('..', import.meta.url).pathname;
const runner = new URL('./helpers/slp-node.ts', import.meta.url).pathname;


const children = new Set<ChildProcess>();

interface Proc {
  child: ChildProcess;
  next(): Promise<Record<string, unknown>>;
}

function run(ns: string, env: Record<string, string>): Proc {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', runner], { cwd: root, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const lines: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else lines.push(l);
  });
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const l = lines.shift();
        if (l !== undefined) return resolve(JSON.parse(l));
        const timer = setTimeout(() => reject(new Error(`no output from the agent in ${ns} in 30 s; stderr: ${stderr}`)), 30_000);
        child.once('exit', (code) => reject(new Error(`agent in ${ns} exited ${code}; stderr: ${stderr}`)));
        waiting.push((x) => {
          clearTimeout(timer);
          resolve(JSON.parse(x));
        });
      }),
  };
}

async function startSa(ns: string, address: string, urls: string[], serviceType = 'service:wokd') {
  const p = run(ns, { SLP_ROLE: 'sa', SLP_OPTS: JSON.stringify({ interfaces: [address], services: urls.map((url) => ({ url, serviceType })) }) });
  expect(await p.next()).toEqual({ ready: true, port: 427 });
  return {
    stats: async () => {
      p.child.stdin!.write('stats\n');
      return (await p.next()).stats as ServiceAgentStats;
    },
    stop: async () => {
      p.child.stdin!.write('stop\n');
      await new Promise((r) => (p.child.exitCode !== null ? r(null) : p.child.once('exit', r)));
    },
  };
}

interface FindResult { found?: FoundService[]; rounds?: Round[]; ms: number; error?: string }
async function find(ns: string, q: { type: string; unicastTo?: string }, opts: Record<string, unknown> = {}): Promise<FindResult> {
  const p = run(ns, { SLP_ROLE: 'ua', SLP_OPTS: JSON.stringify(opts), SLP_FIND: JSON.stringify(q) });
  return (await p.next()) as unknown as FindResult;
}

const urls = (r: FindResult) => (r.found ?? []).map((f) => f.url).sort();

afterEach(async () => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  pair.destroy();
});

describe('SLP agents between two network namespaces', () => {
  it("our user agent in A finds our service agent in B by multicast in under 3 s", async () => {
    const sa = await startSa(NS_B, B[0], ['service:wokd://kimchi-b.example:8001']);
    const r = await find(NS_A, { type: 'service:wokd' });
    expect(r.error).toBeUndefined();
    expect(r.found).toEqual([{ url: 'service:wokd://kimchi-b.example:8001', lifetime: 65535, from: B[0], seenAt: expect.any(Number) }]);
    expect(r.ms).toBeLessThan(3000);
    // Round 2 lists B in the PR list, B stays silent, nothing new: done after two rounds.
    expect(r.rounds!.map((x) => x.prList)).toEqual([[], [B[0]]]);
    expect(new Set(r.rounds!.map((x) => x.sourcePort)).size).toBe(2);
    expect(await sa.stats()).toMatchObject({ requests: 2, replies: 1, listed: 1, malformed: 0 });
    await sa.stop();
  });

  it('and the other way round: user agent in B, service agent in A', async () => {
    const sa = await startSa(NS_A, A, ['service:wokd://kimchi-a.example:8001']);
    const r = await find(NS_B, { type: 'service:wokd' }, { interfaceAddress: B[1] });
    expect(urls(r)).toEqual(['service:wokd://kimchi-a.example:8001']);
    expect(r.found![0]!.from).toBe(A);
    expect(r.ms).toBeLessThan(3000);
    await sa.stop();
  });

  it('converges with three responders: all found, duplicates once, each silent once listed', async () => {
    const shared = 'service:wokd://shared.example:8001';
    const sas = await Promise.all(B.map((b, i) => startSa(NS_B, b, [`service:wokd://kimchi-b${i}.example:8001`, shared])));
    const r = await find(NS_A, { type: 'service:wokd' });
    expect(urls(r)).toEqual([shared, ...B.map((_, i) => `service:wokd://kimchi-b${i}.example:8001`)].sort());
    expect(r.found!.filter((f) => f.url === shared)).toHaveLength(1);
    expect(r.rounds![0]!.prList).toEqual([]);
    expect([...r.rounds![0]!.responders].sort()).toEqual([...B].sort());
    expect([...r.rounds![1]!.prList].sort()).toEqual([...B].sort());
    expect(r.rounds![1]!.responders).toEqual([]);
    for (const sa of sas) expect(await sa.stats()).toMatchObject({ requests: 2, replies: 1, listed: 1 });
    // An unknown type by multicast: no one answers (no empty reply, no error), the agent keeps asking to the end.
    const none = await find(NS_A, { type: 'service:nothing' }, { waitsMs: [300, 300, 300] });
    expect(none.found).toEqual([]);
    expect(none.rounds).toHaveLength(3);
    for (const sa of sas) expect(await sa.stats()).toMatchObject({ requests: 5, replies: 1, silent: 3 });
    await Promise.all(sas.map((s) => s.stop()));
  });

  it('unicast: one request, one answer, empty for an unknown type, timeout where nobody listens', async () => {
    const sa0 = await startSa(NS_B, B[0], ['service:wokd://kimchi-b0.example:8001']);
    const sa1 = await startSa(NS_B, B[1], ['service:wokd://kimchi-b1.example:8001']);
    const r = await find(NS_A, { type: 'service:wokd', unicastTo: B[1] });
    expect(urls(r)).toEqual(['service:wokd://kimchi-b1.example:8001']);
    expect(r.found![0]!.from).toBe(B[1]);
    const empty = await find(NS_A, { type: 'service:unknown', unicastTo: B[1] });
    expect(empty.error).toBeUndefined();
    expect(empty.found).toEqual([]);
    expect(empty.ms).toBeLessThan(1000);
    // Each unicast went to the agent on that address only.
    expect(await sa1.stats()).toMatchObject({ requests: 2, replies: 2 });
    expect(await sa0.stats()).toMatchObject({ requests: 0, replies: 0 });
    const nobody = await find(NS_A, { type: 'service:wokd', unicastTo: B[2] }, { deadlineMs: 400 });
    expect(nobody.error).toBe('SlpTimeoutError');
    await Promise.all([sa0.stop(), sa1.stop()]);
  });

  it('100,000 random and mutated datagrams do not crash or stall the service agent', async () => {
    const sa = await startSa(NS_B, B[0], ['service:wokd://kimchi-b.example:8001']);
    const COUNT = 100_000;
    const f = run(NS_A, { SLP_ROLE: 'fuzz', SLP_FUZZ: JSON.stringify({ to: B[0], port: 427, count: COUNT, seed: 0x51d, pauseMs: 16 }) });
    // A unicast query started alongside the flood (its timing against the flood is not controlled).
    const during = await find(NS_A, { type: 'service:wokd', unicastTo: B[0] });
    const sent = (await f.next()) as { sent: number; ms: number };
    expect(sent.sent).toBe(COUNT);
    const after = await find(NS_A, { type: 'service:wokd' });
    const stats = await sa.stats();
    console.log(`slp agent fuzz: ${sent.sent} datagrams in ${sent.ms} ms; query during the flood ${during.error ?? 'answered'} in ${during.ms} ms; agent saw`, stats);
    expect(urls(during)).toEqual(['service:wokd://kimchi-b.example:8001']);
    expect(urls(after)).toEqual(['service:wokd://kimchi-b.example:8001']);
    expect(after.ms).toBeLessThan(3000);
    // The flood reached it (paced: UDP drops what a full receive queue cannot take) and each datagram
    // was handled: counted malformed, or decoded and answered or ignored by the rules.
    expect(stats.datagrams).toBeGreaterThanOrEqual(COUNT * 0.99);
    expect(stats.malformed).toBeGreaterThan(COUNT / 2);
    await sa.stop();
  });
});
