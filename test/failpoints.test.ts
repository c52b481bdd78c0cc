/** The fault suite's failpoints: parsed from one variable, and hit exactly where the runner says. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../shared/config.js';
import type { MigrationJobData } from '../shared/job.js';
import { STAGES, type StageName } from '../shared/stage.js';
import { failpointsFrom } from '../worker/failpoints.js';
import { runJob, type RunnableJob } from '../worker/runner.js';
import type { Stage } from '../worker/stages/stage.js';

describe('failpointsFrom()', () => {
  it('is off without a spec and fires only at the places named', () => {
    expect(failpointsFrom(undefined)).toBeUndefined();
    expect(failpointsFrom(' , ')).toBeUndefined();
    const died: string[] = [];
    let at = '';
    const fp = failpointsFrom('migrate:done, finish:start', () => died.push(at))!;
    for (const p of ['check:start', 'migrate:start', 'migrate:done', 'finish:start', 'finish:done']) {
      at = p;
      fp(p);
    }
    expect(died).toEqual(['migrate:done', 'finish:start']);
  });
});

describe('the runner at its failpoints', () => {
  it('calls "stage:start" after the start is saved and "stage:done" before the result is saved', async () => {
    const events: string[] = [];
    let data: MigrationJobData = {
      request: { vm: 'g', remoteHost: 'h', sourceUri: 's', destinationUri: 'd', requestedAt: '', bandwidth: 'unlimited', downtimeMs: 500, timeoutSeconds: 10, keepSourceDefinition: false },
    };
    const job: RunnableJob = {
      id: 'j',
      get data() {
        return data;
      },
      attemptsMade: 0,
      maxAttempts: 1,
      lastProgress: null,
      async updateData(d) {
        data = d;
        const last = d.checkpoint!.history.at(-1)!;
        events.push(`saved ${last.stage}:${last.event}`);
      },
      async updateProgress() {},
    };
    const next = { check: 'connect', connect: 'prepare', prepare: 'migrate', migrate: 'finish', finish: 'done', recover: 'done' } as const;
    const stages = Object.fromEntries(STAGES.map((name): [StageName, Stage] => [name, { name, deadlineMs: () => 1000, run: async () => (events.push(`ran ${name}`), { next: next[name] }) }])) as Record<StageName, Stage>;
    await runJob(job, {
      stages,
      hypervisor: { open: () => Promise.reject(new Error('none')) },
      config: loadConfig(),
      clock: { now: () => new Date() },
      log: { info() {}, warn() {}, error() {}, debug() {} },
      failpoint: (p) => events.push(`failpoint ${p}`),
    });
    const migrate = events.filter((e) => e.includes('migrate'));
    expect(migrate).toEqual(['saved migrate:start', 'failpoint migrate:start', 'ran migrate', 'failpoint migrate:done', 'saved migrate:done']);
  });
});
