/**
 * The order statistics the benchmarks report, as tables: nearest-rank
 * percentiles, medians, ratios of pairs, and the short time format.
 */
import { describe, expect, it } from 'vitest';
import { median, medianRatio, ms, percentile, sorted, summary } from '../bench/lib/stats.js';

describe('benchmark statistics', () => {
  it.each([
    [[5], 50, 5],
    [[5], 99, 5],
    [[3, 1, 2], 0, 1],
    [[3, 1, 2], 50, 2],
    [[3, 1, 2], 100, 3],
    [[1, 2, 3, 4], 50, 2],
    [[1, 2, 3, 4], 75, 3],
    [[1, 2, 3, 4], 76, 4],
    // 100 samples: p99 is the 99th smallest, not the largest.
    [Array.from({ length: 100 }, (_, i) => 100 - i), 99, 99],
    [Array.from({ length: 100 }, (_, i) => i + 1), 1, 1],
    [Array.from({ length: 1000 }, (_, i) => i + 1), 99, 990],
  ])('percentile(%j, %d) = %d (nearest rank)', (xs, p, want) => {
    expect(percentile(xs, p)).toBe(want);
  });

  it('no samples: NaN, never a made-up number', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(median([])).toBeNaN();
  });

  it.each([
    [[7], 7],
    [[3, 1], 2],
    [[9, 1, 5], 5],
    [[4, 1, 3, 2], 2.5],
    [[1, 1, 1, 100], 1],
  ])('median(%j) = %d', (xs, want) => {
    expect(median(xs)).toBe(want);
  });

  it('leaves its input as it was', () => {
    const xs = [3, 1, 2];
    sorted(xs);
    median(xs);
    percentile(xs, 99);
    expect(xs).toEqual([3, 1, 2]);
  });

  it.each([
    // Each pair is a round measured side by side: the median of their ratios, not the ratio of medians.
    [[2, 4, 6], [1, 2, 3], 2],
    [[10, 10, 10], [5, 20, 10], 1],
    [[1, 100, 3], [1, 1, 1], 3],
    [[3], [4], 0.75],
  ])('medianRatio(%j, %j) = %d', (a, b, want) => {
    expect(medianRatio(a, b)).toBe(want);
  });

  it('pairs of unequal length are refused', () => {
    expect(() => medianRatio([1, 2], [1])).toThrow(/unequal length/);
  });

  it('summary', () => {
    expect(summary([4, 1, 3, 2])).toEqual({ n: 4, min: 1, p50: 2, p99: 4, max: 4, mean: 2.5 });
  });

  it.each([
    [0.5, '0.50 ms'],
    [9.994, '9.99 ms'],
    [12.34, '12.3 ms'],
    [999.9, '999.9 ms'],
    [1000, '1.00 s'],
    [1234, '1.23 s'],
    [NaN, 'n/a'],
    [Infinity, 'n/a'],
  ])('ms(%d) = %s', (v, want) => {
    expect(ms(v)).toBe(want);
  });
});
