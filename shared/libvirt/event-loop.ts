/**
 * Drives libvirt's default event loop (virEventRunDefaultImpl) from a libuv
 * pool thread, one iteration per async call, while at least one connection
 * is open.
 *
 * Remote connections need it: keepalive pings, answering the daemon's own
 * pings and noticing a dead peer all happen in this loop. It costs one pool
 * thread for as long as it runs (count it when sizing UV_THREADPOOL_SIZE),
 * and an in-flight iteration keeps Node alive, so it stops with the last
 * connection. An iteration blocks in poll() until something happens; a
 * zero-delay virEventAddTimeout makes it return (LIBVIRT-FFI.md pitfall 5).
 *
 * Domain event callbacks are dispatched from inside an iteration, which is
 * what fence() is for: see events.ts.
 */
import type { CallbackPtr, LibvirtApi } from './ffi.js';

export class EventLoop {
  #users = 0;
  #runner: Promise<void> | null = null;
  /** Wake-up timeouts not yet removed; a 0 ms timeout fires on every iteration until removed. */
  #wakeTimers: number[] = [];
  #iterations = 0;
  #failures = 0;
  /** fence() callers, each waiting for the iteration count to reach `at`. */
  #fences: { at: number; resolve: () => void }[] = [];

  constructor(
    private readonly api: LibvirtApi,
    private readonly wakeCallback: CallbackPtr,
  ) {}

  /** Connections holding the loop open. */
  get users(): number {
    return this.#users;
  }

  get running(): boolean {
    return this.#runner !== null;
  }

  /** Completed virEventRunDefaultImpl iterations since the process started. */
  get iterations(): number {
    return this.#iterations;
  }

  acquire(): void {
    this.#users++;
    this.#runner ??= this.#run();
  }

  release(): void {
    if (this.#users === 0) return;
    this.#users--;
    if (this.#users === 0 && this.#runner !== null) this.#wake();
  }

  /**
   * Resolves once an iteration that started after this call has ended, so
   * whatever libvirt was dispatching when it was called is over (a callback
   * already entered is not stopped by deregistering it). Immediately when
   * the loop is not running: then nothing is being dispatched.
   */
  fence(): Promise<void> {
    if (this.#runner === null) return Promise.resolve();
    return new Promise((resolve) => {
      // +2: the iteration in flight now counts once but started before us.
      this.#fences.push({ at: this.#iterations + 2, resolve });
      this.#wake();
    });
  }

  async #run(): Promise<void> {
    try {
      while (this.#users > 0) {
        const rc = await this.#iterate();
        // Removing from the main thread between iterations: nothing else
        // touches these timers, so no lock order to get wrong.
        for (const t of this.#wakeTimers.splice(0)) this.api.virEventRemoveTimeout(t);
        this.#iterations++;
        this.#settleFences();
        if (rc < 0) {
          // Not expected with the default impl; avoid spinning if it happens.
          this.#failures++;
          await new Promise((r) => setTimeout(r, Math.min(1000, 10 * this.#failures)));
        } else {
          this.#failures = 0;
        }
      }
    } finally {
      this.#runner = null;
      for (const f of this.#fences.splice(0)) f.resolve(); // stopped: nothing can be dispatching
    }
  }

  #settleFences(): void {
    if (this.#fences.length === 0) return;
    const waiting = this.#fences.filter((f) => f.at > this.#iterations);
    for (const f of this.#fences) if (f.at <= this.#iterations) f.resolve();
    this.#fences = waiting;
    // Otherwise the next iteration would sit in poll() until some unrelated event.
    if (waiting.length > 0) this.#wake();
  }

  #iterate(): Promise<number> {
    return new Promise((resolve) => {
      try {
        this.api.virEventRunDefaultImpl.async((err, rc) => resolve(err ? -1 : rc));
      } catch {
        resolve(-1); // koffi's async queue is full
      }
    });
  }

  #wake(): void {
    const timer = this.api.virEventAddTimeout(0, this.wakeCallback, null, null);
    if (timer >= 0) this.#wakeTimers.push(timer);
  }
}
