/**
 * kvm-migrate: the command-line client of the kvm-migrate API
 * (`kvm-migrate --help`). Run it with `npm run cli -- ...`, the `bin/kvm-migrate`
 * shim, or `node --import tsx bin/kvm-migrate.ts`.
 *
 * The client itself lives in cli/.
 */
import { main } from '../cli/main.js';

// Ctrl-C outside a watch ends the process as usual; while watching, cli/ takes it.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0); // the reader went away (| head): nothing left to say
  throw e;
});

const code = await main(process.argv.slice(2));
const flushed = (s: NodeJS.WriteStream) => new Promise<void>((resolve) => s.write('', () => resolve()));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
