/**
 * Every migration metric kvm-migrate exposes at /metrics: name, type, help,
 * labels and histogram buckets, in one table the worker records by and the
 * API renders from. Pure.
 *
 * Labels are only ever of bounded cardinality: host names, stage names,
 * outcomes and catalogue codes. Never a VM name or a task id.
 */

export type LabelName = 'source' | 'destination' | 'stage' | 'outcome' | 'code';

export interface MetricDef {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  labels: readonly LabelName[];
  /** Upper bounds (le) of a histogram's buckets, ascending; +Inf is implied. */
  buckets?: readonly number[];
}

/** Whole migrations, seconds: from half a second (a refused check) to hours (a large guest that is slow to converge). */
export const DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400] as const;
/** Real downtime, seconds: libvirt reports milliseconds; healthy switch-overs take tens of them, a paused guest seconds. */
export const DOWNTIME_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** One stage, seconds: check and prepare take fractions of a second, migrate as long as the copy. */
export const STAGE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200] as const;

/**
 * Distinct host label values kept in Redis; a host beyond them is counted as
 * "other". remote_host comes from clients, and a stream of typos must not
 * grow the metrics without bound.
 */
export const MAX_HOST_LABELS = 200;
export const OTHER_HOST = 'other';

const hosts = ['source', 'destination'] as const;

export const METRICS = {
  started: { name: 'kvm_migrate_migrations_started_total', type: 'counter', labels: hosts, help: 'Migrations a worker started (their first stage began).' },
  finished: { name: 'kvm_migrate_migrations_finished_total', type: 'counter', labels: hosts, help: 'Started migrations that ended finished: the guest runs on the destination.' },
  failed: { name: 'kvm_migrate_migrations_failed_total', type: 'counter', labels: [...hosts, 'code'], help: 'Started migrations that ended failed, by the error code of the task.' },
  killed: { name: 'kvm_migrate_migrations_killed_total', type: 'counter', labels: hosts, help: 'Started migrations that ended killed (cancelled).' },
  inFlight: { name: 'kvm_migrate_migrations_in_flight', type: 'gauge', labels: hosts, help: 'Migrations started and not ended yet (waiting for a migration slot included).' },
  duration: {
    name: 'kvm_migrate_migration_duration_seconds',
    type: 'histogram',
    labels: [...hosts, 'outcome'],
    buckets: DURATION_BUCKETS,
    help: 'Time from the start of a migration\'s first stage to its end, by outcome (finished, failed, killed).',
  },
  downtime: { name: 'kvm_migrate_downtime_seconds', type: 'histogram', labels: hosts, buckets: DOWNTIME_BUCKETS, help: 'Real downtime of finished migrations, as libvirt measured it at completion.' },
  bytes: { name: 'kvm_migrate_transferred_bytes_total', type: 'counter', labels: hosts, help: 'Bytes libvirt transferred (data_processed) for migrations that ended, whatever the outcome.' },
  stage: { name: 'kvm_migrate_stage_duration_seconds', type: 'histogram', labels: ['stage'], buckets: STAGE_BUCKETS, help: 'Time a stage took when it ran to its end (each run of a stage counted once).' },
  retries: { name: 'kvm_migrate_retries_total', type: 'counter', labels: ['stage'], help: 'Transient faults retried with backoff, by the stage that met them.' },
  checkFailures: { name: 'kvm_migrate_check_failures_total', type: 'counter', labels: ['code'], help: 'Migrations refused by the check stage, by blocker code (one per migration and code).' },
} as const satisfies Record<string, MetricDef>;

export type MetricKey = keyof typeof METRICS;

/** The gauge the API adds: whether the migration metrics could be read from Redis in time. */
export const REDIS_UP = { name: 'kvm_migrate_metrics_redis_up', type: 'gauge', labels: [], help: '1 when the migration metrics were read from Redis within the scrape\'s time limit, else 0 (and they are left out).' } as const;

/** The bucket a value is counted in (its smallest upper bound), as the le label writes it. */
export function bucketFor(value: number, buckets: readonly number[]): string {
  for (const b of buckets) if (value <= b) return String(b);
  return '+Inf';
}
