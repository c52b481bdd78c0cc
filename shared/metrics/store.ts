/**
 * Where the migration metrics live: in Redis, so they are one set of numbers
 * for every worker and API process on every machine and survive restarts of
 * all of them. Workers record (exactly once per task and event, in one Lua
 * script); API processes read them at scrape time.
 *
 * Keys, under the service's prefix:
 *   <prefix>:migration-metrics:values      hash, every value (fields.ts)
 *   <prefix>:migration-metrics:hosts       set, the host label values in use (at most MAX_HOST_LABELS)
 *   <prefix>:migration-metrics:once:<task> hash, the events already counted for a task; expires
 */
import type { Redis } from 'ioredis';
import { MAX_HOST_LABELS, OTHER_HOST } from './catalog.js';
import { END_EVENT, type HostLabels, type MetricEvent } from './events.js';
import { withHosts } from './fields.js';

/** The port the runner records through: Redis below, in memory in unit tests. */
export interface MetricsRecorder {
  /** Applies each event's increments unless this task's event was counted before; returns how many were new. */
  record(task: string, hosts: HostLabels, events: readonly MetricEvent[]): Promise<number>;
}

/** What the API reads: every stored value by field. */
export interface MetricsReader {
  read(): Promise<Map<string, number>>;
}

export interface OnceTtl {
  /** Seconds a task's event markers are kept after its end event: until its job is long gone. */
  ended: number;
  /** Seconds they are kept (renewed at every recording) while it runs. */
  running: number;
}

/** Markers outlive the job: kept as long as finished tasks are, and a running one for 60 days past its last recording. */
export function onceTtl(config: { tasks: { keep_finished: number } }): OnceTtl {
  return { ended: config.tasks.keep_finished + 86_400, running: 60 * 86_400 };
}

const keys = (prefix: string) => ({
  values: `${prefix}:migration-metrics:values`,
  hosts: `${prefix}:migration-metrics:hosts`,
  once: (task: string) => `${prefix}:migration-metrics:once:${task}`,
});

/**
 * KEYS: once, values, hosts. ARGV: ttl, max hosts, source, destination, then
 * per event: its key, n, and n pairs of field and increment. The host labels
 * are capped here, where every event is counted, so all processes agree on them.
 */
const RECORD = `
local function host(h)
  if redis.call('SISMEMBER', KEYS[3], h) == 1 then return h end
  if redis.call('SCARD', KEYS[3]) < tonumber(ARGV[2]) then
    redis.call('SADD', KEYS[3], h)
    return h
  end
  return '${OTHER_HOST}'
end
local src, dst
local applied = 0
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if redis.call('HSETNX', KEYS[1], ARGV[i], '1') == 1 then
    if not src then src = host(ARGV[3]); dst = host(ARGV[4]) end
    for j = 0, n - 1 do
      local f = string.gsub(string.gsub(ARGV[i + 2 + 2 * j], '%$source', src), '%$destination', dst)
      redis.call('HINCRBYFLOAT', KEYS[2], f, ARGV[i + 3 + 2 * j])
    end
    applied = applied + 1
  end
  i = i + 2 + 2 * n
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return applied
`;

interface RecordCommand {
  kvmMigrateRecordMetrics(once: string, values: string, hosts: string, ...args: (string | number)[]): Promise<number>;
}

export function redisMetrics(redis: Redis, prefix: string, ttl: OnceTtl, maxHosts = MAX_HOST_LABELS): MetricsRecorder & MetricsReader {
  const k = keys(prefix);
  redis.defineCommand('kvmMigrateRecordMetrics', { numberOfKeys: 3, lua: RECORD });
  const cmd = redis as unknown as RecordCommand;
  return {
    async record(task, hosts, events) {
      if (events.length === 0) return 0;
      const args: (string | number)[] = [events.some((e) => e.key === END_EVENT) ? ttl.ended : ttl.running, maxHosts, hosts.source, hosts.destination];
      for (const e of events) {
        args.push(e.key, e.incs.length);
        for (const inc of e.incs) args.push(inc.field, String(inc.by));
      }
      return cmd.kvmMigrateRecordMetrics(k.once(task), k.values, k.hosts, ...args);
    },
    async read() {
      const raw = await redis.hgetall(k.values);
      return new Map(Object.entries(raw).map(([f, v]) => [f, Number(v)]));
    },
  };
}

/** The same rules in memory, for the runner's unit tests and the exposition's. */
export function memoryMetrics(maxHosts = MAX_HOST_LABELS): MetricsRecorder & MetricsReader & { values: Map<string, number> } {
  const values = new Map<string, number>();
  const once = new Map<string, Set<string>>();
  const known = new Set<string>();
  const host = (h: string) => {
    if (known.has(h)) return h;
    if (known.size < maxHosts) return known.add(h), h;
    return OTHER_HOST;
  };
  return {
    values,
    async record(task, hosts, events) {
      const seen = once.get(task) ?? new Set<string>();
      once.set(task, seen);
      let applied = 0;
      for (const e of events) {
        if (seen.has(e.key)) continue;
        seen.add(e.key);
        const filled = { source: host(hosts.source), destination: host(hosts.destination) };
        for (const inc of e.incs) {
          const f = withHosts(inc.field, filled);
          values.set(f, (values.get(f) ?? 0) + inc.by);
        }
        applied++;
      }
      return applied;
    },
    async read() {
      return new Map(values);
    },
  };
}
