/**
 * What stands between the network and the routes: security headers, CORS
 * (off unless configured), authentication and roles, a brake on failed
 * authentication, a refusal of cross-site writes, the rate limit on writes,
 * and a body parser that reads only JSON, only after all of that.
 */
import cookieParser from 'cookie-parser';
import cors from 'cors';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import type { Config } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import type { Authenticator } from './auth.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Headers and CORS: on every answer, /health included. */
export function outerGuards(config: Config): RequestHandler[] {
  const out: RequestHandler[] = [helmet()];
  if (config.api.cors_origins.length) {
    out.push(cors({ origin: config.api.cors_origins, allowedHeaders: ['authorization', 'content-type', 'idempotency-key'], exposedHeaders: ['location', 'link', 'x-next-cursor'], maxAge: 600 }));
  }
  return out;
}

/**
 * A browser on another origin can send a "simple" POST without asking
 * (no preflight). With bearer tokens it cannot authenticate, but with
 * auth.enabled=false it could start or cancel migrations: writes that carry
 * an Origin (or Sec-Fetch-Site: cross-site) from outside api.cors_origins
 * are refused.
 *
 * A session cookie rides along on whatever the browser sends, so a write
 * made with one must also show it comes from this API's own pages:
 * Sec-Fetch-Site: same-origin, or, from a browser too old to send that, an
 * Origin equal to the API's. Without either (a form on a sibling subdomain,
 * an old browser, a proxy that strips both) it is refused. Bearer clients
 * (the CLI, curl) send neither and are not affected. Returns what to name in
 * the refusal, or null to let it pass.
 *
 * Sec-Fetch-Site: same-origin settles it before any Origin comparison: the
 * browser computes it from the address it used, and no page can set it.
 * The API's own origin as the request shows it (`own`: the scheme it was
 * reached over and Host) is not what the browser used behind a
 * TLS-terminating proxy (https there, http here), so for browsers without
 * Sec-Fetch-Site `publicOrigin` (api.public_origin) is the API's too.
 */
export function crossSiteRefusal(r: { method: string; origin: string | undefined; own: string; publicOrigin?: string; fetchSite: string | undefined; allowed: ReadonlySet<string>; viaSession: boolean }): { origin: string; why?: string } | null {
  if (READS.has(r.method)) return null;
  if (r.fetchSite === 'same-origin') return null;
  const ours = (o: string) => o === r.own || (r.publicOrigin !== undefined && r.publicOrigin !== '' && o === r.publicOrigin);
  const foreign = r.origin !== undefined && !ours(r.origin) && !r.allowed.has(r.origin);
  const crossSite = r.fetchSite === 'cross-site' && !(r.origin && r.allowed.has(r.origin));
  if (foreign || crossSite) return { origin: r.origin ?? 'a cross-site page' };
  if (!r.viaSession) return null;
  const why = "a session cookie changes something only from this API's own pages";
  if (r.fetchSite !== undefined) return { origin: `a ${r.fetchSite} page`, why };
  if (r.origin !== undefined && ours(r.origin)) return null;
  return { origin: r.origin ?? 'a request with a session cookie but neither Origin nor Sec-Fetch-Site', why };
}

/** api.public_origin as browsers serialize an Origin: lower case, no default port. */
export const publicOrigin = (configured: string): string => (configured === '' ? '' : new URL(configured).origin);

export function refuseCrossSite(config: Config): RequestHandler {
  const allowed = new Set(config.api.cors_origins);
  const pub = publicOrigin(config.api.public_origin);
  return (req: Request, _res: Response, next: NextFunction) => {
    const fetchSite = req.headers['sec-fetch-site'];
    const refused = crossSiteRefusal({
      method: req.method,
      origin: req.headers.origin,
      own: `${req.protocol}://${req.headers.host ?? ''}`,
      publicOrigin: pub,
      fetchSite: typeof fetchSite === 'string' ? fetchSite : undefined,
      allowed,
      viaSession: req.authVia === 'session',
    });
    if (refused) return next(migrationError('CROSS_SITE', { origin: refused.origin.slice(0, 100), ...(refused.why ? { why: refused.why } : {}) }));
    next();
  };
}

/** Writes carry JSON; anything else (a form post, text/plain) is refused before it is read. */
export function jsonOnly(req: Request, _res: Response, next: NextFunction) {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is('application/json')) return next(migrationError('UNSUPPORTED_MEDIA_TYPE', { type: String(req.headers['content-type'] ?? 'none').slice(0, 100) }));
  next();
}

/** Bodies: JSON only, at most 16 KiB. */
export const jsonBody = (): RequestHandler => express.json({ limit: '16kb', strict: true });

/** Runs `h` for writes only: reads are not rate-limited and carry no body, so they skip the work entirely. */
const writesOnly =
  (h: RequestHandler): RequestHandler =>
  (req, res, next) =>
    READS.has(req.method) ? next() : h(req, res, next);

/** Everything after /health: who is asking (a bearer token or a session cookie), may they, and only then their body. */

export function innerGuards(config: Config, auth: Authenticator): RequestHandler[] {
  return [
    cookieParser(),
    auth.authorize,
    refuseCrossSite(config),
    writesOnly(
      rateLimit({
        windowMs: 60_000,
        limit: config.api.rate_limit,
        keyGenerator: (req) => req.principal?.name ?? 'anonymous',
        standardHeaders: 'draft-7',
        legacyHeaders: false,
        handler: (_req, res, next) => next(migrationError('RATE_LIMITED', { limit: String(config.api.rate_limit), retry: String(res.getHeader('retry-after') ?? 60) })),
      }),
    ),
    jsonOnly,
    writesOnly(jsonBody()),
  ];
}
