/**
 * GET /metrics for Prometheus (viewer role, like every read). One prom-client
 * registry per API process holds that process's own default metrics and the
 * migration metrics, which the workers record in Redis (shared/metrics/):
 * they are read at scrape time, so every API replica answers the same
 * numbers. The queue's job counts and totals are appended, in the series
 * BullMQ's exportPrometheusMetrics gives (see `queueExposition`).
 *
 * A scrape is bounded: when Redis does not answer within SCRAPE_REDIS_MS,
 * the answer is still 200, with the process metrics,
 * kvm_migrate_metrics_redis_up 0 and the migration and queue metrics left
 * out (not zeroed: a counter that drops to 0 would read as a reset).
 */
import type { Express } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import { METRICS, REDIS_UP, type MetricDef } from '../shared/metrics/catalog.js';
import { counterSeries, histogramSeries, inFlightSeries } from '../shared/metrics/fields.js';
import { withTimeout } from '../shared/timeout.js';

export interface MetricsSources {
  /** The migration metrics the workers recorded, by Redis field. */
  read(): Promise<Map<string, number>>;
  /** The queue's exposition: job counts by state, completed and failed totals. */
  queue(): Promise<string>;
}

/** The parts of a BullMQ Queue `queueExposition` reads. */
export interface QueueReader {
  readonly name: string;
  getJobCounts(): Promise<Record<string, number>>;
  getMetrics(type: 'completed' | 'failed', start?: number, end?: number): Promise<{ meta: { count: number } }>;
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * The same text as BullMQ's queue.exportPrometheusMetrics() (names, labels,
 * help, order), so dashboards and alerts on bullmq_* keep working. BullMQ's
 * reads the whole per-minute lists of completed and failed jobs (a week of
 * points each, with the workers' metrics on) to use only their totals; this
 * asks for the newest point alone: a scrape costs the same whatever the age
 * of the queue.
 */
export async function queueExposition(queue: QueueReader): Promise<string> {
  const [counts, completed, failed] = await Promise.all([queue.getJobCounts(), queue.getMetrics('completed', 0, 0), queue.getMetrics('failed', 0, 0)]);
  const q = escapeLabel(queue.name);
  return [
    '# HELP bullmq_job_count Number of jobs in the queue by state',
    '# TYPE bullmq_job_count gauge',
    ...Object.entries(counts).map(([state, n]) => `bullmq_job_count{queue="${q}", state="${state}"} ${n}`),
    '# HELP bullmq_job_completed_total Total number of completed jobs',
    '# TYPE bullmq_job_completed_total counter',
    `bullmq_job_completed_total{queue="${q}"} ${completed.meta.count}`,
    '# HELP bullmq_job_failed_total Total number of failed jobs',
    '# TYPE bullmq_job_failed_total counter',
    `bullmq_job_failed_total{queue="${q}"} ${failed.meta.count}`,
  ].join('\n');
}

export interface MetricsEndpoint {
  readonly contentType: string;
  scrape(): Promise<string>;
}

/** Longest a scrape waits for Redis; Prometheus gives a whole scrape 10 s by default. */
export const SCRAPE_REDIS_MS = 2000;

type Snapshot = () => Promise<ReadonlyMap<string, number> | null>;

/** Only the metric's own labels: a field written by another version cannot break the scrape. */
const pick = (labels: Record<string, string>, names: readonly string[]) => Object.fromEntries(names.map((n) => [n, labels[n] ?? 'unknown']));

function counter(registry: Registry, def: MetricDef, snapshot: Snapshot): void {
  new Counter({
    name: def.name,
    help: def.help,
    labelNames: [...def.labels],
    registers: [registry],
    async collect() {
      const values = await snapshot();
      this.reset();
      for (const s of values ? counterSeries(values, def) : []) this.inc(pick(s.labels, def.labels), s.value);
    },
  });
}

/** A histogram whose buckets come from Redis: prom-client's own Histogram only counts observations it made. */
function histogram(registry: Registry, def: MetricDef, snapshot: Snapshot): void {
  const head = { name: def.name, help: def.help, type: 'histogram', aggregator: 'sum' } as const;
  const metric = {
    ...head,
    async get() {
      const values = await snapshot();
      const out: { metricName: string; labels: Record<string, string>; value: number }[] = [];
      for (const s of values ? histogramSeries(values, def) : []) {
        const labels = pick(s.labels, def.labels);
        for (const b of s.buckets) out.push({ metricName: `${def.name}_bucket`, labels: { ...labels, le: b.le }, value: b.count });
        out.push({ metricName: `${def.name}_sum`, labels, value: s.sum });
        out.push({ metricName: `${def.name}_count`, labels, value: s.count });
      }
      return { ...head, values: out };
    },
  };
  registry.registerMetric(metric as unknown as Metric);
}

export function createMetricsEndpoint(sources: MetricsSources, timeoutMs = SCRAPE_REDIS_MS): MetricsEndpoint {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const late = () => new Error(`Redis did not answer within ${timeoutMs} ms`);
  // Every metric of one scrape (and scrapes that overlap) shares one read.
  let reading: Promise<ReadonlyMap<string, number> | null> | null = null;
  const snapshot: Snapshot = () =>
    (reading ??= withTimeout(sources.read(), timeoutMs, late)
      .catch(() => null)
      .finally(() => (reading = null)));

  new Gauge({
    name: REDIS_UP.name,
    help: REDIS_UP.help,
    registers: [registry],
    async collect() {
      this.set((await snapshot()) ? 1 : 0);
    },
  });
  new Gauge({
    name: METRICS.inFlight.name,
    help: METRICS.inFlight.help,
    labelNames: [...METRICS.inFlight.labels],
    registers: [registry],
    async collect() {
      const values = await snapshot();
      this.reset();
      for (const s of values ? inFlightSeries(values) : []) this.set(pick(s.labels, METRICS.inFlight.labels), s.value);
    },
  });
  for (const def of Object.values(METRICS) as MetricDef[]) {
    if (def.type === 'counter') counter(registry, def, snapshot);
    else if (def.type === 'histogram') histogram(registry, def, snapshot);
  }

  return {
    contentType: registry.contentType,
    async scrape() {
      const [body, queue] = await Promise.all([registry.metrics(), withTimeout(sources.queue(), timeoutMs, late).catch(() => null)]);
      return queue ? `${body}\n${queue.trim()}\n` : body;
    },
  };
}

export function addMetricsRoute(app: Express, endpoint: MetricsEndpoint): void {
  app.get('/metrics', (_req, res, next) => {
    endpoint.scrape().then((body) => {
      res.set('Content-Type', endpoint.contentType).set('Cache-Control', 'no-store').send(body);
    }, next);
  });
}
