/**
 * A job as clients see it: Kimchi's task JSON (id, status, message,
 * target_uri) extended with stage, hosts, timestamps, progress and history.
 * Pure: it takes a snapshot of the job and returns the task.
 *
 * Every client (viewers included) reads tasks, so libvirt URIs leave here
 * redacted, wherever they appear: the source and destination URIs, the
 * message, the error and the history (a libvirt error or a stage's detail
 * quotes the URI it used). The job data keeps the real ones for workers.
 */
import type { ErrorJSON } from './errors.js';
import type { HistoryEntry, MigrationJobData } from './job.js';
import { redactDeep, redactText, redactUri } from './redact.js';

export type TaskStatus = 'running' | 'finished' | 'failed' | 'killed';

/** The parts of a BullMQ job the mapping needs. */
export interface JobSnapshot {
  id: string;
  /** BullMQ state: waiting, delayed, prioritized, active, waiting-children, completed, failed, unknown. */
  state: string;
  data: MigrationJobData;
  failedReason?: string | undefined;
  progress?: unknown;
  timestamp: number;
  processedOn?: number | undefined;
  finishedOn?: number | undefined;
  attemptsMade: number;
}

export interface MigrationProgress {
  percent: number;
  dataTotal?: number;
  dataProcessed?: number;
  dataRemaining?: number;
  memoryBps?: number;
  iteration?: number;
  elapsedMs?: number;
  /** Pages the guest dirties a second, in bytes. */
  dirtyRateBps?: number;
  /** Seconds left at the measured rates; absent while the copy does not converge. */
  etaSeconds?: number;
  /** false while what is left does not shrink from pass to pass (or the guest dirties faster than the link copies). */
  converging?: boolean;
  /** Real downtime libvirt measured, once the migration completed. */
  downtimeMs?: number;
}

export interface Task {
  id: string;
  status: TaskStatus;
  message: string;
  target_uri: string;
  stage: string;
  vm: string;
  source: { uri: string };
  destination: { host: string; uri: string };
  queue_state: string;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  progress: MigrationProgress | null;
  /** What the client asked for, and the limits libvirt has in force now (null before the copy starts). */
  policy: TaskPolicy;
  error: ErrorJSON | null;
  history: HistoryEntry[];
}

export interface TaskPolicy {
  bandwidth: number | 'unlimited';
  max_downtime: number;
  deadline: number;
  deadline_action: 'abort' | 'pause';
  auto_converge: boolean;
  compression: 'xbzrle' | 'none';
  in_force: { bandwidth: number | 'unlimited'; max_downtime: number | null; operator_tuned: boolean } | null;
}

/** BullMQ state (plus what the worker recorded) to Kimchi status. */
export function taskStatus(state: string, error: ErrorJSON | undefined): TaskStatus {
  switch (state) {
    case 'completed':
      return 'finished';
    case 'failed':
      return error?.key === 'CANCELLED' ? 'killed' : 'failed';
    default:
      // waiting, delayed, prioritized, active, waiting-children: not over yet.
      return 'running';
  }
}

/** taskStatus's partition of BullMQ states: completed, failed, and every state of a task not over yet. */
export type StateClass = 'completed' | 'failed' | 'other';

/** The state classes whose jobs can have one of `statuses` (the reverse of taskStatus). */
export function stateClassesFor(statuses: ReadonlySet<TaskStatus>): StateClass[] {
  const out: StateClass[] = [];
  if (statuses.has('finished')) out.push('completed');
  if (statuses.has('failed') || statuses.has('killed')) out.push('failed');
  if (statuses.has('running')) out.push('other');
  return out;
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

function asProgress(p: unknown): MigrationProgress | null {
  if (typeof p === 'object' && p !== null && typeof (p as MigrationProgress).percent === 'number') return p as MigrationProgress;
  return null;
}

/** What a task waiting for a migration slot says; the history records the same words. */
export function slotWaitMessage(reason: string): string {
  return `waiting for a migration slot: ${reason}`;
}

function runningMessage(stage: string, vm: string, host: string, state: string, progress: MigrationProgress | null, slotWait: string | undefined): string {
  // Waiting for a slot shows in every state the wait passes through: delayed in the queue, and briefly active while a worker looks again.
  if (slotWait !== undefined) return slotWaitMessage(slotWait);
  if (state === 'waiting' || state === 'prioritized' || state === 'waiting-children') return 'The request is being processing.';
  if (state === 'delayed') return `waiting to retry stage ${stage}`;
  switch (stage) {
    case 'check':
      return `checking whether ${vm} can move to ${host}`;
    case 'connect':
      return `connecting to ${host} and preparing the guest configuration`;
    case 'prepare':
      return 'preparing the source for migration';
    case 'migrate':
      return progress ? copyingMessage(progress) : 'starting a migration';
    case 'recover':
      return `migration failed, recovering ${vm} on the source`;
    case 'finish':
      return `verifying ${vm} on ${host}`;
    default:
      return 'The request is being processing.';
  }
}

/** "copying memory: 62%, 48 MiB/s, iteration 3, about 4 s left" */
export function copyingMessage(p: MigrationProgress): string {
  const parts = [`copying memory: ${Math.floor(p.percent)}%`];
  if (p.memoryBps) parts.push(`${Math.round(p.memoryBps / 1048576)} MiB/s`);
  if (p.iteration) parts.push(`iteration ${p.iteration}`);
  if (p.etaSeconds !== undefined) parts.push(`about ${p.etaSeconds} s left`);
  else if (p.memoryBps && p.dirtyRateBps && p.dirtyRateBps >= p.memoryBps) parts.push(`not converging yet: the guest dirties ${Math.round(p.dirtyRateBps / 1048576)} MiB/s`);
  else if (p.converging === false) parts.push('not converging yet: what is left does not shrink from pass to pass');
  return parts.join(', ');
}

function policyOf(data: MigrationJobData): TaskPolicy {
  const r = data.request;
  const f = data.checkpoint?.results.migrate?.inForce;
  return {
    bandwidth: r.bandwidth,
    max_downtime: r.downtimeMs,
    deadline: r.timeoutSeconds,
    deadline_action: r.deadlineAction ?? 'abort',
    auto_converge: r.autoConverge ?? false,
    compression: r.compression ?? 'none',
    in_force: f ? { bandwidth: f.bandwidthMiBs ?? 'unlimited', max_downtime: f.maxDowntimeMs, operator_tuned: f.operatorTuned } : null,
  };
}

function redactError(e: ErrorJSON): ErrorJSON {
  return { ...e, reason: redactText(e.reason), ...(e.details ? { details: redactDeep(e.details) as Record<string, unknown> } : {}) };
}

const redactHistory = (h: HistoryEntry[]): HistoryEntry[] => h.map((e) => (e.detail === undefined ? e : { ...e, detail: redactText(e.detail) }));

export function toTask(job: JobSnapshot): Task {
  const { request, checkpoint } = job.data;
  // A failure the runner did not record (e.g. BullMQ gave up on a job that stalled too often) still gets a code.
  const error = checkpoint?.error ?? (job.state === 'failed' ? { code: 'KMIG0299E', key: 'INTERNAL', reason: `KMIG0299E: ${job.failedReason ?? 'the job failed without a reason'}` } : undefined);
  const status = taskStatus(job.state, error);
  const stage = checkpoint?.step ?? 'check';
  const progress = asProgress(job.progress);
  let message: string;
  if (status === 'finished') message = 'Migrate finished';
  else if (status === 'failed' || status === 'killed') message = error?.reason ?? job.failedReason ?? 'failed';
  else message = runningMessage(stage, request.vm, request.remoteHost, job.state, progress, checkpoint?.slotWait?.reason);
  return {
    id: job.id,
    status,
    message: redactText(message),
    target_uri: `/vms/${encodeURIComponent(request.vm)}`,
    stage,
    vm: request.vm,
    source: { uri: redactUri(request.sourceUri) },
    destination: { host: request.remoteHost, uri: redactUri(request.destinationUri) },
    queue_state: job.state,
    attempts: job.attemptsMade,
    created_at: iso(job.timestamp) ?? request.requestedAt,
    started_at: iso(job.processedOn),
    finished_at: status === 'running' ? null : iso(job.finishedOn),
    progress,
    policy: policyOf(job.data),
    error: status === 'running' || !error ? null : redactError(error),
    history: redactHistory(checkpoint?.history ?? []),
  };
}
