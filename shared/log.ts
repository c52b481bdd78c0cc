/** Structured JSON logs (pino). The Redis URL is marked sensitive in the schema and never logged. */
import { pino } from 'pino';

export function createLogger(level: string, name: string) {
  return pino({ name, level, redact: ['password', 'token', '*.password', '*.token', 'authorization'] });
}

export const systemClock = { now: () => new Date() };
