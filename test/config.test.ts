import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeSchema, destinationUri, effectiveDowntime, loadConfig } from '../shared/config.js';

describe('configuration', () => {
  it("has the seed's three keys with the seed's defaults", () => {
    const c = loadConfig();
    expect(c.migration_destination_timeout).toBe(21600);
    expect(c.migration_max_bandwidth).toBe('unlimited');
    expect(c.migration_downtime).toBe(500);
  });

  it('reads every key from its environment variable', () => {
    const c = loadConfig({
      env: {
        KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: '32',
        KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT: '60',
        KVM_MIGRATE_REDIS_URL: 'redis://127.0.0.1:6390',
        KVM_MIGRATE_LIBVIRT_SOURCE_URI: 'qemu+tcp://127.0.0.11/system',
        KVM_MIGRATE_WORKER_CONCURRENCY: '4',
      },
    });
    expect(c.migration_max_bandwidth).toBe(32);
    expect(c.migration_destination_timeout).toBe(60);
    expect(c.redis.url).toBe('redis://127.0.0.1:6390');
    expect(c.libvirt.source_uri).toBe('qemu+tcp://127.0.0.11/system');
    expect(c.worker.concurrency).toBe(4);
  });

  it('loads a file, and the environment wins over it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ migration_downtime: 300, api: { port: 9000 } }));
    const c = loadConfig({ file, env: { KVM_MIGRATE_API_PORT: '9100' } });
    expect(c.migration_downtime).toBe(300);
    expect(c.api.port).toBe(9100);
  });

  it.each([
    [{ KVM_MIGRATE_MIGRATION_MAX_BANDWIDTH: 'fast' }, 'migration_max_bandwidth'],
    [{ KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT: '-5' }, 'migration_destination_timeout'],
    [{ KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE: 'qemu+tcp://fixed/system' }, 'libvirt.destination_uri_template'],
    [{ KVM_MIGRATE_REDIS_URL: 'http://x' }, 'redis.url'],
    [{ KVM_MIGRATE_API_PORT: '70000' }, 'api.port'],
    [{ KVM_MIGRATE_LOG_LEVEL: 'loud' }, 'log.level'],
  ])('refuses %j naming the key', (env, key) => {
    expect(() => loadConfig({ env })).toThrow(ConfigError);
    expect(() => loadConfig({ env })).toThrow(key);
  });

  it('refuses unknown keys in a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ migration_speed: 3 }));
    expect(() => loadConfig({ file })).toThrow(/migration_speed/);
  });

  it.each([[0, null], [99, null], [100, 100], [500, 500], [600000, 600000]])('downtime %i ms is applied as %s (under 100 is ignored)', (ms, want) => {
    expect(effectiveDowntime(ms)).toBe(want);
  });

  it('builds destination URIs, bracketing IPv6 addresses', () => {
    expect(destinationUri('qemu+tcp://{host}/system', '127.0.0.12')).toBe('qemu+tcp://127.0.0.12/system');
    expect(destinationUri('qemu+tcp://{host}:16509/system', '::1')).toBe('qemu+tcp://[::1]:16509/system');
  });

  it('every key has a doc, a default and an environment variable', () => {
    for (const row of describeSchema()) {
      expect(row.doc.length, row.key).toBeGreaterThan(10);
      expect(row.env, row.key).toMatch(/^KVM_MIGRATE_[A-Z_]+$/);
      expect(row.default, row.key).not.toBeUndefined();
    }
  });

  it('the README configuration table lists every key with its variable and default', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const row of describeSchema()) {
      expect(readme, row.key).toContain(`| \`${row.key}\` | \`${row.env}\` | \`${JSON.stringify(row.default)}\` |`);
    }
  });
});

describe('concurrency limits', () => {
  it("default to oVirt's two outgoing and two incoming per host, ten in all", () => {
    expect(loadConfig().limits).toEqual({ outgoing_per_host: 2, incoming_per_host: 2, global: 10, wait_poll: 2000, max_wait: 86400 });
  });
  it('come from the environment, and a limit of 0 is refused (it would stop every migration)', () => {
    expect(loadConfig({ env: { KVM_MIGRATE_LIMITS_OUTGOING_PER_HOST: '1', KVM_MIGRATE_LIMITS_WAIT_POLL: '300' } }).limits).toMatchObject({ outgoing_per_host: 1, wait_poll: 300 });
    expect(() => loadConfig({ env: { KVM_MIGRATE_LIMITS_GLOBAL: '0' } })).toThrow(/limits.global.*KVM_MIGRATE_LIMITS_GLOBAL/);
  });
});

describe('timer limits', () => {
  it('refuses a migration timeout a Node timer cannot hold (it would fire at once)', () => {
    expect(() => loadConfig({ env: { KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT: String(30 * 24 * 3600) } })).toThrow(/migration_destination_timeout.*2000000 seconds/);
    expect(loadConfig({ env: { KVM_MIGRATE_MIGRATION_DESTINATION_TIMEOUT: '2000000' } }).migration_destination_timeout).toBe(2000000);
    expect(() => loadConfig({ env: { KVM_MIGRATE_STAGES_RECOVER_DEADLINE: String(2 ** 31) } })).toThrow(/stages.recover_deadline/);
  });
});
