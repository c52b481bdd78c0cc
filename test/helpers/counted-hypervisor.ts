/**
 * A real libvirt binding that counts the domain lookups made through the
 * connections it opens and hands out the domain watches it starts: for
 * tests of what the API's source host asks libvirt.
 */
import type { DomainWatch, Hypervisor } from '../../shared/libvirt/index.js';

export function countedHypervisor(hv: Hypervisor): { hypervisor: Hypervisor; stats: { lookups: number; watches: DomainWatch[] } } {
  const stats = { lookups: 0, watches: [] as DomainWatch[] };
  const hypervisor: Hypervisor = {
    async open(uri, opts) {
      const c = await hv.open(uri, opts);
      const lookupDomain = c.lookupDomain.bind(c);
      c.lookupDomain = (name: string) => {
        stats.lookups++;
        return lookupDomain(name);
      };
      return c;
    },
    async watchDomains(uri, onEvent, opts) {
      const w = await hv.watchDomains!(uri, onEvent, opts);
      stats.watches.push(w);
      return w;
    },
  };
  return { hypervisor, stats };
}
