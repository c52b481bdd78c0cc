/** What the figures were measured on: the machine, the versions of what they depend on, the commit. */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { detectVirtType } from '../../lab/config.js';
import type { Machine } from './report.js';

const run = promisify(execFile);

/** A command's first output line, or "unknown": a missing tool must not stop a benchmark run. */
async function firstLine(cmd: string, args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 10_000, ...(cwd ? { cwd } : {}) });
    return (stdout || stderr).split('\n')[0]!.trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

async function cpuModel(): Promise<string> {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(await readFile('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux: os.cpus() below */
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

async function redisVersion(url: string): Promise<string> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await r.connect();
    const info = await r.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } catch {
    return 'unknown (no Redis)';
  } finally {
    r.disconnect();
  }
}

/** "libvirtd (libvirt) 9.0.0" → "9.0.0"; "QEMU emulator version 7.2.22 (Debian …)" → "7.2.22 (Debian …)". */
export const versionOf = (line: string) => /(\d+\.\d+(?:\.\d+)?.*)$/.exec(line)?.[1] ?? line;

export async function machine(redisUrl: string): Promise<Machine> {
  const [cpu, redis, libvirt, qemu] = await Promise.all([
    cpuModel(),
    redisVersion(redisUrl),
    firstLine('libvirtd', ['--version']).then((l) => (l === 'unknown' ? firstLine('virsh', ['--version']) : l)),
    firstLine('qemu-system-x86_64', ['--version']),
  ]);
  return {
    cpu,
    cores: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis,
    libvirt: versionOf(libvirt),
    qemu: versionOf(qemu),
    virtualisation: detectVirtType() === 'kvm' ? 'KVM' : 'TCG (QEMU emulation: the lab finds no usable KVM here)',
  };
}

/** Short commit id, marked when the tree had changes not committed (the figures may not be that commit's). */
export async function commitOf(dir: string): Promise<string> {
  const id = await firstLine('git', ['rev-parse', '--short=12', 'HEAD'], dir);
  try {
    const { stdout } = await run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: dir });
    return stdout.trim() ? `${id} + uncommitted changes` : id;
  } catch {
    return id;
  }
}
