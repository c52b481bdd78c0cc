/** The benchmarks that need the libvirt lab (figures 1, 2, 3, 6 and 7); bench/run.ts runs them after the API ones. */
import type { Bench } from '../lib/types.js';

export const labBenches: Bench[] = [];
