/**
 * The source's VM names as the API knows them without asking libvirt: filled
 * by one listing when the watch starts (Hypervisor.watchDomains) and kept by
 * the domains' lifecycle events after it.
 *
 * It is only ever trusted to say "this VM is there". A name it does not hold
 * is asked of libvirt, so a missed or late event can never refuse a real VM;
 * an event that leaves a VM's existence in doubt takes the name out, so the
 * next request asks libvirt too. A view belongs to one watch: when its
 * connection goes, the view goes with it (source.ts), whole.
 */
import type { DomainLifecycle } from '../shared/libvirt/types.js';

/**
 * What a lifecycle event says about its domain's existence. 'present': it is
 * there (defined, started, or changed state while there). 'unsure': it may
 * be gone (undefined: a running domain stays, transient; stopped: a
 * transient one goes; an event newer than this code).
 */
export function presenceAfter(event: string): 'present' | 'unsure' {
  switch (event) {
    case 'defined':
    case 'started':
    case 'suspended':
    case 'resumed':
    case 'shutdown':
    case 'pmsuspended':
    case 'crashed':
      return 'present';
    default:
      return 'unsure';
  }
}

export class VmNameView {
  /** name → UUID; null until the listing is in. */
  #names: Map<string, string> | null = null;
  /** Events that came before the listing, applied after it in the order they came. */
  #early: DomainLifecycle[] = [];

  /** Whether the listing is in (before it, the view knows no name). */
  get filled(): boolean {
    return this.#names !== null;
  }

  get size(): number {
    return this.#names?.size ?? 0;
  }

  /** The watch's listing; events received before it are applied on top, in order. */
  fill(listed: ReadonlyMap<string, string>): void {
    this.#names = new Map(listed);
    for (const e of this.#early.splice(0)) this.apply(e);
  }

  apply(e: DomainLifecycle): void {
    if (this.#names === null) {
      this.#early.push(e);
      return;
    }
    if (presenceAfter(e.event) === 'present') this.#names.set(e.name, e.uuid);
    else this.#names.delete(e.name);
  }

  /** true: the VM is there as far as the events tell; false: unknown here (ask libvirt). */
  has(name: string): boolean {
    return this.#names?.has(name) ?? false;
  }

  uuidOf(name: string): string | undefined {
    return this.#names?.get(name);
  }
}
