/**
 * Structured JSON logs (pino). Secrets are kept out at the source (the Redis
 * URL is marked sensitive, tokens are never put in a log object); redaction
 * is the second line of defence for a header or token that slips into one.
 */
import { pino, type DestinationStream } from 'pino';

export const REDACT = ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization', 'req.headers.authorization', 'headers.authorization'];

export function createLogger(level: string, name: string, destination?: DestinationStream) {
  const opts = { name, level, redact: { paths: REDACT, censor: '[redacted]' } };
  return destination ? pino(opts, destination) : pino(opts);
}

export const systemClock = { now: () => new Date() };
