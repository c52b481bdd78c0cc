/**
 * The source's known VM names (api/vm-names.ts): what each lifecycle event
 * says about a domain's existence, and a view filled by a listing with the
 * events that came before it applied on top, in order.
 */
import { describe, expect, it } from 'vitest';
import { presenceAfter, VmNameView } from '../api/vm-names.js';
import type { DomainLifecycle } from '../shared/libvirt/types.js';

describe('presenceAfter', () => {
  it.each([
    ['defined', 'present'],
    ['started', 'present'],
    ['suspended', 'present'],
    ['resumed', 'present'],
    ['shutdown', 'present'],
    ['pmsuspended', 'present'],
    ['crashed', 'present'],
    // A running domain undefined stays (transient); a transient one stopped goes: either way, ask.
    ['undefined', 'unsure'],
    ['stopped', 'unsure'],
    ['event-42', 'unsure'],
  ])('%s: %s', (event, want) => {
    expect(presenceAfter(event)).toBe(want);
  });
});

const ev = (event: string, name: string, uuid = `uuid-${name}`): DomainLifecycle => ({ name, uuid, event, detail: 0 });

describe('VmNameView', () => {
  it.each([
    { what: 'knows nothing before its listing', early: [], listed: null, has: { a: false } },
    { what: 'holds what was listed', early: [], listed: ['a', 'b'], has: { a: true, b: true, c: false } },
    { what: 'applies events from before the listing after it: a domain undefined meanwhile goes', early: [ev('undefined', 'a')], listed: ['a', 'b'], has: { a: false, b: true } },
    { what: 'a domain defined and undefined before the listing ends unknown', early: [ev('defined', 'c'), ev('undefined', 'c')], listed: ['a'], has: { a: true, c: false } },
    { what: 'one undefined then defined again is there', early: [ev('undefined', 'a'), ev('defined', 'a', 'uuid-new')], listed: ['a'], has: { a: true } },
  ])('$what', ({ early, listed, has }) => {
    const v = new VmNameView();
    for (const e of early) v.apply(e);
    if (listed) v.fill(new Map(listed.map((n) => [n, `uuid-${n}`])));
    expect(v.filled).toBe(listed !== null);
    for (const [name, want] of Object.entries(has)) expect(v.has(name), name).toBe(want);
  });

  it('follows events after the listing: defined, started and the like add; undefined and stopped take out', () => {
    const v = new VmNameView();
    v.fill(new Map([['a', 'u-a']]));
    v.apply(ev('defined', 'b', 'u-b'));
    v.apply(ev('started', 't', 'u-t'));
    expect([v.has('a'), v.has('b'), v.has('t'), v.size]).toEqual([true, true, true, 3]);
    v.apply(ev('stopped', 't'));
    v.apply(ev('undefined', 'a'));
    expect([v.has('a'), v.has('b'), v.has('t'), v.size]).toEqual([false, true, false, 1]);
    v.apply(ev('defined', 'b', 'u-b2'));
    expect(v.uuidOf('b')).toBe('u-b2');
  });
});
