/** No Docker engine runs here, so the compose file's promises are checked by reading it. */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { describeSchema } from '../shared/config.js';

const root = new URL('../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true });
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
const knownEnv = new Set(describeSchema().map((r) => r.env));

describe('docker-compose.yml', () => {
  it('runs Redis with AOF persistence and noeviction', () => {
    const cmd: string[] = compose.services.redis.command;
    expect(cmd.join(' ')).toMatch(/--appendonly yes/);
    expect(cmd.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    expect(compose.services.redis.volumes[0]).toMatch(/:\/data$/);
  });

  it('has the API built from the Dockerfile, published, and waiting for Redis', () => {
    const api = compose.services.api;
    expect(api.build).toBe('.');
    expect(api.command).toEqual(['node', 'dist/bin/api.js']);
    expect(api.ports).toContain('8010:8010');
    expect(api.depends_on.redis.condition).toBe('service_healthy');
  });

  it('has workers that scale', () => {
    const w = compose.services.worker;
    expect(w.command).toEqual(['node', 'dist/bin/worker.js']);
    expect(w.deploy.replicas).toBeGreaterThanOrEqual(2);
    expect(w.ports).toBeUndefined(); // scaling must not collide on host ports
  });

  it('configures both by environment, with real configuration variables only', () => {
    for (const name of ['api', 'worker']) {
      const env = compose.services[name].environment;
      expect(env.KVM_MIGRATE_REDIS_URL).toBe('redis://redis:6379');
      expect(env.KVM_MIGRATE_LIBVIRT_SOURCE_URI).toMatch(/qemu\+tcp:\/\//);
      expect(env.KVM_MIGRATE_LIBVIRT_DESTINATION_URI_TEMPLATE).toMatch(/\{host\}/);
      for (const k of Object.keys(env)) expect(knownEnv.has(k), k).toBe(true);
    }
  });

  it('builds an image that has libvirt.so.0 and the compiled entry points', () => {
    expect(dockerfile).toMatch(/apt-get install[^\n]*libvirt0/);
    expect(dockerfile).toMatch(/npm ci/);
    expect(dockerfile).toMatch(/tsc -p tsconfig.build.json/);
    expect(dockerfile).toMatch(/CMD \["node", "dist\/bin\/api.js"\]/);
  });

  it("compiles from exactly what the Dockerfile copies into the build stage, and the output runs", () => {
    // The build stage's COPY lines, replayed into an empty directory.
    const build = dockerfile.split(/^FROM /m)[1] ?? '';
    const dir = mkdtempSync(join(tmpdir(), 'kvm-migrate-docker-'));
    for (const m of build.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)) {
      const sources = m[1]!.split(/\s+/);
      for (const src of sources) cpSync(new URL(src, root), join(dir, sources.length > 1 ? src : m[2]!), { recursive: true });
    }
    symlinkSync(fileURLToPath(new URL('node_modules', root)), join(dir, 'node_modules'));
    const tsc = spawnSync(process.execPath, [fileURLToPath(new URL('node_modules/typescript/bin/tsc', root)), '-p', 'tsconfig.build.json'], { cwd: dir, encoding: 'utf8' });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    for (const entry of ['api', 'worker']) {
      const help = spawnSync(process.execPath, [join(dir, 'dist/bin', `${entry}.js`), '--help'], { cwd: dir, encoding: 'utf8' });
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/^Usage: kvm-migrate-/);
    }
    const cli = spawnSync(process.execPath, [join(dir, 'dist/bin/kvm-migrate.js'), '--help'], { cwd: dir, encoding: 'utf8' });
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(/^Usage: kvm-migrate \[--api URL\]/);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);
});
