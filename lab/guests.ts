/**
 * Lab guests: their XML, the dirty-memory kernel, and putting a guest back
 * to its canonical place (running, persistent, on the first host only).
 *
 * Every guest's XML carries a fingerprint of itself in <description>, so
 * "is the defined guest what the lab wants?" is one string comparison that
 * survives migrations (the description travels with the domain). A changed
 * dirty rate or kernel changes the fingerprint, and the guest is rebuilt.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_KINDS, hostUri, labPaths, labUuid, type LabGuestName } from './config.js';
import { LabError, run, virsh, virshTry, waitFor } from './exec.js';
import { diskVolumePath } from './storage.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DIRTY_ASM = path.join(here, 'guest', 'dirty.asm');

export interface GuestOptions {
  virtType: 'kvm' | 'qemu';
  dirtyRateMiBs: number;
}

/**
 * Assemble lab/guest/dirty.asm into <labdir>/guest/dirty.bin when the source
 * changed. The kernel lives in the lab dir because both hosts' qemu must open
 * it (the destination of a migration boots the same <kernel> path).
 */
export async function buildDirtyKernel(dir: string): Promise<{ path: string; sha: string }> {
  const src = readFileSync(DIRTY_ASM);
  const sha = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const out = path.join(labPaths(dir).guest, 'dirty.bin');
  const stamp = `${out}.src-sha256`;
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, 'utf8') === sha) return { path: out, sha };
  mkdirSync(path.dirname(out), { recursive: true });
  await run('nasm', ['-f', 'bin', '-o', `${out}.tmp`, DIRTY_ASM]);
  renameSync(`${out}.tmp`, out);
  writeFileSync(stamp, sha);
  return { path: out, sha };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

/** The domain XML of a lab guest, fingerprint included. */
export async function guestXml(dir: string, name: LabGuestName, opts: GuestOptions): Promise<{ xml: string; fingerprint: string }> {
  const kind = GUEST_KINDS[name];
  const p = labPaths(dir);
  mkdirSync(p.consoles, { recursive: true });
  let os = `<type arch='x86_64' machine='pc'>hvm</type>`;
  let disk = '';
  let memoryMiB = 64;
  let extra = '';
  if (kind === 'dirty') {
    const kernel = await buildDirtyKernel(dir);
    const rateKiB = Math.max(0, Math.round(opts.dirtyRateMiBs * 1024));
    os += `\n    <kernel>${esc(kernel.path)}</kernel>\n    <cmdline>rate_kib=${rateKiB}</cmdline>`;
    // the kernel dirties 48 MiB starting at 16 MiB
    memoryMiB = 128;
    extra = ` kernel=${kernel.sha}`;
  }
  if (kind === 'disk') {
    // raw block device with cache=none/io=native: what libvirt accepts as
    // shared storage for a live migration (LAB.md)
    disk = `
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='${esc(diskVolumePath(dir))}'/>
      <target dev='vda' bus='virtio'/>
    </disk>`;
  }
  const body = `<domain type='${opts.virtType}'>
  <name>${name}</name>
  <uuid>${labUuid(dir, `guest:${name}`)}</uuid>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    ${os}
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>${disk}
    <serial type='file'>
      <source path='${esc(path.join(p.consoles, `${name}.log`))}' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
  const fingerprint = createHash('sha256').update(body + extra).digest('hex').slice(0, 16);
  const xml = body.replace('  <memory', `  <description>kvm-migrate lab guest (${kind}); lab-fingerprint=${fingerprint}</description>\n  <memory`);
  return { xml, fingerprint };
}

export interface DomainOnHost {
  active: boolean;
  persistent: boolean;
  /** virsh's words: running, paused, shut off, ... */
  state: string;
  fingerprint: string | null;
}

/** The named domain on one host, or null when that host has no such domain. */
export async function domainOn(host: string, name: string): Promise<DomainOnHost | null> {
  const uri = hostUri(host);
  const info = await virshTry(uri, ['dominfo', name]);
  if (info.code !== 0) {
    if (/failed to get domain|Domain not found/i.test(info.stderr)) return null;
    throw new LabError(`${host}: virsh dominfo ${name}: ${info.stderr.trim()}`);
  }
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(info.stdout)?.[1]?.trim() ?? '';
  const state = field('State');
  const xml = await virshTry(uri, ['dumpxml', '--inactive', name]);
  return {
    state,
    active: state !== 'shut off',
    persistent: field('Persistent') === 'yes',
    fingerprint: /lab-fingerprint=([0-9a-f]+)/.exec(xml.stdout)?.[1] ?? null,
  };
}

/** Destroy and undefine `name` on `host` (whatever is there). */
export async function removeDomain(host: string, name: string): Promise<void> {
  const uri = hostUri(host);
  const d = await domainOn(host, name);
  if (!d) return;
  if (d.active) await virsh(uri, ['destroy', name]);
  if (d.persistent) await virsh(uri, ['undefine', name]);
}

/**
 * Make `name` defined, persistent and running on hosts[0], and absent from
 * every other host. Acts only where the observed state differs.
 */
export async function placeGuest(dir: string, hosts: string[], name: LabGuestName, opts: GuestOptions): Promise<void> {
  const [first, ...others] = hosts;
  if (!first) throw new LabError('the lab has no hosts');
  for (const other of others) await removeDomain(other, name);
  const uri = hostUri(first);
  const { xml, fingerprint } = await guestXml(dir, name, opts);
  let d = await domainOn(first, name);
  if (!d || d.fingerprint !== fingerprint || !d.persistent) {
    // a stale definition (other rate, kernel, virt type) restarts the guest;
    // a transient copy with the right definition only gets made persistent
    if (d?.active && d.fingerprint !== fingerprint) await virsh(uri, ['destroy', name]);
    const file = path.join(labPaths(dir).xml, `${name}.xml`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, xml);
    await virsh(uri, ['define', file]);
    d = await domainOn(first, name);
  }
  const consoleLog = path.join(labPaths(dir).consoles, `${name}.log`);
  let bootFrom = -1;
  if (d?.state === 'paused') await virsh(uri, ['resume', name]);
  else if (!d?.active) {
    bootFrom = existsSync(consoleLog) ? statSync(consoleLog).size : 0;
    await virsh(uri, ['start', name]);
  }
  const now = await domainOn(first, name);
  if (now?.state !== 'running') throw new LabError(`${name} is ${now?.state ?? 'missing'} on ${first}, expected running`);
  if (GUEST_KINDS[name] === 'dirty') await waitDirtyReady(consoleLog, bootFrom);
}

/**
 * Wait until lab-dirty has made its whole region non-zero ("region filled"
 * on its console), so the first migration pass really has 48 MiB to copy:
 * a test that migrates right after resetGuest must not race the guest's boot
 * (SeaBIOS alone takes seconds where the vCPU is emulated). `bootFrom` is the
 * console's size before this boot, or -1 for a guest that was already running
 * (then the last boot on the console counts).
 */
async function waitDirtyReady(consoleLog: string, bootFrom: number, timeoutMs = 60_000): Promise<void> {
  const booted = 'lab-dirty: booted';
  const filled = 'lab-dirty: region filled';
  await waitFor(`lab-dirty to fill its memory (${consoleLog})`, timeoutMs, async () => {
    if (!existsSync(consoleLog)) return undefined;
    const text = readFileSync(consoleLog, 'latin1').slice(Math.max(0, bootFrom));
    const b = text.lastIndexOf(booted);
    return b >= 0 && text.indexOf(filled, b) > b ? true : undefined;
  });
}

/**
 * labUp's gentler variant of placeGuest: a guest already running (with the
 * wanted definition) on exactly one host is left where it is, so bringing
 * the lab up never yanks a guest out of a test's or the demo's migration.
 * Anything else (missing, stopped, stale, running twice) is placed afresh.
 * Returns the host the guest runs on.
 */
export async function ensureGuest(dir: string, hosts: string[], name: LabGuestName, opts: GuestOptions): Promise<string> {
  const { fingerprint } = await guestXml(dir, name, opts);
  const found = await Promise.all(hosts.map((h) => domainOn(h, name)));
  const running = hosts.filter((_, i) => found[i]?.state === 'running' && found[i]?.fingerprint === fingerprint);
  if (running.length === 1 && running[0]) return running[0];
  await placeGuest(dir, hosts, name, opts);
  return hosts[0] as string;
}

/** `virsh list --all` of one host as name -> state, or null if it does not answer. */
export async function listDomains(host: string): Promise<Map<string, string> | null> {
  const r = await virshTry(hostUri(host), ['list', '--all'], 10_000);
  if (r.code !== 0) return null;
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(line);
    if (m?.[2] && m[3]) out.set(m[2], m[3]);
  }
  return out;
}
