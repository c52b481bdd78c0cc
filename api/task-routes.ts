/**
 * Stage 2 of the proposal on the task resource: cancel (DELETE, wok's
 * convention, and Kimchi's action style on the VM), live tuning (PATCH) and
 * the event stream (server-sent events).
 */
import type { Express, NextFunction, Request, Response } from 'express';
import { migrationError } from '../shared/errors.js';
import type { Task } from '../shared/task.js';
import type { ApiDeps } from './app.js';
import { validateTuneBody, validateVmName } from './validate.js';

type Handler = (req: Request, res: Response) => Promise<void>;
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);
const TERMINAL = new Set(['finished', 'failed', 'killed']);

/**
 * How often an event stream looks at its task without being woken (task-events.ts wakes it
 * at each BullMQ event of its job: progress, the end), and how often it says it is alive.
 */
const STREAM_POLL_MS = 100;
const STREAM_HEARTBEAT_MS = 15_000;

export function addTaskRoutes(app: Express, deps: ApiDeps): void {
  const { tasks, clock, config } = deps;

  const cancelled = (res: Response, task: Task) => {
    // Removed from the queue: over at once (200). Running: the worker stops it (202).
    res.status(TERMINAL.has(task.status) ? 200 : 202).location(`/tasks/${task.id}`).json(task);
  };

  app.delete(
    '/tasks/:id',
    wrap(async (req, res) => {
      const task = await tasks.cancel(String(req.params.id), clock.now());
      deps.log.info({ task: task.id }, 'cancel requested');
      cancelled(res, task);
    }),
  );

  app.post(
    '/vms/:name/migrate_cancel',
    wrap(async (req, res) => {
      const name = validateVmName(String(req.params.name));
      const id = await tasks.activeFor(config.libvirt.source_uri, name);
      if (!id) throw migrationError('NO_ACTIVE_MIGRATION', { name });
      const task = await tasks.cancel(id, clock.now());
      deps.log.info({ task: task.id, vm: name }, 'cancel requested');
      cancelled(res, task);
    }),
  );

  app.patch(
    '/tasks/:id',
    wrap(async (req, res) => {
      const body = validateTuneBody(req.body ?? {});
      const id = String(req.params.id);
      await tasks.tune(id, {
        ...(body.bandwidth !== undefined ? { bandwidth: body.bandwidth } : {}),
        ...(body.max_downtime !== undefined ? { maxDowntimeMs: body.max_downtime } : {}),
      });
      // Answer with the values in force once the worker applied them; 202 if it has not yet
      // (e.g. still queued: the worker applies them when the copy starts).
      const deadline = Date.now() + 3000;
      let task = await tasks.get(id);
      const applied = (t: Task | null) =>
        !!t?.policy.in_force &&
        (body.bandwidth === undefined || t.policy.in_force.bandwidth === body.bandwidth) &&
        (body.max_downtime === undefined || t.policy.in_force.max_downtime === body.max_downtime);
      while (task && !applied(task) && !TERMINAL.has(task.status) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        task = await tasks.get(id);
      }
      if (!task) throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      res.status(applied(task) ? 200 : 202).json(task);
    }),
  );

  // Open streams per client: each one looks at its task every 100 ms, so their number is bounded.
  const streams = new Map<string, number>();
  app.get(
    '/tasks/:id/events',
    wrap(async (req, res) => {
      const id = String(req.params.id);
      const who = req.principal?.name ?? 'anonymous';
      const open0 = streams.get(who) ?? 0;
      if (open0 >= config.api.streams_per_client) throw migrationError('TOO_MANY_STREAMS', { who, limit: String(config.api.streams_per_client) });
      streams.set(who, open0 + 1);
      res.on('close', () => {
        const n = (streams.get(who) ?? 1) - 1;
        if (n > 0) streams.set(who, n);
        else streams.delete(who);
      });
      // Watch for the client going away before anything is awaited, or a stream could outlive it.
      let open = true;
      res.on('close', () => (open = false));
      const woken = (taskId: string) => deps.signals?.next(taskId, STREAM_POLL_MS) ?? new Promise<void>((r) => setTimeout(r, STREAM_POLL_MS));
      let changed = woken(id);
      const first = await tasks.get(id);
      if (!first) throw migrationError('TASK_NOT_FOUND', { id: id.slice(0, 64) });
      if (!open) return;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      let last = '';
      const send = (t: Task) => {
        const json = JSON.stringify(t);
        if (json === last) return;
        last = json;
        res.write(`event: task\nid: ${Date.now()}\ndata: ${json}\n\n`);
      };
      const heartbeat = setInterval(() => res.write(': alive\n\n'), STREAM_HEARTBEAT_MS);
      try {
        // A late client gets the current state first, then every change until the end.
        // The wait is armed before each read, so a change during the read wakes the next wait.
        let task: Task | null = first;
        while (open && task) {
          send(task);
          if (TERMINAL.has(task.status)) break;
          await changed;
          changed = woken(id);
          task = await tasks.get(id).catch(() => task);
        }
      } finally {
        clearInterval(heartbeat);
        res.end();
      }
    }),
  );
}
