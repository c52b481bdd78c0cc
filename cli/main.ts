/**
 * kvm-migrate, the command-line client: runs one command against the API and
 * returns the exit code (0 success, 1 migration failed or killed, 2 usage
 * error, 3 API unreachable or 5xx, 4 request refused, 130 interrupted).
 */
import { follow } from './follow.js';
import { ansi, finalSummary, listView, plain, policyRows, precheckBlocked, precheckReady, taskView, type Paint } from './format.js';
import { commandHelp, toolHelp } from './help.js';
import { Api, CliFailure, EXIT, type Answer } from './http.js';
import { parseCommandLine, usageHint, UsageError, type Options } from './options.js';
import { listPeers } from './peers.js';
import { isObject, isTask, type ErrorBody, type PrecheckAnswer, type Task } from './types.js';
import { packageVersion } from '../shared/version.js';
import { WatchView, type Out } from './view.js';

export interface Io {
  stdout: Out;
  stderr: Out;
  env: NodeJS.ProcessEnv;
}

interface Ctx {
  api: Api;
  json: boolean;
  io: Io;
  paint: Paint;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const enc = encodeURIComponent;

const version = packageVersion;

const print = (ctx: Ctx, text: string) => ctx.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const printJson = (ctx: Ctx, v: unknown) => ctx.io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

/** An answer that should have been a task but is not one: the API is not what we think. */
const notATask = (ctx: Ctx, what: string, a: Answer) =>
  new CliFailure(`${what}: the API at ${ctx.api.base} answered HTTP ${a.status} without a task; is --api pointing at kvm-migrate?`, EXIT.UNREACHABLE, a.json);

/** Follows a task to its end with a live view; 0 when it finished, 1 when it failed or was killed. */
async function watchTask(ctx: Ctx, id: string, first?: Task): Promise<number> {
  const view = new WatchView(ctx.io.stdout, ctx.io.stderr, WatchView.modeFor(ctx.io.stdout, ctx.json));
  const ctrl = new AbortController();
  const onSigint = () => ctrl.abort();
  process.once('SIGINT', onSigint);
  try {
    if (first) view.task(first);
    const final = await follow({ api: ctx.api, id, signal: ctrl.signal, onTask: (t) => view.task(t), onNote: (m) => view.note(m) });
    view.close();
    if (!ctx.json) print(ctx, finalSummary(final, ctx.paint));
    return final.status === 'finished' ? EXIT.OK : EXIT.TASK_FAILED;
  } catch (e) {
    view.close();
    if (e instanceof CliFailure && e.exitCode === EXIT.INTERRUPTED) {
      throw new CliFailure(`stopped watching; the migration goes on (task ${id}).\nFollow it again: kvm-migrate watch ${id}\nCancel it:       kvm-migrate cancel ${id}`, EXIT.INTERRUPTED);
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function migrateBody(host: string, o: Options): Record<string, unknown> {
  const body: Record<string, unknown> = { remote_host: host };
  if (o.bandwidth !== undefined) body.bandwidth = o.bandwidth;
  if (o.maxDowntime !== undefined) body.max_downtime = o.maxDowntime;
  if (o.deadline !== undefined) body.deadline = o.deadline;
  if (o.deadlineAction !== undefined) body.deadline_action = o.deadlineAction;
  if (o.autoConverge !== undefined) body.auto_converge = o.autoConverge;
  if (o.compression !== undefined) body.compression = o.compression;
  return body;
}

async function migrate(ctx: Ctx, vm: string, host: string, o: Options): Promise<number> {
  const a = await ctx.api.request('POST', `/vms/${enc(vm)}/migrate`, { body: migrateBody(host, o) });
  const err = isObject(a.json) ? (a.json as ErrorBody) : undefined;
  if (a.status === 409 && err?.code === 'KMIG0003E') {
    const id = isTask(err.task) ? err.task.id : undefined;
    const state = isTask(err.task) ? ` (${err.task.status}${err.task.stage ? `, stage ${err.task.stage}` : ''})` : '';
    const hint = id ? `\n${vm} is already being migrated by task ${id}${state}.\nFollow it: kvm-migrate watch ${id}\nCancel it: kvm-migrate cancel ${id}` : '';
    throw new CliFailure(`migrating ${vm}: ${err.reason ?? err.code}${hint}`, EXIT.REFUSED, a.json);
  }
  if (a.status >= 400) throw notAPeer(ctx.api.failure(a, `migrating ${vm}`), a);
  const fromLocation = /\/tasks\/([^/?#]+)$/.exec(a.headers.get('location') ?? '')?.[1];
  const task = isTask(a.json) ? a.json : undefined;
  const id = task?.id ?? (fromLocation ? decodeURIComponent(fromLocation) : undefined);
  if (!id) throw notATask(ctx, `migrating ${vm}`, a);
  if (!o.watch) {
    if (ctx.json) printJson(ctx, a.json ?? { id });
    else print(ctx, `Migration of ${vm} to ${host} accepted: task ${id}\nFollow it: kvm-migrate watch ${id}\nCancel it: kvm-migrate cancel ${id}`);
    return EXIT.OK;
  }
  if (!ctx.json) ctx.io.stderr.write(`Migrating ${vm} to ${host}: task ${id} (Ctrl-C stops watching, not the migration)\n`);
  return watchTask(ctx, id, task);
}

/** The precheck's known peers (possible destinations), when the service lists any. */
function knownPeers(body: Record<string, unknown> | undefined): string {
  const peers = Array.isArray(body?.peers) ? body.peers.filter((p): p is string => typeof p === 'string') : [];
  return peers.length ? `Known peers (possible destinations): ${peers.join(', ')}\n` : '';
}

/** A remote_host refused for not being a peer (KMIG0040E): say where the list is. */
function notAPeer(f: CliFailure, a: Answer): CliFailure {
  if (!isObject(a.json) || (a.json as ErrorBody).code !== 'KMIG0040E') return f;
  return new CliFailure(`${f.message}\nThe service only migrates to known peers; list them: kvm-migrate peers`, f.exitCode, f.body);
}

async function precheck(ctx: Ctx, vm: string, host: string): Promise<number> {
  // The checks run while the request waits (within the service's check deadline, 60 s by default).
  const a = await ctx.api.request('POST', `/vms/${enc(vm)}/migrate`, { body: { remote_host: host, dry_run: true }, timeoutMs: 300_000 });
  const body = isObject(a.json) ? a.json : undefined;
  if (a.status === 200 && body?.ready === true) {
    if (ctx.json) printJson(ctx, a.json);
    else print(ctx, precheckReady(body as unknown as PrecheckAnswer, vm, host, ctx.paint) + knownPeers(body));
    return EXIT.OK;
  }
  if ((a.status === 422 || a.status === 200) && Array.isArray(body?.blockers)) {
    if (ctx.json) printJson(ctx, a.json);
    else print(ctx, precheckBlocked(body as ErrorBody, ctx.paint) + knownPeers(body));
    return EXIT.REFUSED;
  }
  if (a.status >= 400) throw notAPeer(ctx.api.failure(a, `precheck of ${vm}`), a);
  throw new CliFailure(`precheck of ${vm}: the API answered HTTP ${a.status} without a verdict; is --api pointing at kvm-migrate?`, EXIT.UNREACHABLE, a.json);
}

async function getTask(ctx: Ctx, id: string): Promise<Task> {
  const a = await ctx.api.request('GET', `/tasks/${enc(id)}`);
  if (a.status >= 400) throw ctx.api.failure(a, `looking up task ${id}`);
  if (!isTask(a.json)) throw notATask(ctx, `looking up task ${id}`, a);
  return a.json;
}

async function status(ctx: Ctx, id: string): Promise<number> {
  const t = await getTask(ctx, id);
  if (ctx.json) printJson(ctx, t);
  else print(ctx, taskView(t, ctx.paint));
  return t.status === 'failed' || t.status === 'killed' ? EXIT.TASK_FAILED : EXIT.OK;
}

/** The next page's path from an RFC 8288 Link header, if the API announced one. */
function nextPage(headers: Headers): string | null {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(headers.get('link') ?? '');
  return m ? m[1]! : null;
}

/**
 * Most pages a list without --all reads looking for one that holds tasks: the
 * API looks at a bounded number of tasks per request, so with a filter a page
 * can be empty while older ones match.
 */
export const LIST_SEARCH_PAGES = 50;

async function list(ctx: Ctx, o: Options): Promise<number> {
  let path: string | null = `/tasks${o.status !== undefined ? `?status=${enc(o.status)}` : ''}`;
  const all: unknown[] = [];
  let pages = 0;
  let more = false;
  while (path) {
    const a = await ctx.api.request('GET', path);
    pages++;
    if (a.status >= 400) throw ctx.api.failure(a, 'listing tasks');
    if (!Array.isArray(a.json)) throw new CliFailure(`listing tasks: the API at ${ctx.api.base} did not answer with a list; is --api pointing at kvm-migrate?`, EXIT.UNREACHABLE, a.json);
    all.push(...a.json);
    path = nextPage(a.headers);
    if (!o.all && (all.length > 0 || pages >= LIST_SEARCH_PAGES)) {
      more = path !== null;
      break;
    }
  }
  if (ctx.json) {
    printJson(ctx, all);
    return EXIT.OK;
  }
  const tasks = all.filter(isTask);
  const matching = o.status !== undefined ? ` has a status matching '${o.status}'` : '';
  if (tasks.length) print(ctx, listView(tasks, ctx.paint) + (more ? `\n(the newest ${tasks.length}; kvm-migrate list --all for every task)` : ''));
  else if (more) print(ctx, `No task${matching || ' is listed'} among the newest the API examined in ${pages} pages; kvm-migrate list --all${o.status !== undefined ? ` --status '${o.status}'` : ''} looks through every task.`);
  else print(ctx, matching ? `No task${matching}.` : 'No tasks.');
  return EXIT.OK;
}

async function cancel(ctx: Ctx, target: string, o: Options): Promise<number> {
  const byTask = UUID.test(target) && !o.vm;
  const what = byTask ? `cancelling task ${target}` : `cancelling the migration of ${target}`;
  const a = byTask
    ? await ctx.api.request('DELETE', `/tasks/${enc(target)}`)
    : await ctx.api.request('POST', `/vms/${enc(target)}/migrate_cancel`);
  if (a.status >= 400) {
    const f = ctx.api.failure(a, what);
    const code = isObject(a.json) ? (a.json as ErrorBody).code : undefined;
    let hint = '';
    if (a.status === 404 && code !== 'KMIG0008E') {
      hint = byTask
        ? `\nIf ${target} is a VM name, run: kvm-migrate cancel --vm ${target}`
        : `\nRunning migrations: kvm-migrate list --status running`;
    }
    if (a.status === 409 && byTask) hint = `\nIts outcome: kvm-migrate status ${target}`;
    throw new CliFailure(`${f.message}${hint}`, f.exitCode, a.json);
  }
  const t = isTask(a.json) ? a.json : undefined;
  if (ctx.json) printJson(ctx, a.json ?? null);
  else if (!t) print(ctx, `Cancel requested (${what}).`);
  else {
    const which = `task ${t.id}${t.vm ? ` (${t.vm}${t.destination?.host ? ` to ${t.destination.host}` : ''})` : ''}`;
    // A migration still queued is over at once (200, killed); a running one is stopped by its worker (202).
    if (t.status === 'running') print(ctx, `Cancel requested for ${which}: the worker aborts the copy and keeps the guest on the source.\nFollow it to the end: kvm-migrate watch ${t.id}`);
    else print(ctx, `Cancelled ${which} before it started: the task is ${t.status}.`);
  }
  return EXIT.OK;
}

async function tune(ctx: Ctx, id: string, o: Options): Promise<number> {
  const body: Record<string, unknown> = {};
  if (o.bandwidth !== undefined) body.bandwidth = o.bandwidth;
  if (o.maxDowntime !== undefined) body.max_downtime = o.maxDowntime;
  const a = await ctx.api.request('PATCH', `/tasks/${enc(id)}`, { body });
  if (a.status >= 400) throw ctx.api.failure(a, `tuning task ${id}`);
  if (ctx.json) {
    printJson(ctx, a.json ?? null);
    return EXIT.OK;
  }
  const asked = [o.bandwidth !== undefined ? `bandwidth ${o.bandwidth === 'unlimited' ? 'unlimited' : `${o.bandwidth} MiB/s`}` : '', o.maxDowntime !== undefined ? `max downtime ${o.maxDowntime} ms` : '']
    .filter(Boolean)
    .join(', ');
  // 200: applied, the task shows the limits in force; 202: not applied yet (the copy has not started).
  const rows = isTask(a.json) && a.json.policy ? policyRows(a.json.policy).filter(([k]) => k !== 'policy') : [];
  const now = rows.map(([k, v]) => `\n${k[0]!.toUpperCase()}${k.slice(1)}: ${v}`).join('');
  if (a.status === 202) print(ctx, `Task ${id}: asked for ${asked}; not in force yet (it applies once the copy runs).${now}`);
  else print(ctx, `Task ${id} tuned: ${asked}.${now}`);
  return EXIT.OK;
}

async function run(argv: string[], io: Io, state: { json: boolean }): Promise<number> {
  const parsed = parseCommandLine(argv, io.env);
  if (parsed.kind === 'help') {
    io.stdout.write(parsed.command ? commandHelp(parsed.command) : toolHelp());
    return EXIT.OK;
  }
  if (parsed.kind === 'version') {
    io.stdout.write(`kvm-migrate ${version()}\n`);
    return EXIT.OK;
  }
  state.json = parsed.json;
  const color = io.stdout.isTTY === true && !parsed.json && !io.env.NO_COLOR && io.env.TERM !== 'dumb';
  const ctx: Ctx = { api: new Api(parsed.api, parsed.token), json: parsed.json, io, paint: color ? ansi : plain };
  const [a = '', b = ''] = parsed.args;
  const o = parsed.options;
  switch (parsed.command) {
    case 'migrate':
      return migrate(ctx, a, b, o);
    case 'precheck':
      return precheck(ctx, a, b);
    case 'status':
      return status(ctx, a);
    case 'list':
      return list(ctx, o);
    case 'watch':
      return watchTask(ctx, a);
    case 'cancel':
      return cancel(ctx, a, o);
    case 'tune':
      return tune(ctx, a, o);
    case 'peers':
      return listPeers(ctx.api, ctx.json, (t) => ctx.io.stdout.write(t), ctx.paint);
  }
}

/** Runs one command line; returns the exit code. Messages for people go to stderr, answers to stdout. */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const state = { json: false };
  try {
    return await run(argv, io, state);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`kvm-migrate: ${e.message}\n${usageHint(e.command)}\n`);
      return EXIT.USAGE;
    }
    if (e instanceof CliFailure) {
      // With --json the API's own error answer is the machine-readable result.
      if (state.json && e.body !== undefined) io.stdout.write(`${JSON.stringify(e.body, null, 2)}\n`);
      io.stderr.write(`kvm-migrate: ${e.message}\n`);
      return e.exitCode;
    }
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    io.stderr.write(`kvm-migrate: unexpected error (an answer this client did not expect, or a bug in it):\n${detail}\nPlease report it with the command you ran.\n`);
    return EXIT.UNREACHABLE;
  }
}
