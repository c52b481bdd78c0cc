/** The commands, their options and every help text. */

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder shown in the help, for options that take a value. */
  value?: string;
  help: string;
}

export interface CommandSpec {
  /** Positional arguments, as shown in the usage line. */
  args: string[];
  summary: string;
  about: string;
  options: Record<string, OptionSpec>;
  exits: [number, string][];
  examples: string[];
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  api: { type: 'string', value: 'URL', help: 'address of the kvm-migrate API (default: $KVM_MIGRATE_API, else http://127.0.0.1:8010)' },
  'token-file': { type: 'string', value: 'FILE', help: 'read the bearer token from FILE (default: $KVM_MIGRATE_TOKEN); a token on the command line would show in ps' },
  json: { type: 'boolean', help: 'machine output: the raw JSON answer; when following a task, one JSON task per line' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
  version: { type: 'boolean', help: 'print the version of kvm-migrate' },
};

const TUNING = {
  bandwidth: { type: 'string', value: 'N|unlimited', help: 'bandwidth limit in MiB/s (a whole number, 1 or more) or unlimited' },
  'max-downtime': { type: 'string', value: 'MS', help: 'longest the guest may be paused at switch-over, in ms (100 or more)' },
} as const satisfies Record<string, OptionSpec>;

const USAGE: [number, string] = [2, 'usage error: see the message, then this help'];
const UNREACHABLE: [number, string] = [3, 'the API cannot be reached, timed out or answered with a server error (5xx)'];

export const COMMANDS = {
  migrate: {
    args: ['<vm>', '<remote_host>'],
    summary: 'start a live migration (--watch to follow it)',
    about: `Starts a live migration of the guest <vm> to <remote_host> (a host name or an
IP address; the service derives the destination's libvirt URI from it). The
service runs every capability check first, then migrates in the background as
a task. Options left out keep the service's configured defaults.`,
    options: {
      watch: { type: 'boolean', help: 'follow the migration live until it ends' },
      ...TUNING,
      deadline: { type: 'string', value: 'S', help: 'longest the migration may run, in seconds; then --deadline-action' },
      'deadline-action': { type: 'string', value: 'abort|pause', help: 'at the deadline: abort (the guest stays on the source) or pause the guest so that the copy completes' },
      'auto-converge': { type: 'boolean', help: 'slow the guest\'s CPUs down when it dirties memory faster than it is copied' },
      'no-auto-converge': { type: 'boolean', help: 'do not slow the guest down, whatever the service\'s default' },
      compression: { type: 'string', value: 'xbzrle|none', help: 'xbzrle (send only the changes of pages sent before) or none' },
    },
    exits: [
      [0, 'accepted (without --watch), or finished (with --watch)'],
      [1, 'with --watch: the migration failed or was cancelled'],
      USAGE,
      UNREACHABLE,
      [4, 'refused: invalid value, no such VM, or the VM is already migrating (the running task is named)'],
    ],
    examples: ['kvm-migrate migrate web1 host2', 'kvm-migrate migrate web1 10.0.0.12 --watch --bandwidth 200 --max-downtime 300'],
  },
  precheck: {
    args: ['<vm>', '<remote_host>'],
    summary: 'run every capability check now, migrate nothing',
    about: `Runs every capability check for moving <vm> to <remote_host> now and migrates
nothing (the API's dry run). Prints each check; when something blocks the
migration, prints every blocker with its code and what to fix.`,
    options: {},
    exits: [[0, 'ready: nothing blocks the migration'], USAGE, UNREACHABLE, [4, 'blocked (every blocker is listed) or refused (no such VM, invalid host)']],
    examples: ['kvm-migrate precheck web1 host2'],
  },
  status: {
    args: ['<task>'],
    summary: 'show one task',
    about: 'Shows one task: where it stands, its progress, the settings in force, its\nerror if it failed, and its history.',
    options: {},
    exits: [[0, 'the task is running or finished'], [1, 'the task failed or was cancelled'], USAGE, UNREACHABLE, [4, 'no such task']],
    examples: ['kvm-migrate status 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10'],
  },
  list: {
    args: [],
    summary: 'list tasks, newest first',
    about: 'Lists tasks, newest first: the newest 100, or with --all every one kept.',
    options: {
      status: { type: 'string', value: 'S', help: 'only tasks whose status matches S, a regular expression matched from the start: running, finished, failed, killed, \'failed|killed\'' },
      all: { type: 'boolean', help: 'every task, page after page (else the newest 100)' },
    },
    exits: [[0, 'listed (also when no task matches)'], USAGE, UNREACHABLE, [4, 'refused (an invalid --status expression)']],
    examples: ['kvm-migrate list', "kvm-migrate list --status 'failed|killed'", 'kvm-migrate list --all --json'],
  },
  watch: {
    args: ['<task>'],
    summary: 'follow a task live until it ends',
    about: `Follows a task until it ends: on a terminal, one line redrawn in place (stage,
progress bar, percent, rate, iteration, ETA, message); otherwise one line per
change. Live updates come from the API's event stream; without one, the task
is polled every 0.5 s. Ctrl-C stops watching; the migration goes on.`,
    options: {},
    exits: [[0, 'the migration finished'], [1, 'the migration failed or was cancelled'], USAGE, UNREACHABLE, [4, 'no such task'], [130, 'interrupted (Ctrl-C): the migration goes on']],
    examples: ['kvm-migrate watch 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10', 'kvm-migrate watch 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10 --json | jq .status'],
  },
  cancel: {
    args: ['<task-id|vm>'],
    summary: 'cancel a running migration',
    about: `Asks the service to cancel a running migration: a task id (a UUID) cancels
that task, anything else is taken as a VM name and cancels the VM's running
migration. The guest keeps running on the source. Returns once the cancel is
requested; "kvm-migrate watch <task>" follows it to the end.`,
    options: { vm: { type: 'boolean', help: 'the argument is a VM name, even if it looks like a task id' } },
    exits: [[0, 'cancel requested'], USAGE, UNREACHABLE, [4, 'no such task, no running migration of that VM, or the task already ended']],
    examples: ['kvm-migrate cancel web1', 'kvm-migrate cancel 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10'],
  },
  tune: {
    args: ['<task>'],
    summary: 'change bandwidth or max downtime of a running migration',
    about: 'Changes the bandwidth limit or the maximum downtime of a running migration.\nGive at least one of the options.',
    options: { ...TUNING },
    exits: [[0, 'changed'], USAGE, UNREACHABLE, [4, 'no such task, the task already ended, or the value was refused']],
    examples: ['kvm-migrate tune 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10 --bandwidth 500', 'kvm-migrate tune 4f7c2a9e-0c1d-4e55-9a51-2b7d7b3e8f10 --max-downtime 2000'],
  },
  peers: {
    args: [],
    summary: 'list the known peers: hosts a migration may go to',
    about: `Lists the peers the service knows: other kvm-migrate or Kimchi hosts found
with SLP (service:wokd) and those in federation.static_peers, each with its
port, where it came from, when it last answered and the libvirt URI a
migration to it uses. Any of these hosts can be the <remote_host> of
"migrate" and "precheck"; with federation.require_peer on, only these can.
A service with federation off lists none.`,
    options: {},
    exits: [[0, 'listed (also when there is no peer)'], USAGE, UNREACHABLE, [4, 'refused (no or wrong token)']],
    examples: ['kvm-migrate peers', "kvm-migrate peers --json | jq -r '.[].host'"],
  },
} satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

const WIDTH = 80;
const FLAG_COLUMN = 28;

/** Words of `text` in lines of at most `width` columns ('\n' in the text forces a break). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(' ')) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
  }
  return lines;
}

/** "  flag   text" rows: text wrapped beside the flag column, or below a flag too wide for it. */
function rows(items: [string, string][], column: number): string {
  const pad = ' '.repeat(column + 3);
  return items
    .map(([flag, text]) => {
      const body = wrap(text, WIDTH - column - 3);
      const head = `  ${flag}`;
      if (head.length > column + 1) return [head, ...body.map((l) => `${pad}${l}`)].join('\n');
      return [`${head.padEnd(column + 3)}${body[0]}`, ...body.slice(1).map((l) => `${pad}${l}`)].join('\n');
    })
    .join('\n');
}

function optionLines(options: Record<string, OptionSpec>): string {
  const items = Object.entries(options).map(([name, o]): [string, string] => [`${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`, o.help]);
  return rows(items, FLAG_COLUMN);
}

const exitLines = (exits: [number, string][]) => rows(exits.map(([code, text]): [string, string] => [String(code), text]), 4);

export function commandHelp(name: CommandName): string {
  const c: CommandSpec = COMMANDS[name];
  const args = c.args.length ? ` ${c.args.join(' ')}` : '';
  const opts = Object.keys(c.options).length ? ' [options]' : '';
  const sections = [`Usage: kvm-migrate ${name}${args}${opts}`, c.about];
  if (Object.keys(c.options).length) sections.push(`Options:\n${optionLines(c.options)}`);
  sections.push(`Global options:\n${optionLines(GLOBAL_OPTIONS)}`);
  sections.push(`Exit codes:\n${exitLines(c.exits)}`);
  sections.push(`Examples:\n${c.examples.map((e) => `  ${e}`).join('\n')}`);
  return `${sections.join('\n\n')}\n`;
}

export function toolHelp(): string {
  const commands = Object.entries(COMMANDS)
    .map(([name, c]) => `  ${`${name} ${c.args.join(' ')}`.padEnd(FLAG_COLUMN)} ${c.summary}`)
    .join('\n');
  return `Usage: kvm-migrate [--api URL] [--json] <command> [options]

Live migration of KVM guests through the kvm-migrate service.

Commands:
${commands}

Global options (before or after the command):
${optionLines(GLOBAL_OPTIONS)}

Exit codes:
${exitLines([
  [0, 'success: the migration finished; without --watch, the request was accepted; the precheck found no blocker; a cancel or tune was accepted'],
  [1, 'the migration failed or was cancelled (task failed or killed)'],
  [2, 'usage error: the command line is wrong (the message says why)'],
  [3, 'the API cannot be reached, timed out, or answered with a server error (5xx)'],
  [4, 'the API refused the request (4xx): no or wrong token, role too low, invalid value, no such VM or task, precheck blockers (each printed with its code), VM already migrating'],
  [130, 'interrupted (Ctrl-C) while watching: the migration goes on'],
])}

"kvm-migrate <command> --help" describes a command.

Examples:
  kvm-migrate precheck web1 host2
  kvm-migrate migrate web1 host2 --watch --bandwidth 200
  kvm-migrate list --status running
  kvm-migrate cancel web1
`;
}
