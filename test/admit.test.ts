/**
 * Workers run only jobs the API could have made with their configuration:
 * the rule as a table, and a real BullMQ worker on real Redis given jobs
 * written straight into the queue (as a queue tool could): each foreign one
 * fails with KMIG0208E and libvirt is never opened, while a job the API
 * would make does reach libvirt.
 */
import { randomUUID } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../shared/config.js';
import type { MigrationJobData, MigrationRequest } from '../shared/job.js';
import type { Hypervisor } from '../shared/libvirt/types.js';
import { foreignRequest, refusal } from '../worker/admit.js';
import { ControlBus } from '../worker/control.js';
import { createMigrationWorker } from '../worker/worker.js';

const libvirt = { source_uri: 'qemu:///system', destination_uri_template: 'qemu+tcp://{host}/system' };
const request = (over: Partial<Record<keyof MigrationRequest, unknown>> = {}) => ({
  vm: 'lab-tiny',
  remoteHost: 'host2',
  sourceUri: 'qemu:///system',
  destinationUri: 'qemu+tcp://host2/system',
  requestedAt: '2026-01-01T00:00:00.000Z',
  bandwidth: 'unlimited',
  downtimeMs: 500,
  timeoutSeconds: 60,
  keepSourceDefinition: false,
  ...over,
});

describe('foreignRequest()', () => {
  it.each([
    ['what the API makes', request(), null],
    ['an IPv6 remote host, bracketed in the URI', request({ remoteHost: 'fd00::2', destinationUri: 'qemu+tcp://[fd00::2]/system' }), null],
    ['no request', undefined, 'it carries no request'],
    ['no VM', request({ vm: undefined }), 'it names no virtual machine'],
    ['another host as the source: its own API shares the queue', request({ sourceUri: 'qemu+tcp://host3/system' }), null],
    ['an IPv6 host as the source', request({ sourceUri: 'qemu+tcp://[fd00::3]/system' }), null],
    ['a source of another shape', request({ sourceUri: 'qemu+ssh://elsewhere/system' }), 'its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host'],
    ['libvirt ext transport as the source', request({ sourceUri: 'qemu+ext:///system?command=/usr/bin/id' }), 'its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host'],
    ['the template with a path for a host as the source', request({ sourceUri: 'qemu+tcp://host3/system?command=/usr/bin/id#/system' }), 'its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host'],
    ['the template with a user for a host as the source', request({ sourceUri: 'qemu+tcp://root@host3/system' }), 'its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host'],
    ['libvirt ext transport as the destination', request({ destinationUri: 'qemu+ext:///system?command=/usr/bin/id' }), 'its destination URI is not libvirt.destination_uri_template with its remote host'],
    ['another destination than its remote host', request({ destinationUri: 'qemu+tcp://host3/system' }), 'its destination URI is not libvirt.destination_uri_template with its remote host'],
    ['URI parameters in the remote host', request({ remoteHost: 'host2/system?command=/usr/bin/id#', destinationUri: 'qemu+tcp://host2/system?command=/usr/bin/id#/system' }), 'its remote host is not a host name or an IP address'],
    ['a user in the remote host', request({ remoteHost: 'root@host2', destinationUri: 'qemu+tcp://root@host2/system' }), 'its remote host is not a host name or an IP address'],
    ['a remote host that is not a string', request({ remoteHost: ['host2'], destinationUri: 'qemu+tcp://host2/system' }), 'its remote host is not a host name or an IP address'],
  ])('%s', (_what, r, why) => {
    expect(foreignRequest(r, libvirt)).toBe(why);
  });

  it('ends a refused job with KMIG0208E in its checkpoint, whatever stage the checkpoint claimed', () => {
    const now = new Date('2026-01-01T00:00:01Z');
    const data = { request: request({ sourceUri: 'qemu+ext:///system?command=/bin/sh' }), checkpoint: { step: 'migrate', results: {}, history: [], slotWait: { reason: 'x', since: '' } } } as unknown as MigrationJobData;
    const r = refusal(data, libvirt as Config['libvirt'], now)!;
    expect(r.error.code).toBe('KMIG0208E');
    expect(r.error.reason).toMatch(/^KMIG0208E: The migration job for lab-tiny was refused without contacting libvirt: its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host\./);
    expect(r.checkpoint).toEqual({ step: 'done', results: {}, error: r.error, history: [{ at: now.toISOString(), stage: 'check', event: 'error', detail: r.error.reason }] });
    expect(refusal({ request: request() } as MigrationJobData, libvirt as Config['libvirt'], now)).toBeNull();
  });
});

describe('a real worker', () => {
  let config: Config;
  let conn: Redis;
  let sub: Redis;
  let queue: Queue<MigrationJobData>;
  let worker: ReturnType<typeof createMigrationWorker>;
  const opened: string[] = [];
  // Records every URI libvirt would be asked to open, and opens nothing.
  const hypervisor: Hypervisor = { open: async (uri) => (opened.push(uri), Promise.reject(new Error('no libvirt in this test'))) };
  const silent = { info() {}, warn() {}, error() {}, debug() {} };

  beforeAll(async () => {
    config = loadConfig({ env: { KVM_MIGRATE_REDIS_URL: process.env.KVM_MIGRATE_REDIS_URL ?? 'redis://127.0.0.1:6379', KVM_MIGRATE_REDIS_PREFIX: `kmtest-${randomUUID().slice(0, 8)}`, KVM_MIGRATE_RETRY_ATTEMPTS: '1' } });
    conn = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    sub = conn.duplicate();
    const control = new ControlBus(sub, conn, config.redis.prefix);
    await control.start();
    queue = new Queue(config.redis.queue, { connection: conn, prefix: config.redis.prefix });
    worker = createMigrationWorker({ config, connection: conn, control, hypervisor, clock: { now: () => new Date() }, log: silent });
    void worker.run();
  });

  afterAll(async () => {
    await worker?.close();
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    sub?.disconnect();
    conn?.disconnect();
  });

  async function settled(job: Job<MigrationJobData>): Promise<Job<MigrationJobData>> {
    for (let i = 0; i < 200; i++) {
      const state = await queue.getJobState(job.id!);
      if (state === 'failed' || state === 'completed') return (await queue.getJob(job.id!))!;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`job ${job.id} did not end in 10 s`);
  }

  it('fails a foreign job with KMIG0208E and never opens libvirt, whatever its checkpoint claims', async () => {
    const forged: [string, unknown][] = [
      ['ext transport', { request: request({ destinationUri: 'qemu+ext:///system?command=/usr/bin/id' }) }],
      ['another source', { request: request({ sourceUri: 'qemu+ssh://root@elsewhere/system' }) }],
      ['checks skipped', { request: request({ destinationUri: 'qemu+ext:///system?command=/usr/bin/id' }), checkpoint: { step: 'migrate', results: { check: {} }, history: [] } }],
      ['no request at all', {}],
    ];
    for (const [what, data] of forged) {
      const job = await settled(await queue.add('migrate', data as MigrationJobData, { attempts: 1 }));
      expect(job.failedReason, what).toMatch(/^KMIG0208E: /);
      expect(job.data.checkpoint, what).toMatchObject({ step: 'done', error: { code: 'KMIG0208E' } });
    }
    expect(opened).toEqual([]);
  });

  it('runs a job the API would make: libvirt is asked for the configured source', async () => {
    const job = await settled(await queue.add('migrate', { request: request() as MigrationRequest }, { attempts: 1 }));
    expect(job.failedReason).not.toMatch(/KMIG0208E/);
    expect(opened).toContain('qemu:///system');
  });
});
