/**
 * BENCHMARKS.md and results.json as the harness writes them, from made-up
 * figures: the table's order and verdicts, escaping, the machine, figures
 * kept from an earlier run by --only, and the harness's command line.
 */
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../bench/lib/args.js';
import { cell, figureTable, latestRun, mergeResults, orderedRows, parseResults, renderMarkdown, verdict, type BenchRun, type Machine, type Results } from '../bench/lib/report.js';
import type { Figure } from '../bench/lib/types.js';

const MACHINE: Machine = {
  cpu: 'AMD EPYC 7B13',
  cores: 2,
  memoryBytes: 24 * 2 ** 30,
  kernel: 'Linux 6.1.0-18-amd64',
  node: 'v20.20.2',
  redis: '7.0.15',
  libvirt: '9.0.0',
  qemu: '7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)',
  virtualisation: 'KVM',
};

const fig = (id: string, figure: number | undefined, meets: boolean | null, extra: Partial<Figure> = {}): Figure => ({
  id,
  title: `title of ${id}`,
  goal: `goal of ${id}`,
  value: `value of ${id}`,
  meets,
  data: { samples: [1, 2] },
  ...(figure === undefined ? {} : { figure }),
  ...extra,
});

const run = (at: string, figures: Figure[], over: Partial<BenchRun> = {}): BenchRun => ({ at, commit: 'abc123def456', machine: MACHINE, seconds: 42, figures, ...over });

const RESULTS: Results = {
  runs: {
    'api-scale': run('2026-11-26T01:00:00.000Z', [fig('scale.list', 5, true), fig('scale.redis', 5, null)]),
    overhead: run('2026-11-26T01:00:00.000Z', [fig('overhead.e2e', 1, false, { note: 'the copy waits | on the link\nbetween rounds', method: 'ten pairs, alternating' })]),
    'api-throughput': run('2026-11-26T01:00:00.000Z', [fig('api.post', 4, false), fig('api.get', 4, true)]),
  },
};
const ORDER = ['api-throughput', 'api-scale', 'overhead'];

describe('the benchmark report', () => {
  it.each([
    [true, 'meets'],
    [false, '**misses**'],
    [null, 'context'],
  ])('verdict(%s) = %s', (meets, want) => {
    expect(verdict(meets)).toBe(want);
  });

  it.each([
    ['a | b', 'a \\| b'],
    ['line one\nline two', 'line one line two'],
    ['crlf\r\nend ', 'crlf end'],
    ['plain', 'plain'],
  ])('cell(%j) = %j: one line, pipes escaped', (s, want) => {
    expect(cell(s)).toBe(want);
  });

  it("figures come in the issue's order, then as their benchmark gave them; unnumbered last", () => {
    const withExtra: Results = { runs: { ...RESULTS.runs, misc: run('2026-11-26T01:00:00.000Z', [fig('misc.x', undefined, null)]) } };
    expect(orderedRows(withExtra, ORDER).map((r) => r.figure.id)).toEqual(['overhead.e2e', 'api.post', 'api.get', 'scale.list', 'scale.redis', 'misc.x']);
  });

  it('the table: one row a figure, with goal, value and verdict', () => {
    expect(figureTable(orderedRows(RESULTS, ORDER))).toBe(
      [
        '| # | Figure | Goal | Measured | Verdict |',
        '|---|---|---|---|---|',
        '| 1 | title of overhead.e2e | goal of overhead.e2e | value of overhead.e2e | **misses** |',
        '| 4 | title of api.post | goal of api.post | value of api.post | **misses** |',
        '| 4 | title of api.get | goal of api.get | value of api.get | meets |',
        '| 5 | title of scale.list | goal of scale.list | value of scale.list | meets |',
        '| 5 | title of scale.redis | goal of scale.redis | value of scale.redis | context |',
      ].join('\n'),
    );
  });

  it('the page: machine, date, commit, the table, and notes saying why a goal is missed', () => {
    const md = renderMarkdown(RESULTS, ORDER);
    for (const line of [
      '| CPU | AMD EPYC 7B13 |',
      '| Cores | 2 |',
      '| Memory | 24.0 GiB |',
      '| Kernel | Linux 6.1.0-18-amd64 |',
      '| Node | v20.20.2 |',
      '| Redis | 7.0.15 |',
      '| libvirt | 9.0.0 |',
      '| QEMU | 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3) |',
      '| Guests run under | KVM |',
      '| Date | 2026-11-26T01:00:00.000Z |',
      '| Commit | abc123def456 |',
      '### 1. title of overhead.e2e',
      'Goal: goal of overhead.e2e. Measured: value of overhead.e2e. Verdict: **misses**.',
      'ten pairs, alternating',
      '**Why it misses, and what would close it.** the copy waits | on the link\nbetween rounds',
      '<sub>`npm run bench -- --only overhead`, 42 s; figure `overhead.e2e` in results.json.</sub>',
    ]) {
      expect(md).toContain(line);
    }
    expect(md.indexOf('### 1.')).toBeLessThan(md.indexOf('### 4. title of api.post'));
    // All from one run: nothing to say about figures from elsewhere.
    expect(md).not.toContain('Figures from other runs');
  });

  it('a caveat on a figure that meets its goal is not called a miss', () => {
    const md = renderMarkdown({ runs: { a: run('2026-11-26T01:00:00.000Z', [fig('a.x', 2, true, { note: 'measured on TCG' })]) } }, ['a']);
    expect(md).toContain('\nmeasured on TCG\n');
    expect(md).not.toContain('Why it misses');
  });

  it('figures kept from an earlier run (--only) say when, at which commit, and on which machine', () => {
    const old = run('2026-11-20T09:00:00.000Z', [fig('overhead.e2e', 1, true)], { commit: '0123456789ab', machine: { ...MACHINE, cpu: 'Intel Xeon', virtualisation: 'TCG (QEMU emulation, no usable /dev/kvm)' } });
    const merged = mergeResults({ runs: { overhead: old, 'api-scale': run('2026-11-20T09:00:00.000Z', []) } }, { 'api-scale': RESULTS.runs['api-scale']! });
    expect(Object.keys(merged.runs).sort()).toEqual(['api-scale', 'overhead']);
    expect(merged.runs['api-scale']!.figures.map((f) => f.id)).toEqual(['scale.list', 'scale.redis']);
    expect(latestRun(merged)).toBe(RESULTS.runs['api-scale']);
    const md = renderMarkdown(merged, ORDER);
    expect(md).toContain('| Date | 2026-11-26T01:00:00.000Z |');
    expect(md).toContain('- `overhead`: 2026-11-20T09:00:00.000Z, commit 0123456789ab, on another machine (Intel Xeon, 2 cores, TCG (QEMU emulation, no usable /dev/kvm))');
  });

  it('no results yet', () => {
    expect(renderMarkdown({ runs: {} }, ORDER)).toContain('No results yet: run `npm run bench`.');
  });

  it.each([
    [null, { runs: {} }],
    ['', { runs: {} }],
    ['not json', { runs: {} }],
    ['[]', { runs: {} }],
    ['{"runs": null}', { runs: {} }],
    [JSON.stringify(RESULTS), RESULTS],
  ])('results file %#: read back, or nothing when unreadable', (text, want) => {
    expect(parseResults(text)).toEqual(want);
  });
});

describe("the harness's command line", () => {
  const KNOWN = ['api-throughput', 'api-scale', 'overhead'];
  it.each([
    [[], { quick: false, only: null }],
    [['--quick'], { quick: true, only: null }],
    [['--only', 'api-scale'], { quick: false, only: ['api-scale'] }],
    [['--only=api-scale,overhead', '--quick'], { quick: true, only: ['api-scale', 'overhead'] }],
    [['--only', 'api-scale', '--only', 'overhead'], { quick: false, only: ['api-scale', 'overhead'] }],
    [['--help'], { help: true }],
    [['-h', '--bogus'], { help: true }],
    [['--only'], { error: '--only needs benchmark names' }],
    [['--only', 'nope,api-scale'], { error: 'no benchmark named nope; there are: api-throughput, api-scale, overhead' }],
    [['--fast'], { error: 'unknown argument --fast' }],
  ])('%j', (argv, want) => {
    expect(parseArgs(argv, KNOWN)).toEqual(want);
  });
});
