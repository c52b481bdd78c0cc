/**
 * Following a task to its end: the API's event stream (GET /tasks/:id/events)
 * when it has one, polling GET /tasks/:id every 500 ms when it has not (404,
 * 405, not an event stream) or when the stream breaks, falls silent or ends
 * before the task does.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Api, CliFailure, EXIT, networkCause, type Answer } from './http.js';
import { readEvents } from './sse.js';
import { isTask, isTerminal, type Task } from './types.js';

export interface FollowOptions {
  api: Api;
  id: string;
  /** Every task state as it arrives (the same state may come twice). */
  onTask: (t: Task) => void;
  /** Something a person may want to know (the stream broke, the API is away); not called for the expected 404/405. */
  onNote?: (msg: string) => void;
  /** Ctrl-C: stops following with exit code 130. */
  signal?: AbortSignal;
  pollMs?: number;
  /** Silence on the stream (not even a comment) after which it is given up for polling. */
  idleMs?: number;
  /** Consecutive failed polls (unreachable, 5xx) before giving up with exit 3. */
  maxPollFailures?: number;
}

const interrupted = () => new CliFailure('interrupted', EXIT.INTERRUPTED);
const taskPath = (id: string) => `/tasks/${encodeURIComponent(id)}`;

/**
 * The task's final state through the event stream, or no final state when
 * polling has to take over; `reached` says whether the API answered at all.
 */
async function viaEvents(o: FollowOptions): Promise<{ final?: Task; reached: boolean }> {
  const ctrl = new AbortController();
  const stop = () => ctrl.abort();
  o.signal?.addEventListener('abort', stop);
  const idleMs = o.idleMs ?? 30_000;
  let idle = false;
  let timer = setTimeout(() => ((idle = true), ctrl.abort()), idleMs);
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ((idle = true), ctrl.abort()), idleMs);
  };
  let reached = false;
  try {
    const res = await fetch(o.api.url(`${taskPath(o.id)}/events`), { headers: { accept: 'text/event-stream', ...o.api.auth() }, signal: ctrl.signal });
    reached = true;
    const type = res.headers.get('content-type') ?? '';
    if (!res.ok || !res.body || !/^text\/event-stream\b/i.test(type)) {
      await res.body?.cancel().catch(() => {});
      // 404/405/501: a service without the event stream (or no such task, which polling reports).
      if (![404, 405, 501].includes(res.status)) o.onNote?.(`no live updates (HTTP ${res.status}${res.ok ? `, ${type || 'no content type'}` : ''}); polling every ${(o.pollMs ?? 500) / 1000} s`);
      return { reached };
    }
    let last: Task | undefined;
    const how = await readEvents(
      res.body,
      (ev) => {
        if (ev.type !== 'task') return false;
        let t: unknown;
        try {
          t = JSON.parse(ev.data);
        } catch {
          return false;
        }
        if (!isTask(t)) return false;
        last = t;
        o.onTask(t);
        return isTerminal(t);
      },
      touch,
    );
    if (how === 'done' && last) return { final: last, reached };
    o.onNote?.('the live update stream ended before the task did; polling instead');
    return { reached };
  } catch (e) {
    if (o.signal?.aborted) throw interrupted();
    // Not even connected: polling finds out at once whether the API is there at all.
    if (reached || idle) o.onNote?.(idle ? `no live update for ${idleMs / 1000} s; polling instead` : `live updates interrupted (${networkCause(e)}); polling instead`);
    return { reached };
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', stop);
    ctrl.abort();
  }
}

async function viaPolling(o: FollowOptions, reached: boolean): Promise<Task> {
  const max = o.maxPollFailures ?? 20;
  let failures = 0;
  for (;;) {
    if (o.signal?.aborted) throw interrupted();
    let answer: Answer | undefined;
    let problem = '';
    try {
      answer = await o.api.request('GET', taskPath(o.id), { timeoutMs: 10_000, ...(o.signal ? { signal: o.signal } : {}) });
    } catch (e) {
      if (o.signal?.aborted) throw interrupted();
      // Never reached: say so now. Reached before: a service restart or a network blip, worth waiting out.
      if (!(e instanceof CliFailure) || !e.detail || !reached) throw e;
      problem = `API unreachable: ${e.detail}`;
    }
    if (answer) {
      reached = true;
      const t = answer.json;
      if (answer.status === 200 && isTask(t)) {
        failures = 0;
        o.onTask(t);
        if (isTerminal(t)) return t;
      } else if (answer.status >= 500) {
        problem = `the API answered HTTP ${answer.status}`;
      } else if (answer.status >= 400) {
        throw o.api.failure(answer, `following task ${o.id}`);
      } else {
        throw new CliFailure(`the API at ${o.api.base} answered GET ${taskPath(o.id)} with something that is not a task; is --api pointing at kvm-migrate?`, EXIT.UNREACHABLE);
      }
    }
    if (problem) {
      failures++;
      if (failures === 1) o.onNote?.(`${problem}; still trying`);
      if (failures >= max) {
        throw new CliFailure(
          `lost contact with the API while following task ${o.id} (${problem}).\nThe migration itself goes on in the service; follow it again with: kvm-migrate watch ${o.id}`,
          EXIT.UNREACHABLE,
        );
      }
    }
    try {
      await sleep(o.pollMs ?? 500, undefined, o.signal ? { signal: o.signal } : {});
    } catch {
      throw interrupted();
    }
  }
}

/** Follows task `id` until it is finished, failed or killed; returns that last state. */
export async function follow(o: FollowOptions): Promise<Task> {
  if (o.signal?.aborted) throw interrupted();
  const { final, reached } = await viaEvents(o);
  return final ?? viaPolling(o, reached);
}
