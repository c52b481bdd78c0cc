/** The benchmarks that need no lab (figures 4 and 5): Redis, and libvirt's test driver as the source. */
import type { Bench } from '../lib/types.js';
import { scaleBench } from './scale.js';
import { throughputBench } from './throughput.js';

export const apiBenches: Bench[] = [throughputBench, scaleBench];
