/**
 * The command-line client (bin/kvm-migrate.ts, cli/) against a fake API: a
 * node:http server in this file answers as the contract says. The CLI runs as
 * a child process for what a user sees (arguments, exit codes, output, the
 * event stream and the polling fallback); its pure parts run in-process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bar, duration, progressLine } from '../cli/format.js';
import { COMMANDS } from '../cli/help.js';
import { Api } from '../cli/http.js';
import { main } from '../cli/main.js';
import { follow } from '../cli/follow.js';
import { parseCommandLine, UsageError } from '../cli/options.js';
import { SseParser } from '../cli/sse.js';
import type { Task } from '../cli/types.js';
import { WatchView } from '../cli/view.js';

const ENTRY = fileURLToPath(new URL('../bin/kvm-migrate.ts', import.meta.url));
const SHIM = fileURLToPath(new URL('../bin/kvm-migrate', import.meta.url));
const ID = '4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10';

// ---------- fake API ----------

interface Req {
  method: string;
  url: string;
  body: string;
  at: number;
  auth?: string | undefined;
}
type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>;

// Tests run concurrently: every server stays up until the file is done.
const servers: { close(): void }[] = [];
afterAll(() => {
  for (const s of servers.splice(0)) s.close();
});

/** Routes are "METHOD /path?query"; anything else answers like the real API's unknown route. */
async function fakeApi(routes: Record<string, Handler>) {
  const requests: Req[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, body, at: Date.now(), auth: req.headers.authorization });
      const h = routes[`${req.method} ${req.url}`];
      if (h) return void Promise.resolve(h(req, res, body)).catch(() => res.destroy());
      json(res, 404, { code: 'KMIG0008E', reason: `KMIG0008E: No such resource: ${req.method} ${req.url}`, status: 404 });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = () => {
    server.close();
    server.closeAllConnections();
  };
  servers.push({ close });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, close };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}
const err = (status: number, code: string, text: string, extra: object = {}) => ({ code, reason: `${code}: ${text}`, status, ...extra });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function task(over: Partial<Task> = {}): Task {
  return {
    id: ID,
    status: 'running',
    message: 'checking whether web1 can move to host2',
    target_uri: '/vms/web1',
    stage: 'check',
    vm: 'web1',
    source: { uri: 'qemu+tcp://host1/system' },
    destination: { host: 'host2', uri: 'qemu+tcp://host2/system' },
    created_at: '2025-01-01T10:00:00.000Z',
    started_at: '2025-01-01T10:00:01.000Z',
    finished_at: null,
    progress: null,
    error: null,
    history: [],
    ...over,
  };
}
const copying = (percent: number) =>
  task({ stage: 'migrate', message: `copie mémoire ${percent}% — iteration 2`, progress: { percent, memoryBps: 48 * 1048576, iteration: 2, etaSeconds: 65, dataRemaining: 1 } });
const FINISHED = task({ status: 'finished', stage: 'finish', message: 'Migrate finished', finished_at: '2025-01-01T10:01:03.000Z', progress: { percent: 100, downtimeMs: 42 } });
const FAILED = task({
  status: 'failed',
  stage: 'recover',
  message: 'KCHVM0058E: Failed to migrate virtual machine web1 due error: client socket is closed',
  error: { code: 'KCHVM0058E', reason: 'KCHVM0058E: Failed to migrate virtual machine web1 due error: client socket is closed' },
  finished_at: '2025-01-01T10:00:30.000Z',
});
const KILLED = task({ status: 'killed', stage: 'recover', error: { code: 'KMIG0204E', reason: 'KMIG0204E: Migration of web1 was cancelled' }, finished_at: '2025-01-01T10:00:20.000Z' });

const event = (t: Task) => `event: task\ndata: ${JSON.stringify(t)}\n\n`;

/** An event stream of these states, cut into `chunk`-byte pieces (splitting lines and UTF-8 characters). */
function sse(states: Task[], opts: { chunk?: number; gapMs?: number; crlf?: boolean; end?: boolean } = {}): Handler {
  return async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.write(': hello\n\n');
    let text = states.map(event).join('');
    if (opts.crlf) text = text.replace(/\n/g, '\r\n');
    const bytes = Buffer.from(text);
    const size = opts.chunk ?? bytes.length;
    for (let i = 0; i < bytes.length; i += size) {
      res.write(bytes.subarray(i, i + size));
      await sleep(opts.gapMs ?? 5);
    }
    if (opts.end !== false) res.end();
  };
}

// ---------- running the CLI ----------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { env?: Record<string, string>; onStdout?: (text: string, child: ReturnType<typeof spawn>) => void; bin?: string; cwd?: string } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  if (!opts.env?.KVM_MIGRATE_API) delete env.KVM_MIGRATE_API;
  delete env.NO_COLOR;
  const child = opts.bin ? spawn(opts.bin, args, { env, cwd: opts.cwd }) : spawn(process.execPath, ['--import', 'tsx', ENTRY, ...args], { env, cwd: opts.cwd });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => {
    stdout += b;
    opts.onStdout?.(stdout, child);
  });
  child.stderr!.on('data', (b) => (stderr += b));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** The same entry in-process, for what needs no process of its own (help texts, usage errors). */
async function inProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) }, env });
  return { code, stdout, stderr };
}

// ---------- help, version, usage errors ----------

describe.concurrent('kvm-migrate: help and usage', () => {
  it('--help describes every command and every exit code', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: kvm-migrate \[--api URL\] \[--json\] <command> \[options\]/);
    for (const c of Object.keys(COMMANDS)) expect(r.stdout).toContain(`\n  ${c} `);
    for (const code of ['0', '1', '2', '3', '4', '130']) expect(r.stdout).toMatch(new RegExp(`\\n  ${code} +\\S`));
    expect(r.stdout).toContain('KVM_MIGRATE_API');
  });

  it.each(Object.keys(COMMANDS))('%s --help (and help <command>) describes the command, in 80 columns', async (c) => {
    const [a, b] = await Promise.all([inProcess([c, '--help']), inProcess(['help', c])]);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(new RegExp(`^Usage: kvm-migrate ${c}`));
    expect(a.stdout).toContain('Exit codes:');
    expect(b.stdout).toBe(a.stdout);
    for (const line of a.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
  });

  it('--version prints the package version, also through the bin/kvm-migrate shim from another directory', async () => {
    const [direct, shim] = await Promise.all([cli(['--version']), cli(['--version'], { bin: SHIM, cwd: tmpdir() })]);
    expect(direct).toEqual({ code: 0, stdout: 'kvm-migrate 0.1.0\n', stderr: '' });
    expect(shim).toEqual(direct);
    const bad = await cli(['frobnicate'], { bin: SHIM, cwd: tmpdir() });
    expect(bad.code).toBe(2);
  });

  it.each([
    [[], /no command given/],
    [['migrat', 'web1', 'host2'], /no command 'migrat' \(did you mean 'migrate'\?\)/],
    [['migrate', 'web1'], /missing <remote_host>/],
    [['status', ID, 'extra'], /too many arguments: 'extra'/],
    [['migrate', 'web1', 'host2', '--bandwidth', '0'], /--bandwidth must be a whole number of MiB\/s \(1 or more\) or unlimited, not '0'/],
    [['migrate', 'web1', 'host2', '--bandwidth', '1.5'], /--bandwidth must be/],
    [['migrate', 'web1', 'host2', '--max-downtime', '50'], /--max-downtime must be a whole number of milliseconds, 100 or more/],
    [['migrate', 'web1', 'host2', '--deadline', 'soon'], /--deadline must be/],
    [['migrate', 'web1', 'host2', '--deadline-action', 'explode'], /--deadline-action must be abort or pause, not 'explode'/],
    [['migrate', 'web1', 'host2', '--compression', 'zstd'], /--compression must be xbzrle or none/],
    [['migrate', 'web1', 'host2', '--auto-converge', '--no-auto-converge'], /not both/],
    [['status', ID, '--watch'], /option --watch does not apply to 'status'/],
    [['tune', ID], /tune needs --bandwidth or --max-downtime/],
    [['list', '--frob'], /unknown option '--frob'/],
    [['list', '--api', 'ftp://x'], /--api must be an http:\/\/ or https:\/\/ URL/],
    [['list', '--api', 'not a url'], /--api must be a URL/],
  ])('usage error %j: exit 2 and nothing sent', async (args, message) => {
    const api = await fakeApi({});
    const r = await inProcess([...args, ...(args.includes('--api') ? [] : ['--api', api.url])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/See: kvm-migrate( \w+)? --help/);
    expect(r.stdout).toBe('');
    expect(api.requests).toEqual([]);
  });

  it('a usage error from the command line is exit 2 of the process, with the usage on stderr', async () => {
    const r = await cli(['migrate', 'web1', '--watch']);
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'kvm-migrate: missing <remote_host>\nUsage: kvm-migrate migrate <vm> <remote_host> [options]\nSee: kvm-migrate migrate --help\n' });
  });

  it('parses options before or after the command and reads KVM_MIGRATE_API', () => {
    const p = parseCommandLine(['--json', '--api', 'http://h:1/base/', 'migrate', 'web1', 'host2', '--bandwidth=unlimited', '--auto-converge'], {});
    expect(p).toEqual({
      kind: 'run',
      command: 'migrate',
      args: ['web1', 'host2'],
      api: 'http://h:1/base',
      json: true,
      options: { watch: false, vm: false, all: false, bandwidth: 'unlimited', autoConverge: true },
    });
    expect(parseCommandLine(['list'], { KVM_MIGRATE_API: 'http://api:9' })).toMatchObject({ api: 'http://api:9' });
    expect(parseCommandLine(['list'], {})).toMatchObject({ api: 'http://127.0.0.1:8010' });
    expect(parseCommandLine(['migrate', '--', '-odd', 'host2'], {})).toMatchObject({ args: ['-odd', 'host2'] });
    expect(() => parseCommandLine(['list'], { KVM_MIGRATE_API: 'nope' })).toThrow(UsageError);
  });
});

// ---------- requests and answers ----------

describe.concurrent('kvm-migrate: commands against the API', () => {
  it('sends the token from KVM_MIGRATE_TOKEN or --token-file on every request, the event stream too, and explains a 401', async () => {
    const api = await fakeApi({
      [`GET /tasks/${ID}`]: (_q, res) => json(res, 200, FINISHED),
      [`GET /tasks/${ID}/events`]: sse([FINISHED]),
      'GET /tasks': (_q, res) => json(res, 401, err(401, 'KMIG0020E', 'Authentication required: the token is not valid')),
    });
    const fromEnv = await cli(['watch', ID, '--api', api.url], { env: { KVM_MIGRATE_TOKEN: 'env-token-0123456789' } });
    expect(fromEnv.code).toBe(0);
    expect(api.requests.map((r) => r.auth)).toEqual(api.requests.map(() => 'Bearer env-token-0123456789'));
    expect(api.requests.some((r) => r.url.endsWith('/events'))).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-cli-'));
    writeFileSync(join(dir, 'token'), 'file-token-0123456789\n');
    const n = api.requests.length;
    const fromFile = await cli(['status', ID, '--api', api.url, '--token-file', join(dir, 'token')], { env: { KVM_MIGRATE_TOKEN: 'env-token-0123456789' } });
    expect(fromFile.code).toBe(0);
    expect(api.requests[n]!.auth).toBe('Bearer file-token-0123456789');
    const refused = await cli(['list', '--api', api.url]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('KMIG0020E');
    expect(refused.stderr).toContain('KVM_MIGRATE_TOKEN');
    const missing = await cli(['list', '--api', api.url, '--token-file', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
  });

  it('migrate sends the options as the body and prints the accepted task; --json prints it raw', async () => {
    const api = await fakeApi({ 'POST /vms/web%201/migrate': (_q, res) => json(res, 202, task({ vm: 'web 1' }), { location: `/tasks/${ID}` }) });
    const r = await cli(['migrate', 'web 1', 'host2', '--api', api.url, '--bandwidth', '200', '--max-downtime', '300', '--deadline', '600', '--deadline-action', 'pause', '--auto-converge', '--compression', 'xbzrle']);
    expect(r.code).toBe(0);
    expect(JSON.parse(api.requests[0]!.body)).toEqual({ remote_host: 'host2', bandwidth: 200, max_downtime: 300, deadline: 600, deadline_action: 'pause', auto_converge: true, compression: 'xbzrle' });
    expect(r.stdout).toContain(`accepted: task ${ID}`);
    expect(r.stdout).toContain(`kvm-migrate watch ${ID}`);

    const j = await cli(['migrate', 'web 1', 'host2', '--json', '--bandwidth', 'unlimited', '--no-auto-converge'], { env: { KVM_MIGRATE_API: api.url } });
    expect(j.code).toBe(0);
    expect(JSON.parse(api.requests[1]!.body)).toEqual({ remote_host: 'host2', bandwidth: 'unlimited', auto_converge: false });
    expect(JSON.parse(j.stdout)).toEqual(task({ vm: 'web 1' }));
  });

  it('migrate refused: 409 names the running task (exit 4), 400 says what is wrong, 503 is exit 3', async () => {
    let answer: [number, object] = [409, err(409, 'KMIG0003E', `Virtual machine web1 is already being migrated by task ${ID}`, { task: copying(40) })];
    const api = await fakeApi({ 'POST /vms/web1/migrate': (_q, res) => json(res, ...answer) });
    const busy = await cli(['migrate', 'web1', 'host2', '--api', api.url, '--watch']);
    expect(busy.code).toBe(4);
    expect(busy.stderr).toContain('KMIG0003E');
    expect(busy.stderr).toContain(`kvm-migrate watch ${ID}`);
    expect(busy.stderr).toContain(`kvm-migrate cancel ${ID}`);
    const busyJson = await cli(['migrate', 'web1', 'host2', '--api', api.url, '--json']);
    expect(JSON.parse(busyJson.stdout)).toMatchObject({ code: 'KMIG0003E', task: { id: ID } });

    answer = [400, err(400, 'KMIG0001E', "Invalid request: unknown property 'compression'; allowed: remote_host, dry_run")];
    const old = await cli(['migrate', 'web1', 'host2', '--api', api.url, '--compression', 'none']);
    expect(old.code).toBe(4);
    expect(old.stderr).toMatch(/unknown property 'compression'.*\n.*older than this client/);

    answer = [503, err(503, 'KMIG0006E', 'The migration queue (Redis) cannot be reached right now: ECONNREFUSED')];
    const down = await cli(['migrate', 'web1', 'host2', '--api', api.url]);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('KMIG0006E');
  });

  it('an unreachable API is exit 3 with what to check', async () => {
    const api = await fakeApi({});
    api.close();
    await sleep(50);
    const r = await cli(['status', ID, '--api', api.url]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cannot reach the kvm-migrate API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\).*--api URL or KVM_MIGRATE_API/);
  });

  it('precheck: ready is exit 0; blockers are exit 4, each printed with its code', async () => {
    const checks = [
      { check: 'destination_reachable', ok: true, blockers: [] },
      { check: 'no_host_devices', ok: false, blockers: [{ code: 'KMIG0101E', reason: 'KMIG0101E: Guest web1 has host devices passed through (0000:01:00.0); detach them before migrating' }] },
      { check: 'destination_memory', ok: false, blockers: [{ code: 'KMIG0107E', reason: 'KMIG0107E: The destination has 100 MiB free, the guest needs 2048 MiB' }] },
    ];
    let ready = true;
    const api = await fakeApi({
      'POST /vms/web1/migrate': (_q, res) =>
        ready
          ? json(res, 200, { ready: true, vm: 'web1', remote_host: 'host2', destination_uri: 'qemu+tcp://host2/system', checks: [checks[0]] })
          : json(res, 422, err(422, 'KMIG0100E', 'Virtual machine web1 cannot be migrated to host2: 2 blocker(s)', { ready: false, blockers: checks.flatMap((c) => c.blockers), checks })),
    });
    const ok = await cli(['precheck', 'web1', 'host2', '--api', api.url]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(api.requests[0]!.body)).toEqual({ remote_host: 'host2', dry_run: true });
    expect(ok.stdout).toMatch(/^Ready: web1 can migrate to host2 \(qemu\+tcp:\/\/host2\/system\); all 1 checks passed\./);
    ready = false;
    const blocked = await cli(['precheck', 'web1', 'host2', '--api', api.url]);
    expect(blocked.code).toBe(4);
    expect(blocked.stdout).toMatch(/KMIG0101E {2}Guest web1 has host devices passed through/);
    expect(blocked.stdout).toMatch(/KMIG0107E {2}The destination has 100 MiB free/);
    expect(blocked.stdout).toMatch(/BLOCKED {2}no_host_devices/);
    const raw = await cli(['precheck', 'web1', 'host2', '--api', api.url, '--json']);
    expect(raw.code).toBe(4);
    expect(JSON.parse(raw.stdout).blockers).toHaveLength(2);
  });

  it('status shows the task; its exit code says whether it failed', async () => {
    let t: Task = { ...copying(62), policy: { bandwidth: 'unlimited', max_downtime: 500, deadline: 600, in_force: { bandwidth: 'unlimited', max_downtime: 500, operator_tuned: false } } };
    const api = await fakeApi({ [`GET /tasks/${ID}`]: (_q, res) => json(res, 200, t), 'GET /tasks/nope': (_q, res) => json(res, 404, err(404, 'KMIG0004E', 'Task nope does not exist')) });
    const running = await cli(['status', ID, '--api', api.url]);
    expect(running.code).toBe(0);
    expect(running.stdout).toMatch(new RegExp(`^Task ${ID}  running\\n`));
    expect(running.stdout).toMatch(/progress +\[█+░+\] 62%/);
    expect(running.stdout).toMatch(/rate +48\.0 MiB\/s, iteration 2/);
    expect(running.stdout).toMatch(/\n {2}policy +bandwidth unlimited, max_downtime 500 ms, deadline 600 s\n {2}in force +bandwidth unlimited, max_downtime 500 ms, operator_tuned false\n/);
    t = { ...FAILED, history: [{ at: '2025-01-01T10:00:02.000Z', stage: 'check', event: 'done', detail: '9 checks passed' }] };
    const failed = await cli(['status', ID, '--api', api.url]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/error +KCHVM0058E: Failed to migrate/);
    expect(failed.stdout).toMatch(/History:\n {2}2025-01-01T10:00:02Z {2}check {2}done +9 checks passed\n$/);
    const raw = await cli(['status', ID, '--api', api.url, '--json']);
    expect(JSON.parse(raw.stdout)).toEqual(t);
    const missing = await cli(['status', 'nope', '--api', api.url]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('KMIG0004E: Task nope does not exist');
  });

  it('list passes --status to the API and prints a table; --json the raw array', async () => {
    const api = await fakeApi({
      'GET /tasks?status=failed%7Ckilled': (_q, res) => json(res, 200, [FAILED, { ...KILLED, id: 'b2' }]),
      'GET /tasks': (_q, res) => json(res, 200, []),
    });
    const r = await cli(['list', '--status', 'failed|killed', '--api', api.url]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +STATUS +STAGE +PROGRESS +VM +TO +CREATED$/);
    expect(lines[1]).toMatch(new RegExp(`^${ID}  failed +recover +-- +web1 +host2 +2025-01-01T10:00:00Z$`));
    expect(lines[2]).toMatch(/^b2 +killed/);
    const raw = await cli(['list', '--status', 'failed|killed', '--json', '--api', api.url]);
    expect(JSON.parse(raw.stdout)).toHaveLength(2);
    expect((await cli(['list', '--api', api.url])).stdout).toBe('No tasks.\n');
  });

  it('list shows the newest page and says how to see more; --all follows the Link header to the last page', async () => {
    const next = '/tasks?limit=100&cursor=abc';
    const api = await fakeApi({
      'GET /tasks': (_q, res) => json(res, 200, [FAILED], { link: `<${next}>; rel="next"`, 'x-next-cursor': 'abc' }),
      [`GET ${next}`]: (_q, res) => json(res, 200, [{ ...KILLED, id: 'b2' }]),
    });
    const first = await cli(['list', '--api', api.url]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`^${ID}  failed`, "m"));
    expect(first.stdout).not.toMatch(/^b2 /m);
    expect(first.stdout.trimEnd().split('\n').at(-1)).toBe('(the newest 1; kvm-migrate list --all for every task)');
    const every = await cli(['list', '--all', '--api', api.url]);
    expect(every.stdout).toMatch(/^b2 +killed/m);
    expect(every.stdout).not.toMatch(/--all for every task/);
    expect(api.requests.map((r) => r.url)).toEqual(['/tasks', '/tasks', next]);
    const raw = await cli(['list', '--all', '--json', '--api', api.url]);
    expect((JSON.parse(raw.stdout) as { id: string }[]).map((t) => t.id)).toEqual([ID, 'b2']);
  });

  it('list --status goes on past pages the filter left empty (the API links on) to the first that holds tasks, and says when none did', async () => {
    const page = (n: number) => `/tasks?status=failed&cursor=c${n}`;
    const linked = (n: number) => ({ link: `<${page(n)}>; rel="next"`, 'x-next-cursor': `c${n}` });
    // Pages 1 and 2 empty, 3 holds a match, 4 another.
    const some = await fakeApi({
      'GET /tasks?status=failed': (_q, res) => json(res, 200, [], linked(2)),
      [`GET ${page(2)}`]: (_q, res) => json(res, 200, [], linked(3)),
      [`GET ${page(3)}`]: (_q, res) => json(res, 200, [FAILED], linked(4)),
      [`GET ${page(4)}`]: (_q, res) => json(res, 200, [{ ...FAILED, id: 'b4' }]),
    });
    const r = await cli(['list', '--status', 'failed', '--api', some.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${ID}  failed`, 'm'));
    expect(r.stdout).not.toMatch(/^b4 /m);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('(the newest 1; kvm-migrate list --all for every task)');
    expect(some.requests.map((q) => q.url)).toEqual(['/tasks?status=failed', page(2), page(3)]);
    expect(JSON.parse((await cli(['list', '--status', 'failed', '--json', '--api', some.url])).stdout)).toEqual([FAILED]);

    // Empty pages that end: no match at all.
    const none = await fakeApi({
      'GET /tasks?status=failed': (_q, res) => json(res, 200, [], linked(2)),
      [`GET ${page(2)}`]: (_q, res) => json(res, 200, []),
    });
    expect((await cli(['list', '--status', 'failed', '--api', none.url])).stdout).toBe("No task has a status matching 'failed'.\n");

    // Empty pages that go on and on: at most 50 requests, then say so and how to look further.
    const routes: Record<string, Handler> = { 'GET /tasks?status=failed': (_q, res) => json(res, 200, [], linked(2)) };
    for (let n = 2; n <= 80; n++) routes[`GET ${page(n)}`] = (_q, res) => json(res, 200, [], linked(n + 1));
    const endless = await fakeApi(routes);
    const gaveUp = await cli(['list', '--status', 'failed', '--api', endless.url]);
    expect(gaveUp.code).toBe(0);
    expect(endless.requests).toHaveLength(50);
    expect(gaveUp.stdout).toBe("No task has a status matching 'failed' among the newest the API examined in 50 pages; kvm-migrate list --all --status 'failed' looks through every task.\n");
  });

  it('cancel: a task id is DELETE /tasks/:id, a VM name POST /vms/:name/migrate_cancel; refusals are exit 4', async () => {
    const api = await fakeApi({
      [`DELETE /tasks/${ID}`]: (_q, res) => json(res, 202, copying(50)),
      'POST /vms/web1/migrate_cancel': (_q, res) => json(res, 202, copying(50)),
      'POST /vms/idle/migrate_cancel': (_q, res) => json(res, 404, err(404, 'KMIG0011E', 'Virtual machine idle has no queued or running migration')),
      'POST /vms/queued/migrate_cancel': (_q, res) => json(res, 200, { ...KILLED, vm: 'queued' }),
      [`POST /vms/${ID}/migrate_cancel`]: (_q, res) => json(res, 202, copying(50)),
      'DELETE /tasks/00000000-0000-4000-8000-000000000000': (_q, res) => json(res, 409, err(409, 'KMIG0010E', 'Task 00000000-0000-4000-8000-000000000000 already ended (finished); there is nothing to cancel')),
      'DELETE /tasks/11111111-1111-4111-8111-111111111111': (_q, res) => json(res, 404, err(404, 'KMIG0004E', 'Task 11111111-1111-4111-8111-111111111111 does not exist')),
    });
    const byId = await cli(['cancel', ID, '--api', api.url]);
    expect(byId.code).toBe(0);
    expect(byId.stdout).toContain(`Cancel requested for task ${ID} (web1 to host2)`);
    const byVm = await cli(['cancel', 'web1', '--api', api.url, '--json']);
    expect(byVm.code).toBe(0);
    expect(JSON.parse(byVm.stdout).id).toBe(ID);
    const forced = await cli(['cancel', '--vm', ID, '--api', api.url]);
    expect(forced.code).toBe(0);
    expect(api.requests.map((q) => `${q.method} ${q.url}`)).toEqual([`DELETE /tasks/${ID}`, 'POST /vms/web1/migrate_cancel', `POST /vms/${ID}/migrate_cancel`]);
    const none = await cli(['cancel', 'idle', '--api', api.url]);
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/KMIG0011E: Virtual machine idle has no queued or running migration\n.*kvm-migrate list --status running/);
    const queued = await cli(['cancel', 'queued', '--api', api.url]);
    expect(queued).toMatchObject({ code: 0, stdout: `Cancelled task ${ID} (queued to host2) before it started: the task is killed.\n` });
    const ended = await cli(['cancel', '00000000-0000-4000-8000-000000000000', '--api', api.url]);
    expect(ended.code).toBe(4);
    expect(ended.stderr).toMatch(/KMIG0010E: .*already ended \(finished\); there is nothing to cancel\nIts outcome: kvm-migrate status 0{8}-/);
    const unknown = await cli(['cancel', '11111111-1111-4111-8111-111111111111', '--api', api.url]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/KMIG0004E.*\nIf 1{8}-.* is a VM name, run: kvm-migrate cancel --vm 1{8}-/);
  });

  it('tune sends PATCH /tasks/:id with the new values and shows the limits in force', async () => {
    const policy = { bandwidth: 64, max_downtime: 500, deadline: 21600, deadline_action: 'abort', auto_converge: false, compression: 'none' };
    const api = await fakeApi({
      [`PATCH /tasks/${ID}`]: (_q, res) => json(res, 200, { ...copying(70), policy: { ...policy, in_force: { bandwidth: 'unlimited', max_downtime: 2000, operator_tuned: true } } }),
      'PATCH /tasks/queued': (_q, res) => json(res, 202, { ...task({ id: 'queued' }), policy: { ...policy, in_force: null } }),
    });
    const r = await cli(['tune', ID, '--bandwidth', 'unlimited', '--max-downtime', '2000', '--api', api.url]);
    expect(r.code).toBe(0);
    expect(JSON.parse(api.requests[0]!.body)).toEqual({ bandwidth: 'unlimited', max_downtime: 2000 });
    expect(r.stdout).toBe(`Task ${ID} tuned: bandwidth unlimited, max downtime 2000 ms.\nIn force: bandwidth unlimited, max_downtime 2000 ms, operator_tuned true\n`);
    const later = await cli(['tune', 'queued', '--bandwidth', '32', '--api', api.url]);
    expect(later.code).toBe(0);
    expect(later.stdout).toBe('Task queued: asked for bandwidth 32 MiB/s; not in force yet (it applies once the copy runs).\n');
  });
});

// ---------- following a task ----------

describe.concurrent('kvm-migrate: watching', () => {
  const states = [task(), copying(10), copying(62), copying(62), FINISHED];

  it('watch reads the event stream (cut anywhere, CRLF too) and prints one line per change', async () => {
    for (const crlf of [false, true]) {
      const api = await fakeApi({ [`GET /tasks/${ID}/events`]: sse(states, { chunk: 7, gapMs: 1, crlf }) });
      const r = await cli(['watch', ID, '--api', api.url]);
      expect(r.code).toBe(0);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines).toEqual([
        'check       --  - checking whether web1 can move to host2',
        'migrate    10%  48.0 MiB/s  iteration 2  ETA 1m05s  - copie mémoire 10% — iteration 2',
        'migrate    62%  48.0 MiB/s  iteration 2  ETA 1m05s  - copie mémoire 62% — iteration 2',
        'finished  100%  - Migrate finished',
        'Migration of web1 to host2 finished in 1m02s (downtime 42 ms).',
      ]);
      expect(api.requests.map((q) => q.url)).toEqual([`/tasks/${ID}/events`]);
    }
  });

  it('watch ends with exit 1 and the error code and reason when the task failed or was killed', async () => {
    const api = await fakeApi({
      [`GET /tasks/${ID}/events`]: sse([copying(30), FAILED]),
      'GET /tasks/k1/events': sse([{ ...KILLED, id: 'k1' }]),
    });
    const failed = await cli(['watch', ID, '--api', api.url]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('Migration of web1 to host2 failed: KCHVM0058E: Failed to migrate virtual machine web1 due error: client socket is closed');
    expect(failed.stdout).toContain(`kvm-migrate status ${ID}`);
    const killed = await cli(['watch', 'k1', '--api', api.url]);
    expect(killed.code).toBe(1);
    expect(killed.stdout).toContain('was cancelled (task killed): KMIG0204E: Migration of web1 was cancelled');
  });

  it('--json prints each distinct task state as one JSON line, nothing else', async () => {
    const api = await fakeApi({ [`GET /tasks/${ID}/events`]: sse(states, { chunk: 3, gapMs: 0 }) });
    const r = await cli(['watch', ID, '--json', '--api', api.url]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual([task(), copying(10), copying(62), FINISHED]);
  });

  it('migrate --watch follows the accepted task to its end', async () => {
    const api = await fakeApi({
      'POST /vms/web1/migrate': (_q, res) => json(res, 202, task(), { location: `/tasks/${ID}` }),
      [`GET /tasks/${ID}/events`]: sse([task(), copying(50), FAILED]),
    });
    const r = await cli(['migrate', 'web1', 'host2', '--watch', '--json', '--api', api.url]);
    expect(r.code).toBe(1);
    const seen = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).status);
    expect(seen).toEqual(['running', 'running', 'failed']);
  });

  it.each([
    ['404 (a service without the stream)', (_q: IncomingMessage, res: ServerResponse) => json(res, 404, err(404, 'KMIG0008E', 'No such resource'))],
    ['405', (_q: IncomingMessage, res: ServerResponse) => json(res, 405, err(405, 'KMIG0001E', 'Method not allowed'))],
    ['200 that is not an event stream', (_q: IncomingMessage, res: ServerResponse) => json(res, 200, task())],
    ['a stream that breaks after one event', (async (_q: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event(copying(20)));
      await sleep(50);
      res.destroy();
    }) as Handler],
    ['a stream that ends before the task does', sse([copying(20)])],
  ])('falls back to polling every 500 ms on %s', async (_name, eventsHandler) => {
    let polls = 0;
    const seq = [copying(20), copying(40), FINISHED];
    const api = await fakeApi({
      [`GET /tasks/${ID}/events`]: eventsHandler as Handler,
      [`GET /tasks/${ID}`]: (_q, res) => json(res, 200, seq[Math.min(polls++, seq.length - 1)]),
    });
    const r = await cli(['watch', ID, '--api', api.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('migrate    40%');
    expect(r.stdout).toMatch(/finished in 1m02s/);
    const gets = api.requests.filter((q) => q.url === `/tasks/${ID}`);
    expect(gets).toHaveLength(3);
    for (let i = 1; i < gets.length; i++) expect(gets[i]!.at - gets[i - 1]!.at).toBeGreaterThanOrEqual(450);
  });

  it('polling rides out a 503 and reports a task that does not exist as exit 4', async () => {
    let polls = 0;
    const api = await fakeApi({
      [`GET /tasks/${ID}`]: (_q, res) => (polls++ === 0 ? json(res, 503, err(503, 'KMIG0006E', 'Redis down')) : json(res, 200, FINISHED)),
      'GET /tasks/gone': (_q, res) => json(res, 404, err(404, 'KMIG0004E', 'Task gone does not exist')),
    });
    const r = await cli(['watch', ID, '--api', api.url]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('HTTP 503; still trying');
    const gone = await cli(['watch', 'gone', '--api', api.url]);
    expect(gone.code).toBe(4);
    expect(gone.stderr).toContain('KMIG0004E: Task gone does not exist');
  });

  it('watch against an API that is not there fails at once with exit 3', async () => {
    const api = await fakeApi({});
    api.close();
    const started = Date.now();
    const r = await cli(['watch', ID, '--api', api.url]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^kvm-migrate: cannot reach the kvm-migrate API at .*ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('Ctrl-C stops watching with exit 130 and says the migration goes on', async () => {
    const api = await fakeApi({ [`GET /tasks/${ID}/events`]: sse([copying(5)], { end: false }) });
    const r = await cli(['watch', ID, '--api', api.url], { onStdout: (out, child) => out.includes('5%') && child.kill('SIGINT') });
    expect(r.code).toBe(130);
    expect(r.stderr).toContain(`stopped watching; the migration goes on (task ${ID})`);
  });

  it.skipIf(spawnSync('script', ['--version']).status !== 0)('on a terminal, redraws one line in place', async () => {
    const api = await fakeApi({ [`GET /tasks/${ID}/events`]: sse(states) });
    const cmd = `${process.execPath} --import tsx ${ENTRY} watch ${ID} --api ${api.url}`;
    const r = await cli(['-qec', cmd, '/dev/null'], { bin: 'script', env: { COLUMNS: '100', TERM: 'xterm' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('\r\x1b[2Kmigrate   [██░░░░░░░░░░░░░░░░░░]   10%  48.0 MiB/s  iteration 2  ETA 1m05s');
    expect(r.stdout).toMatch(/\r\x1b\[2Kfinished {2}\[█{20}\] {2}100%/);
    expect(r.stdout).toContain('\x1b[32mfinished\x1b[39m in 1m02s');
  });
});

// ---------- pure parts ----------

describe('kvm-migrate: pure parts', () => {
  it('parses text/event-stream by the standard', () => {
    const p = new SseParser();
    const out = [
      ...p.push('\uFEFF: comment\nevent: task\ndata: {"a":\r'),
      ...p.push('\ndata: 1}\nid: 7\nretry: 3000\n\n'),
      ...p.push('data:no space\r\rdata: x\n'),
      ...p.push('event: other\nunknown: y\ndata\n\n'),
    ];
    expect(out).toEqual([
      { type: 'task', data: '{"a":\n1}', id: '7' },
      { type: 'message', data: 'no space', id: '7' },
      { type: 'other', data: 'x\n', id: '7' },
    ]);
    expect(p.retryMs).toBe(3000);
    expect(p.push('data: unterminated')).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it('formats durations, bars and progress lines', () => {
    expect([duration(5), duration(65), duration(7322)]).toEqual(['5s', '1m05s', '2h02m']);
    expect(bar(50, 10)).toBe('█████░░░░░');
    expect(bar(undefined, 4)).toBe('░░░░');
    const line = progressLine(copying(62), { barWidth: 10, width: 40 });
    expect(line).toHaveLength(40);
    expect(line.endsWith('…')).toBe(true);
    expect(progressLine(task({ stage: 'migrate', progress: { percent: 3, dataRemaining: 100 * 1048576, memoryBps: 10 * 1048576 } }))).toContain('ETA ~10s');
  });

  it('the terminal view redraws in place, keeps notes readable and ends on a new line', () => {
    const out: string[] = [];
    const err: string[] = [];
    const view = new WatchView({ isTTY: true, columns: 50, write: (s: string) => out.push(s) }, { write: (s: string) => err.push(s) }, 'tty');
    view.task(copying(10));
    view.task(copying(10));
    view.note('live updates interrupted; polling instead');
    view.task(FINISHED);
    view.close();
    expect(out[0]).toMatch(/^\r\x1b\[2Kmigrate {3}\[██░{18}\] {3}10%/);
    expect(out.filter((s) => s.includes('10%'))).toHaveLength(2); // drawn once, redrawn after the note
    expect(err).toEqual(['live updates interrupted; polling instead\n']);
    for (const s of out) expect(s.replace('\r\x1b[2K', '').length).toBeLessThanOrEqual(49);
    expect(out.at(-1)).toBe('\n');
  });

  it('gives up following with exit 3 when the API it reached stays away, saying the migration goes on', async () => {
    let polls = 0;
    const api = await fakeApi({ [`GET /tasks/${ID}`]: (_q, res) => void (polls++ === 0 ? json(res, 200, copying(5)) : res.destroy()) });
    const notes: string[] = [];
    const f = follow({ api: new Api(api.url), id: ID, pollMs: 10, maxPollFailures: 3, onTask: () => {}, onNote: (m) => notes.push(m) });
    await expect(f).rejects.toMatchObject({ exitCode: 3, message: expect.stringMatching(/^lost contact with the API while following task .*\n.*goes on.*kvm-migrate watch /s) });
    expect(polls).toBe(4);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/^API unreachable: .*; still trying$/);
  });

  it('gives a silent stream up for polling', async () => {
    const api = await fakeApi({
      [`GET /tasks/${ID}/events`]: sse([copying(10)], { end: false }),
      [`GET /tasks/${ID}`]: (_q, res) => json(res, 200, FINISHED),
    });
    const seen: string[] = [];
    const notes: string[] = [];
    const final = await follow({ api: new Api(api.url), id: ID, idleMs: 300, pollMs: 10, onTask: (t) => seen.push(t.status), onNote: (m) => notes.push(m) });
    expect(final.status).toBe('finished');
    expect(seen).toEqual(['running', 'finished']);
    expect(notes).toEqual(['no live update for 0.3 s; polling instead']);
  });
});

// ---------- peers ----------

describe.concurrent('kvm-migrate peers', () => {
  const PEERS = [
    { host: 'host9', port: 8010, url: 'https://host9:8010', libvirt_uri: 'qemu+tcp://host9/system', lifetime: null, last_seen: null, addresses: [], source: 'static' },
    { host: 'kimchi-a.example', port: 8001, url: 'https://kimchi-a.example:8001', libvirt_uri: 'qemu+tcp://kimchi-a.example/system', lifetime: 65535, last_seen: '2025-01-01T10:00:00.123Z', addresses: ['10.0.0.2'], source: 'slp' },
  ];

  it('asks for the rich form and prints a table; --json prints the answer; none is exit 0 with a word on federation', async () => {
    let answer: unknown = PEERS;
    const api = await fakeApi({ 'GET /peers?verbose=true': (_q, res) => json(res, 200, answer) });
    const r = await cli(['peers', '--api', api.url]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^HOST +PORT +SOURCE +LAST SEEN +LIBVIRT URI$/);
    expect(lines[1]).toMatch(/^host9 +8010 +static +- +qemu\+tcp:\/\/host9\/system$/);
    expect(lines[2]).toMatch(/^kimchi-a\.example +8001 +slp +2025-01-01T10:00:00Z +qemu\+tcp:\/\/kimchi-a\.example\/system$/);
    expect(api.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['GET /peers?verbose=true']);
    const raw = await cli(['peers', '--json', '--api', api.url]);
    expect(JSON.parse(raw.stdout)).toEqual(PEERS);
    // A Kimchi host answers URLs only: shown as they are.
    answer = ['https://kimchi-b.example:8001'];
    expect((await inProcess(['peers', '--api', api.url])).stdout).toMatch(/\nhttps:\/\/kimchi-b\.example:8001\n$/);
    answer = [];
    const none = await inProcess(['peers', '--api', api.url]);
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/^No peers\. .*federation\.enabled/);
  });

  it('a refusal is exit 4, an answer that is not a list exit 3, an extra argument a usage error', async () => {
    let answer: [number, unknown] = [401, err(401, 'KMIG0020E', 'Authentication required: no token')];
    const api = await fakeApi({ 'GET /peers?verbose=true': (_q, res) => json(res, ...answer) });
    const refused = await inProcess(['peers', '--api', api.url]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('KMIG0020E');
    answer = [200, { peers: 'no' }];
    expect((await inProcess(['peers', '--api', api.url])).code).toBe(3);
    const extra = await inProcess(['peers', 'host2', '--api', api.url]);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain("too many arguments: 'host2'");
  });

  it('migrate and precheck refused for a host that is not a peer point at the list; the precheck shows the known peers', async () => {
    const refusal = err(422, 'KMIG0040E', 'host2 is not a known peer, and federation.require_peer is on; known peers: host9, kimchi-a.example', { peers: ['host9', 'kimchi-a.example'] });
    const api = await fakeApi({
      'POST /vms/web1/migrate': (_q, res) => json(res, 422, refusal),
      'POST /vms/web2/migrate': (_q, res) => json(res, 200, { ready: true, vm: 'web2', remote_host: 'host9', checks: [], peers: ['host9', 'kimchi-a.example'] }),
    });
    for (const args of [['migrate', 'web1', 'host2'], ['precheck', 'web1', 'host2']]) {
      const r = await inProcess([...args, '--api', api.url]);
      expect(r.code, args[0]).toBe(4);
      expect(r.stderr).toMatch(/KMIG0040E: host2 is not a known peer.*known peers: host9, kimchi-a\.example\nThe service only migrates to known peers; list them: kvm-migrate peers/);
    }
    const ok = await inProcess(['precheck', 'web2', 'host9', '--api', api.url]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('Known peers (possible destinations): host9, kimchi-a.example\n');
  });
});
