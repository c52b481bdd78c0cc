/**
 * The API's answers as the client sees them. Everything the service may add
 * later is optional here: the client shows what it gets and never insists on
 * a field it does not need (it is a separate program; it does not import the
 * service's own types, so an older or newer service still works with it).
 */

export type TaskStatus = 'running' | 'finished' | 'failed' | 'killed';

export interface Progress {
  percent: number;
  dataTotal?: number;
  dataProcessed?: number;
  dataRemaining?: number;
  memoryBps?: number;
  dirtyRateBps?: number;
  iteration?: number;
  elapsedMs?: number;
  etaSeconds?: number;
  downtimeMs?: number;
}

export interface HistoryEntry {
  at: string;
  stage: string;
  event: string;
  detail?: string;
}

export interface Task {
  id: string;
  status: TaskStatus | string;
  message?: string;
  target_uri?: string;
  stage?: string;
  vm?: string;
  source?: { uri?: string };
  destination?: { host?: string; uri?: string };
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  progress?: Progress | null;
  policy?: Record<string, unknown> | null;
  error?: { code?: string; reason?: string } | null;
  history?: HistoryEntry[];
}

/** `{code, reason, status}`, plus what some errors carry (the existing task of a 409, the precheck's blockers). */
export interface ErrorBody {
  code?: string;
  reason?: string;
  status?: number;
  task?: Task;
  blockers?: { code?: string; reason?: string }[];
  checks?: CheckResult[];
}

export interface CheckResult {
  check: string;
  ok: boolean;
  blockers?: { code?: string; reason?: string }[];
  skipped?: string;
}

export interface PrecheckAnswer {
  ready: boolean;
  vm?: string;
  remote_host?: string;
  destination_uri?: string;
  checks?: CheckResult[];
}

export const TERMINAL: ReadonlySet<string> = new Set(['finished', 'failed', 'killed']);

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Enough of a task to show and follow it: an id and a status. */
export function isTask(v: unknown): v is Task {
  return isObject(v) && typeof v.id === 'string' && typeof v.status === 'string';
}

export const isTerminal = (t: Task): boolean => TERMINAL.has(t.status);
