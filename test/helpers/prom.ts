/**
 * Reads Prometheus's text exposition format (0.0.4) strictly enough for the
 * metrics tests: every line must be a HELP, a TYPE or a sample, every
 * sample's family must have a TYPE before it, and no family is described
 * twice. Throws on anything else, naming the line.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  /** The value of the one sample with this name whose labels include `labels`; undefined if none, throws if several. */
  get(name: string, labels?: Record<string, string>): number | undefined;
  /** The sum over every sample with this name whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?[ \\t]+(\\S+)(?:[ \\t]+-?\\d+)?$`);
const LABEL = /^[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\[\\"n])*)"[ \t]*(?:,|$)/;
const SUFFIXES = ['_bucket', '_sum', '_count', '_total', '_created'];

function parseLabels(s: string, line: string): Record<string, string> {
  const out: Record<string, string> = {};
  let rest = s;
  while (rest.trim() !== '') {
    const m = LABEL.exec(rest);
    if (!m) throw new Error(`bad labels in: ${line}`);
    if (m[1]! in out) throw new Error(`label ${m[1]} twice in: ${line}`);
    out[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    rest = rest.slice(m[0].length);
  }
  return out;
}

function value(s: string, line: string): number {
  // Prometheus reads values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan").
  if (/^\+?inf$/i.test(s)) return Infinity;
  if (/^-inf$/i.test(s)) return -Infinity;
  if (/^nan$/i.test(s)) return NaN;
  const n = Number(s);
  if (s === '' || Number.isNaN(n)) throw new Error(`bad value in: ${line}`);
  return n;
}

const includes = (have: Record<string, string>, want: Record<string, string>) => Object.entries(want).every(([k, v]) => have[k] === v);

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      if (!new RegExp(`^${NAME}$`).test(name!)) throw new Error(`bad name in: ${line}`);
      if (kind === 'TYPE') {
        if (types.has(name!)) throw new Error(`second TYPE for ${name}`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest ?? '')) throw new Error(`bad type in: ${line}`);
        types.set(name!, rest!);
      } else {
        if (helps.has(name!)) throw new Error(`second HELP for ${name}`);
        helps.add(name!);
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample: ${line}`);
    const name = m[1]!;
    const family = types.has(name) ? name : SUFFIXES.map((s) => (name.endsWith(s) ? name.slice(0, -s.length) : '')).find((f) => f && types.has(f));
    if (!family) throw new Error(`sample before (or without) its TYPE: ${line}`);
    samples.push({ name, labels: parseLabels(m[2] ?? '', line), value: value(m[3]!, line) });
  }
  return {
    samples,
    types,
    get(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && includes(s.labels, labels));
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
    sum(name, labels = {}) {
      return samples.filter((s) => s.name === name && includes(s.labels, labels)).reduce((a, s) => a + s.value, 0);
    },
  };
}
