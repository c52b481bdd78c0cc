/**
 * Structured JSON logs (pino). Secrets are kept out at the source (the Redis
 * URL is marked sensitive, tokens are never put in a log object); redaction
 * is the second line of defence for a header or token that slips into one.
 * A libvirt error or one of ours can quote a URI with its user, password and
 * key file (KCHVM0090E names the destination URI): every string of a line,
 * the message included, has its URIs redacted like a task's.
 */
import { pino, type DestinationStream } from 'pino';
import { redactDeep, redactText } from './redact.js';

export const REDACT = ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization', 'req.headers.authorization', 'headers.authorization'];

/** An Error's message and stack are not enumerable: made plain first, or redaction would drop them. */
const plain = (v: unknown) => (v instanceof Error ? { type: v.name, message: v.message, stack: v.stack } : v);

/** A log object with every URI in it redacted (and fields named like secrets hidden). */
export function redactLogObject(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = plain(v);
  return redactDeep(out) as Record<string, unknown>;
}

export function createLogger(level: string, name: string, destination?: DestinationStream) {
  const opts = {
    name,
    level,
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { log: redactLogObject },
    hooks: {
      logMethod(this: pino.Logger, args: unknown[], method: pino.LogFn) {
        (method as (...a: unknown[]) => void).apply(this, args.map((a) => (typeof a === 'string' ? redactText(a) : a)));
      },
    },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

export const systemClock = { now: () => new Date() };
