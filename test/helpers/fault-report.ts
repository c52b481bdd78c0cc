/** The fault suite's report: what was injected, and what became of each guest and task. */
import { cpus, totalmem } from 'node:os';

export interface TrialRecord {
  n: number;
  fault: string;
  /** Where the task was when the fault hit: the failpoint, or the stage (and copy %) seen right then. */
  hitAt: string;
  guest: string;
  from: string;
  to: string;
  /** The fault really happened (the failpoint was reached, the copy was under way). */
  injected: boolean;
  status: string;
  code: string | null;
  reason: string | null;
  /** host:state for every host where the guest is active after the trial. */
  guestOn: string[];
  lost: boolean;
  twice: boolean;
  stuck: boolean;
  /** The task's end matches where the guest runs and is defined. */
  truthful: boolean;
  faultToEndMs: number;
  totalMs: number;
  resumes: number;
}

export interface Report {
  startedAt: string;
  finishedAt?: string;
  config: { lockMs: number; stalledMs: number; stuckMs: number };
  trials: TrialRecord[];
  /** 5xx answers the suite got from the API, fuzzing included; `expected`: 503 KMIG0006E while Redis was down on purpose. */
  fivexx: { status: number; code: string | null; expected: boolean; reason?: string }[];
  duplicates: { sent: number; created: number; conflicts: number } | null;
  fuzz: { sent: number; answered: number; statuses: Record<number, number>; failures: number } | null;
}

const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export function renderReport(r: Report): string {
  const t = r.trials;
  const kills = t.filter((x) => x.fault.startsWith('kill'));
  const count = (f: (x: TrialRecord) => boolean) => t.filter(f).length;
  const byFault = new Map<string, TrialRecord[]>();
  for (const x of t) byFault.set(x.fault, [...(byFault.get(x.fault) ?? []), x]);
  const lines = [
    '# Fault suite report',
    '',
    `Run ${r.startedAt} → ${r.finishedAt ?? '?'} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; lab guests on two real libvirt hosts (TCG or KVM). ` +
      `Worker lock ${r.config.lockMs} ms, stall check every ${r.config.stalledMs} ms; a task counts as stuck if it has not ended ${Math.round(r.config.stuckMs / 1000)} s after the fault (stall interval plus the longest stage deadline).`,
    '',
    '| | |',
    '|---|---|',
    `| trials | ${t.length} (${kills.length} worker kills: ${kills.filter((x) => x.fault === 'kill-mid-copy').length} at random moments of the memory copy, ${kills.filter((x) => x.fault !== 'kill-mid-copy').length} at stage boundaries) |`,
    `| faults not injected (failpoint or copy not reached) | ${count((x) => !x.injected)} |`,
    `| guests lost (running nowhere) | ${count((x) => x.lost)} |`,
    `| guests running on two hosts | ${count((x) => x.twice)} |`,
    `| tasks stuck | ${count((x) => x.stuck)} |`,
    `| tasks whose end does not match where the guest runs | ${count((x) => !x.truthful)} |`,
    `| 5xx answers | ${r.fivexx.filter((f) => !f.expected).length} unexpected; ${r.fivexx.filter((f) => f.expected).length} × 503 KMIG0006E while Redis was down on purpose (the designed answer) |`,
    `| fault → task end, median / max | ${(median(t.map((x) => x.faultToEndMs)) / 1000).toFixed(1)} s / ${(Math.max(0, ...t.map((x) => x.faultToEndMs)) / 1000).toFixed(1)} s |`,
    ...(r.duplicates ? [`| concurrent duplicate requests | ${r.duplicates.sent} sent, ${r.duplicates.created} task created, ${r.duplicates.conflicts} × 409 naming it |`] : []),
    ...(r.fuzz ? [`| fuzzed requests | ${r.fuzz.sent} sent, ${r.fuzz.answered} answered: ${Object.entries(r.fuzz.statuses).map(([s, n]) => `${n} × ${s}`).join(', ')} |`] : []),
    '',
    '## By fault',
    '',
    '| fault | trials | outcomes | resumed by another worker | fault → end (median) |',
    '|---|---|---|---|---|',
    ...[...byFault].map(([fault, xs]) => {
      const outcomes = new Map<string, number>();
      for (const x of xs) {
        const o = x.code ? `${x.status} ${x.code}` : x.status;
        outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
      }
      return `| ${fault} | ${xs.length} | ${[...outcomes].map(([o, n]) => `${n} ${o}`).join(', ')} | ${xs.filter((x) => x.resumes > 0).length} | ${(median(xs.map((x) => x.faultToEndMs)) / 1000).toFixed(1)} s |`;
    }),
    '',
    '## Every trial',
    '',
    '| # | fault | hit at | guest | from → to | task | guest after | fault → end | why it failed |',
    '|---|---|---|---|---|---|---|---|---|',
    ...t.map(
      (x) =>
        `| ${x.n} | ${x.fault}${x.injected ? '' : ' (not injected)'} | ${x.hitAt} | ${x.guest} | ${x.from} → ${x.to} | ${x.status}${x.code ? ` ${x.code}` : ''} | ${x.guestOn.join(', ') || 'nowhere'} | ${(x.faultToEndMs / 1000).toFixed(1)} s | ${(x.reason ?? '').replaceAll('|', '/').slice(0, 160)} |`,
    ),
    '',
  ];
  return lines.join('\n');
}
