/** HTTP load (autocannon) and one-at-a-time timed requests. */
import http from 'node:http';
import autocannon from 'autocannon';

export interface LoadResult {
  /** 2xx answers a second over the whole round. */
  okPerSecond: number;
  ok: number;
  non2xx: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

export interface LoadOptions {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  /** Requests in all (amount) or seconds of load (duration). */
  amount?: number;
  duration?: number;
  /** The path of each request, called once per request: every POST names another VM. */
  path?: () => string;
}

export async function load(o: LoadOptions): Promise<LoadResult> {
  const opts: autocannon.Options = {
    url: o.url,
    method: o.method,
    connections: o.connections,
    headers: o.headers ?? {},
    ...(o.body !== undefined ? { body: o.body } : {}),
    ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.duration ?? 3 }),
    // A slow answer is data, not a failure: never let autocannon drop it as a timeout.
    timeout: 60,
    // The round ends at the first sample tick after the last answer: ticks this short keep its length exact.
    sampleInt: 20,
  };
  const next = o.path;
  if (next) opts.requests = [{ setupRequest: (req) => ({ ...req, path: next() }) }];
  const r = await autocannon(opts);
  const ok = r['2xx'];
  return { okPerSecond: ok / r.duration, ok, non2xx: r.non2xx, errors: r.errors, p50Ms: r.latency.p50, p99Ms: r.latency.p99, seconds: r.duration };
}

/**
 * Sequential GETs over one kept-alive connection, each timed from the
 * request to the last byte of its body: the latency one client sees, without
 * the queueing a concurrent load adds. Throws on an answer that is not 200.
 */
export async function timedGets(url: string, paths: readonly string[], headers: Record<string, string>): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: number[] = [];
  try {
    for (const p of paths) {
      const t0 = performance.now();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.get(`${url}${p}`, { agent, headers }, (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        });
        req.on('error', reject);
      });
      out.push(performance.now() - t0);
      if (status !== 200) throw new Error(`GET ${p} answered ${status}`);
    }
  } finally {
    agent.destroy();
  }
  return out;
}
