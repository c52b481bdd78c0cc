/**
 * The stage runner's own logic, with stand-in stages: checkpoints, resume,
 * retry, recovery routing and deadlines. Real stages run against the lab in
 * migrate.lab.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import { STAGES, type StageName } from '../shared/stage.js';
import { JobFailed, runJob, type RunnableJob } from '../worker/runner.js';
import type { Stage, StageOutcome } from '../worker/stages/stage.js';

const config = loadConfig({ overrides: { retry: { attempts: 3, backoff: 10 }, stages: { check_deadline: 50 } } });
const silent = { info() {}, warn() {}, error() {}, debug() {} };
const clock = { now: () => new Date('2026-01-01T00:00:00Z') };
const noLibvirt: Hypervisor = { open: () => Promise.reject(new Error('no libvirt in this test')) };

function job(attemptsMade = 0, checkpoint?: MigrationJobData['checkpoint']) {
  const saved: MigrationJobData[] = [];
  let data: MigrationJobData = {
    request: { vm: 'g', remoteHost: 'h', sourceUri: 's', destinationUri: 'd', requestedAt: '', bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 10, keepSourceDefinition: false },
    ...(checkpoint ? { checkpoint } : {}),
  };
  const j: RunnableJob & { saved: MigrationJobData[] } = {
    id: 'j',
    get data() {
      return data;
    },
    attemptsMade,
    maxAttempts: 3,
    lastProgress: null,
    saved,
    async updateData(d) {
      data = d;
      saved.push(structuredClone(d));
    },
    async updateProgress() {},
  };
  return j;
}

type Behaviour = (name: StageName) => Promise<StageOutcome>;
function stages(b: Behaviour, ran: string[]): Record<StageName, Stage> {
  const out = {} as Record<StageName, Stage>;
  for (const name of STAGES) {
    out[name] = { name, deadlineMs: (c) => (name === 'check' ? c.stages.check_deadline : 1000), run: async () => { ran.push(name); return b(name); } };
  }
  return out;
}
const happy: Behaviour = async (n) => ({ next: ({ check: 'connect', connect: 'prepare', prepare: 'migrate', migrate: 'finish', finish: 'done', recover: 'done' } as const)[n] });
const deps = (st: Record<StageName, Stage>) => ({ stages: st, hypervisor: noLibvirt, config, clock, log: silent, settleMs: 200 });

describe('stage runner', () => {
  it('runs the happy path in order and saves the checkpoint after every stage', async () => {
    const ran: string[] = [];
    const j = job();
    const cp = await runJob(j, deps(stages(happy, ran)));
    expect(ran).toEqual(['check', 'connect', 'prepare', 'migrate', 'finish']);
    expect(cp.step).toBe('done');
    const steps = j.saved.map((d) => d.checkpoint?.step);
    for (const s of ['connect', 'prepare', 'migrate', 'finish', 'done']) expect(steps).toContain(s);
    expect(cp.history.filter((h) => h.event === 'done').map((h) => h.stage)).toEqual(['check', 'connect', 'prepare', 'migrate', 'finish']);
  });

  it('resumes at the saved stage', async () => {
    const ran: string[] = [];
    await runJob(job(1, { step: 'migrate', results: {}, history: [] }), deps(stages(happy, ran)));
    expect(ran).toEqual(['migrate', 'finish']);
  });

  it('rethrows a transient fault for BullMQ to retry, and records the retry', async () => {
    const j = job(0);
    const transient = Object.assign(new Error('Connection refused'), { name: 'VirError', code: 38 });
    const st = stages(async (n) => (n === 'connect' ? Promise.reject(transient) : happy(n)), []);
    await expect(runJob(j, deps(st))).rejects.toBe(transient);
    const cp = j.data.checkpoint!;
    expect(cp.step).toBe('connect');
    expect(cp.history.at(-1)).toMatchObject({ stage: 'connect', event: 'retry' });
  });

  it('fails a check at once with its code, without recovery', async () => {
    const ran: string[] = [];
    const st = stages(async (n) => (n === 'check' ? { next: 'done', error: migrationError('PCI_PASSTHROUGH', { name: 'g', devices: 'pci' }).toJSON() } : happy(n)), ran);
    const err = await runJob(job(), deps(st)).catch((e) => e);
    expect(err).toBeInstanceOf(JobFailed);
    expect(err.error.code).toBe('KMIG0101E');
    expect(ran).toEqual(['check']);
  });

  it('routes a failed migration to recovery and ends failed with the migration error', async () => {
    const ran: string[] = [];
    const failure = migrationError('MIGRATION_FAILED', { name: 'g', detail: 'unsafe' }).toJSON();
    const st = stages(async (n) => (n === 'migrate' ? { next: 'recover', error: failure } : happy(n)), ran);
    const err = await runJob(job(), deps(st)).catch((e) => e);
    expect(ran).toEqual(['check', 'connect', 'prepare', 'migrate', 'recover']);
    expect(err.error.code).toBe('KCHVM0058E');
  });

  it('sends a stage that throws a permanent error after touching the guest to recovery', async () => {
    const ran: string[] = [];
    const st = stages(async (n) => (n === 'finish' ? Promise.reject(migrationError('FINISH_FAILED', { name: 'g', detail: 'x' })) : happy(n)), ran);
    const err = await runJob(job(), deps(st)).catch((e) => e);
    expect(ran.slice(-2)).toEqual(['finish', 'recover']);
    expect(err.error.code).toBe('KMIG0205E');
  });

  it('clears the error when recovery finds the guest on the destination, and finishes', async () => {
    const ran: string[] = [];
    const failure = migrationError('MIGRATION_FAILED', { name: 'g', detail: 'confirm failed' }).toJSON();
    const st = stages(async (n) => (n === 'migrate' ? { next: 'recover', error: failure } : n === 'recover' ? { next: 'finish', clearError: true } : happy(n)), ran);
    const cp = await runJob(job(), deps(st));
    expect(ran.slice(-2)).toEqual(['recover', 'finish']);
    expect(cp.error).toBeUndefined();
  });

  it('aborts a stage past its deadline and waits for it to stop before going on', async () => {
    const events: string[] = [];
    const st = stages(happy, []);
    // The stage sees the abort and needs a moment to wind down; the runner must wait for it.
    st.check = {
      name: 'check',
      deadlineMs: () => 50,
      run: (ctx) =>
        new Promise<StageOutcome>((_, reject) => {
          ctx.signal.addEventListener('abort', () => {
            events.push('stage saw abort');
            setTimeout(() => {
              events.push('stage stopped');
              reject(new Error('aborted'));
            }, 30);
          });
        }),
    };
    const err = await runJob(job(2), deps(st)).catch((e) => e);
    events.push('runner went on');
    expect(err.error.code).toBe('KMIG0202E');
    expect(events).toEqual(['stage saw abort', 'stage stopped', 'runner went on']);
  });

  it('enforces the stage deadline', async () => {
    const j = job(2); // last attempt: a timeout in check fails the job
    const st = stages(async (n) => (n === 'check' ? new Promise<StageOutcome>(() => {}) : happy(n)), []);
    const err = await runJob(j, deps(st)).catch((e) => e);
    expect(err.error.code).toBe('KMIG0202E');
    expect(err.error.reason).toMatch(/check did not finish within 50 ms/);
  });
});
