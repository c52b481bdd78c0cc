/**
 * A throw-away guest with memory worth copying: the lab's dirty-memory
 * kernel at rate 0 fills 48 MiB once and then idles (as test/limits.lab.test.ts
 * does), so a migration capped at a few MiB/s takes seconds, the same each time.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fillerConsole, fillerXml } from '../../lab/filler.js';
import type { Connection } from '../../shared/libvirt/types.js';
import { removeDomain } from '../../test/helpers/guests.js';
import { waitFor } from '../../test/helpers/service.js';
import { HOSTS, type LabHost } from './common.js';

export const FILLER = 'bench-filler';
/** What the kernel fills, so what a pass has to copy at least. */
export const FILLER_MIB = 48;

const consoleOf = fillerConsole;

/** Defines and starts the filler on host1 (persistent, like the lab's guests) once it has filled its memory. */
export async function createFiller(conns: Record<LabHost, Connection>, name = FILLER): Promise<void> {
  await removeFiller(conns, name);
  const d = await conns.host1.defineDomain(await fillerXml(name));
  try {
    await d.start();
  } finally {
    d.free();
  }
  await waitFor(`${name} to fill its memory`, async () => existsSync(consoleOf(name)) && readFileSync(consoleOf(name), 'latin1').includes('region filled'), 60_000, 200);
}

export async function removeFiller(conns: Record<LabHost, Connection>, name = FILLER): Promise<void> {
  for (const h of HOSTS) await removeDomain(conns[h], name);
  rmSync(consoleOf(name), { force: true });
}
