/**
 * A throw-away guest with memory worth copying: the lab's dirty-memory kernel
 * at rate 0 fills 48 MiB once ("region filled" on its console) and then
 * idles, so a migration capped at a few MiB/s takes seconds, the same each
 * time. Used by the concurrency-limit tests and the benchmarks.
 */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { detectVirtType, labDir, labPaths } from './config.js';
import { buildDirtyKernel } from './guests.js';

/** The file the guest's serial console writes to. */
export const fillerConsole = (name: string): string => path.join(labPaths(labDir()).consoles, `${name}.log`);

export async function fillerXml(name: string): Promise<string> {
  const kernel = await buildDirtyKernel(labDir());
  return `<domain type='${detectVirtType()}'>
  <name>${name}</name>
  <uuid>${randomUUID()}</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${kernel.path}</kernel><cmdline>rate_kib=0</cmdline></os>
  <devices>
    <serial type='file'><source path='${fillerConsole(name)}' append='on'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>`;
}
