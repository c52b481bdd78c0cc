/**
 * Authentication and roles. Every route but the public ones (/health,
 * /healthz, /readyz, /openapi.json, the login page and the page's assets,
 * logging in and out) needs a bearer token from config, or a browser
 * session made from one (api/session.ts); tokens are compared in constant
 * time, and only the token's name (never the token) is logged or shown.
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

/** How a request proved who it is: a session cookie's writes must also prove they come from this API's own pages (guards.ts). */
export type AuthVia = 'bearer' | 'session' | 'open';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
    authVia?: AuthVia;
    /** The browser session behind the principal, when a cookie established it. */
    authSession?: { id: string; expiresAt: string };
  }
}

/** The cookie that carries a browser session's id (never the token). */
export const SESSION_COOKIE = 'kvm_migrate_session';

/** What a session id leads to; api/session.ts keeps them in Redis. */
export interface SessionLookup {
  get(id: string): Promise<{ name: string; role: Role; expires_at: string; tag: string } | null>;
}

/**
 * 32 bits of a token's digest, kept with each session made from it, so a
 * token replaced under the same name (rotated after a leak) ends its
 * sessions. Too short to help anyone guess the token.
 */
export const tokenTag = (token: string): string => createHash('sha256').update(`kvm-migrate session\0${token}`, 'utf8').digest('hex').slice(0, 8);

/** 256 random bits, base64url: anything else is not worth a Redis call. */
export const isSessionId = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v);

/** Pages a browser opens by address: without credentials it is sent to the login page instead of a JSON 401. */
const LOGIN_PAGES = /^\/$|^\/admin\/queues(\/|$)/;

/** Whether to answer an unauthenticated request with a redirect to /login: a browser navigating (GET, wants HTML) to a page. */
export function wantsLoginPage(method: string, path: string, accept: string | undefined): boolean {
  return method === 'GET' && LOGIN_PAGES.test(path) && /(^|,)\s*text\/html\s*(;|,|$)/i.test(accept ?? '');
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

export interface Authenticator {
  /** Middleware: authenticates the request (bearer header, else session cookie) and checks its role against its method. */
  authorize: (req: Request, res: Response, next: NextFunction) => Promise<void>;
  /**
   * A token presented in a body (POST /session), checked exactly like a
   * bearer token and under the same failure brake. Throws the 401 or 429.
   * undefined: the body carried none (api/schemas.ts SessionBody refused it).
   */
  checkToken(req: Request, res: Response, token: string | undefined): Principal;
}

export function createAuthenticator(config: Config['auth'], brake: { failuresPerMinute: number; now: () => number }, sessions: SessionLookup | null = null): Authenticator {
  const lookup = createTokenLookup(config.tokens);
  // A session outlives a restart: it holds only while the token it was made from is still configured, with that role.
  const current = new Map(config.tokens.map((t) => [t.name, { role: t.role, tag: tokenTag(t.token) }]));
  const failures = failureBrake(brake.failuresPerMinute, brake.now);
  /** Counts the failure and gives the error to answer with: 401, or 429 past the brake. */
  const refusal = (req: Request, res: Response, detail: string, error?: string) => {
    const wait = failures.fail(req.ip ?? req.socket.remoteAddress ?? 'unknown');
    if (wait !== null) {
      res.setHeader('Retry-After', String(wait));
      return migrationError('AUTH_FAILURES', { limit: String(brake.failuresPerMinute), retry: String(wait) });
    }
    challenge(res, error);
    return migrationError('UNAUTHENTICATED', { detail });
  };
  const toLogin = (req: Request, res: Response) => res.redirect(303, `/login?next=${encodeURIComponent(req.originalUrl)}`);

  const checkToken = (req: Request, res: Response, token: string | undefined): Principal => {
    if (!config.enabled) return { name: 'anonymous', role: 'operator' };
    if (token === undefined) throw refusal(req, res, 'send {"token": "<token>"}');
    const who = lookup(token);
    if (!who) throw refusal(req, res, 'the token is not valid', 'invalid_token');
    return who;
  };

  const authorize = async (req: Request, res: Response, next: NextFunction) => {
    if (!config.enabled) {
      req.principal = { name: 'anonymous', role: 'operator' };
      req.authVia = 'open';
      return next();
    }
    const header = req.headers.authorization;
    const cookie = (req.cookies as Record<string, unknown> | undefined)?.[SESSION_COOKIE];
    const page = wantsLoginPage(req.method, req.path, req.headers.accept);
    let who: Principal;
    if ((header === undefined || header === '') && cookie !== undefined && sessions) {
      const s = isSessionId(cookie) ? await sessions.get(cookie) : null;
      const now = s ? current.get(s.name) : undefined;
      if (!s || now?.role !== s.role || now.tag !== s.tag) {
        const e = refusal(req, res, 'the session is not valid or has expired; log in again (POST /session)', 'invalid_token');
        return page && e.key === 'UNAUTHENTICATED' ? toLogin(req, res) : next(e);
      }
      who = { name: s.name, role: s.role };
      req.authVia = 'session';
      req.authSession = { id: cookie as string, expiresAt: s.expires_at };
    } else {
      // A browser arriving without credentials is sent to log in; that is not a guess, so it is not counted.
      if ((header === undefined || header === '') && page) return toLogin(req, res);
      const b = bearer(header);
      if ('missing' in b) return next(refusal(req, res, b.missing));
      const found = lookup(b.token);
      if (!found) return next(refusal(req, res, 'the token is not valid', 'invalid_token'));
      who = found;
      req.authVia = 'bearer';
    }
    req.principal = who;
    const need = roleFor(req.method);
    if (!allows(who.role, need)) {
      challenge(res, 'insufficient_scope');
      return next(migrationError('FORBIDDEN', { who: who.name, role: who.role, method: req.method, path: req.path.slice(0, 200) }));
    }
    next();
  };
  return { authorize, checkToken };
}
