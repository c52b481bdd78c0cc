/** Throw-away guests for negative cases, defined with the project's own binding. */
import { accessSync, constants } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { Connection, Hypervisor } from '../../shared/libvirt/types.js';

export function domainType(): 'kvm' | 'qemu' {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'qemu';
  }
}

export function guestXml(name: string, devices = '', uuid = randomUUID()): string {
  return `<domain type='${domainType()}'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <memballoon model='none'/>
    ${devices}
  </devices>
</domain>`;
}

/** Removes a domain by name wherever it is, ignoring "no such domain". */
export async function removeDomain(conn: Connection, name: string): Promise<void> {
  const d = await conn.lookupDomain(name);
  if (!d) return;
  if (await d.isActive()) await d.destroy().catch(() => undefined);
  if (await d.isPersistent().catch(() => false)) await d.undefine().catch(() => undefined);
  d.free();
}

export async function stateOn(conn: Connection, name: string): Promise<{ state: string; persistent: boolean } | null> {
  const d = await conn.lookupDomain(name);
  if (!d) return null;
  try {
    return { state: (await d.state()).state, persistent: await d.isPersistent() };
  } finally {
    d.free();
  }
}

/** Opens a short-lived connection for one look at a host (it may have been restarted since). */
export async function withConnection<T>(hv: Hypervisor, uri: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const c = await hv.open(uri, { timeoutMs: 5000 });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}
