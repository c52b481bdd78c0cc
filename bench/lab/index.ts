/** The benchmarks that need the libvirt lab (figures 1, 2, 3, 6 and 7); bench/run.ts runs them after the API ones. */
import type { Bench } from '../lib/types.js';
import { freshnessBench } from './freshness.js';
import { overheadBench } from './overhead.js';
import { parallelBench } from './parallel.js';
import { precheckBench } from './precheck.js';

export const labBenches: Bench[] = [overheadBench, precheckBench, freshnessBench, parallelBench];
