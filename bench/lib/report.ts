/**
 * BENCHMARKS.md and the results JSON from figures: pure, so the page's layout
 * is table-tested (test/bench-report.test.ts) without running a benchmark.
 *
 * Results are kept per benchmark: `npm run bench -- --only x` replaces x's
 * figures and keeps the others from the run that measured them, each with
 * its own date, commit and machine, so the page never mixes figures without
 * saying so.
 */
import type { Figure } from './types.js';

export interface Machine {
  cpu: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  redis: string;
  libvirt: string;
  qemu: string;
  /** "KVM" or "TCG": how the lab's guests run. */
  virtualisation: string;
}

export interface BenchRun {
  /** ISO time the benchmark finished. */
  at: string;
  /** Commit it ran on (short id, "+ uncommitted changes" when the tree was dirty). */
  commit: string;
  machine: Machine;
  /** Seconds the benchmark took. */
  seconds: number;
  figures: Figure[];
}

export interface Results {
  /** Benchmark name → its latest full run. */
  runs: Record<string, BenchRun>;
}

export const emptyResults = (): Results => ({ runs: {} });

/** The results with `fresh` runs replacing the ones of the same names. */
export function mergeResults(old: Results, fresh: Record<string, BenchRun>): Results {
  return { runs: { ...old.runs, ...fresh } };
}

/** Reads a results file's content; anything unreadable counts as no results (the next full run rewrites it). */
export function parseResults(text: string | null): Results {
  if (!text) return emptyResults();
  try {
    const r = JSON.parse(text) as Results;
    return r && typeof r.runs === 'object' && r.runs !== null ? r : emptyResults();
  } catch {
    return emptyResults();
  }
}

/** A table cell: one line, pipes escaped. */
export function cell(s: string): string {
  return s.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|').trim();
}

export function verdict(meets: boolean | null): string {
  return meets === null ? 'context' : meets ? 'meets' : '**misses**';
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

export function machineRows(m: Machine): [string, string][] {
  return [
    ['CPU', m.cpu],
    ['Cores', String(m.cores)],
    ['Memory', gib(m.memoryBytes)],
    ['Kernel', m.kernel],
    ['Node', m.node],
    ['Redis', m.redis],
    ['libvirt', m.libvirt],
    ['QEMU', m.qemu],
    ['Guests run under', m.virtualisation],
  ];
}

const sameMachine = (a: Machine, b: Machine) => machineRows(a).every(([k, v], i) => machineRows(b)[i]![1] === v && machineRows(b)[i]![0] === k);

export interface Row {
  bench: string;
  run: BenchRun;
  figure: Figure;
}

/** Every figure, in the issue's order (by number, unnumbered last), then as the benchmarks gave them. */
export function orderedRows(results: Results, benchOrder: readonly string[]): Row[] {
  const rank = (b: string) => {
    const i = benchOrder.indexOf(b);
    return i < 0 ? benchOrder.length : i;
  };
  const rows = Object.entries(results.runs)
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .flatMap(([bench, run]) => run.figures.map((figure) => ({ bench, run, figure })));
  return rows
    .map((r, i) => ({ r, i }))
    .sort((x, y) => (x.r.figure.figure ?? Infinity) - (y.r.figure.figure ?? Infinity) || x.i - y.i)
    .map((x) => x.r);
}

/** The summary table (also what quick mode prints). */
export function figureTable(rows: readonly Pick<Row, 'figure'>[]): string {
  const lines = ['| # | Figure | Goal | Measured | Verdict |', '|---|---|---|---|---|'];
  for (const { figure: f } of rows) {
    lines.push(`| ${f.figure ?? ''} | ${cell(f.title)} | ${cell(f.goal)} | ${cell(f.value)} | ${verdict(f.meets)} |`);
  }
  return lines.join('\n');
}

/** The newest run: the page's header describes it. */
export function latestRun(results: Results): BenchRun | null {
  return Object.values(results.runs).reduce<BenchRun | null>((a, r) => (!a || r.at > a.at ? r : a), null);
}

export function renderMarkdown(results: Results, benchOrder: readonly string[]): string {
  const rows = orderedRows(results, benchOrder);
  const latest = latestRun(results);
  const out: string[] = ['# Benchmarks', ''];
  out.push(
    'Written by `npm run bench` (bench/run.ts); the raw numbers, every sample included, are in',
    '[bench/results.json](bench/results.json). How to run it: [README, Benchmarks](README.md#benchmarks).',
    'The machine is shared and noisy, so every comparison is made side by side in one run, in',
    'alternating rounds, and reported as medians and ratios.',
    '',
  );
  if (!latest) return [...out, 'No results yet: run `npm run bench`.', ''].join('\n');
  out.push('## Machine', '', '| | |', '|---|---|');
  for (const [k, v] of machineRows(latest.machine)) out.push(`| ${k} | ${cell(v)} |`);
  out.push(`| Date | ${latest.at} |`, `| Commit | ${cell(latest.commit)} |`, '');
  const older = Object.entries(results.runs).filter(([, r]) => r !== latest && (r.at !== latest.at || r.commit !== latest.commit || !sameMachine(r.machine, latest.machine)));
  if (older.length) {
    out.push('Figures from other runs (`--only` replaced only some):', '');
    for (const [bench, r] of older.sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`- \`${bench}\`: ${r.at}, commit ${r.commit}${sameMachine(r.machine, latest.machine) ? '' : `, on another machine (${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.virtualisation})`}`);
    }
    out.push('');
  }
  out.push('## Figures', '', figureTable(rows), '');
  out.push('## Notes', '');
  for (const { bench, run, figure: f } of rows) {
    out.push(`### ${f.figure !== undefined ? `${f.figure}. ` : ''}${f.title}`, '');
    out.push(`Goal: ${f.goal}. Measured: ${f.value}. Verdict: ${verdict(f.meets)}.`, '');
    if (f.method) out.push(f.method.trim(), '');
    if (f.note) out.push(`${f.meets === false ? '**Why it misses, and what would close it.** ' : ''}${f.note.trim()}`, '');
    out.push(`<sub>\`npm run bench -- --only ${bench}\`, ${run.seconds.toFixed(0)} s; figure \`${f.id}\` in results.json.</sub>`, '');
  }
  return out.join('\n');
}
