/**
 * What clients and log lines see of a libvirt URI with credentials: the
 * scheme, host and path, never the user, password or query values. The
 * redaction itself (a table), log lines through the service's own logger,
 * and tasks through a real API in this process (real Redis) whose
 * destination template carries credentials: the task answers, the listing,
 * the event stream and the series show none of them, while the job data the
 * workers run from keeps the real URI.
 */
import { Writable } from 'node:stream';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergePeers } from '../api/peer-policy.js';
import { hostOfUri } from '../api/task-index.js';
import { migrationError } from '../shared/errors.js';
import type { MigrationJobData } from '../shared/job.js';
import { createLogger } from '../shared/log.js';
import { redactDeep, redactText, redactUri } from '../shared/redact.js';
import { startInProc, type InProc } from './helpers/inproc.js';
import { api, TOKENS } from './helpers/service.js';

const DST_TEMPLATE = 'qemu+ssh://root:hunter2@{host}/system?keyfile=/etc/kvm-migrate/secret-key&no_verify=1';
const DST = DST_TEMPLATE.replace('{host}', 'host2');
const DST_SHOWN = 'qemu+ssh://[redacted]@host2/system?keyfile=[redacted]&no_verify=[redacted]';
/** What must never reach a client or a log line. */
const SECRETS = ['hunter2', 'root:', 'root@', 'secret-key', 'no_verify=1', TOKENS.operator, TOKENS.viewer];
const expectClean = (text: string, what: string) => {
  for (const s of SECRETS) expect(text, `${what} shows ${s}`).not.toContain(s);
};

describe('redactUri', () => {
  it.each([
    ['qemu+ssh://root:hunter2@host2/system?keyfile=/k', 'qemu+ssh://[redacted]@host2/system?keyfile=[redacted]'],
    ['qemu+ssh://root@host2/system', 'qemu+ssh://[redacted]@host2/system'],
    ['qemu+ssh://root:p%40ss@host2:2222/system', 'qemu+ssh://[redacted]@host2:2222/system'],
    ['qemu+ssh://root:p@ss@host2/system', 'qemu+ssh://[redacted]@host2/system'],
    ['qemu+libssh2://u:p@host2/system?known_hosts=/kh&sshauth=privkey&keyfile=/k', 'qemu+libssh2://[redacted]@host2/system?known_hosts=[redacted]&sshauth=[redacted]&keyfile=[redacted]'],
    ['qemu+tls://host2/system?pkipath=/etc/pki/kvm-migrate&no_verify=1', 'qemu+tls://host2/system?pkipath=[redacted]&no_verify=[redacted]'],
    ['qemu+tls://u:p@[fd00::2]:16514/system?authfile=/a', 'qemu+tls://[redacted]@[fd00::2]:16514/system?authfile=[redacted]'],
    ['qemu+tcp://host2/system', 'qemu+tcp://host2/system'],
    ['qemu+tcp://[fd00::2]/system', 'qemu+tcp://[fd00::2]/system'],
    ['qemu:///system', 'qemu:///system'],
    ['test:///default', 'test:///default'],
    ['rediss://:pw@redis.example:6380/2', 'rediss://[redacted]@redis.example:6380/2'],
    ['not a uri', 'not a uri'],
  ])('%s → %s', (uri, out) => {
    expect(redactUri(uri)).toBe(out);
    // The host stays, so host filters and the page's host column still work.
    if (uri.includes('://')) expect(hostOfUri(redactUri(uri))).toBe(hostOfUri(uri));
  });
});

describe('redactText', () => {
  it.each([
    ['a history detail', `connect done: destination ${DST} connected`, `connect done: destination ${DST_SHOWN} connected`],
    ['two URIs', `from qemu+ssh://a:b@src/system to ${DST}`, `from qemu+ssh://[redacted]@src/system to ${DST_SHOWN}`],
    ['a quoted URI', '"qemu+ssh://a:b@h/system"', '"qemu+ssh://[redacted]@h/system"'],
    ['a URI without credentials', 'nothing to hide: qemu+tcp://127.0.0.12/system', 'nothing to hide: qemu+tcp://127.0.0.12/system'],
    ['no text', '', ''],
  ])('%s', (_what, text, out) => {
    expect(redactText(text)).toBe(out);
  });

  it('redacts every string of a value, at any depth', () => {
    expect(redactDeep({ a: [{ b: `x ${DST}` }], n: 1 })).toEqual({ a: [{ b: `x ${DST_SHOWN}` }], n: 1 });
  });
});

describe('peers', () => {
  it("show the libvirt URI a migration to them takes without the template's credentials (GET /peers?verbose, viewers)", () => {
    const self = { hosts: ['me.example'], port: 8001 };
    const [peer] = mergePeers({ found: [], statics: ['host2'], self, defaultPort: 8001, uriTemplate: DST_TEMPLATE, now: Date.now() });
    expect(peer).toMatchObject({ host: 'host2', libvirt_uri: DST_SHOWN });
  });
});

describe('log lines', () => {
  const capture = () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        cb();
      },
    });
    return { log: createLogger('debug', 'test', sink), lines };
  };

  it('carry no credentials of a URI in a field, a nested field, an Error or the message', () => {
    const { log, lines } = capture();
    const reason = migrationError('DEST_UNREACHABLE', { uri: DST, detail: 'connection refused' }).message;
    log.warn({ task: 't1', err: reason }, 'stage failed');
    log.error({ err: new Error(`cannot open ${DST}`) }, 'unexpected error');
    log.info({ job: { request: { destinationUri: DST } } }, `opening ${DST}`);
    log.warn({ token: TOKENS.operator }, 'a token that slipped in');
    expect(lines).toHaveLength(4);
    for (const l of lines) expectClean(l, l);
    const [failed, unexpected, opening] = lines.map((l) => JSON.parse(l));
    expect(failed).toMatchObject({ level: 40, task: 't1', msg: 'stage failed' });
    expect(failed.err).toContain(`Cannot connect to the remote libvirt at ${DST_SHOWN}`);
    expect(unexpected.err.message).toBe(`cannot open ${DST_SHOWN}`);
    expect(unexpected.err.stack).toContain(`cannot open ${DST_SHOWN}`);
    expect(opening).toMatchObject({ msg: `opening ${DST_SHOWN}`, job: { request: { destinationUri: DST_SHOWN } } });
  });
});

describe('tasks through the API', () => {
  let svc: InProc;
  let conn: Redis;
  let queue: Queue<MigrationJobData>;
  let id: string;
  const asViewer = { token: TOKENS.viewer };

  beforeAll(async () => {
    svc = await startInProc({ KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE: DST_TEMPLATE });
    conn = new Redis(svc.config.redis.url, { maxRetriesPerRequest: null });
    queue = new Queue(svc.config.redis.queue, { connection: conn, prefix: svc.prefix });
  });
  afterAll(async () => {
    await queue?.close();
    conn?.disconnect();
    await svc?.close();
  });

  it('an enqueued task shows the destination URI redacted; the job keeps the real one', async () => {
    const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
    expect(r.status).toBe(202);
    expectClean(JSON.stringify(r.body), 'POST /vms/test/migrate');
    expect(r.body.destination).toEqual({ host: 'host2', uri: DST_SHOWN });
    id = r.body.id;
    const job = await queue.getJob(id);
    expect(job!.data.request.destinationUri).toBe(DST);
    const again = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: 'host2' });
    expect(again.status).toBe(409);
    expectClean(JSON.stringify(again.body), 'the 409 answer');
    expect(again.body.task.destination.uri).toBe(DST_SHOWN);
  });

  it('a failed task whose error and history quote the URI shows it redacted everywhere a viewer reads it', async () => {
    // What a worker leaves behind: a history naming the destination, an error quoting it, BullMQ's failure reason.
    const job = (await queue.getJob(id))!;
    await job.updateData({
      ...job.data,
      checkpoint: {
        step: 'done',
        results: {},
        history: [
          { at: new Date().toISOString(), stage: 'connect', event: 'done', detail: `destination ${DST} connected; persistent guest` },
          { at: new Date().toISOString(), stage: 'migrate', event: 'error', detail: `libvirt migration to ${DST} failed` },
        ],
        error: migrationError('DEST_UNREACHABLE', { uri: DST, detail: 'connection refused' }, { stage: 'migrate', uri: DST }).toJSON(),
      },
    });
    const worker = new Worker(svc.config.redis.queue, null, { connection: conn, prefix: svc.prefix, autorun: false });
    const taken = await worker.getNextJob('test-lock');
    expect(taken?.id).toBe(id);
    // As the worker fails a migration: for good, no retry.
    await taken!.moveToFailed(new UnrecoverableError(`cannot reach ${DST}`), 'test-lock', false);
    await worker.close();

    const one = await api(svc.url, 'GET', `/tasks/${id}`, undefined, asViewer);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ status: 'failed', target_uri: '/vms/test', destination: { host: 'host2', uri: DST_SHOWN }, error: { code: 'KCHVM0090E', details: { uri: DST_SHOWN } } });
    expect(one.body.message).toContain(DST_SHOWN);
    expect(one.body.history.map((h: { detail: string }) => h.detail)).toEqual([`destination ${DST_SHOWN} connected; persistent guest`, `libvirt migration to ${DST_SHOWN} failed`]);

    const reads: [string, string][] = [
      [`/tasks/${id}`, 'GET /tasks/:id'],
      ['/tasks', 'GET /tasks'],
      ['/tasks?host=host2', 'GET /tasks?host='],
      [`/tasks/${id}/series`, 'GET /tasks/:id/series'],
    ];
    for (const [path, what] of reads) {
      const res = await fetch(`${svc.url}${path}`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } });
      expect(res.status, what).toBe(200);
      expectClean(await res.text(), what);
    }
    const listed = await api(svc.url, 'GET', '/tasks?destination_host=host2', undefined, asViewer);
    expect(listed.body.map((t: { id: string }) => t.id)).toEqual([id]);

    // The stream of an ended task sends it once and ends.
    const stream = await fetch(`${svc.url}/tasks/${id}/events`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${TOKENS.viewer}` } });
    expect(stream.status).toBe(200);
    const events = await stream.text();
    expect(events).toContain(DST_SHOWN);
    expectClean(events, 'GET /tasks/:id/events');

    // Workers still run from the real URI.
    expect((await queue.getJob(id))!.data.request.destinationUri).toBe(DST);
    expectClean(svc.logs.join('\n'), "the API's log");
  });
});

describe('the precheck through the API', () => {
  it("shows the destination URI and the checks' reasons without the template's credentials", async () => {
    // Nothing listens on 127.0.0.99: the reachability check fails at once and its reason quotes the URI.
    const svc = await startInProc({ KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE: 'qemu+tcp://root:hunter2@{host}/system?keyfile=/etc/kvm-migrate/secret-key&no_verify=1' });
    try {
      const r = await api(svc.url, 'POST', '/vms/test/migrate', { remote_host: '127.0.0.99', dry_run: true });
      expect(r.status).toBe(422);
      expect(r.body.blockers.map((b: { code: string }) => b.code)).toContain('KCHVM0090E');
      expect(JSON.stringify(r.body)).toContain('qemu+tcp://[redacted]@127.0.0.99/system');
      expectClean(JSON.stringify(r.body), 'the precheck answer');
    } finally {
      await svc.close();
    }
  });
});
