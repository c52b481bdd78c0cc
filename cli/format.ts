/** Text for people: sizes, rates, durations, the progress line, a task, a task list, a precheck. */
import type { CheckResult, ErrorBody, PrecheckAnswer, Progress, Task } from './types.js';

export type Style = 'bold' | 'dim' | 'red' | 'green' | 'yellow' | 'cyan';
const SGR: Record<Style, [number, number]> = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] };

/** ANSI colour, or plain text when colour is off (not a terminal, NO_COLOR, TERM=dumb). */
export type Paint = (style: Style, text: string) => string;
export const plain: Paint = (_s, t) => t;
export const ansi: Paint = (s, t) => `\x1b[${SGR[s][0]}m${t}\x1b[${SGR[s][1]}m`;

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

export const rate = (bps: number): string => `${bytes(bps)}/s`;

/** 45s, 3m05s, 2h07m. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function bar(percent: number | undefined, width: number): string {
  const filled = percent === undefined ? 0 : Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
}

/** "KCHVM0058E: reason" whether or not the reason already starts with its code. */
export function errorText(e: { code?: string; reason?: string } | null | undefined): string {
  if (!e) return 'no error recorded';
  const reason = e.reason ?? '';
  if (!e.code) return reason || 'no reason given';
  return reason.startsWith(e.code) ? reason : `${e.code}: ${reason || 'no reason given'}`;
}

/** The reason without its leading "CODE: ", for lists that show the code in a column. */
const withoutCode = (code: string | undefined, reason: string | undefined) => (code && reason?.startsWith(`${code}: `) ? reason.slice(code.length + 2) : (reason ?? ''));

const stamp = (iso: string | null | undefined) => (iso ? iso.replace(/\.\d+Z$/, 'Z') : '-');

/** The service's ETA, else a rough one ("~", a lower bound: the guest keeps dirtying memory) from what is left and the rate. */
function eta(p: Progress): string | undefined {
  if (typeof p.etaSeconds === 'number' && p.etaSeconds >= 0) return duration(p.etaSeconds);
  if (p.dataRemaining !== undefined && p.memoryBps) return `~${duration(p.dataRemaining / p.memoryBps)}`;
  return undefined;
}

const pct = (p: Progress | null | undefined) => (p && typeof p.percent === 'number' ? `${Math.floor(p.percent)}%` : '--');

/** The figures of a progress sample: rate, iteration, ETA (those that are known). */
function figures(p: Progress | null | undefined, running: boolean): string[] {
  if (!p) return [];
  const out: string[] = [];
  if (p.memoryBps) out.push(rate(p.memoryBps));
  if (p.iteration) out.push(`iteration ${p.iteration}`);
  const e = eta(p);
  if (running && e !== undefined) out.push(`ETA ${e}`);
  return out;
}

/** One line per task state while watching; on a terminal with a bar, cut to `width` columns. */
export function progressLine(t: Task, opts: { barWidth?: number; width?: number } = {}): string {
  const running = t.status === 'running';
  const stage = (running ? (t.stage ?? '') : t.status).padEnd(8);
  const parts = [stage];
  if (opts.barWidth) parts.push(`[${bar(t.progress?.percent, opts.barWidth)}]`);
  parts.push(pct(t.progress).padStart(4), ...figures(t.progress, running));
  if (t.message) parts.push(`- ${t.message}`);
  const line = parts.join('  ');
  if (opts.width && line.length > opts.width) return `${line.slice(0, Math.max(0, opts.width - 1))}…`;
  return line;
}

const statusStyle = (s: string): Style => (s === 'finished' ? 'green' : s === 'running' ? 'cyan' : 'red');

/** The closing lines after following a task (and of `status` for an ended task). */
export function finalSummary(t: Task, paint: Paint): string {
  const what = `Migration of ${t.vm ?? 'the guest'}${t.destination?.host ? ` to ${t.destination.host}` : ''}`;
  const took = t.started_at && t.finished_at ? (Date.parse(t.finished_at) - Date.parse(t.started_at)) / 1000 : NaN;
  const tookText = Number.isFinite(took) ? ` in ${duration(took)}` : '';
  switch (t.status) {
    case 'finished': {
      const dt = t.progress?.downtimeMs !== undefined ? ` (downtime ${t.progress.downtimeMs} ms)` : '';
      return `${what} ${paint('green', 'finished')}${tookText}${dt}.`;
    }
    case 'killed':
      return `${what} was ${paint('red', 'cancelled')} (task killed): ${errorText(t.error ?? { reason: t.message ?? '' })}\nThe guest stays on the source. History: kvm-migrate status ${t.id}`;
    case 'failed':
      return `${what} ${paint('red', 'failed')}: ${errorText(t.error ?? { reason: t.message ?? '' })}\nHistory and details: kvm-migrate status ${t.id}`;
    default:
      return `${what}: ${t.status}`;
  }
}

const UNITS: Record<string, string> = { bandwidth: ' MiB/s', max_downtime: ' ms', deadline: ' s' };

function settings(o: Record<string, unknown>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k} ${typeof v === 'number' ? `${v}${UNITS[k] ?? ''}` : String(v)}`)
    .join(', ');
}

/**
 * A task's policy as rows: the plain values ("bandwidth unlimited, max_downtime 500 ms, ..."),
 * then one row per nested object (in_force: the limits libvirt applies now).
 */
export function policyRows(policy: Record<string, unknown>): [string, string][] {
  const rows: [string, string][] = [];
  const top = settings(policy);
  if (top) rows.push(['policy', top]);
  for (const [k, v] of Object.entries(policy)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const text = settings(v as Record<string, unknown>);
      if (text) rows.push([k.replace(/_/g, ' '), text]);
    }
  }
  return rows;
}

export function taskView(t: Task, paint: Paint): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string | undefined | null) => {
    if (v) rows.push([k, v]);
  };
  add('vm', t.vm);
  add('from', t.source?.uri);
  add('to', [t.destination?.host, t.destination?.uri && t.destination.uri !== t.destination.host ? `(${t.destination.uri})` : ''].filter(Boolean).join(' '));
  add('stage', t.stage);
  add('message', t.message);
  const p = t.progress;
  if (p) {
    const data = p.dataTotal ? `, ${bytes(p.dataProcessed ?? 0)} of ${bytes(p.dataTotal)}${p.dataRemaining !== undefined ? `, ${bytes(p.dataRemaining)} left` : ''}` : '';
    add('progress', `[${bar(p.percent, 20)}] ${pct(p)}${data}`);
    const speed = [p.memoryBps ? rate(p.memoryBps) : '', p.dirtyRateBps ? `guest dirties ${rate(p.dirtyRateBps)}` : '', p.iteration ? `iteration ${p.iteration}` : ''].filter(Boolean).join(', ');
    add('rate', speed);
    const times = [p.elapsedMs !== undefined ? `elapsed ${duration(p.elapsedMs / 1000)}` : '', t.status === 'running' && eta(p) !== undefined ? `ETA ${eta(p)}` : ''].filter(Boolean).join(', ');
    add('time', times);
    if (p.downtimeMs !== undefined) add('downtime', `${p.downtimeMs} ms`);
  }
  if (t.policy) for (const [k, v] of policyRows(t.policy)) add(k, v);
  add('created', stamp(t.created_at));
  if (t.started_at) add('started', stamp(t.started_at));
  if (t.finished_at) add('ended', stamp(t.finished_at));
  if (t.error) add('error', paint('red', errorText(t.error)));
  const out = [`Task ${t.id}  ${paint(statusStyle(t.status), t.status)}`, ...rows.map(([k, v]) => `  ${k.padEnd(9)} ${v}`)];
  if (t.history?.length) {
    out.push('History:');
    const w = Math.max(...t.history.map((h) => (h.stage ?? '').length), 5);
    for (const h of t.history) out.push(`  ${stamp(h.at)}  ${(h.stage ?? '').padEnd(w)}  ${(h.event ?? '').padEnd(8)}  ${h.detail ?? ''}`.trimEnd());
  }
  return `${out.join('\n')}\n`;
}

export function listView(tasks: Task[], paint: Paint): string {
  const header = ['ID', 'STATUS', 'STAGE', 'PROGRESS', 'VM', 'TO', 'CREATED'];
  const rows = tasks.map((t) => [t.id, t.status, t.stage ?? '', pct(t.progress), t.vm ?? '', t.destination?.host ?? '', stamp(t.created_at)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[], color = false) =>
    cells
      .map((c, i) => {
        const padded = c.padEnd(widths[i]!);
        return color && i === 1 ? paint(statusStyle(c), padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map((r) => line(r, true))].join('\n')}\n`;
}

function checkLines(checks: CheckResult[] | undefined, paint: Paint): string[] {
  return (checks ?? []).map((c) => {
    const mark = c.skipped ? paint('yellow', 'skipped') : c.ok ? paint('green', 'ok     ') : paint('red', 'BLOCKED');
    return `  ${mark}  ${c.check}${c.skipped ? ` (${c.skipped})` : ''}`;
  });
}

export function precheckReady(a: PrecheckAnswer, vm: string, host: string, paint: Paint): string {
  const n = a.checks?.length;
  const lines = [`${paint('green', 'Ready')}: ${vm} can migrate to ${host}${a.destination_uri ? ` (${a.destination_uri})` : ''}${n ? `; all ${n} checks passed` : ''}.`];
  lines.push(...checkLines(a.checks, paint), `Start it with: kvm-migrate migrate ${vm} ${host}`);
  return `${lines.join('\n')}\n`;
}

export function precheckBlocked(b: ErrorBody, paint: Paint): string {
  const blockers = b.blockers ?? [];
  const w = Math.max(...blockers.map((x) => (x.code ?? '').length), 4);
  const lines = [`${paint('red', 'Blocked')}: ${errorText(b)}`];
  for (const x of blockers) lines.push(`  ${(x.code ?? '?').padEnd(w)}  ${withoutCode(x.code, x.reason)}`);
  if (b.checks?.length) lines.push('Checks:', ...checkLines(b.checks, paint));
  lines.push('Fix every blocker above, then run the precheck again.');
  return `${lines.join('\n')}\n`;
}
