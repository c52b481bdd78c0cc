/**
 * Browser sessions. A browser cannot put a bearer token on a page load, on
 * the dashboard's own fetches or on an EventSource, so it trades a token
 * once (POST /session, from the login page) for a cookie holding a random
 * 256-bit id. Redis maps the id's SHA-256 to the token's name and role for
 * auth.session_ttl: the token is never stored, and a copy of Redis holds no
 * id a browser could present.
 *
 * The cookie is HttpOnly (no script reads it), SameSite=Strict (no other
 * site's page sends it) and Path=/; writes made with it must also come from
 * this API's own pages (crossSiteRefusal in guards.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import cookieParser from 'cookie-parser';
import type { CookieOptions, Express, NextFunction, Request, Response } from 'express';
import type { Redis } from 'ioredis';
import type { Config, Role } from '../shared/config.js';
import type { Clock, Logger } from '../worker/stages/stage.js';
import { isSessionId, SESSION_COOKIE, tokenTag, type Authenticator, type Principal, type SessionLookup } from './auth.js';
import { jsonBody, jsonOnly, refuseCrossSite } from './guards.js';
import { SessionBody } from './schemas.js';

export interface SessionRecord {
  name: string;
  role: Role;
  expires_at: string;
}

export interface SessionStore extends SessionLookup {
  /** `tag`: tokenTag() of the token logged in with. */
  create(who: Principal, tag: string, now: Date): Promise<{ id: string; record: SessionRecord }>;
  remove(id: string): Promise<void>;
}

/** Every Redis call bounded and turned into a 503 (tasks.ts `guard`). */
type Bounded = <T>(p: () => Promise<T>) => Promise<T>;

/** Only a digest of the id is a key: whoever reads Redis cannot log in with what they read. */
export const sessionKey = (prefix: string, id: string) => `${prefix}:session:${createHash('sha256').update(id, 'utf8').digest('hex')}`;

function parseRecord(raw: string): (SessionRecord & { tag: string }) | null {
  try {
    const r = JSON.parse(raw) as Partial<SessionRecord & { tag: string }>;
    if (typeof r.name === 'string' && (r.role === 'viewer' || r.role === 'operator') && typeof r.expires_at === 'string' && typeof r.tag === 'string') {
      return { name: r.name, role: r.role, expires_at: r.expires_at, tag: r.tag };
    }
  } catch {
    /* not ours */
  }
  return null;
}

export function createSessionStore(o: { client: Pick<Redis, 'set' | 'get' | 'del'>; prefix: string; ttlSeconds: number; redis: Bounded }): SessionStore {
  return {
    async create(who, tag, now) {
      const id = randomBytes(32).toString('base64url');
      const record: SessionRecord = { name: who.name, role: who.role, expires_at: new Date(now.getTime() + o.ttlSeconds * 1000).toISOString() };
      await o.redis(() => o.client.set(sessionKey(o.prefix, id), JSON.stringify({ ...record, tag }), 'EX', o.ttlSeconds));
      return { id, record };
    },
    async get(id) {
      const raw = await o.redis(() => o.client.get(sessionKey(o.prefix, id)));
      return raw === null ? null : parseRecord(raw);
    },
    async remove(id) {
      await o.redis(() => o.client.del(sessionKey(o.prefix, id)));
    },
  };
}

/**
 * Whether the cookie gets Secure. auto: when the login came over https, on
 * a TLS socket or as a proxy's X-Forwarded-Proto says; trusting that header
 * is safe here because it can only make the cookie stricter.
 */
export function cookieSecure(setting: Config['auth']['cookie_secure'], secureSocket: boolean, forwardedProto: string | undefined): boolean {
  if (setting !== 'auto') return setting === 'always';
  return secureSocket || forwardedProto?.split(',')[0]?.trim().toLowerCase() === 'https';
}

export function cookieOptions(config: Config['auth'], req: Request): CookieOptions {
  const fwd = req.headers['x-forwarded-proto'];
  return { httpOnly: true, sameSite: 'strict', path: '/', secure: cookieSecure(config.cookie_secure, req.secure, typeof fwd === 'string' ? fwd : undefined) };
}

const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'public');

export interface SessionDeps {
  config: Config;
  sessions: SessionStore;
  auth: Authenticator;
  clock: Clock;
  log: Logger;
}

/**
 * What must work before anyone is authenticated: the login page and its
 * assets, logging in (POST /session: JSON only, 16 KiB at most, under the
 * failure brake) and logging out (DELETE /session: a viewer must be able to,
 * so it needs no role; it only ever ends the session its own cookie names).
 */
export function addLoginRoutes(app: Express, deps: SessionDeps): void {
  const { config, sessions } = deps;
  const file = (name: string) => (_req: Request, res: Response) => {
    res.setHeader('cache-control', 'no-cache');
    res.sendFile(join(PUBLIC_DIR, name));
  };
  app.get('/login', file('login.html'));
  app.get('/login.js', file('login.js'));
  app.get('/login.css', file('login.css'));

  app.post('/session', refuseCrossSite(config), jsonOnly, jsonBody(), async (req: Request, res: Response) => {
    // The schema the API description shows; a body it refuses is a login without a token (401, counted by the brake).
    const parsed = SessionBody.safeParse(req.body);
    const token = parsed.success ? parsed.data.token : undefined;
    const who = deps.auth.checkToken(req, res, token);
    res.setHeader('cache-control', 'no-store');
    // With authentication off everyone is an operator already: there is nothing to remember.
    if (!config.auth.enabled) {
      res.status(201).json({ ...who, expires_at: null });
      return;
    }
    const { id, record } = await sessions.create(who, tokenTag(token ?? ''), deps.clock.now());
    res.cookie(SESSION_COOKIE, id, { ...cookieOptions(config.auth, req), maxAge: config.auth.session_ttl * 1000 });
    deps.log.info({ by: who.name, role: who.role, expires_at: record.expires_at }, 'browser session opened');
    res.status(201).json(record);
  });

  // A cookie-carrying write like any other: it must come from this API's own pages.
  const cookieWrite = (req: Request, _res: Response, next: NextFunction) => {
    if ((req.cookies as Record<string, unknown>)[SESSION_COOKIE] !== undefined) req.authVia = 'session';
    next();
  };
  app.delete('/session', cookieParser(), cookieWrite, refuseCrossSite(config), async (req: Request, res: Response) => {
    const id = (req.cookies as Record<string, unknown>)[SESSION_COOKIE];
    if (isSessionId(id)) await sessions.remove(id);
    res.clearCookie(SESSION_COOKIE, cookieOptions(config.auth, req));
    res.status(204).end();
  });
}

/** GET /session: who the request is (needs a viewer; mounted after the guards). */
export function addSessionRoute(app: Express): void {
  app.get('/session', (req, res) => {
    res.setHeader('cache-control', 'no-store');
    res.json({ name: req.principal!.name, role: req.principal!.role, expires_at: req.authSession?.expiresAt ?? null });
  });
}
