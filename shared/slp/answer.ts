/**
 * What a service agent says to a request, per RFC 2608: pure, so the rules
 * (silence when listed, no error and no empty answer to multicast, always an
 * answer to unicast) are decided in one place and the socket code only sends.
 */
import { encode, Flags, Fn, SLP_MTU, type SlpMessage, type SrvRqst, type SrvTypeRqst, type UrlEntry } from './codec.js';
import { SlpErrorCode } from './errors.js';

export interface Registration {
  url: string;
  serviceType: string;
  /** Seconds; default 65535 (permanent for openSLP). */
  lifetime?: number;
  /** Default ['DEFAULT']. */
  scopes?: string[];
}

export interface AnswerContext {
  services: Registration[];
  /** Addresses this agent answers from: a PR list naming one of them means "already heard you". */
  ownAddresses: string[];
  /** Request sent to the multicast group (REQUEST-MCAST set, or arrived on the group socket). */
  multicast: boolean;
  mtu?: number;
}

export type Outcome =
  | { kind: 'reply'; reply: SlpMessage }
  | { kind: 'listed' } // one of our addresses is in the PR list
  | { kind: 'silent'; why: string } // multicast request we have nothing for
  | { kind: 'ignored'; why: string }; // a message an SA does not answer

const lower = (s: string) => s.toLowerCase();
const scopesOf = (r: Registration) => (r.scopes && r.scopes.length > 0 ? r.scopes : ['DEFAULT']);
/** An empty scope list in a request means the default scope. */
const requested = (scopes: string[]) => (scopes.length > 0 ? scopes : ['DEFAULT']).map(lower);

/** `service:printer` asks for `service:printer` and every concrete `service:printer:lpr`. */
export function typeMatches(registered: string, asked: string): boolean {
  const r = lower(registered);
  const a = lower(asked);
  return r === a || r.startsWith(`${a}:`);
}

/** Registrations are in English, as Kimchi's; `en-US` asks for English too. */
const langOk = (lang: string) => /^en(-|$)/i.test(lang);

function header(req: SlpMessage) {
  return { xid: req.xid, lang: req.lang, flags: 0 };
}

function fitRply(req: SrvRqst, urls: UrlEntry[], mtu: number): SlpMessage {
  let reply: SlpMessage = { fn: Fn.SrvRply, ...header(req), error: 0, urls };
  // A reply over the MTU cannot go in one datagram: send what fits and say so (OVERFLOW).
  for (let n = urls.length; n > 0 && encode(reply).length > mtu; n--) {
    reply = { fn: Fn.SrvRply, ...header(req), flags: Flags.OVERFLOW, error: 0, urls: urls.slice(0, n - 1) };
  }
  return reply;
}

function listed(prList: string[], own: string[]): boolean {
  return prList.some((a) => own.includes(a.trim()));
}

function error(req: SrvRqst | SrvTypeRqst, ctx: AnswerContext, code: number, why: string): Outcome {
  if (ctx.multicast) return { kind: 'silent', why };
  return req.fn === Fn.SrvRqst
    ? { kind: 'reply', reply: { fn: Fn.SrvRply, ...header(req), error: code, urls: [] } }
    : { kind: 'reply', reply: { fn: Fn.SrvTypeRply, ...header(req), error: code, serviceTypes: [] } };
}

function common(req: SrvRqst | SrvTypeRqst, ctx: AnswerContext): Outcome | null {
  if (listed(req.prList, ctx.ownAddresses)) return { kind: 'listed' };
  if (!langOk(req.lang)) return error(req, ctx, SlpErrorCode.LANGUAGE_NOT_SUPPORTED, `language ${req.lang}`);
  const ours = new Set(ctx.services.flatMap(scopesOf).map(lower));
  if (!requested(req.scopes).some((s) => ours.has(s))) return error(req, ctx, SlpErrorCode.SCOPE_NOT_SUPPORTED, `scopes ${req.scopes.join(',')}`);
  return null;
}

export function answer(req: SlpMessage, ctx: AnswerContext): Outcome {
  const mtu = ctx.mtu ?? SLP_MTU;
  if (req.fn === Fn.SrvRqst) {
    const early = common(req, ctx);
    if (early) return early;
    if (req.spi !== '') return error(req, ctx, SlpErrorCode.AUTHENTICATION_UNKNOWN, `SPI ${req.spi}`);
    const scopes = requested(req.scopes);
    // We register no attributes, so a predicate (an LDAP filter on them) matches nothing.
    const urls = req.predicate.trim() !== ''
      ? []
      : ctx.services
          .filter((s) => typeMatches(s.serviceType, req.serviceType) && scopesOf(s).some((x) => scopes.includes(lower(x))))
          .map((s) => ({ url: s.url, lifetime: s.lifetime ?? 0xffff }));
    if (urls.length === 0 && ctx.multicast) return { kind: 'silent', why: `no ${req.serviceType}` };
    return { kind: 'reply', reply: fitRply(req, urls, mtu) };
  }
  if (req.fn === Fn.SrvTypeRqst) {
    const early = common(req, ctx);
    if (early) return early;
    const scopes = requested(req.scopes);
    const na = req.namingAuthority;
    const types = new Map<string, string>();
    for (const s of ctx.services) {
      if (!scopesOf(s).some((x) => scopes.includes(lower(x)))) continue;
      // service:<name>[.<naming authority>][:<concrete>]; no authority = IANA, asked for with "".
      const name = s.serviceType.replace(/^service:/i, '').split(':')[0] ?? '';
      const dot = name.lastIndexOf('.');
      const authority = dot < 0 ? '' : name.slice(dot + 1);
      if (na !== '*' && lower(na) !== lower(authority)) continue;
      types.set(lower(s.serviceType), s.serviceType);
    }
    if (types.size === 0 && ctx.multicast) return { kind: 'silent', why: 'no service types' };
    return { kind: 'reply', reply: { fn: Fn.SrvTypeRply, ...header(req), error: 0, serviceTypes: [...types.values()] } };
  }
  return { kind: 'ignored', why: `function ${req.fn}` };
}
