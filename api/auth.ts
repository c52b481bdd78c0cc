/**
 * Authentication and roles. Every route but /health needs a bearer token
 * from config; tokens are compared in constant time, and only the token's
 * name (never the token) is logged or shown.
 *
 * viewer: reads tasks and their events. operator: also migrates, cancels and
 * changes a running migration's limits. What needs which is decided by the
 * method alone, so a new route cannot be added without a role.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Config, Role } from '../shared/config.js';
import { migrationError } from '../shared/errors.js';

export interface Principal {
  name: string;
  role: Role;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Who a token belongs to, or null. Every configured token is compared, equal
 * lengths through SHA-256, so the time taken says nothing about which one
 * (or how much of one) matched.
 */
export function createTokenLookup(tokens: Config['auth']['tokens']): (presented: string) => Principal | null {
  const known = tokens.map((t) => ({ name: t.name, role: t.role, hash: digest(t.token) }));
  return (presented) => {
    const h = digest(presented);
    let found: Principal | null = null;
    for (const k of known) {
      if (timingSafeEqual(h, k.hash) && !found) found = { name: k.name, role: k.role };
    }
    return found;
  };
}

/** GET and HEAD read; everything else changes something. */
export function roleFor(method: string): Role {
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'operator';
}

export function allows(have: Role, need: Role): boolean {
  return have === 'operator' || need === 'viewer';
}

/** The bearer token of an Authorization header (RFC 6750), or a reason why there is none. */
export function bearer(header: string | undefined): { token: string } | { missing: string } {
  if (header === undefined || header === '') return { missing: 'send Authorization: Bearer <token>' };
  const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  if (!m) return { missing: 'the Authorization header must be "Bearer <token>"' };
  return { token: m[1]! };
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

const challenge = (res: Response, error?: string) =>
  res.setHeader('WWW-Authenticate', `Bearer realm="kvm-migrate"${error ? `, error="${error}"` : ''}`);

/**
 * Failed authentications per client address in fixed one-minute windows.
 * Past the limit a wrong token gets 429 instead of 401; a right token always
 * passes, so nobody sharing the address is locked out by a guesser.
 */
export function failureBrake(perMinute: number, now: () => number) {
  const windows = new Map<string, { start: number; count: number }>();
  return {
    /** Records a failure; returns the seconds to wait when the address is over the limit. */
    fail(addr: string): number | null {
      const t = now();
      if (windows.size > 10_000) for (const [k, w] of windows) if (t - w.start >= 60_000) windows.delete(k);
      let w = windows.get(addr);
      if (!w || t - w.start >= 60_000) windows.set(addr, (w = { start: t, count: 0 }));
      w.count++;
      return w.count > perMinute ? Math.max(1, Math.ceil((w.start + 60_000 - t) / 1000)) : null;
    },
  };
}

/** Authenticates the request and checks its role against its method. */
export function authorize(config: Config['auth'], brake: { failuresPerMinute: number; now: () => number }) {
  const lookup = createTokenLookup(config.tokens);
  const failures = failureBrake(brake.failuresPerMinute, brake.now);
  const refuse = (req: Request, res: Response, next: NextFunction, detail: string, error?: string) => {
    const wait = failures.fail(req.ip ?? req.socket.remoteAddress ?? 'unknown');
    if (wait !== null) {
      res.setHeader('Retry-After', String(wait));
      return next(migrationError('AUTH_FAILURES', { limit: String(brake.failuresPerMinute), retry: String(wait) }));
    }
    challenge(res, error);
    next(migrationError('UNAUTHENTICATED', { detail }));
  };
  return (req: Request, res: Response, next: NextFunction) => {
    if (!config.enabled) {
      req.principal = { name: 'anonymous', role: 'operator' };
      return next();
    }
    const b = bearer(req.headers.authorization);
    if ('missing' in b) return refuse(req, res, next, b.missing);
    const who = lookup(b.token);
    if (!who) return refuse(req, res, next, 'the token is not valid', 'invalid_token');
    req.principal = who;
    const need = roleFor(req.method);
    if (!allows(who.role, need)) {
      challenge(res, 'insufficient_scope');
      return next(migrationError('FORBIDDEN', { who: who.name, role: who.role, method: req.method, path: req.path.slice(0, 200) }));
    }
    next();
  };
}
