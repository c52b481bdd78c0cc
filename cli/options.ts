/**
 * Command line: the commands, their options, their help texts, and the
 * parser that turns argv into one checked request (or a usage error).
 * Options may come before or after the command; everything is checked
 * before a single request goes out.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { COMMANDS, GLOBAL_OPTIONS, commandHelp, type CommandName, type OptionSpec } from './help.js';

export const DEFAULT_API = 'http://127.0.0.1:8010';

/** Wrong command line: exit code 2, with a message saying what to type instead. */
export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly command?: CommandName,
  ) {
    super(message);
  }
}

export interface Options {
  watch: boolean;
  bandwidth?: number | 'unlimited';
  maxDowntime?: number;
  deadline?: number;
  deadlineAction?: 'abort' | 'pause';
  autoConverge?: boolean;
  compression?: 'xbzrle' | 'none';
  status?: string;
  /** cancel: the argument is a VM name even if it looks like a task id. */
  vm: boolean;
  /** list: follow every page instead of showing the newest page only. */
  all: boolean;
}

export type Parsed =
  | { kind: 'help'; command?: CommandName }
  | { kind: 'version' }
  | { kind: 'run'; command: CommandName; args: string[]; options: Options; api: string; json: boolean; token?: string };

const ALL_OPTIONS: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS };
for (const c of Object.values(COMMANDS)) Object.assign(ALL_OPTIONS, c.options);

const isCommand = (s: string | undefined): s is CommandName => s !== undefined && Object.hasOwn(COMMANDS, s);

/** The command a (possibly malformed) command line is about, for a helpful hint. */
function guessCommand(argv: string[]): CommandName | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return isCommand(argv[i + 1]) ? argv[i + 1] as CommandName : undefined;
    if (a.startsWith('-')) {
      const spec = ALL_OPTIONS[a.replace(/^--?/, '').split('=')[0]!];
      if (spec?.type === 'string' && !a.includes('=')) i++;
      continue;
    }
    return isCommand(a) ? a : undefined;
  }
  return undefined;
}

function integer(name: string, raw: string, min: number, what: string): number {
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be ${what}, not '${raw}'`);
  return n;
}

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw new UsageError(`--${name} must be ${allowed.join(' or ')}, not '${raw}'`);
}

function checkApi(raw: string, from: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${from} must be a URL such as ${DEFAULT_API}, not '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${from} must be an http:// or https:// URL, not '${raw}'`);
  if (url.search || url.hash) throw new UsageError(`${from} must not carry a query or fragment: '${raw}'`);
  return url.href.replace(/\/+$/, '');
}

const PARSE_CONFIG = Object.fromEntries(
  Object.entries(ALL_OPTIONS).map(([k, o]) => [k, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
) as Record<string, { type: 'string' | 'boolean'; short?: string }>;

function rawParse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: PARSE_CONFIG, strict: true, allowPositionals: true, tokens: true });
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '').replace(/^Unknown option/, 'unknown option');
    throw new UsageError(msg, guessCommand(argv));
  }
}

/** The bearer token: from --token-file, else $KVM_MIGRATE_TOKEN; none is fine for an API without auth. */
function readToken(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (file === undefined) return env.KVM_MIGRATE_TOKEN?.trim() || undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--token-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const token = text.trim();
  if (!token || /\s/.test(token)) throw new UsageError(`--token-file ${file} must hold one token on one line`);
  return token;
}

export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): Parsed {
  const parsed = rawParse(argv);
  const { values, positionals, tokens } = parsed;
  const [first, ...rest] = positionals;

  if (first === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !isCommand(topic)) throw new UsageError(`there is no command '${topic}'`);
    return { kind: 'help', ...(topic ? { command: topic } : {}) };
  }
  if (values.help) return { kind: 'help', ...(isCommand(first) ? { command: first } : {}) };
  if (values.version) return { kind: 'version' };
  if (first === undefined) throw new UsageError('no command given');
  if (!isCommand(first)) {
    const near = Object.keys(COMMANDS).find((c) => c.startsWith(first.slice(0, 3)));
    throw new UsageError(`there is no command '${first}'${near ? ` (did you mean '${near}'?)` : ''}`);
  }
  const command = first;
  const spec = COMMANDS[command];
  try {
    for (const t of tokens) {
      if (t.kind === 'option' && !Object.hasOwn(GLOBAL_OPTIONS, t.name) && !Object.hasOwn(spec.options, t.name)) {
        throw new UsageError(`option ${t.rawName} does not apply to '${command}'`);
      }
    }
    if (rest.length !== spec.args.length) {
      const missing = spec.args.slice(rest.length);
      throw new UsageError(
        missing.length ? `missing ${missing.join(' and ')}` : `too many arguments: ${rest.slice(spec.args.length).map((a) => `'${a}'`).join(' ')}`,
      );
    }
    for (const [i, a] of rest.entries()) {
      if (a.trim() === '') throw new UsageError(`${spec.args[i]} must not be empty`);
    }

    const v = values as Record<string, string | boolean | undefined>;
    const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
    const options: Options = { watch: v.watch === true, vm: v.vm === true, all: v.all === true };
    const bw = str('bandwidth');
    if (bw !== undefined) options.bandwidth = bw === 'unlimited' ? 'unlimited' : integer('bandwidth', bw, 1, 'a whole number of MiB/s (1 or more) or unlimited');
    const md = str('max-downtime');
    if (md !== undefined) options.maxDowntime = integer('max-downtime', md, 100, 'a whole number of milliseconds, 100 or more');
    const dl = str('deadline');
    if (dl !== undefined) options.deadline = integer('deadline', dl, 1, 'a whole number of seconds, 1 or more');
    const da = str('deadline-action');
    if (da !== undefined) options.deadlineAction = oneOf('deadline-action', da, ['abort', 'pause'] as const);
    if (v['auto-converge'] && v['no-auto-converge']) throw new UsageError('give --auto-converge or --no-auto-converge, not both');
    if (v['auto-converge']) options.autoConverge = true;
    if (v['no-auto-converge']) options.autoConverge = false;
    const cp = str('compression');
    if (cp !== undefined) options.compression = oneOf('compression', cp, ['xbzrle', 'none'] as const);
    const st = str('status');
    if (st !== undefined) {
      if (st === '') throw new UsageError('--status needs a value such as running, finished, failed or killed');
      options.status = st;
    }
    if (command === 'tune' && options.bandwidth === undefined && options.maxDowntime === undefined) {
      throw new UsageError('tune needs --bandwidth or --max-downtime (or both)');
    }

    const envApi = env.KVM_MIGRATE_API?.trim();
    const api = str('api') !== undefined ? checkApi(str('api')!, '--api') : envApi ? checkApi(envApi, 'KVM_MIGRATE_API') : DEFAULT_API;
    const token = readToken(str('token-file'), env);
    return { kind: 'run', command, args: rest, options, api, json: v.json === true, ...(token ? { token } : {}) };
  } catch (e) {
    if (e instanceof UsageError && !e.command) throw new UsageError(e.message, command);
    throw e;
  }
}

/** The short text printed with a usage error: the command's usage line and where the help is. */
export function usageHint(command: CommandName | undefined): string {
  if (!command) return `Usage: kvm-migrate [--api URL] [--json] <command> [options]\nCommands: ${Object.keys(COMMANDS).join(', ')}\nSee: kvm-migrate --help`;
  const first = commandHelp(command).split('\n')[0]!;
  return `${first}\nSee: kvm-migrate ${command} --help`;
}
