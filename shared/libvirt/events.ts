/**
 * Domain event subscriptions (virConnectDomainEventRegisterAny) for
 * migration monitoring: lifecycle, migration iteration, job completed.
 *
 * Threads. libvirt dispatches events from the thread running
 * virEventRunDefaultImpl, a koffi async call on a libuv pool thread. koffi
 * queues each call of a registered callback to the JS main thread and blocks
 * the calling thread until the JS function returns. So the native callbacks
 * here only decode (the job-completed params are libvirt's and freed as soon
 * as we return) and hand the values to the user's handlers with
 * setImmediate: libvirt's loop goes on (keepalive, other events) before user
 * code runs, and a throwing handler surfaces as an ordinary uncaught error
 * instead of being swallowed by the trampoline. Nothing on the main thread
 * may wait synchronously for the loop thread, or both wait forever: every
 * call here that can block is async.
 *
 * Teardown (LIBVIRT-FFI.md pitfall 3): deregister with libvirt, wait for one
 * whole event-loop iteration (a dispatch already inside our trampoline when
 * we deregistered is not stopped by it), then koffi.unregister. No freecb:
 * libvirt calls it with its own locks held, from whichever thread drops the
 * callback, and a koffi callback there would block that thread on the main
 * thread, which may be inside a sync call waiting for those very locks
 * (virConnectIsAlive takes the remote driver lock).
 */
import koffi from 'koffi';
import type { Caller } from './call.js';
import { callAsync } from './call.js';
import type { CallbackPtr, ConnPtr, DomainPtr, Libvirt, NativeFn, ParamsPtr } from './ffi.js';
import { paramsToFields } from './typed-params.js';
import type { MigrationEventHandlers } from './types.js';

/** virDomainEventID values, checked against libvirt-domain.h (libvirt 9.0). */
export const DomainEventId = {
  LIFECYCLE: 0,
  MIGRATION_ITERATION: 20,
  JOB_COMPLETED: 21,
} as const;

/** virDomainEventType, by number. */
const LIFECYCLE_EVENTS = [
  'defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed',
] as const;

/** Names newer libvirt may add still reach the handler, as 'event-N'. */
export function lifecycleEventName(n: number): string {
  return LIFECYCLE_EVENTS[n] ?? `event-${n}`;
}

/** A registered callback retyped as virConnectDomainEventGenericCallback (VIR_DOMAIN_EVENT_CALLBACK). */
type GenericCallback = ReturnType<typeof koffi.as>;

interface EventApi {
  register: NativeFn<[ConnPtr, DomainPtr, number, GenericCallback, null, null], number>;
  deregister: NativeFn<[ConnPtr, number], number>;
}

let bound: EventApi | undefined;

/** Prototype names are process-global in koffi, so this binds once. Needs loadLibvirt() first. */
export function bindEvents(): EventApi {
  if (bound) return bound;
  const lib = koffi.load('libvirt.so.0'); // the handle ffi.ts opened: dlopen counts references
  koffi.proto('void virConnectDomainEventGenericCallback(virConnectPtr conn, virDomainPtr dom, void *opaque)');
  // Returns int in libvirt's typedef (a leftover of the old API; the value is ignored).
  koffi.proto('int virConnectDomainEventCallback(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)');
  koffi.proto('void virConnectDomainEventMigrationIterationCallback(virConnectPtr conn, virDomainPtr dom, int iteration, void *opaque)');
  // params is libvirt's: decoded during the call, never freed by us.
  koffi.proto('void virConnectDomainEventJobCompletedCallback(virConnectPtr conn, virDomainPtr dom, void *params, int nparams, void *opaque)');
  bound = {
    register: lib.func(
      'int virConnectDomainEventRegisterAny(virConnectPtr conn, virDomainPtr dom, int eventID, ' +
        'virConnectDomainEventGenericCallback *cb, void *opaque, void *freecb)',
    ) as unknown as EventApi['register'],
    deregister: lib.func(
      'int virConnectDomainEventDeregisterAny(virConnectPtr conn, int callbackID)',
    ) as unknown as EventApi['deregister'],
  };
  return bound;
}

/** Runs `fn` later on the main thread unless the subscription ended meanwhile. */
type Deliver = (fn: () => void) => void;

/** The koffi callbacks the handlers ask for, by event ID. */
function nativeCallbacks(lv: Libvirt, h: MigrationEventHandlers, deliver: Deliver): [number, () => CallbackPtr][] {
  // Decoding errors (a typed parameter type libvirt added later) must not vanish in the trampoline.
  // Returns 0 for the one prototype with an int result; the void ones drop it.
  const guarded = <A extends unknown[]>(decode: (...args: A) => void) => (...args: A): number => {
    try {
      decode(...args);
    } catch (e) {
      setImmediate(() => {
        throw e;
      });
    }
    return 0;
  };
  const out: [number, () => CallbackPtr][] = [];
  const { lifecycle, iteration, jobCompleted } = h;
  if (lifecycle) {
    out.push([DomainEventId.LIFECYCLE, () => koffi.register(guarded((_c: unknown, _d: unknown, event: number, detail: number) => {
      const name = lifecycleEventName(event);
      deliver(() => lifecycle(name, detail));
    }), 'virConnectDomainEventCallback *') as CallbackPtr]);
  }
  if (iteration) {
    out.push([DomainEventId.MIGRATION_ITERATION, () => koffi.register(guarded((_c: unknown, _d: unknown, n: number) => {
      deliver(() => iteration(n));
    }), 'virConnectDomainEventMigrationIterationCallback *') as CallbackPtr]);
  }
  if (jobCompleted) {
    out.push([DomainEventId.JOB_COMPLETED, () => koffi.register(guarded((_c: unknown, _d: unknown, params: ParamsPtr | null, n: number) => {
      const fields = params === null ? {} : paramsToFields(lv.decodeTypedParams(params, n));
      deliver(() => jobCompleted(fields));
    }), 'virConnectDomainEventJobCompletedCallback *') as CallbackPtr]);
  }
  return out;
}

/** How a subscription deregisters one libvirt callback ID; failures are the caller's to absorb. */
type Deregister = (callbackId: number) => Promise<unknown>;

class Subscription {
  readonly #lv: Libvirt;
  readonly #active: Set<Subscription>;
  readonly #registrations: { callbackId: number; callback: CallbackPtr }[] = [];
  #ending: Promise<void> | null = null;
  /** Made here, not in subscribe(): see unsubscriber(). */
  readonly deliver: Deliver = (fn) => setImmediate(() => this.ended || fn());

  /** Joins `active` until ended. */
  constructor(lv: Libvirt, active: Set<Subscription>) {
    this.#lv = lv;
    this.#active = active;
    active.add(this);
    lv.loop.acquire(); // events are dispatched only while the loop runs, whatever the connections do
  }

  get ended(): boolean {
    return this.#ending !== null;
  }

  add(callbackId: number, callback: CallbackPtr): void {
    this.#registrations.push({ callbackId, callback });
  }

  /** Idempotent; every later call gets the first call's promise. Never rejects. */
  end(deregister: Deregister): Promise<void> {
    this.#ending ??= (async () => {
      const regs = this.#registrations.splice(0);
      for (const r of regs) {
        // Ignored on failure: libvirt drops the callback locally before any
        // remote RPC, so a failure (dead connection) still means no more calls.
        await deregister(r.callbackId).catch(() => undefined);
      }
      await this.#lv.loop.fence();
      for (const r of regs) koffi.unregister(r.callback);
      this.#lv.loop.release();
      this.#active.delete(this);
    })();
    return this.#ending;
  }
}

/**
 * Made out here on purpose: V8 closures share their scope's context, so a
 * closure over the Caller made in subscribe() would be reachable from the
 * koffi callbacks (GC roots) made there too, and the connection could never
 * be finalized. Holding the Caller here is fine: whoever can still
 * unsubscribe keeps the connection alive, as they should.
 */
function unsubscriber(sub: Subscription, caller: Caller, api: EventApi, conn: ConnPtr): () => Promise<void> {
  // Through the Caller: queued, and a failure's error report goes to this call.
  return () => sub.end((id) => caller.int(api.deregister, conn, id));
}

/**
 * One connection's subscriptions. The connection's release function holds
 * it, so it must not reach the connection wrapper (nor its Caller), or the
 * wrapper could never be finalized.
 */
export class ConnectionEvents {
  readonly #lv: Libvirt;
  readonly #active = new Set<Subscription>();

  constructor(lv: Libvirt) {
    this.#lv = lv;
  }

  /** `conn` and `dom` must stay valid until this resolves (the caller pins them). */
  async subscribe(
    caller: Caller,
    conn: ConnPtr,
    dom: DomainPtr,
    handlers: MigrationEventHandlers,
  ): Promise<() => Promise<void>> {
    const api = bindEvents();
    const sub = new Subscription(this.#lv, this.#active);
    const unsubscribe = unsubscriber(sub, caller, api, conn);
    try {
      for (const [eventId, make] of nativeCallbacks(this.#lv, handlers, sub.deliver)) {
        const callback = make();
        let callbackId: number;
        try {
          const generic = koffi.as(callback, 'virConnectDomainEventGenericCallback *');
          callbackId = await caller.int(api.register, conn, dom, eventId, generic, null, null);
        } catch (e) {
          koffi.unregister(callback); // libvirt never saw it
          throw e;
        }
        sub.add(callbackId, callback);
      }
    } catch (e) {
      await unsubscribe();
      throw e;
    }
    return unsubscribe;
  }

  /** For the connection's release, before virConnectClose: the pointer is still valid, the Caller may be gone. */
  async endAll(conn: ConnPtr): Promise<void> {
    const { deregister } = bindEvents();
    await Promise.all(
      [...this.#active].map((sub) =>
        sub.end(async (id) => {
          if ((await callAsync(deregister, conn, id)) < 0) this.#lv.takeConnError(conn); // clear it for nobody
        }),
      ),
    );
  }
}
