/**
 * Redis unreachable: the API answers 503 with a stable code at once instead
 * of hanging, and serves again as soon as Redis is back. Uses its own
 * redis-server on a spare port; the session's Redis is not touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { api, startService, waitFor, type Service } from './helpers/service.js';

const PORT = 6397;
let svc: Service;
let redis: ChildProcess | null = null;

beforeAll(async () => {
  await labUp();
  await resetGuest(GUEST_TINY);
  svc = await startService({ KVM_MIGRATE_REDIS_URL: `redis://127.0.0.1:${PORT}`, KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') }, 0);
});

afterAll(async () => {
  await svc?.stop();
  redis?.kill('SIGTERM');
});

describe('Redis unreachable', () => {
  it('gives 503 KMIG0006E quickly, then serves again once Redis is back', async () => {
    for (const [method, path, body] of [
      ['POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: hostAddress('host2') }],
      ['GET', '/tasks', undefined],
      ['GET', '/tasks/00000000-0000-0000-0000-000000000000', undefined],
    ] as const) {
      const t0 = performance.now();
      const r = await api(svc.url, method, path, body);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(r.status).toBe(503);
      expect(r.body.code).toBe('KMIG0006E');
      expect(r.body.reason).toMatch(/^KMIG0006E: The migration queue \(Redis\) cannot be reached/);
    }
    expect((await api(svc.url, 'GET', '/health')).status).toBe(503);

    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-redis-'));
    redis = spawn('redis-server', ['--port', String(PORT), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor('the API to reconnect', async () => (await api(svc.url, 'GET', '/health')).status === 200, 20_000);
    expect((await api(svc.url, 'GET', '/tasks')).body).toEqual([]);
    const post = await api(svc.url, 'POST', `/vms/${GUEST_TINY}/migrate`, { remote_host: hostAddress('host2') });
    expect(post.status).toBe(202);
  });
});
