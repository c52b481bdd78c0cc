// @ts-check
/**
 * The per-host subreaper: `node lab/reaper.mjs <command> [args...]`.
 *
 * Plain JavaScript on purpose: run through tsx, the loader leaves an esbuild
 * service process behind as a child, and a subreaper with a child that never
 * exits never exits either.
 *
 * Why: libvirtd daemonizes every qemu it starts (double fork), so qemu's
 * parent becomes "the nearest subreaper, else PID 1". On machines whose PID 1
 * does not reap orphans (container-style inits, the lab machine included),
 * every qemu that ever exited - one per migration - would stay a zombie and
 * hold a PID forever. This process marks itself a child subreaper
 * (prctl PR_SET_CHILD_SUBREAPER), runs the host's command (unshare ... exec
 * libvirtd) and reaps everything below it until nothing is left, then exits.
 *
 * It also gives labDown a precise notion of "ours": every qemu of a lab host
 * is a child of that host's reaper.
 *
 * It blocks in waitpid(-1) and never returns to the event loop: it has
 * nothing else to do, and that way libuv cannot race it for exit statuses.
 */
import { spawn } from 'node:child_process';
import koffi from 'koffi';

const PR_SET_CHILD_SUBREAPER = 36;
const EINTR = 4;
const ECHILD = 10;

const libc = koffi.load('libc.so.6');
const prctl = libc.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)');
const waitpid = libc.func('int waitpid(int, _Out_ int *, int)');

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  process.stderr.write('usage: reaper.mjs <command> [args...]\n');
  process.exit(2);
}
if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) !== 0) {
  process.stderr.write(`reaper: prctl(PR_SET_CHILD_SUBREAPER) failed, errno ${koffi.errno()}\n`);
  process.exit(1);
}

const stamp = () => new Date().toISOString();
const child = spawn(cmd, args, { stdio: 'inherit' });
const main = child.pid;
if (main === undefined) {
  process.stderr.write(`reaper: cannot start ${cmd}\n`);
  process.exit(1);
}
process.stderr.write(`${stamp()} reaper ${process.pid}: started ${cmd} as ${main}\n`);

let mainStatus = 0;
for (;;) {
  const status = [0];
  const pid = /** @type {number} */ (waitpid(-1, status, 0));
  if (pid === -1) {
    const errno = koffi.errno();
    if (errno === EINTR) continue;
    if (errno !== ECHILD) process.stderr.write(`reaper: waitpid errno ${errno}\n`);
    break;
  }
  if (pid === main) {
    mainStatus = status[0] ?? 0;
    process.stderr.write(`${stamp()} reaper ${process.pid}: ${cmd} (${main}) exited, wait status ${mainStatus}\n`);
  }
}
process.stderr.write(`${stamp()} reaper ${process.pid}: no descendants left, exiting\n`);
process.exit((mainStatus & 0x7f) === 0 ? (mainStatus >> 8) & 0xff : 128 + (mainStatus & 0x7f));
