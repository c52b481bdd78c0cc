/**
 * A task's progress over time, kept so a migration can be plotted after it
 * ended: the points the worker sampled (see worker/policy/series.ts for which
 * ones are kept) and the final figures the finished task carries.
 *
 * Stored next to the queue as a Redis list of JSON points plus the current
 * sampling interval; both expire a little after the task itself.
 */
import type { Redis } from 'ioredis';
import { migrationDurationMs } from './duration.js';
import type { MigrationProgress, Task, TaskStatus } from './task.js';

export interface SeriesPoint {
  /** When the worker took the sample, epoch ms. */
  t: number;
  /** libvirt's time since the copy started, ms (absent when libvirt did not say). */
  elapsedMs?: number;
  percent: number;
  dataRemaining?: number;
  dataProcessed?: number;
  dataTotal?: number;
  memoryBps?: number;
  dirtyRateBps?: number;
  iteration?: number;
}

export interface SeriesState {
  /** Least time between two kept points; doubles each time the series is thinned. */
  intervalMs: number;
  points: SeriesPoint[];
}

/** What a task's series ends with: the figures of the copy as the task last showed them. */
export interface FinalFigures {
  status: Exclude<TaskStatus, 'running'>;
  started_at: string | null;
  finished_at: string | null;
  /**
   * From the first stage start to the last history entry, all stages and every
   * pickup (slot waits, retries, a resume by another worker): what the duration
   * metric observes. null for a task that never started a stage.
   */
  durationMs: number | null;
  /** The copy alone, as libvirt timed it. */
  copyMs: number | null;
  /** The guest's real pause at switch-over, as libvirt measured it (finished migrations only). */
  downtimeMs: number | null;
  dataProcessed: number | null;
  dataTotal: number | null;
  dataRemaining: number | null;
  iterations: number | null;
  /** dataProcessed over copyMs, bytes a second. */
  averageBps: number | null;
  percent: number | null;
}

const KEYS = ['elapsedMs', 'percent', 'dataRemaining', 'dataProcessed', 'dataTotal', 'memoryBps', 'dirtyRateBps', 'iteration'] as const;

/** The point a progress sample makes at time `t`: the figures that can be plotted, nothing else. */
export function pointOf(p: MigrationProgress, t: number): SeriesPoint {
  const out: SeriesPoint = { t, percent: p.percent };
  for (const k of KEYS) {
    const v = p[k];
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

/** The final figures of an ended task; null while it runs. */
export function finalFigures(task: Task): FinalFigures | null {
  if (task.status === 'running') return null;
  const p = task.progress;
  const n = (v: number | undefined) => (typeof v === 'number' ? v : null);
  const copyMs = n(p?.elapsedMs);
  const processed = n(p?.dataProcessed);
  return {
    status: task.status,
    started_at: task.started_at,
    finished_at: task.finished_at,
    durationMs: migrationDurationMs(task.history),
    copyMs,
    downtimeMs: n(p?.downtimeMs),
    dataProcessed: processed,
    dataTotal: n(p?.dataTotal),
    dataRemaining: n(p?.dataRemaining),
    iterations: n(p?.iteration),
    averageBps: processed !== null && copyMs ? Math.round((processed / copyMs) * 1000) : null,
    percent: p ? p.percent : null,
  };
}

export const seriesKey = (prefix: string, id: string) => `${prefix}:series:${id}`;
const intervalKey = (prefix: string, id: string) => `${prefix}:series:${id}:interval`;

/**
 * A series outlives its task by this much rather than dying first: its last
 * point is written when the copy ends, the task ends a stage or two later.
 */
export const SERIES_SLACK_SECONDS = 3600;

export interface SeriesStore {
  load(id: string): Promise<SeriesState | null>;
  append(id: string, point: SeriesPoint, intervalMs: number): Promise<void>;
  /** Replaces the whole series (after thinning). */
  replace(id: string, state: SeriesState): Promise<void>;
}

function parsePoint(raw: string): SeriesPoint | null {
  try {
    const p = JSON.parse(raw) as SeriesPoint;
    return typeof p?.t === 'number' && typeof p.percent === 'number' ? p : null;
  } catch {
    return null;
  }
}

/** The series in Redis, expiring `keepSeconds` (the task's retention) plus the slack after the last write. */
export function redisSeriesStore(client: Redis, prefix: string, keepSeconds: number): SeriesStore {
  const ttl = keepSeconds + SERIES_SLACK_SECONDS;
  return {
    async load(id) {
      const [raw, interval] = await Promise.all([client.lrange(seriesKey(prefix, id), 0, -1), client.get(intervalKey(prefix, id))]);
      if (!raw.length) return null;
      const points = raw.map(parsePoint).filter((p): p is SeriesPoint => p !== null);
      return { intervalMs: Number(interval) > 0 ? Number(interval) : 0, points };
    },
    async append(id, point, intervalMs) {
      const key = seriesKey(prefix, id);
      await client.multi().rpush(key, JSON.stringify(point)).expire(key, ttl).set(intervalKey(prefix, id), String(intervalMs), 'EX', ttl).exec();
    },
    async replace(id, state) {
      const key = seriesKey(prefix, id);
      const m = client.multi().del(key);
      if (state.points.length) m.rpush(key, ...state.points.map((p) => JSON.stringify(p))).expire(key, ttl);
      await m.set(intervalKey(prefix, id), String(state.intervalMs), 'EX', ttl).exec();
    },
  };
}
