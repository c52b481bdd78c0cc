/**
 * A watch over every domain of one host (Hypervisor.watchDomains): a
 * connection of its own, one connection-wide lifecycle callback
 * (virConnectDomainEventRegisterAny with no domain) and one listing
 * (virConnectListAllDomains), so a caller can keep the host's domain names
 * without a libvirt call per question.
 *
 * A connection of its own: the watch lives as long as its user wants, its
 * callback and listing never queue behind (or in front of) the calls of the
 * connection the user works with, and when it dies the user knows its events
 * stopped (isAlive) without guessing which connection was meant.
 *
 * Threads, as in events.ts: libvirt dispatches from the thread running its
 * event loop, and koffi blocks that thread until the JS callback returns. The
 * callback only reads the domain's name and UUID (virDomainGetName and
 * virDomainGetUUIDString read the handle's own fields: no RPC, no lock the
 * loop could hold; the handle is valid for the callback's duration) and
 * hands them on with setImmediate, in the order libvirt sent them. Teardown
 * as events.ts: deregister, wait one whole loop iteration (fence), then
 * koffi.unregister; no freecb.
 */
import koffi from 'koffi';
import { Caller, callAsync, openConnection } from './call.js';
import { LibvirtTimeoutError } from './errors.js';
import { bindEvents, DomainEventId, lifecycleEventName } from './events.js';
import type { CallbackPtr, ConnPtr, DomainPtr, HeapPtr, Libvirt, Out } from './ffi.js';
import type { DomainLifecycle, DomainWatch, OpenOptions } from './types.js';

const DEFAULT_OPEN_TIMEOUT_MS = 30_000;
/** As binding.ts: a dead peer is noticed after about interval × (count + 1) seconds. */
const KEEPALIVE = { intervalSec: 5, count: 3 };

function nameAndUuid(lv: Libvirt, dom: DomainPtr): { name: string; uuid: string } {
  const name = lv.api.virDomainGetName(dom) ?? '';
  const buf = Buffer.alloc(37); // VIR_UUID_STRING_BUFLEN
  lv.api.virDomainGetUUIDString(dom, buf);
  return { name, uuid: buf.toString('latin1', 0, 36) };
}

/** Opens `uri` within `timeoutMs`; one that opens later is closed unused. Holds the event loop while open. */
async function openWithin(lv: Libvirt, uri: string, opts: OpenOptions): Promise<ConnPtr> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
  lv.loop.acquire(); // before the open, so the daemon's keepalive pings are answered from the start
  const opening = openConnection(lv, opts.readonly ? lv.api.virConnectOpenReadOnly : lv.api.virConnectOpen, uri);
  return new Promise<ConnPtr>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new LibvirtTimeoutError(`open ${uri}`, timeoutMs));
      opening.then(
        (late) => void callAsync(lv.api.virConnectClose, late).catch(() => undefined).finally(() => lv.loop.release()),
        () => lv.loop.release(),
      );
    }, timeoutMs);
    opening.then(
      (p) => {
        clearTimeout(timer);
        resolve(p);
      },
      (e: unknown) => {
        clearTimeout(timer);
        lv.loop.release();
        reject(e);
      },
    );
  });
}

/** Every domain, active and inactive, name → UUID; the handles are freed before this returns. */
async function listAll(lv: Libvirt, caller: Caller, conn: ConnPtr): Promise<Map<string, string>> {
  const out: Out<HeapPtr | null> = [null];
  const count = await caller.int(lv.api.virConnectListAllDomains, conn, out, 0);
  const array = out[0];
  if (array === null) return new Map();
  let ptrs: DomainPtr[];
  try {
    ptrs = lv.decodePointers<DomainPtr>(array, count);
  } finally {
    lv.freeHeap(array);
  }
  const names = new Map<string, string>();
  for (const d of ptrs) {
    const { name, uuid } = nameAndUuid(lv, d);
    names.set(name, uuid);
  }
  // Freed here, synchronously: virDomainFree only drops the handle's reference (no RPC, no
  // lock libvirt's loop holds), and a host of thousands of domains made thousands of trips
  // through the thread pool of it, about 50 µs of main-thread time each.
  for (const d of ptrs) lv.api.virDomainFree(d);
  return names;
}

export async function watchDomains(lv: Libvirt, uri: string, onEvent: (e: DomainLifecycle) => void, opts: OpenOptions = {}): Promise<DomainWatch> {
  const events = bindEvents();
  const conn = await openWithin(lv, uri, opts);
  const caller = new Caller(lv, conn, {});
  let ended = false;
  let callback: CallbackPtr | null = null;
  let callbackId = -1;
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      ended = true;
      if (callbackId >= 0 && (await callAsync(events.deregister, conn, callbackId).catch(() => -1)) < 0) lv.takeConnError(conn);
      if (callback !== null) {
        await lv.loop.fence(); // a dispatch already inside the callback is not stopped by deregistering
        koffi.unregister(callback);
      }
      await callAsync(lv.api.virConnectClose, conn).catch(() => undefined);
      lv.loop.release();
    })());
  try {
    // Where the driver has no keepalive (test:///), libvirt says so; that is no failure here.
    await caller.int(lv.api.virConnectSetKeepAlive, conn, KEEPALIVE.intervalSec, KEEPALIVE.count).catch(() => undefined);
    // Registered before the listing, so no change falls between the two; the user applies
    // the listing first and the events after it, in order.
    callback = koffi.register((_c: unknown, dom: DomainPtr, event: number, detail: number): number => {
      try {
        const e = { ...nameAndUuid(lv, dom), event: lifecycleEventName(event), detail };
        setImmediate(() => ended || onEvent(e));
      } catch (err) {
        setImmediate(() => {
          throw err;
        });
      }
      return 0;
    }, 'virConnectDomainEventCallback *') as CallbackPtr;
    const generic = koffi.as(callback, 'virConnectDomainEventGenericCallback *');
    callbackId = await caller.int(events.register, conn, null as unknown as DomainPtr, DomainEventId.LIFECYCLE, generic, null, null);
    const listed = await listAll(lv, caller, conn);
    // The Caller served the setup only: teardown reads errors off the connection itself.
    return { listed, isAlive: () => !ended && lv.api.virConnectIsAlive(conn) === 1, close };
  } catch (e) {
    await close();
    throw e;
  }
}
