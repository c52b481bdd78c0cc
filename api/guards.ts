/**
 * What stands between the network and the routes: security headers, CORS
 * (off unless configured), authentication and roles, a brake on failed
 * authentication, a refusal of cross-site writes, the rate limit on writes,
 * and a body parser that reads only JSON, only after all of that.
 */
import cors from 'cors';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import type { Config } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';
import { authorize } from './auth.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Headers and CORS: on every answer, /health included. */
export function outerGuards(config: Config): RequestHandler[] {
  const out: RequestHandler[] = [helmet()];
  if (config.api.cors_origins.length) {
    out.push(cors({ origin: config.api.cors_origins, allowedHeaders: ['authorization', 'content-type', 'idempotency-key'], exposedHeaders: ['location'], maxAge: 600 }));
  }
  return out;
}

/**
 * A browser on another origin can send a "simple" POST without asking
 * (no preflight). With bearer tokens it cannot authenticate, but with
 * auth.enabled=false it could start or cancel migrations: writes that carry
 * an Origin (or Sec-Fetch-Site: cross-site) from outside api.cors_origins
 * are refused.
 */
function refuseCrossSite(config: Config): RequestHandler {
  const allowed = new Set(config.api.cors_origins);
  return (req: Request, _res: Response, next: NextFunction) => {
    if (READS.has(req.method)) return next();
    const origin = req.headers.origin;
    const own = `${req.protocol}://${req.headers.host ?? ''}`;
    const foreign = origin !== undefined && origin !== own && !allowed.has(origin);
    const crossSite = req.headers['sec-fetch-site'] === 'cross-site' && !(origin && allowed.has(origin));
    if (foreign || crossSite) return next(migrationError('CROSS_SITE', { origin: String(origin ?? 'a cross-site page').slice(0, 100) }));
    next();
  };
}

/** Writes carry JSON; anything else (a form post, text/plain) is refused before it is read. */
function jsonOnly(req: Request, _res: Response, next: NextFunction) {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is('application/json')) return next(migrationError('UNSUPPORTED_MEDIA_TYPE', { type: String(req.headers['content-type'] ?? 'none').slice(0, 100) }));
  next();
}

/** Everything after /health: who is asking, may they, and only then their body. */
export function innerGuards(config: Config, now: () => number = Date.now): RequestHandler[] {
  return [
    authorize(config.auth, { failuresPerMinute: config.api.auth_failure_limit, now }),
    refuseCrossSite(config),
    rateLimit({
      windowMs: 60_000,
      limit: config.api.rate_limit,
      skip: (req) => READS.has(req.method),
      keyGenerator: (req) => req.principal?.name ?? 'anonymous',
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      handler: (_req, res, next) => next(migrationError('RATE_LIMITED', { limit: String(config.api.rate_limit), retry: String(res.getHeader('retry-after') ?? 60) })),
    }),
    jsonOnly,
    express.json({ limit: '16kb', strict: true }),
  ];
}
