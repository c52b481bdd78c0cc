/** Tiny shared command-line handling for the service entry points. */
import { describeSchema, loadConfig, ConfigError, type Config } from '../shared/config.js';

export function helpText(command: string, what: string): string {
  const rows = describeSchema()
    .map((r) => `  ${r.env.padEnd(46)} ${r.key} (default ${JSON.stringify(r.default)})`)
    .join('\n');
  return `Usage: ${command} [--config FILE]

${what}

Options:
  --config FILE   JSON configuration file (also KVM_MIGRATE_CONFIG)
  --help          show this help

Configuration (environment variable, key, default):
${rows}
`;
}

/** Parses --config/--help; prints help or a config error and exits. */
export function configFromArgs(argv: string[], command: string, what: string): Config {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(helpText(command, what));
    process.exit(0);
  }
  const i = argv.indexOf('--config');
  const file = i >= 0 ? argv[i + 1] : undefined;
  if (i >= 0 && !file) {
    process.stderr.write('--config needs a file name\n');
    process.exit(2);
  }
  const unknown = argv.filter((a, idx) => a.startsWith('-') && a !== '--config' && idx !== i + 1);
  if (unknown.length) {
    process.stderr.write(`unknown option ${unknown[0]}; see --help\n`);
    process.exit(2);
  }
  try {
    return loadConfig({ env: process.env, ...(file ? { file } : {}) });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
}
