/**
 * Probes for orchestrators and load balancers, without a token (they carry
 * none): /healthz says the process is alive; /readyz says whether it can do
 * its job now — Redis answers, the source libvirt answers, and at least one
 * worker is connected to the queue. Each check is bounded, and the answer is
 * cached for a second so a probe storm cannot become a libvirt or Redis storm.
 */
import type { Express } from 'express';
import { withTimeout } from '../shared/timeout.js';

export interface Probes {
  redis(): Promise<void>;
  libvirt(): Promise<void>;
  /** Workers connected to the queue. */
  workers(): Promise<number>;
}

export interface Check {
  ok: boolean;
  detail: string;
}

/** Longest one check may take before it counts as failed. */
const CHECK_MS = 2000;
const CACHE_MS = 1000;

const run = async (p: () => Promise<string>): Promise<Check> => {
  try {
    return { ok: true, detail: await withTimeout(p(), CHECK_MS, () => new Error(`no answer within ${CHECK_MS} ms`)) };
  } catch (e) {
    return { ok: false, detail: (e instanceof Error ? e.message : String(e)).replace(/rediss?:\/\/\S*/g, 'redis://…').slice(0, 300) };
  }
};

export async function readiness(probes: Probes): Promise<{ ready: boolean; checks: Record<'redis' | 'libvirt' | 'workers', Check> }> {
  const [redis, libvirt, workers] = await Promise.all([
    run(async () => (await probes.redis(), 'answers')),
    run(async () => (await probes.libvirt(), 'the source answers')),
    run(async () => {
      const n = await probes.workers();
      if (n < 1) throw new Error('no worker is connected to the queue: migrations would wait');
      return `${n} connected`;
    }),
  ]);
  return { ready: redis.ok && libvirt.ok && workers.ok, checks: { redis, libvirt, workers } };
}

export function addHealthRoutes(app: Express, probes: Probes, now: () => number = Date.now): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'alive', uptime_s: Math.round(process.uptime()) });
  });
  let cached: { at: number; answer: Promise<Awaited<ReturnType<typeof readiness>>> } | null = null;
  app.get('/readyz', (_req, res, next) => {
    if (!cached || now() - cached.at > CACHE_MS) cached = { at: now(), answer: readiness(probes) };
    cached.answer.then((r) => res.status(r.ready ? 200 : 503).json(r), next);
  });
}
