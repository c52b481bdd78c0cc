/**
 * Lab hosts: one libvirtd per host, each in its own mount namespace.
 *
 * `unshare -m --propagation private` gives the daemon private bind mounts of
 * the host's directories over /run/libvirt, /var/lib/libvirt,
 * /var/log/libvirt, /etc/libvirt and /var/cache/libvirt: its own config,
 * sockets, domain definitions and caps cache. Everything else (/dev, the lab
 * dir) stays common, which is what makes the loop devices shared storage.
 *
 * The namespace lives as long as any process in it; nothing is mounted in
 * the caller's namespace, so there is nothing to unmount there. After a
 * killHost the old namespace survives through the guests' qemu, and
 * startHost makes a new one with the same bind mounts: same inodes, so the
 * new daemon finds the qemu status files and monitor sockets and reconnects.
 *
 * Process tree: reaper.mjs (subreaper) -> libvirtd (foreground, -p pidfile)
 *               reaper.mjs <- qemu (re-parented after libvirt's double fork)
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostAddress, hostPaths, hostUri, labUuid, LIBVIRT_PORT, PRIVATE_MOUNTS } from './config.js';
import { LabError, run, sleep, virshTry } from './exec.js';
import { liveProc, procRef, stopProc, type ProcInfo } from './procs.js';
import type { LabState } from './state.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REAPER = path.join(here, 'reaper.mjs');
const READY_TIMEOUT_MS = 120_000;

export function renderLibvirtdConf(dir: string, name: string): string {
  const addr = hostAddress(name);
  return `# kvm-migrate lab, ${name}: rewritten by \`lab up\`, do not edit
# TCP without auth, but only on this host's own loopback address.
listen_tls = 0
listen_tcp = 1
listen_addr = "${addr}"
tcp_port = "${LIBVIRT_PORT}"
auth_tcp = "none"
# no polkit daemon on the lab machine; local sockets only serve debugging
auth_unix_ro = "none"
auth_unix_rw = "none"
# each host needs its own: libvirt refuses to migrate to "the same host"
host_uuid = "${labUuid(dir, `host:${name}`)}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;
}

export function renderQemuConf(name: string): string {
  const addr = hostAddress(name);
  return `# kvm-migrate lab, ${name}: rewritten by \`lab up\`, do not edit
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
# the lab leaves cgroups alone: several daemons share one cgroup tree
cgroup_controllers = [ ]
security_driver = "none"
# qemu must see the real /dev: the shared loop devices live there
namespaces = [ ]
# no virtlogd: qemu's stdout/stderr go straight to /var/log/libvirt/qemu
stdio_handler = "file"
# non-tunnelled migrations (if a test tries one) stay on this loopback address
migration_address = "${addr}"
migration_host = "${addr}"
`;
}

/**
 * libvirtd resolves its build-time user and group before it reads qemu.conf
 * (LAB.md). On Debian 12 that is user libvirt-qemu *and* group libvirt-qemu;
 * kvm is the group Debian gives that user.
 */
export async function ensureAccounts(): Promise<void> {
  for (const group of ['kvm', 'libvirt-qemu']) {
    if ((await run('getent', ['group', group], { allowFail: true })).code !== 0) {
      await run('groupadd', ['--system', group]);
    }
  }
  if ((await run('getent', ['passwd', 'libvirt-qemu'], { allowFail: true })).code !== 0) {
    await run('useradd', ['--system', '--no-create-home', '--home-dir', '/var/lib/libvirt',
      '--shell', '/usr/sbin/nologin', '--gid', 'kvm', 'libvirt-qemu']);
  }
}

/** The bind-mount targets must exist in the root filesystem. */
export function ensureMountPoints(state: LabState): void {
  for (const [, target] of PRIVATE_MOUNTS) {
    if (existsSync(target)) continue;
    mkdirSync(target, { recursive: true });
    if (!state.createdDirs.includes(target)) state.createdDirs.push(target);
  }
}

/** Write the host's directories and config; true when a config file changed. */
export function writeHostConfig(dir: string, name: string): boolean {
  const hp = hostPaths(dir, name);
  for (const [sub] of PRIVATE_MOUNTS) mkdirSync(path.join(hp.root, sub), { recursive: true });
  let changed = false;
  const files: Array<[string, string]> = [
    [path.join(hp.etc, 'libvirtd.conf'), renderLibvirtdConf(dir, name)],
    [path.join(hp.etc, 'qemu.conf'), renderQemuConf(name)],
  ];
  for (const [file, text] of files) {
    if (existsSync(file) && readFileSync(file, 'utf8') === text) continue;
    writeFileSync(file, text);
    changed = true;
  }
  return changed;
}

/** The host's libvirtd, if it is alive and really ours. */
export function liveDaemon(dir: string, state: LabState, name: string): ProcInfo | null {
  return liveProc(state.hosts[name]?.libvirtd, hostPaths(dir, name).pidfile);
}

export function liveReaper(dir: string, state: LabState, name: string): ProcInfo | null {
  return liveProc(state.hosts[name]?.reaper, hostPaths(dir, name).root);
}

/**
 * Start the host's libvirtd in a fresh mount namespace, unless it runs.
 * `save` persists the state as soon as a PID is known.
 */
export async function startDaemon(dir: string, state: LabState, name: string, save: () => void): Promise<'running' | 'adopted' | 'started'> {
  const hp = hostPaths(dir, name);
  let outcome: 'running' | 'adopted' | 'started' = 'running';
  if (!liveDaemon(dir, state, name) && adoptRunningDaemon(dir, state, name)) {
    outcome = 'adopted';
    save();
  }
  if (!liveDaemon(dir, state, name)) {
    outcome = 'started';
    // a pid file left by a killed daemon must not be taken for the new one
    rmSync(hp.pidfile, { force: true });
    const mounts = PRIVATE_MOUNTS.map(([sub, target]) => `mount --bind "$1/${sub}" ${target}`).join('\n');
    const script = `set -e\n${mounts}\nexec /usr/sbin/libvirtd --listen -p "$1/libvirtd.pid" -f /etc/libvirt/libvirtd.conf\n`;
    const log = openSync(hp.daemonLog, 'a');
    const child = spawn(process.execPath, [REAPER,
      'unshare', '-m', '--propagation', 'private', '/bin/sh', '-c', script, 'lab-host', hp.root], {
      detached: true, // own session: a Ctrl-C in the terminal must not hit the hosts
      stdio: ['ignore', log, log],
      cwd: '/',
      env: {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: process.env.HOME ?? '/root',
        LC_ALL: 'C',
      },
    });
    closeSync(log);
    child.unref();
    const reaper = child.pid !== undefined ? procRef(child.pid) : null;
    if (!reaper) throw new LabError(`${name}: could not start the host process; see ${hp.daemonLog}`);
    // the previous reaper lives on while the old daemon's qemus do: remember it
    const before = state.hosts[name];
    const formerReapers = [before?.reaper, ...(before?.formerReapers ?? [])]
      .filter((r): r is NonNullable<typeof r> => liveProc(r, hp.root) !== null);
    const record: LabState['hosts'][string] = { reaper, formerReapers };
    state.hosts[name] = record;
    save();
    record.libvirtd = await waitForPidfile(dir, state, name);
    save();
  }
  await waitReady(dir, state, name);
  return outcome;
}

/**
 * A daemon of ours that the state does not know (state.json lost or written
 * before a crash): its pid file and command line prove it; adopt it rather
 * than start a second daemon that could not bind the address anyway.
 */
function adoptRunningDaemon(dir: string, state: LabState, name: string): boolean {
  const hp = hostPaths(dir, name);
  if (!existsSync(hp.pidfile)) return false;
  const pid = Number(readFileSync(hp.pidfile, 'utf8').trim());
  const ref = pid > 0 ? procRef(pid) : null;
  const daemon = liveProc(ref, hp.pidfile);
  if (!ref || !daemon) return false;
  const parent = procRef(daemon.ppid);
  const reaper = liveProc(parent, hp.root) ? parent ?? undefined : undefined;
  state.hosts[name] = { ...state.hosts[name], libvirtd: ref, ...(reaper ? { reaper } : {}) };
  return true;
}

async function waitForPidfile(dir: string, state: LabState, name: string) {
  const hp = hostPaths(dir, name);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (existsSync(hp.pidfile)) {
      const pid = Number(readFileSync(hp.pidfile, 'utf8').trim());
      const ref = pid > 0 ? procRef(pid) : null;
      if (ref && liveProc(ref, hp.pidfile)) return ref;
    }
    if (!liveReaper(dir, state, name)) break;
    await sleep(100);
  }
  throw new LabError(`${name}: libvirtd did not start:\n${tail(hp.daemonLog)}${tail(hp.libvirtdLog)}`);
}

/** Wait until the host answers on its TCP address with its own host UUID. */
export async function waitReady(dir: string, state: LabState, name: string): Promise<void> {
  const hp = hostPaths(dir, name);
  const want = labUuid(dir, `host:${name}`);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    const got = await hostUuidOf(name, 5_000);
    if (got === want) return;
    last = got ? `answers with host UUID ${got}, expected ${want} (another daemon on ${hostAddress(name)}?)` : '';
    if (!liveDaemon(dir, state, name)) {
      throw new LabError(`${name}: libvirtd exited during startup:\n${tail(hp.daemonLog)}${tail(hp.libvirtdLog)}`);
    }
    await sleep(200);
  }
  throw new LabError(`${name}: ${hostUri(name)} not ready after ${READY_TIMEOUT_MS} ms ${last}\n${tail(hp.libvirtdLog)}`);
}

/** The host UUID the daemon reports (virsh sysinfo-free: from capabilities). */
export async function hostUuidOf(name: string, timeoutMs = 10_000): Promise<string | null> {
  const r = await virshTry(hostUri(name), ['capabilities'], timeoutMs);
  if (r.code !== 0) return null;
  return /<host>\s*<uuid>([^<]+)<\/uuid>/.exec(r.stdout)?.[1] ?? null;
}

/** Stop the daemon (SIGTERM: guests keep running, as with a daemon restart). */
export async function stopDaemon(dir: string, state: LabState, name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const ref = state.hosts[name]?.libvirtd;
  if (!ref) return false;
  return stopProc(ref, hostPaths(dir, name).pidfile, signal, 15_000);
}

function tail(file: string, lines = 15): string {
  try {
    const all = readFileSync(file, 'utf8').trimEnd().split('\n');
    return `--- ${file} (last ${lines} lines)\n${all.slice(-lines).join('\n')}\n`;
  } catch {
    return '';
  }
}
