/**
 * The query of GET /tasks, as tables: limits, cursors, filters (a status list
 * or Kimchi's pattern), times, and the 400 each bad parameter gets.
 */
import { describe, expect, it } from 'vitest';
import { memberOf } from '../api/task-index.js';
import { decodeCursor, encodeCursor, parseTaskListQuery } from '../api/task-list.js';
import { isMigrationError } from '../shared/errors.js';

const MEMBER = memberOf(1_767_225_600_000, '0b7c2a1e-8d0b-4c55-9a51-0c1d2e3f4a5b');

/** The 400's detail, or 'ok'. */
function parsed(q: Record<string, unknown>): string {
  try {
    parseTaskListQuery(q);
    return 'ok';
  } catch (e) {
    if (!isMigrationError(e) || e.code !== 'KMIG0001E') throw e;
    return e.message;
  }
}

describe('the query of GET /tasks', () => {
  it('defaults: 100 a page from the newest, no filter', () => {
    expect(parseTaskListQuery({})).toEqual({ limit: 100, after: null, params: {} });
  });

  it.each([
    [{ limit: '1' }, { limit: 1 }],
    [{ limit: '500' }, { limit: 500 }],
    [{ limit: '007' }, { limit: 7 }],
    [{ cursor: encodeCursor(MEMBER) }, { after: MEMBER }],
    [{ vm: 'lab tiny é' }, { vm: 'lab tiny é' }],
    [{ host: 'Host2.Example.' }, { host: 'host2.example.' }],
    [{ host: '[fe80::1]' }, { host: 'fe80::1' }],
    [{ source_host: '127.0.0.11', destination_host: 'h2' }, { sourceHost: '127.0.0.11', destinationHost: 'h2' }],
    [{ since: '2026-01-31' }, { sinceMs: Date.parse('2026-01-31T00:00:00Z') }],
    [{ since: '2024-02-29T23:59:59.5Z' }, { sinceMs: Date.parse('2024-02-29T23:59:59.500Z') }],
    [{ until: '2026-01-31T14:00Z' }, { untilMs: Date.parse('2026-01-31T14:00:00Z') }],
    [{ since: '2026-01-31T14:00:00+02:00', until: '2026-01-31T12:00:00.001Z' }, { sinceMs: Date.parse('2026-01-31T12:00:00Z'), untilMs: Date.parse('2026-01-31T12:00:00.001Z') }],
  ])('%j → %j', (q, want) => {
    expect(parseTaskListQuery(q)).toMatchObject(want);
  });

  it.each([
    // A list of statuses is a set; one status word means the same as Kimchi's pattern would.
    ['running', ['running'], undefined],
    ['failed,killed', ['failed', 'killed'], undefined],
    ['finished,failed,killed,running', ['finished', 'failed', 'killed', 'running'], undefined],
    // Anything else is Kimchi's regular expression.
    ['failed|killed', undefined, 'failed|killed'],
    ['fin', undefined, 'fin'],
    ['running,', undefined, 'running,'],
    ['', undefined, ''],
  ])('status=%j: statuses %j, pattern %j', (status, set, pattern) => {
    const q = parseTaskListQuery({ status });
    expect(q.statuses ? [...q.statuses] : undefined).toEqual(set);
    expect(q.statusRegex?.source === '(?:)' ? '' : q.statusRegex?.source).toEqual(pattern);
  });

  it.each([
    [{ limit: '0' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: '501' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: '1000' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: '-1' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: '1.5' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: '' }, "'limit' must be a whole number from 1 to 500"],
    [{ limit: ['1', '2'] }, "'limit' must be given once"],
    [{ cursor: 'bm90IGEgY3Vyc29y' }, "'cursor' is not one this API gave out"],
    [{ cursor: '%%%' }, "'cursor' is not one this API gave out"],
    [{ cursor: `${encodeCursor(MEMBER)}=` }, "'cursor' is not one this API gave out"],
    [{ cursor: '' }, "'cursor' is not one this API gave out"],
    [{ vm: '' }, "'vm' is a VM name"],
    [{ vm: 'a/b' }, "'vm' is a VM name"],
    [{ host: 'bad host!' }, "'host' must be a host name or an IP address"],
    [{ destination_host: 'qemu://h2' }, "'destination_host' must be a host name or an IP address"],
    [{ since: 'yesterday' }, "'since' must be an ISO 8601 date or time with its zone"],
    [{ since: '2026-01-31T14:00:00' }, "'since' must be an ISO 8601 date or time with its zone"],
    [{ until: '2026-02-30' }, "'until' must be an ISO 8601 date or time with its zone"],
    [{ until: '2026-01-31T24:00:00Z' }, "'until' must be an ISO 8601 date or time with its zone"],
    [{ until: '2026-01-31T12:00:00+25:00' }, "'until' must be an ISO 8601 date or time with its zone"],
    [{ until: '1767225600000' }, "'until' must be an ISO 8601 date or time with its zone"],
    [{ since: '2026-02-01', until: '2026-01-01' }, "'since' must be before 'until'"],
    [{ since: '2026-02-01', until: '2026-02-01' }, "'since' must be before 'until'"],
    [{ status: '((' }, "filter 'status' is not a valid regular expression"],
    [{ status: 'x'.repeat(201) }, "'status' must be a comma list of statuses or one regular expression"],
    [{ target_uri: '[' }, "filter 'target_uri' is not a valid regular expression"],
    [{ stauts: 'failed' }, "unknown parameter 'stauts'; GET /tasks takes limit, cursor, vm, host, source_host, destination_host, status, target_uri, since, until"],
  ])('%j is refused: %s', (q, detail) => {
    expect(parsed(q)).toContain(`KMIG0001E: Invalid request: ${detail}`);
  });

  it('a cursor round-trips, and only the cursor this API makes is taken back', () => {
    expect(decodeCursor(encodeCursor(MEMBER))).toBe(MEMBER);
    expect(decodeCursor(encodeCursor(MEMBER.replace(/^0/, '1')))).toBe(MEMBER.replace(/^0/, '1'));
    for (const junk of [encodeCursor('0001:abc'), encodeCursor(`${MEMBER}x`), encodeCursor(MEMBER.slice(1)), encodeCursor(MEMBER).slice(0, -2), 'A'.repeat(121)]) expect(decodeCursor(junk)).toBeNull();
  });
});
