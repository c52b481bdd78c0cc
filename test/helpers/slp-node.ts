/**
 * One SLP agent in its own process, for the agents test, which starts it
 * inside a network namespace (`ip netns exec <ns> node --import tsx this`):
 * Node cannot pick a namespace per socket. Speaks JSON lines on stdout.
 *
 *   SLP_ROLE=sa SLP_OPTS='{ServiceAgentOptions}'  → {"ready":true,"port":n}; stdin "stats" → {"stats":{...}}; "stop" → exits
 *   SLP_ROLE=ua SLP_OPTS='{UserAgentOptions}' SLP_FIND='{"type":..,"scopes":..,"unicastTo":..}' → {"found":[...],"rounds":[...],"ms":n} or {"error":..}
 *   SLP_ROLE=fuzz SLP_FUZZ='{"to":addr,"port":n,"count":n,"seed":n}' → {"sent":n,"ms":n}
 */
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { ServiceAgent, UserAgent } from '../../shared/slp/agent.js';
import { badPacket, prng, validPackets } from './slp-mutate.js';

const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const env = (k: string) => JSON.parse(process.env[k] ?? '{}');

async function sa(): Promise<void> {
  const agent = new ServiceAgent(env('SLP_OPTS'));
  await agent.start();
  out({ ready: true, port: agent.port });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stats') out({ stats: agent.stats });
    if (line === 'stop') break;
  }
  await agent.stop();
  process.exit(0); // stdin stays open otherwise
}

async function ua(): Promise<void> {
  const q = env('SLP_FIND');
  const agent = new UserAgent(env('SLP_OPTS'));
  const t0 = Date.now();
  try {
    const found = await agent.find(q.type, { scopes: q.scopes, unicastTo: q.unicastTo });
    out({ found, rounds: agent.lastRounds, ms: Date.now() - t0 });
  } catch (e) {
    out({ error: (e as Error).name, message: (e as Error).message, ms: Date.now() - t0 });
  }
}

async function fuzz(): Promise<void> {
  const f = env('SLP_FUZZ');
  const rand = prng(f.seed);
  const valid = validPackets();
  const sock = dgram.createSocket('udp4');
  const t0 = Date.now();
  let sent = 0;
  // In batches, each waited for, so the sender neither queues 100,000 buffers nor outruns its own socket.
  while (sent < f.count) {
    const batch = Math.min(200, f.count - sent);
    await Promise.all(Array.from({ length: batch }, () => new Promise<void>((resolve) => sock.send(badPacket(rand, valid), f.port, f.to, () => resolve()))));
    sent += batch;
    // Paced, so the agent's receive queue is not simply overrun: the point is what it does with each one.
    await new Promise((r) => setTimeout(r, f.pauseMs ?? 0));
  }
  sock.close();
  out({ sent, ms: Date.now() - t0 });
}

const role = process.env.SLP_ROLE;
await (role === 'sa' ? sa() : role === 'ua' ? ua() : role === 'fuzz' ? fuzz() : Promise.reject(new Error(`SLP_ROLE ${role}?`)));
