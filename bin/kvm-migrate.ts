/**
 * kvm-migrate: the command-line client of the kvm-migrate API
 * (`kvm-migrate --help`). Run it with `npm run cli -- ...`, the `bin/kvm-migrate`
 * shim, or `node --import tsx bin/kvm-migrate.ts`.
 *
 * The client itself lives in cli/. It is loaded through a computed URL rather
 * than a static import on purpose: the service image compiles bin/ without
 * cli/ (Dockerfile, tsconfig.build.json; test/compose.test.ts replays that
 * build), and a static import of ../cli would break it. cli/ is type-checked
 * through test/cli.test.ts, which imports it.
 */
type Main = (argv: string[]) => Promise<number>;

const entry = new URL('../cli/main.js', import.meta.url).href;
const { main } = (await import(entry)) as { main: Main };

// Ctrl-C outside a watch ends the process as usual; while watching, cli/ takes it.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0); // the reader went away (| head): nothing left to say
  throw e;
});

const code = await main(process.argv.slice(2));
const flushed = (s: NodeJS.WriteStream) => new Promise<void>((resolve) => s.write('', () => resolve()));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
