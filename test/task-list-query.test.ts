/**
 * The query of GET /tasks, as tables: limits, cursors, filters (a status list
 * or Kimchi's pattern), times, and the 400 each bad parameter gets.
 */
import { describe, expect, it } from 'vitest';
import { memberOf } from '../api/task-index.js';
import { decodeCursor, encodeCursor, parseTaskListQuery, readPage, type PageSource } from '../api/task-list.js';
import { filterBudget, FILTER_BUDGET_MS, matchRows } from '../api/validate.js';
import { isMigrationError } from '../shared/errors.js';
import type { Task } from '../shared/task.js';

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

describe("Kimchi's patterns have one time budget per request", () => {
  // 2,000 tasks, newest first; a pattern that backtracks about a millisecond on each target_uri.
  const tasks = Array.from({ length: 2000 }, (_, i) => {
    const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    return { id, status: 'finished', vm: `vm-${String(i).padStart(4, '0')}`, target_uri: `/vms/vm-${String(i).padStart(4, '0')}`, source: { uri: 'qemu+tcp://h1/system' }, destination: { host: 'h2' } } as Task;
  });
  const members = tasks.map((t, i) => memberOf(1_767_225_600_000 + i, t.id)).reverse();
  const byMember = new Map(members.map((m, i) => [m, tasks[tasks.length - 1 - i]!]));
  const below = (m: string, from: string) => from === '+' || (from.startsWith('(') ? m < from.slice(1) : m <= from.slice(1));
  const src = (batches: number[]): PageSource => ({
    async range(_set, from, _to, count) {
      batches.push(count);
      return members.filter((m) => below(m, from)).slice(0, count);
    },
    async rows(ms) {
      return ms.map((m) => byMember.get(m) ?? null);
    },
  });
  const CATASTROPHIC = `${'(.*)'.repeat(9)}Z`;

  it('limit=1 with a catastrophic target_uri: a 400 once the request spent the budget, not a fresh budget for each batch', async () => {
    const batches: number[] = [];
    const t0 = performance.now();
    const err = await readPage(src(batches), parseTaskListQuery({ limit: '1', target_uri: CATASTROPHIC })).then(() => null, (e: unknown) => e);
    const took = performance.now() - t0;
    expect(isMigrationError(err) && err.message).toBe(`KMIG0001E: Invalid request: the filter expressions took longer than ${FILTER_BUDGET_MS} ms; simplify them`);
    // Each batch of 20 takes well under the budget: only the request's total can stop it.
    expect(batches.length).toBeGreaterThan(1);
    expect(batches.every((n) => n === 20)).toBe(true);
    expect(took).toBeLessThan(1000);
  });

  it('a budget spent by earlier batches refuses the next one at once; a pattern that is quick shares it without trouble', async () => {
    const rows = tasks.slice(0, 20);
    const budget = filterBudget(5);
    expect(() => matchRows(rows, undefined, new RegExp(CATASTROPHIC), budget)).toThrow(/took longer than/);
    expect(budget.leftMs).toBeLessThanOrEqual(0);
    const t0 = performance.now();
    expect(() => matchRows(rows, /fin/, undefined, budget)).toThrow(/took longer than/);
    expect(performance.now() - t0).toBeLessThan(5);
    const page = await readPage(src([]), parseTaskListQuery({ limit: '5', target_uri: '/vms/vm-1', status: 'fin' }));
    expect(page.tasks.map((t) => t.vm)).toEqual(['vm-1999', 'vm-1998', 'vm-1997', 'vm-1996', 'vm-1995']);
  });
});
