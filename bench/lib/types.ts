/**
 * What every benchmark returns: figures with their goal, the measured value
 * and a verdict, so BENCHMARKS.md can say for each one whether it meets it.
 */

export interface Figure {
  /** Stable id, e.g. "overhead.e2e"; also the JSON key. */
  id: string;
  /** What was measured, in words ("End-to-end: kvm-migrate vs virsh migrate"). */
  title: string;
  /** The goal in words, e.g. "≤ 1.05 (median of pair ratios)". */
  goal: string;
  /** The headline value in words, e.g. "1.03 (virsh 1.21 s, kvm-migrate 1.25 s, 10 pairs)". */
  value: string;
  /** true: meets the goal; false: misses it; null: no goal (context figures). */
  meets: boolean | null;
  /** Raw numbers for the JSON results (samples, medians, percentiles, counts). */
  data: Record<string, unknown>;
  /** Why a goal is missed and what would close it, or a caveat about the measurement. */
  note?: string;
  /** The figure's number (1 to 7): BENCHMARKS.md lists figures in that order. */
  figure?: number;
  /** How it was measured and what was compared side by side, for the notes in BENCHMARKS.md. */
  method?: string;
}

export interface BenchContext {
  /** Quick mode (CI): few iterations, proves the harness runs; figures are not published. */
  quick: boolean;
  log: (message: string) => void;
}

export interface Bench {
  /** Short name used by `npm run bench -- --only <name>`. */
  name: string;
  /** Needs the libvirt lab (brought up by the bench itself with labUp()). */
  lab: boolean;
  run(ctx: BenchContext): Promise<Figure[]>;
}
