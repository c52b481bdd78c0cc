/**
 * Examples for the OpenAPI document, made by the code that makes real
 * answers (toTask, the error catalogue), so they look like what a client
 * gets. test/openapi.test.ts validates each against its schema.
 */
import { Catalogue, migrationError, type ErrorKey } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import { finalFigures } from '../shared/series.js';
import { toTask, type Task } from '../shared/task.js';

export const EXAMPLE_TASK_ID = '4f7c2a1e-8d0b-4c55-9a51-0c1d2e3f4a5b';
const T0 = Date.parse('2026-01-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

const data: MigrationJobData = {
  request: {
    vm: 'lab-tiny',
    remoteHost: 'host2',
    sourceUri: 'qemu+tcp://host1/system',
    destinationUri: 'qemu+tcp://host2/system',
    requestedAt: at(0),
    bandwidth: 'unlimited',
    downtimeMs: 500,
    timeoutSeconds: 21600,
    keepSourceDefinition: false,
  },
  checkpoint: {
    step: 'migrate',
    results: { migrate: { startedAt: at(2), inForce: { bandwidthMiBs: null, maxDowntimeMs: 500, operatorTuned: false } } },
    history: [
      { at: at(0), stage: 'queue', event: 'queued' },
      { at: at(1), stage: 'check', event: 'start' },
      { at: at(1), stage: 'check', event: 'done', detail: '9 checks passed' },
      { at: at(2), stage: 'migrate', event: 'start' },
    ],
  },
};

const snapshot = { id: EXAMPLE_TASK_ID, data, timestamp: T0, attemptsMade: 0 };

/** Copying memory. */
export const runningTask: Task = toTask({
  ...snapshot,
  state: 'active',
  processedOn: T0 + 1000,
  progress: { percent: 62, dataTotal: 1_075_838_976, dataProcessed: 667_000_000, dataRemaining: 408_838_976, memoryBps: 50_331_648, iteration: 3, elapsedMs: 13_000, etaSeconds: 8, converging: true },
});

/** Just queued. */
export const queuedTask: Task = toTask({ ...snapshot, state: 'waiting', data: { request: data.request, checkpoint: { step: 'check', results: {}, history: [{ at: at(0), stage: 'queue', event: 'queued' }] } } });

export const finishedTask: Task = toTask({
  ...snapshot,
  state: 'completed',
  processedOn: T0 + 1000,
  finishedOn: T0 + 24_000,
  progress: { percent: 100, dataTotal: 1_075_838_976, dataProcessed: 1_075_838_976, dataRemaining: 0, memoryBps: 52_428_800, iteration: 4, elapsedMs: 21_000, downtimeMs: 42 },
  data: { ...data, checkpoint: { ...data.checkpoint!, step: 'done', history: [...data.checkpoint!.history, { at: at(23), stage: 'migrate', event: 'done' }, { at: at(24), stage: 'finish', event: 'done' }] } },
});

/** Its progress over time, as GET /tasks/:id/series answers. */
export const finishedSeries = {
  id: finishedTask.id,
  status: finishedTask.status,
  interval_ms: 1000,
  points: [
    { t: T0 + 3000, elapsedMs: 1000, percent: 5, dataTotal: 1_075_838_976, dataProcessed: 52_428_800, dataRemaining: 1_023_410_176, memoryBps: 52_428_800, iteration: 1 },
    { t: T0 + 13_000, elapsedMs: 11_000, percent: 55, dataTotal: 1_075_838_976, dataProcessed: 592_000_000, dataRemaining: 483_838_976, memoryBps: 52_428_800, dirtyRateBps: 4_194_304, iteration: 2 },
    { t: T0 + 22_000, elapsedMs: 20_000, percent: 99, dataTotal: 1_075_838_976, dataProcessed: 1_070_000_000, dataRemaining: 5_838_976, memoryBps: 52_428_800, dirtyRateBps: 4_194_304, iteration: 4 },
  ],
  final: finalFigures(finishedTask),
};

/** A cancelled one. */
export const killedTask: Task = toTask({
  ...snapshot,
  state: 'failed',
  finishedOn: T0 + 5000,
  data: { ...data, checkpoint: { step: 'done', results: {}, history: data.checkpoint!.history, error: migrationError('CANCELLED', { name: 'lab-tiny' }).toJSON() } },
});

/** Values for the placeholders of the catalogue's texts, so an example reads like a real answer. */
const SAMPLE: Record<string, string> = {
  name: 'lab-tiny',
  host: 'host2',
  id: EXAMPLE_TASK_ID,
  task: EXAMPLE_TASK_ID,
  method: 'POST',
  path: '/vms/lab-tiny/migrate',
  who: 'dash',
  role: 'viewer',
  limit: '30',
  retry: '42',
  type: 'text/plain',
  origin: 'https://elsewhere.example',
  peers: 'host9, kimchi-a.example',
  count: '1',
  status: 'finished',
  what: 'cancel',
  stage: 'finish',
  why: 'it is not in api.cors_origins',
};

const DETAIL: Partial<Record<ErrorKey, string>> = {
  BAD_REQUEST: "'max_downtime' must be a whole number of milliseconds from 100 to 600000",
  REMOTE_HOST_INVALID: '"host2/system?x"',
  UNAUTHENTICATED: 'send Authorization: Bearer <token>',
  SOURCE_UNAVAILABLE: 'no answer within 3000 ms',
  QUEUE_UNAVAILABLE: 'not connected',
  INTERNAL: 'see the service log',
};

const placeholders = (values: Record<string, string>, show = (k: string) => `<${k}>`) => new Proxy(values, { get: (t, k: string) => t[k] ?? show(k) });

/** The body the API answers with for a catalogue error. */
export function errorExample(key: ErrorKey, over: Record<string, string> = {}): { code: string; reason: string; status: number } {
  const detail = DETAIL[key];
  const e = migrationError(key, placeholders({ ...SAMPLE, ...(detail === undefined ? {} : { detail }), ...over }));
  return { code: e.code, reason: e.message, status: e.http };
}

/** The text of a catalogue entry with its placeholders shown as {name}, for descriptions. */
export function errorText(key: ErrorKey): string {
  return Catalogue[key].text(placeholders({}, (k) => `{${k}}`));
}

export const blockedPrecheck = {
  ...errorExample('MIGRATION_BLOCKED'),
  ready: false as const,
  blockers: [migrationError('DEST_NO_MEMORY', { free: '1024', need: '4096' }).toJSON()],
  checks: [
    { check: 'destination_reachable' as const, ok: true, blockers: [] },
    { check: 'destination_memory' as const, ok: false, blockers: [migrationError('DEST_NO_MEMORY', { free: '1024', need: '4096' }).toJSON()] },
  ],
  peers: ['host2'],
};

export const readyPrecheck = {
  ready: true as const,
  vm: 'lab-tiny',
  remote_host: 'host2',
  destination_uri: 'qemu+tcp://host2/system',
  checks: [
    { check: 'destination_reachable' as const, ok: true, blockers: [] },
    { check: 'destination_memory' as const, ok: true, blockers: [] },
  ],
  peers: ['host2'],
};

export const verbosePeer = {
  host: 'kimchi-a.example',
  port: 8001,
  url: 'https://kimchi-a.example:8001',
  libvirt_uri: 'qemu+tcp://kimchi-a.example/system',
  lifetime: 65535,
  last_seen: '2026-01-01T10:00:00.000Z',
  addresses: ['10.0.0.2'],
  source: 'slp' as const,
};
