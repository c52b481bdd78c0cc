/** Order statistics for benchmark samples: medians, percentiles, ratios of pairs. */

export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Nearest-rank percentile (p in 0..100) of the samples; NaN when there are none. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = sorted(xs);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = sorted(xs);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median of a[i] / b[i]: each pair was measured side by side, so machine noise cancels within it. */
export function medianRatio(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`pairs of unequal length: ${a.length} and ${b.length}`);
  return median(a.map((x, i) => x / b[i]!));
}

export function summary(xs: readonly number[]): { n: number; min: number; p50: number; p99: number; max: number; mean: number } {
  return {
    n: xs.length,
    min: Math.min(...xs),
    p50: percentile(xs, 50),
    p99: percentile(xs, 99),
    max: Math.max(...xs),
    mean: xs.reduce((a, b) => a + b, 0) / (xs.length || 1),
  };
}

/** "12.3 ms", "1.25 s": short and readable in a table. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 1)} ms`;
}
