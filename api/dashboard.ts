/**
 * The queue dashboard (bull-board) at /admin/queues, behind the API's own
 * authentication: it is mounted after the guards, so a viewer's write
 * through it is refused there (403 KMIG0021E) before bull-board sees it.
 * Two boards share the migrations Queue: viewers get the read-only one
 * (no retry, clean, promote or pause buttons), operators one whose writes
 * are limited to those that cannot go around the API's rules (pause,
 * resume, promote, remove ended jobs: api/dashboard-guard.ts), checked
 * before bull-board sees the request, as is the size of a page of jobs.
 *
 * What it shows is redacted (see `redactDeep`): job data, return values
 * and every answer of bull-board's API pass through it, so a libvirt or
 * Redis URI's user, password and query parameters (keyfile, pkipath,
 * authfile, ...) and any field named like a token, password, secret,
 * cookie, credential, principal or idempotency key never reach a browser.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { Express, NextFunction, Request, Response } from 'express';
import type { Role } from '../shared/config.js';
import { redactDeep, redactText } from '../shared/redact.js';
import { guardBoard } from './dashboard-guard.js';

export const DASHBOARD_PATH = '/admin/queues';
/** A job's line on the board: which VM goes where, not just "migrate". */
export function jobLabel(job: { name?: string; data?: { request?: { vm?: unknown; remoteHost?: unknown } } }): string {
  const r = job.data?.request;
  return typeof r?.vm === 'string' && typeof r.remoteHost === 'string' ? `${job.name ?? 'migrate'} ${r.vm} → ${r.remoteHost}` : (job.name ?? '');
}

function board(queue: Queue, readOnly: boolean): Express {
  const server = new ExpressAdapter().setBasePath(DASHBOARD_PATH);
  const adapter = new BullMQAdapter(queue, {
    readOnlyMode: readOnly,
    // Refused by guardBoard anyway; this hides the retry buttons. bull-board has no switch for its other buttons.
    allowRetries: false,
    description: readOnly ? 'Migrations (read-only: your role is viewer)' : 'Migrations',
  });
  adapter.setFormatter('data', (d) => redactDeep(d));
  adapter.setFormatter('returnValue', (d) => redactDeep(d));
  adapter.setFormatter('name', (job) => redactText(jobLabel(job)));
  createBullBoard({
    queues: [adapter],
    serverAdapter: server,
    options: {
      uiConfig: {
        boardTitle: 'kvm-migrate',
        hideDocsLink: true,
        miscLinks: [
          { text: 'Migrations', url: '/' },
          { text: 'Log in or out', url: '/login' },
        ],
      },
      // Formatters cover data, name and return value; options (the per-VM lock key holds the
      // source URI), failure reasons, stack traces and logs are only reachable here.
      handlerHooks: { after: (_ctx, result) => ({ ...result, body: redactDeep(result.body) as typeof result.body }) },
    },
  });
  const app = server.getRouter() as Express;
  app.disable('x-powered-by');
  return app;
}

/**
 * bull-board's page links a Google Fonts style sheet. It is dropped: the
 * dashboard then loads nothing from a third party (no failed load on an
 * isolated network, no operator's address sent to Google) and helmet's
 * Content-Security-Policy holds unchanged here, as the rest of the page
 * needs nothing it forbids (its settings are a JSON data block, not a
 * script; its inline styles are allowed by helmet's style-src).
 */
const THIRD_PARTY_FONTS = /<link[^>]*fonts\.googleapis\.com[^>]*>\s*/g;

/** Mounts both boards; needs req.principal, so it goes after the guards. */
export function addDashboard(app: Express, queue: Queue): void {
  const boards: Record<Role, Express> = { viewer: board(queue, true), operator: board(queue, false) };
  app.use(DASHBOARD_PATH, guardBoard(queue), (req: Request, res: Response, next: NextFunction) => {
    const render = res.render.bind(res);
    res.render = ((view: string, options?: object) =>
      render(view, options ?? {}, (err: Error | null, html?: string) => (err ? next(err) : res.send((html ?? '').replace(THIRD_PARTY_FONTS, ''))))) as Response['render'];
    // A board is an Express app of its own that re-parents req and res; give them back on the way out.
    const reqProto = Object.getPrototypeOf(req) as object;
    const resProto = Object.getPrototypeOf(res) as object;
    boards[req.principal?.role ?? 'viewer'](req, res, (err?: unknown) => {
      Object.setPrototypeOf(req, reqProto);
      Object.setPrototypeOf(res, resProto);
      next(err);
    });
  });
}
