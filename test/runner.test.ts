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
import type { SlotHosts, Slots } from '../shared/limits.js';
import { noControl } from '../worker/control.js';
import { JobFailed, runJob, type RunnableJob } from '../worker/runner.js';
import { JobSlots, SlotWait } from '../worker/slots.js';
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

/** Slots in memory with one outgoing limit per source host: what the runner sees of shared/limits.ts. */
function memorySlots(max: number) {
  const held = new Map<string, Set<string>>();
  const set = (h: SlotHosts) => held.get(h.source) ?? held.set(h.source, new Set()).get(h.source)!;
  const slots: Slots & { held: typeof held; released: string[] } = {
    held,
    released: [],
    async acquire(id, hosts, opts = {}) {
      const s = set(hosts);
      if (s.has(id)) return { kind: 'acquired', alreadyHeld: true, over: null };
      const hit = s.size >= max ? { limit: 'outgoing' as const, count: s.size, max } : null;
      if (hit && !opts.force) return { kind: 'blocked', ...hit };
      s.add(id);
      return { kind: 'acquired', alreadyHeld: false, over: hit };
    },
    async renew() {
      return true;
    },
    async release(id, hosts) {
      slots.released.push(id);
      set(hosts).delete(id);
    },
  };
  return slots;
}

const checked = { sourceHostUuid: 'src-uuid', destinationHostUuid: 'dst-uuid', domainUuid: 'd', memoryKiB: 1, destinationHadDefinition: false };
const limitedDeps = (st: Record<StageName, Stage>, slots: Slots, now = clock.now) => ({ ...deps(st), slots, clock: { now } });

describe('stage runner with concurrency limits', () => {
  it('takes the slot after check; while the limit is full it hands the job back to wait, noting the reason once', async () => {
    const slots = memorySlots(1);
    slots.held.set('src-uuid', new Set(['other-job']));
    const ran: string[] = [];
    const j = job();
    let t = Date.parse('2026-01-01T00:00:00Z');
    const now = () => new Date(t);
    // First run: check passes, connect must wait.
    const err = await runJob(j, limitedDeps(stages(async (n) => (n === 'check' ? { next: 'connect', results: { check: checked } } : happy(n)), ran), slots, now)).catch((e) => e);
    expect(err).toBeInstanceOf(SlotWait);
    expect(err.reason).toBe('s already has 1 outgoing migration (limit 1)');
    expect(ran).toEqual(['check']);
    const waiting = j.data.checkpoint!;
    expect(waiting.step).toBe('connect');
    expect(waiting.slotWait).toEqual({ reason: err.reason, since: '2026-01-01T00:00:00.000Z' });
    expect(waiting.history.filter((h) => h.event === 'decision')).toEqual([{ at: '2026-01-01T00:00:00.000Z', stage: 'connect', event: 'decision', detail: 'waiting for a migration slot: s already has 1 outgoing migration (limit 1)' }]);
    // Woken again, still full: no new history entry, and no 'resume' either.
    t += 2000;
    await expect(runJob(j, limitedDeps(stages(happy, ran), slots, now))).rejects.toBeInstanceOf(SlotWait);
    expect(j.data.checkpoint!.history).toEqual(waiting.history);
    expect(slots.released).toEqual([]); // a waiting job holds nothing, so gives nothing back
    // The other job is done: this one takes the slot, says how long it waited, checks again
    // (the destination may have changed meanwhile), runs and gives the slot back.
    slots.held.get('src-uuid')!.delete('other-job');
    t += 1500;
    const cp = await runJob(j, limitedDeps(stages(happy, ran), slots, now));
    expect(ran).toEqual(['check', 'check', 'connect', 'prepare', 'migrate', 'finish']);
    expect(cp.slotWait).toBeUndefined();
    expect(cp.history.filter((h) => h.event === 'resume')).toEqual([]);
    expect(cp.history.filter((h) => h.event === 'decision').map((h) => h.detail)).toEqual([
      'waiting for a migration slot: s already has 1 outgoing migration (limit 1)',
      'got a migration slot after 3.5 s of waiting',
      'checking again after waiting for a migration slot',
    ]);
    expect(slots.released).toEqual(['j']);
    expect(slots.held.get('src-uuid')!.size).toBe(0);
  });

  it('gives up after limits.max_wait: the task fails KMIG0207E with the last reason, holding nothing', async () => {
    const slots = memorySlots(1);
    slots.held.set('src-uuid', new Set(['other-job']));
    const since = '2026-01-01T00:00:00.000Z';
    const j = job(0, { step: 'connect', results: { check: checked }, history: [{ at: since, stage: 'check', event: 'start' }], slotWait: { reason: 'full', since } });
    const now = () => new Date(Date.parse(since) + 61_000);
    const short = { ...limitedDeps(stages(happy, []), slots, now), config: { ...config, limits: { ...config.limits, max_wait: 60 } } };
    const err = await runJob(j, short).catch((e) => e);
    expect(err).toBeInstanceOf(JobFailed);
    expect(err.error.code).toBe('KMIG0207E');
    expect(err.error.reason).toMatch(/waited 60 s \(limits.max_wait\) for a migration slot .* nothing was moved\. Last reason: s already has 1 outgoing migration \(limit 1\)/);
    expect(j.data.checkpoint!.history.at(-1)).toMatchObject({ event: 'decision', detail: 'gave up after waiting 61 s for a migration slot' });
    expect(slots.held.get('src-uuid')).toEqual(new Set(['other-job']));
  });

  it('records a new reason when it changes', async () => {
    const slots = memorySlots(1);
    slots.held.set('src-uuid', new Set(['a']));
    const j = job(0, { step: 'connect', results: { check: checked }, history: [{ at: '', stage: 'check', event: 'start' }] });
    await expect(runJob(j, limitedDeps(stages(happy, []), slots))).rejects.toBeInstanceOf(SlotWait);
    const limit2 = memorySlots(2);
    limit2.held.set('src-uuid', new Set(['a', 'b']));
    await expect(runJob(j, limitedDeps(stages(happy, []), limit2))).rejects.toBeInstanceOf(SlotWait);
    expect(j.data.checkpoint!.history.filter((h) => h.event === 'decision').map((h) => h.detail)).toEqual([
      'waiting for a migration slot: s already has 1 outgoing migration (limit 1)',
      'waiting for a migration slot: s already has 2 outgoing migrations (limit 2)',
    ]);
  });

  it('a job resumed at migrate takes its slot even over the limit, and says so', async () => {
    const slots = memorySlots(1);
    slots.held.set('src-uuid', new Set(['a']));
    const ran: string[] = [];
    const cp = await runJob(job(1, { step: 'migrate', results: { check: checked }, history: [{ at: '', stage: 'migrate', event: 'start' }] }), limitedDeps(stages(happy, ran), slots));
    expect(ran).toEqual(['migrate', 'finish']);
    const notes = cp.history.filter((h) => h.event === 'decision');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ stage: 'migrate', detail: expect.stringMatching(/^resumed at stage migrate: took its migration slot although s already has 1 outgoing migration \(limit 1\); a copy may be running/) });
    expect(cp.history.filter((h) => h.event === 'resume')).toHaveLength(1);
  });

  it('gives the slot back when retrying before the copy, keeps it when retrying at migrate', async () => {
    const transient = Object.assign(new Error('Connection refused'), { name: 'VirError', code: 38 });
    for (const [at, kept] of [['prepare', false], ['migrate', true]] as const) {
      const slots = memorySlots(2);
      const st = stages(async (n) => (n === at ? Promise.reject(transient) : n === 'check' ? { next: 'connect', results: { check: checked } } : happy(n)), []);
      await expect(runJob(job(0), limitedDeps(st, slots))).rejects.toBe(transient);
      expect(slots.held.get('src-uuid')!.has('j'), at).toBe(kept);
    }
  });

  it('keeps the slot when this worker lost the job: its new owner holds it under the same job id', async () => {
    const slots = memorySlots(2);
    const ac = new AbortController();
    const j = Object.assign(job(0, { step: 'connect', results: { check: checked }, history: [] }), { signal: ac.signal });
    const st = stages(async (n) => {
      if (n === 'prepare') ac.abort();
      return happy(n);
    }, []);
    await expect(runJob(j, limitedDeps(st, slots))).rejects.toMatchObject({ message: expect.stringMatching(/lost the job/) });
    expect(slots.held.get('src-uuid')!.has('j')).toBe(true);
    expect(slots.released).toEqual([]);
  });

  it('renews the lease while the job runs, and never after giving the slot back', async () => {
    const slots = memorySlots(2);
    const events: string[] = [];
    slots.renew = async () => {
      events.push('renew');
      return true;
    };
    const release = slots.release;
    slots.release = async (id, hosts) => {
      events.push('release');
      return release(id, hosts);
    };
    // lock_duration 40 ms: renewed every 20 ms; the copy takes 130 ms.
    const short = loadConfig({ overrides: { retry: { attempts: 3, backoff: 10 }, worker: { lock_duration: 40 } } });
    const st = stages(async (n) => {
      if (n === 'migrate') await new Promise((r) => setTimeout(r, 130));
      return happy(n);
    }, []);
    await runJob(job(0, { step: 'connect', results: { check: checked }, history: [] }), { ...limitedDeps(st, slots), config: short });
    const renewals = events.filter((e) => e === 'renew').length;
    expect(renewals).toBeGreaterThanOrEqual(3);
    expect(events.at(-1)).toBe('release');
    await new Promise((r) => setTimeout(r, 60));
    expect(events.at(-1)).toBe('release');
    expect(events.filter((e) => e === 'renew')).toHaveLength(renewals);
  });

  it('a job cancelled while it waits for a slot ends killed before connect, holding nothing', async () => {
    const slots = memorySlots(1);
    slots.held.set('src-uuid', new Set(['a']));
    const ran: string[] = [];
    let cancelled = false;
    const control = { ...noControl, get cancelled() { return cancelled; }, refresh: async () => { cancelled = true; } };
    const j = Object.assign(job(0, { step: 'connect', results: { check: checked }, history: [{ at: '', stage: 'check', event: 'start' }] }), { control });
    // The cancel is seen right after the limit said no: no trip through the queue first.
    const err = await runJob(j, limitedDeps(stages(happy, ran), slots)).catch((e) => e);
    expect(err).toBeInstanceOf(JobFailed);
    expect(err.error.code).toBe('KMIG0204E');
    expect(ran).toEqual([]);
    expect(j.data.checkpoint!.slotWait).toBeUndefined();
    expect(j.data.checkpoint!.history.at(-1)).toMatchObject({ stage: 'connect', event: 'decision', detail: 'cancelled before the migration started' });
    expect(slots.held.get('src-uuid')!.has('j')).toBe(false);
  });
});

describe('JobSlots after the lock is lost', () => {
  it('stops renewing at once, so a lost job cannot bring back slots its new owner released', async () => {
    let renews = 0;
    const fake: Slots = {
      acquire: async () => ({ kind: 'acquired', alreadyHeld: false, over: null }),
      renew: async () => (renews++, true),
      release: async () => undefined,
    };
    const js = new JobSlots(fake, 'j', 10, silent);
    const req = job().data.request;
    await js.take('connect', req, { check: checked });
    await new Promise((r) => setTimeout(r, 45));
    expect(renews).toBeGreaterThanOrEqual(2);
    js.stop();
    const at = renews;
    await new Promise((r) => setTimeout(r, 60));
    expect(renews).toBe(at);
  });
});

describe('log lines about a migration', () => {
  it('carry its task id and VM, and the stage when a stage writes them', async () => {
    const lines: Record<string, unknown>[] = [];
    const capture = { info: (o: object) => lines.push({ ...o }), warn: (o: object) => lines.push({ ...o }), error: (o: object) => lines.push({ ...o }), debug: (o: object) => lines.push({ ...o }) };
    const transient = Object.assign(new Error('Connection refused'), { name: 'VirError', code: 38 });
    const st = stages(async (n) => (n === 'connect' ? Promise.reject(transient) : happy(n)), []);
    st.check = { ...st.check, run: async (ctx) => (ctx.log.info({ x: 1 }, 'from the stage'), { next: 'connect' }) };
    await runJob(job(0), { ...deps(st), log: capture }).catch(() => undefined);
    expect(lines).toContainEqual({ task: 'j', vm: 'g', stage: 'check', x: 1 });
    expect(lines.find((l) => l.action === 'retry')).toMatchObject({ task: 'j', vm: 'g', stage: 'connect' });
    expect(lines.every((l) => l.task === 'j' && l.vm === 'g')).toBe(true);
  });
});
