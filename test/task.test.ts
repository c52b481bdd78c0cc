import { describe, expect, it } from 'vitest';
import { migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import { taskStatus, toTask, type JobSnapshot } from '../shared/task.js';

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
