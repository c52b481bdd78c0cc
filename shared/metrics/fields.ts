/**
 * How the migration metrics sit in Redis, and how they come back as series.
 * Pure.
 *
 * One hash holds every value; a field is "<metric>\t<k=v,k=v>\t<part>":
 * part is empty for a counter, "le=<bound>" for the observations that fell
 * in one histogram bucket (not cumulative: bucket lists may change between
 * versions), "sum" and "count" for a histogram's sum and count. Label
 * values come from labels.ts, so they hold no tab, comma or equals sign.
 * Host labels are written as placeholders and filled in (and capped) by the
 * recorder, in the same atomic step that counts the event.
 */
import { bucketFor, METRICS, type LabelName, type MetricDef } from './catalog.js';

export type Labels = Partial<Record<LabelName, string>>;

/** One increment of one field. */
export interface Inc {
  field: string;
  by: number;
}

/** What host labels are written as until the recorder fills them in. */
export const HOST_PLACEHOLDERS = { source: '$source', destination: '$destination' } as const;

function labelString(def: MetricDef, labels: Labels): string {
  return def.labels.map((l) => `${l}=${l === 'source' || l === 'destination' ? HOST_PLACEHOLDERS[l] : (labels[l] ?? 'unknown')}`).join(',');
}

export function counterInc(def: MetricDef, labels: Labels, by = 1): Inc {
  return { field: `${def.name}\t${labelString(def, labels)}\t`, by };
}

export function observation(def: MetricDef, labels: Labels, value: number): Inc[] {
  const base = `${def.name}\t${labelString(def, labels)}\t`;
  return [
    { field: `${base}le=${bucketFor(value, def.buckets ?? [])}`, by: 1 },
    { field: `${base}sum`, by: value },
    { field: `${base}count`, by: 1 },
  ];
}

/** A field with its host placeholders filled in (the Lua script does the same). */
export function withHosts(field: string, hosts: { source: string; destination: string }): string {
  return field.split(HOST_PLACEHOLDERS.source).join(hosts.source).split(HOST_PLACEHOLDERS.destination).join(hosts.destination);
}

export interface Series {
  labels: Record<string, string>;
  value: number;
}

export interface HistogramSeries {
  labels: Record<string, string>;
  /** Cumulative counts per upper bound, +Inf last. */
  buckets: { le: string; count: number }[];
  sum: number;
  count: number;
}

interface Row {
  name: string;
  labelKey: string;
  labels: Record<string, string>;
  part: string;
  value: number;
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (s === '') return out;
  for (const kv of s.split(',')) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** The stored fields of one metric; fields that do not parse are skipped. */
function rows(values: ReadonlyMap<string, number>, name: string): Row[] {
  const out: Row[] = [];
  for (const [field, value] of values) {
    const parts = field.split('\t');
    if (parts.length !== 3 || parts[0] !== name || !Number.isFinite(value)) continue;
    out.push({ name, labelKey: parts[1]!, labels: parseLabels(parts[1]!), part: parts[2]!, value });
  }
  return out;
}

export function counterSeries(values: ReadonlyMap<string, number>, def: MetricDef): Series[] {
  return rows(values, def.name)
    .filter((r) => r.part === '')
    .map((r) => ({ labels: r.labels, value: r.value }));
}

export function histogramSeries(values: ReadonlyMap<string, number>, def: MetricDef): HistogramSeries[] {
  const bounds = def.buckets ?? [];
  const groups = new Map<string, { labels: Record<string, string>; per: number[]; sum: number; count: number }>();
  for (const r of rows(values, def.name)) {
    let g = groups.get(r.labelKey);
    if (!g) groups.set(r.labelKey, (g = { labels: r.labels, per: bounds.map(() => 0), sum: 0, count: 0 }));
    if (r.part === 'sum') g.sum = r.value;
    else if (r.part === 'count') g.count = r.value;
    else if (r.part.startsWith('le=')) {
      // A bound from an older bucket list counts in the first current bucket that holds it.
      const le = Number(r.part.slice(3));
      const i = bounds.findIndex((b) => le <= b);
      if (i >= 0) g.per[i]! += r.value;
    }
  }
  return [...groups.values()].map((g) => {
    let run = 0;
    const buckets = bounds.map((b, i) => ({ le: String(b), count: (run += g.per[i]!) }));
    buckets.push({ le: '+Inf', count: g.count });
    return { labels: g.labels, buckets, sum: g.sum, count: g.count };
  });
}

/** Started minus ended, per source and destination: both are counted once per migration, in the same store. */
export function inFlightSeries(values: ReadonlyMap<string, number>): Series[] {
  const key = (l: Record<string, string>) => `${l.source}\t${l.destination}`;
  const open = new Map<string, Series>();
  for (const s of counterSeries(values, METRICS.started)) open.set(key(s.labels), { labels: { source: s.labels.source!, destination: s.labels.destination! }, value: s.value });
  for (const def of [METRICS.finished, METRICS.failed, METRICS.killed]) {
    for (const s of counterSeries(values, def)) {
      const o = open.get(key(s.labels));
      if (o) o.value -= s.value;
    }
  }
  return [...open.values()].map((s) => ({ ...s, value: Math.max(0, s.value) }));
}
