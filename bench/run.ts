/**
 * npm run bench: runs the benchmarks one after another (never two at once:
 * they would measure each other on a small machine), then writes
 * bench/results.json and BENCHMARKS.md. --quick only proves every benchmark
 * runs (tiny counts, for CI) and writes nothing into the repository.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { apiBenches } from './api/index.js';
import { labBenches } from './lab/index.js';
import { commitOf, machine } from './lib/machine.js';
import { parseArgs } from './lib/args.js';
import { redisUrl, ROOT } from './lib/procs.js';
import { figureTable, mergeResults, orderedRows, parseResults, renderMarkdown, type BenchRun } from './lib/report.js';
import type { Bench, Figure } from './lib/types.js';

const BENCHES: Bench[] = [...apiBenches, ...labBenches];

const usage = () => `Usage: npm run bench [-- --quick] [-- --only NAME[,NAME…]]

Measures kvm-migrate against bare libvirt, raw BullMQ and a bare Express
route, and how it scales, and publishes the figures.

  --quick         tiny iteration counts: proves every benchmark runs (CI);
                  prints the table, writes nothing into the repository
                  (the JSON goes to $TMPDIR/kvm-migrate-bench-quick.json)
  --only NAMES    run only these benchmarks (comma-separated); a full run
                  replaces their figures and keeps the others'
  --help          this text

Full mode writes bench/results.json and BENCHMARKS.md. Benchmarks marked lab
need root and bring the libvirt lab up themselves; run under
flock /tmp/kvm-lab.lock when others share the machine.

Benchmarks:
${BENCHES.map((b) => `  ${b.name.padEnd(16)}${b.lab ? 'lab' : 'no lab (Redis and libvirt test driver)'}`).join('\n')}
`;

const stamp = () => new Date().toISOString().slice(11, 19);

async function main() {
  const args = parseArgs(process.argv.slice(2), BENCHES.map((b) => b.name));
  if ('help' in args) return void process.stdout.write(usage());
  if ('error' in args) {
    process.stderr.write(`bench: ${args.error}\n\n${usage()}`);
    process.exit(2);
  }
  const chosen = BENCHES.filter((b) => !args.only || args.only.includes(b.name));
  const [host, commit] = await Promise.all([machine(redisUrl()), commitOf(ROOT)]);
  process.stderr.write(`bench: ${args.quick ? 'quick mode, ' : ''}${chosen.map((b) => b.name).join(', ') || 'nothing to run'} on ${host.cpu} (${host.cores} cores), commit ${commit}\n`);

  const fresh: Record<string, BenchRun> = {};
  const failed: string[] = [];
  for (const b of chosen) {
    const t0 = performance.now();
    const log = (m: string) => process.stderr.write(`${stamp()} [${b.name}] ${m}\n`);
    log(`start${b.lab ? ' (lab)' : ''}`);
    try {
      const figures: Figure[] = await b.run({ quick: args.quick, log });
      const seconds = (performance.now() - t0) / 1000;
      fresh[b.name] = { at: new Date().toISOString(), commit, machine: host, seconds, figures };
      log(`done in ${seconds.toFixed(0)} s: ${figures.map((f) => `${f.id} ${f.meets === null ? 'context' : f.meets ? 'meets' : 'MISSES'}`).join(', ')}`);
    } catch (e) {
      failed.push(b.name);
      log(`FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  }

  const order = BENCHES.map((b) => b.name);
  if (args.quick) {
    const rows = orderedRows({ runs: fresh }, order);
    process.stdout.write(`\nQuick mode (tiny counts: proves the benchmarks run; these are not the published figures)\n\n${figureTable(rows)}\n`);
    const out = path.join(os.tmpdir(), 'kvm-migrate-bench-quick.json');
    writeFileSync(out, `${JSON.stringify({ runs: fresh }, null, 2)}\n`);
    process.stdout.write(`\nresults: ${out}\n`);
  } else if (Object.keys(fresh).length) {
    const file = path.join(ROOT, 'bench/results.json');
    let old: string | null = null;
    try {
      old = readFileSync(file, 'utf8');
    } catch {
      /* first run */
    }
    const results = mergeResults(parseResults(old), fresh);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(path.join(ROOT, 'BENCHMARKS.md'), renderMarkdown(results, order));
    process.stdout.write(`\n${figureTable(orderedRows(results, order))}\n\nwritten: bench/results.json, BENCHMARKS.md\n`);
  }
  if (failed.length) {
    process.stderr.write(`bench: failed: ${failed.join(', ')}${args.quick ? '' : ' (their earlier figures, if any, are kept)'}\n`);
    process.exit(1);
  }
  // Clients a benchmark forgot to close must not keep the run from ending.
  process.exit(0);
}

await main();
