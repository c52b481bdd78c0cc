import { describe, expect, it } from 'vitest';
import { migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import { stateClassesFor, taskStatus, toTask, type JobSnapshot, type StateClass, type TaskStatus } from '../shared/task.js';
import * as R from '../api/response-schemas.js';

const data: MigrationJobData = {
  request: {
    vm: 'lab-tiny', remoteHost: '127.0.0.12', sourceUri: 'qemu+tcp://127.0.0.11/system', destinationUri: 'qemu+tcp://127.0.0.12/system',
    requestedAt: '2026-01-01T00:00:00.000Z', bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 21600, keepSourceDefinition: false,
  },
  checkpoint: { step: 'migrate', results: {}, history: [] },
};
const snap = (over: Partial<JobSnapshot>): JobSnapshot => ({ id: 'j1', state: 'active', data, timestamp: Date.parse('2026-01-01T00:00:00Z'), attemptsMade: 0, ...over });

describe('BullMQ state to Kimchi status', () => {
  it.each([
    ['waiting', undefined, 'running'],
    ['delayed', undefined, 'running'],
    ['prioritized', undefined, 'running'],
    ['active', undefined, 'running'],
    ['waiting-children', undefined, 'running'],
    ['completed', undefined, 'finished'],
    ['failed', migrationError('MIGRATION_FAILED', { name: 'x', detail: 'y' }).toJSON(), 'failed'],
    ['failed', migrationError('CANCELLED', { name: 'x' }).toJSON(), 'killed'],
  ] as const)('%s → %s', (state, error, want) => {
    expect(taskStatus(state, error)).toBe(want);
  });
});

describe('state classes for a status filter (the reverse of taskStatus)', () => {
  const states = ['waiting', 'delayed', 'prioritized', 'active', 'waiting-children', 'paused', 'completed', 'failed'];
  const errors = [undefined, migrationError('MIGRATION_FAILED', { name: 'x', detail: 'y' }).toJSON(), migrationError('CANCELLED', { name: 'x' }).toJSON()];
  const classOf = (s: string): StateClass => (s === 'completed' || s === 'failed' ? s : 'other');
  const all: TaskStatus[] = ['running', 'finished', 'failed', 'killed'];
  // Every subset of the four statuses: the classes are exactly those of the states that can give one of them.
  const subsets = Array.from({ length: 16 }, (_, m) => all.filter((_, i) => m & (1 << i)));
  it.each(subsets.map((x) => [x.join(',') || '(none)', x] as const))('%s', (_name, statuses) => {
    const want = new Set<StateClass>();
    for (const s of states) for (const e of errors) if (statuses.includes(taskStatus(s, e))) want.add(classOf(s));
    expect(new Set(stateClassesFor(new Set(statuses)))).toEqual(want);
  });
});

describe('task JSON', () => {
  it("keeps Kimchi's fields and adds stage, hosts and times", () => {
    const t = toTask(snap({ processedOn: Date.parse('2026-01-01T00:00:01Z'), progress: { percent: 42, memoryBps: 50 * 1048576, iteration: 2 } }));
    expect(t).toMatchObject({
      id: 'j1', status: 'running', target_uri: '/vms/lab-tiny', stage: 'migrate',
      source: { uri: 'qemu+tcp://127.0.0.11/system' }, destination: { host: '127.0.0.12', uri: 'qemu+tcp://127.0.0.12/system' },
      created_at: '2026-01-01T00:00:00.000Z', started_at: '2026-01-01T00:00:01.000Z', finished_at: null, error: null,
    });
    expect(t.message).toBe('copying memory: 42%, 50 MiB/s, iteration 2');
  });
  it('says Kimchi\'s words while queued and when finished', () => {
    expect(toTask(snap({ state: 'waiting' })).message).toBe('The request is being processing.');
    expect(toTask(snap({ state: 'completed', finishedOn: Date.parse('2026-01-01T00:00:05Z') }))).toMatchObject({ status: 'finished', message: 'Migrate finished', finished_at: '2026-01-01T00:00:05.000Z' });
  });
  it('shows the stored error with its code when failed', () => {
    const error = migrationError('MIGRATION_TIMEOUT', { name: 'lab-dirty', seconds: '5' }).toJSON();
    const t = toTask(snap({ state: 'failed', data: { ...data, checkpoint: { step: 'done', results: {}, history: [], error } } }));
    expect(t.status).toBe('failed');
    expect(t.message).toMatch(/^KMIG0201E: /);
    expect(t.error?.code).toBe('KMIG0201E');
  });
  it('gives a failure BullMQ recorded on its own a code too', () => {
    const t = toTask(snap({ state: 'failed', failedReason: 'job stalled more than allowable limit', data: { ...data, checkpoint: { step: 'migrate', results: {}, history: [] } } }));
    expect(t.message).toBe('KMIG0299E: job stalled more than allowable limit');
    expect(t.error?.code).toBe('KMIG0299E');
  });
  it('says why a job waits for a migration slot, in every state the wait passes through, distinct from a retry', () => {
    const slotWait = { reason: '127.0.0.11 already has 2 outgoing migrations (limit 2)', since: '2026-01-01T00:00:01.000Z' };
    const waiting = { ...data, checkpoint: { step: 'connect' as const, results: {}, history: [], slotWait } };
    for (const state of ['delayed', 'active', 'waiting']) {
      const t = toTask(snap({ state, data: waiting }));
      expect(t.status, state).toBe('running');
      expect(t.message, state).toBe('waiting for a migration slot: 127.0.0.11 already has 2 outgoing migrations (limit 2)');
    }
    expect(toTask(snap({ state: 'delayed', data: { ...data, checkpoint: { step: 'connect', results: {}, history: [] } } })).message).toBe('waiting to retry stage connect');
    // Over: the outcome, not the wait.
    expect(toTask(snap({ state: 'completed', data: waiting })).message).toBe('Migrate finished');
  });
  it('escapes the VM name in target_uri', () => {
    expect(toTask(snap({ data: { ...data, request: { ...data.request, vm: 'a b/c' } } })).target_uri).toBe('/vms/a%20b%2Fc');
  });
});

describe('URIs in task JSON', () => {
  const SRC = 'qemu+ssh://admin:s3cret@src.example/system?keyfile=/root/.ssh/id_src';
  const DST = 'qemu+ssh://root:hunter2@host2:2222/system?keyfile=/etc/kvm-migrate/secret-key&no_verify=1';
  const SECRETS = ['s3cret', 'admin', 'id_src', 'hunter2', 'root', 'secret-key', 'no_verify=1'];
  const withCredentials: MigrationJobData = {
    request: { ...data.request, vm: 'lab-disk', remoteHost: 'host2', sourceUri: SRC, destinationUri: DST },
    checkpoint: {
      step: 'connect',
      results: {},
      history: [
        { at: '2026-01-01T00:00:01.000Z', stage: 'queue', event: 'queued' },
        { at: '2026-01-01T00:00:02.000Z', stage: 'connect', event: 'done', detail: `destination ${DST} connected; persistent guest` },
        { at: '2026-01-01T00:00:03.000Z', stage: 'migrate', event: 'step', detail: `libvirt migration to ${DST} started` },
      ],
      error: migrationError('DEST_UNREACHABLE', { uri: DST, detail: `no route from ${SRC}` }, { stage: 'connect', uri: DST }).toJSON(),
    },
  };
  const expectClean = (t: unknown) => {
    const json = JSON.stringify(t);
    for (const s of SECRETS) expect(json, s).not.toContain(s);
  };

  it.each([
    ['failed, with the URI in the error and the history', snap({ state: 'failed', data: withCredentials })],
    ['running', snap({ state: 'active', data: { ...withCredentials, checkpoint: { ...withCredentials.checkpoint!, error: undefined } } })],
    ['failed by BullMQ with the URI in its reason', snap({ state: 'failed', failedReason: `connect to ${DST} timed out`, data: { ...withCredentials, checkpoint: { step: 'migrate', results: {}, history: [] } } })],
    ['waiting for a slot named by URI', snap({ state: 'delayed', data: { ...withCredentials, checkpoint: { step: 'connect', results: {}, history: [], slotWait: { reason: `${SRC} already has 2 outgoing migrations (limit 2)`, since: '2026-01-01T00:00:01.000Z' } } } })],
  ])('carry no user, password or query value (%s)', (_what, s) => {
    const t = toTask(s);
    expectClean(t);
    expect(t.source.uri).toBe('qemu+ssh://[redacted]@src.example/system?keyfile=[redacted]');
    expect(t.destination).toEqual({ host: 'host2', uri: 'qemu+ssh://[redacted]@host2:2222/system?keyfile=[redacted]&no_verify=[redacted]' });
    expect(t.target_uri).toBe('/vms/lab-disk');
    // The snapshot (the job data workers run from) keeps the real URIs.
    expect(s.data.request.destinationUri).toBe(DST);
    expect(s.data.request.sourceUri).toBe(SRC);
  });

  it('keeps what the error and the history say around the URI', () => {
    const t = toTask(snap({ state: 'failed', data: withCredentials }));
    expect(t.error).toMatchObject({ code: 'KCHVM0090E', key: 'DEST_UNREACHABLE' });
    expect(t.error!.reason).toMatch(/^KCHVM0090E: Cannot connect to the remote libvirt at qemu\+ssh:\/\/\[redacted\]@host2:2222\/system\?keyfile=\[redacted\]&no_verify=\[redacted\] no route from qemu\+ssh:\/\/\[redacted\]@src\.example\//);
    expect(t.message).toBe(t.error!.reason);
    expect(t.error!.details).toEqual({ stage: 'connect', uri: 'qemu+ssh://[redacted]@host2:2222/system?keyfile=[redacted]&no_verify=[redacted]' });
    expect(t.history.map((h) => h.detail)).toEqual([
      undefined,
      'destination qemu+ssh://[redacted]@host2:2222/system?keyfile=[redacted]&no_verify=[redacted] connected; persistent guest',
      'libvirt migration to qemu+ssh://[redacted]@host2:2222/system?keyfile=[redacted]&no_verify=[redacted] started',
    ]);
    expect(withCredentials.checkpoint!.history[1]!.detail).toContain('hunter2');
  });

  it('leaves URIs without credentials as they are', () => {
    const t = toTask(snap({}));
    expect(t.source.uri).toBe('qemu+tcp://127.0.0.11/system');
    expect(t.destination.uri).toBe('qemu+tcp://127.0.0.12/system');
  });

  it('still fits the Task schema', () => {
    expect(() => R.Task.parse(toTask(snap({ state: 'failed', data: withCredentials })))).not.toThrow();
  });
});
