/**
 * `npx tsx lab/cli.ts up|down|status [--json] [--hosts N] [--dirty-rate MiBs]`
 * (also `npm run lab -- up`). Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_DIRTY_RATE_MIBS, labDir, labDown, labStatus, labUp, type LabStatus } from './lab.js';

const HELP = `Usage: npm run lab -- <command> [options]
       npx tsx lab/cli.ts <command> [options]

Real libvirt hosts on this machine for kvm-migrate's integration tests and demo.

Commands:
  up       start (or repair) the lab: hosts host1..hostN, each a libvirtd in its
           own mount namespace on qemu+tcp://127.0.0.(10+N)/system, the shared
           storage pool "lab-shared" on every host, and the guests lab-tiny
           (diskless), lab-disk (disk in lab-shared) and lab-dirty (dirties its
           memory) running (started on host1; a guest already running on
           another host is left there). Idempotent. Needs root.
  down     stop and remove everything the lab made (processes by recorded PID,
           loop devices, files); never touches anything else.
  status   show hosts, pool and guests; --json prints the LabStatus object.

Options:
  --hosts N            number of hosts, 1..20 (up; default: current, else 2)
  --dirty-rate MiBs    lab-dirty's memory dirty rate in MiB/s (up; default:
                       current, else ${DEFAULT_DIRTY_RATE_MIBS}, which never converges at --bandwidth 8)
  --json               machine-readable output (up, status)
  -h, --help           this help

Environment:
  KVM_MIGRATE_LAB_DIR   lab directory (now: ${labDir()})
  KVM_MIGRATE_LAB_VIRT  kvm|qemu: force the guests' domain type (default: kvm
                        when /dev/kvm works natively, else qemu/TCG)

Examples:
  npm run lab -- up --hosts 3
  virsh -c qemu+tcp://127.0.0.11/system migrate --live --p2p --tunnelled \\
    --persistent --undefinesource lab-tiny qemu+tcp://127.0.0.12/system
  npm run lab -- status --json
`;

class UsageError extends Error {}

function parse(argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        hosts: { type: 'string' },
        'dirty-rate': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true as const };
  const [command, ...rest] = positionals;
  if (!command) throw new UsageError('missing command (up, down or status)');
  if (!['up', 'down', 'status'].includes(command)) throw new UsageError(`unknown command: ${command}`);
  if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`);
  const num = (flag: string, v: string | undefined, ok: (n: number) => boolean) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !ok(n)) throw new UsageError(`invalid --${flag}: ${v}`);
    return n;
  };
  const hosts = num('hosts', values.hosts, (n) => Number.isInteger(n) && n >= 1 && n <= 20);
  const dirtyRate = num('dirty-rate', values['dirty-rate'], (n) => Number.isFinite(n) && n >= 0 && n <= 4096);
  if (command !== 'up' && (hosts !== undefined || dirtyRate !== undefined)) {
    throw new UsageError('--hosts and --dirty-rate only apply to up');
  }
  return { help: false as const, command, json: values.json === true, hosts, dirtyRate };
}

function printHuman(s: LabStatus): void {
  const out: string[] = [`lab ${s.up ? 'UP' : 'DOWN'}  (${s.dir})`];
  for (const h of s.hosts) {
    out.push(`  ${h.name.padEnd(6)} ${h.running ? 'running' : 'down   '} ${h.uri.padEnd(28)} pid ${String(h.pid ?? '-').padEnd(7)} uuid ${h.hostUuid}`);
  }
  if (s.hosts.length === 0) out.push('  no hosts');
  out.push(`  pool   ${s.pool.name} -> ${s.pool.path}`);
  for (const g of s.guests) {
    out.push(`  guest  ${g.name.padEnd(10)} ${g.kind.padEnd(8)} ${g.host ? `${g.host}: ${g.state}` : 'not defined anywhere'}`);
  }
  process.stdout.write(out.join('\n') + '\n');
}

async function main(): Promise<number> {
  let args;
  try {
    args = parse(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`lab: ${err.message}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const log = (msg: string) => process.stderr.write(`lab: ${msg}\n`);
  if (args.command !== 'status' && process.getuid?.() !== 0) {
    process.stderr.write('lab: must run as root (it starts libvirtd, mounts, attaches loop devices)\n');
    return 1;
  }
  const started = Date.now();
  if (args.command === 'down') {
    await labDown({ log });
    log(`down in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  }
  const status = args.command === 'up'
    ? await labUp({ hosts: args.hosts, dirtyRateMiBs: args.dirtyRate, log })
    : await labStatus();
  if (args.command === 'up') log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (args.json) process.stdout.write(JSON.stringify(status, null, 2) + '\n');
  else printHuman(status);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`lab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
