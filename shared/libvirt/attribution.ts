/**
 * Matching the errors libvirt reports to the calls that failed.
 *
 * libvirt calls the error handler on the failing thread, before the failing
 * API returns (koffi runs it on the main thread while that thread waits).
 * Nothing in the report names the call, but the failing call must be one of
 * those in flight at that moment. With one call in flight the match is
 * exact; with several, a failing call takes the oldest report naming it,
 * preferring one its caller recognises (e.g. an open whose message names its
 * host). That guess was wrong for 373 of 2000 calls when 40 ran at once on
 * one connection, which is why Caller queues its calls.
 */
import type { VirErrorInfo } from './errors.js';

interface Report {
  info: VirErrorInfo;
  /** Calls in flight when libvirt reported the error. */
  suspects: Set<number>;
}

export class Attribution {
  #last = 0;
  readonly #inflight = new Set<number>();
  #reports: Report[] = [];

  get inflight(): number {
    return this.#inflight.size;
  }

  /** From the error handler. Reports with no call in flight have no owner and are dropped. */
  record(info: VirErrorInfo): void {
    if (this.#inflight.size > 0) this.#reports.push({ info, suspects: new Set(this.#inflight) });
  }

  begin(): number {
    const id = ++this.#last;
    this.#inflight.add(id);
    return id;
  }

  /** The report that belongs to failed call `id`, removed so no other call takes it. */
  claim(id: number, prefer?: (info: VirErrorInfo) => boolean): VirErrorInfo | undefined {
    const mine = (r: Report) => r.suspects.has(id);
    let i = prefer === undefined ? -1 : this.#reports.findIndex((r) => mine(r) && prefer(r.info));
    if (i < 0) i = this.#reports.findIndex(mine);
    return i < 0 ? undefined : this.#reports.splice(i, 1)[0]?.info;
  }

  /** Call `id` returned: it cannot be behind any report still unclaimed. */
  end(id: number): void {
    this.#inflight.delete(id);
    for (const r of this.#reports) r.suspects.delete(id);
    this.#reports = this.#reports.filter((r) => r.suspects.size > 0);
  }
}
