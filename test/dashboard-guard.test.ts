/**
 * The dashboard's rules as tables: which of bull-board's writes an
 * operator's board allows (the rest refused with what to use instead), and
 * the bounds on a page of jobs. On a real API and Redis in dashboard.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { boardWrite, boundedQuery } from '../api/dashboard-guard.js';

describe('boardWrite()', () => {
  const q = '/api/queues/migrations';
  it.each([
    // Reads, and the writes that cannot go around the API.
    ['GET', `${q}/4f7c/logs`, 'allow'],
    ['GET', '/api/queues', 'allow'],
    ['HEAD', '/', 'allow'],
    ['PUT', '/api/queues/pause', 'allow'],
    ['PUT', '/api/queues/resume', 'allow'],
    ['PUT', `${q}/pause`, 'allow'],
    ['PUT', `${q}/resume`, 'allow'],
    ['PUT', `${q}/promote`, 'allow'],
    ['PUT', `${q}/4f7c/promote`, 'allow'],
    ['PUT', `${q}/clean/completed`, 'allow'],
    ['PUT', `${q}/clean/failed`, 'allow'],
    ['PUT', `${q}/4f7c/clean`, 'if-ended'],
    // Everything else.
    ['POST', `${q}/add`, 'refuse'],
    ['PATCH', `${q}/4f7c/update-data`, 'refuse'],
    ['PATCH', `${q}/4f7c/delay`, 'refuse'],
    ['PATCH', `${q}/4f7c/priority`, 'refuse'],
    ['PUT', `${q}/empty`, 'refuse'],
    ['PUT', `${q}/obliterate`, 'refuse'],
    ['PUT', `${q}/4f7c/retry`, 'refuse'],
    ['PUT', `${q}/retry/failed`, 'refuse'],
    ['PUT', `${q}/retry/completed`, 'refuse'],
    ['PUT', `${q}/clean/wait`, 'refuse'],
    ['PUT', `${q}/clean/active`, 'refuse'],
    ['PUT', `${q}/clean/delayed`, 'refuse'],
    ['PUT', `${q}/concurrency`, 'refuse'],
    ['PUT', `${q}/rate-limit`, 'refuse'],
    ['PUT', `${q}/rate-limit/release`, 'refuse'],
    ['PUT', `${q}/job-schedulers/s/run`, 'refuse'],
    ['PATCH', `${q}/job-schedulers/s`, 'refuse'],
    ['PUT', `${q}/job-schedulers/s/remove`, 'refuse'],
    ['PUT', `${q}/4f7c/remove-unprocessed-children`, 'refuse'],
    ['POST', '/api/metrics/history/purge', 'refuse'],
    // Express matches routes regardless of case and trailing slash; these are refused, never read as allowed.
    ['PUT', '/API/queues/migrations/pause', 'refuse'],
    ['PUT', `${q}/PAUSE`, 'refuse'],
    ['PUT', `${q}/pause/`, 'refuse'],
    ['PUT', '/api/queues//pause', 'refuse'],
    // A "job id" that is a word of bull-board's routes would reach another route.
    ['PUT', `${q}/clean/promote`, 'refuse'],
    ['PUT', `${q}/retry/clean`, 'refuse'],
    ['PUT', `${q}/%E0%A4%A/clean`, 'refuse'],
    ['DELETE', `${q}/4f7c`, 'refuse'],
    ['POST', `${q}/pause`, 'refuse'],
  ])('%s %s → %s', (method, path, kind) => {
    expect(boardWrite(method, path).kind).toBe(kind);
  });

  it('names the job to look at, decoded as bull-board decodes it', () => {
    expect(boardWrite('PUT', '/api/queues/migrations/a%20b/clean')).toEqual({ kind: 'if-ended', jobId: 'a b' });
  });

  it.each([
    ['POST', '/api/queues/migrations/add', 'adding a job', /POST \/vms\/:name\/migrate/],
    ['PUT', '/api/queues/migrations/4f7c/retry', 'retrying a job', /POST \/vms\/:name\/migrate, .* again$/],
    ['PATCH', '/api/queues/migrations/4f7c/update-data', "changing a job's data, delay or priority", /PATCH \/tasks\/:id/],
    ['PUT', '/api/queues/migrations/concurrency', "changing the queue's limits", /limits\.\*/],
    ['PUT', '/api/queues/migrations/obliterate', 'removing or changing queued or running jobs', /DELETE \/tasks\/:id/],
  ])('%s %s says what it would do and what to use instead', (method, path, what, instead) => {
    const d = boardWrite(method, path);
    expect(d).toMatchObject({ kind: 'refuse', what });
    expect(d.kind === 'refuse' && d.instead).toMatch(instead);
  });
});

describe('boundedQuery()', () => {
  it.each([
    ['activeQueue=migrations&status=waiting&page=1&jobsPerPage=10', null],
    ['jobsPerPage=100&page=1000000', null],
    ['jobsPerPage=abc', null],
    ['', null],
    ['activeQueue=migrations&status=waiting&jobsPerPage=20000', 'activeQueue=migrations&status=waiting&jobsPerPage=100'],
    ['jobsPerPage=101', 'jobsPerPage=100'],
    ['jobsPerPage=1e9', 'jobsPerPage=100'],
    ['jobsPerPage=Infinity', 'jobsPerPage=100'],
    ['jobsPerPage=0x4e20', 'jobsPerPage=100'],
    ['jobsPerPage=5&jobsPerPage=20000', 'jobsPerPage=100'],
    ['page=1e300&jobsPerPage=10', 'page=1000000&jobsPerPage=10'],
    ['page=2&jobsPerPage=500', 'page=2&jobsPerPage=100'],
  ])('%j → %j', (search, out) => {
    expect(boundedQuery(search)).toBe(out);
  });
});
