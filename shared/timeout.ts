/**
 * A promise with a time limit: the one way kvm-migrate bounds a call into
 * libvirt, Redis or the network. The work itself is not stopped (it cannot
 * be, from here); the caller stops waiting for it.
 */

/** `p`, or the error `late()` makes once `ms` have passed, whichever comes first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(late()), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `p` at most `ms`, never failing: for closing things on the way out. */
export async function atMost(p: Promise<unknown>, ms: number): Promise<void> {
  await withTimeout(p, ms, () => new Error('gave up waiting')).catch(() => undefined);
}
