/**
 * Lifetime of a libvirt object pointer (connection, domain, pool, volume).
 *
 * A pointer is released exactly once: by free()/close(), or by the
 * FinalizationRegistry if the wrapper is dropped. Calls pin the wrapper
 * (`use`), so a release waits for calls still running on pool threads, and
 * the registry cannot fire while the C side is using the pointer.
 */
import type { Libvirt } from './ffi.js';

export class HandleReleasedError extends Error {
  override readonly name = 'HandleReleasedError';
}

export abstract class NativeHandle<P extends bigint> {
  readonly #ptr: P;
  readonly #kind: string;
  readonly #release: (ptr: P) => Promise<void>;
  readonly #reaper: FinalizationRegistry<() => void>;
  #busy = 0;
  #waiters: (() => void)[] = [];
  #releasing: Promise<void> | null = null;

  protected constructor(lv: Libvirt, ptr: P, kind: string, release: (ptr: P) => Promise<void>) {
    this.#ptr = ptr;
    this.#kind = kind;
    this.#release = release;
    this.#reaper = lv.reaper;
    // The held value must not reference `this`, or the wrapper never dies.
    lv.reaper.register(this, () => void release(ptr).catch(() => undefined), this);
  }

  /** The pointer for a cheap sync call, or null once released. */
  protected peek(): P | null {
    return this.#releasing === null ? this.#ptr : null;
  }

  protected async use<R>(op: (ptr: P) => Promise<R>): Promise<R> {
    if (this.#releasing !== null) throw new HandleReleasedError(`${this.#kind} handle was already released`);
    this.#busy++;
    try {
      return await op(this.#ptr);
    } finally {
      if (--this.#busy === 0) for (const wake of this.#waiters.splice(0)) wake();
    }
  }

  /** Idempotent; resolves after in-flight calls end and the pointer is released. */
  protected releaseHandle(): Promise<void> {
    this.#releasing ??= (async () => {
      this.#reaper.unregister(this);
      if (this.#busy > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
      await this.#release(this.#ptr);
    })();
    return this.#releasing;
  }
}
