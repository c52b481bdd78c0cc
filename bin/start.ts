/**
 * `npm start`: one API process and one worker process against the configured
 * Redis and libvirt. Ctrl-C stops both; if either dies, the other is stopped
 * too and the exit code says so.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configFromArgs } from './args.js';

const argv = process.argv.slice(2);
configFromArgs(argv, 'npm start --', 'Runs the kvm-migrate API and one worker as two processes.');
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
let stopping = false;

function start(file: string): ChildProcess {
  // The pool size is fixed at start: give the worker room for its migrations (see worker/policy/threads.ts).
  const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' };
  const child = fork(here(file), argv, { execArgv: ['--import', 'tsx'], stdio: 'inherit', env });
  child.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`${file} exited with code ${code}; stopping\n`);
      stop(code ?? 1);
    }
  });
  children.push(child);
  return child;
}

function stop(code: number) {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 3000).unref();
  Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.on('exit', r))))).then(() => process.exit(code));
}

start('./api.ts');
start('./worker.ts');
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
