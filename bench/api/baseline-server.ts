/**
 * What the API is compared with, in a process of its own like the API: a
 * bare Express server with the two routes reduced to their floor.
 *
 * POST /vms/:name/migrate: raw queue.add of the job the API would add for
 * that VM (same data, same BullMQ job options, same Redis connection
 * options), answering 202 with the id. No authentication, validation,
 * libvirt lookup, task index or task rendering: what the API does beyond
 * this is what the figure measures.
 *
 * GET /tasks/:id: res.json of the object in BENCH_BODY_FILE (a real task, read
 * once), whatever the id: an answer of the same size with no work behind it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import express from 'express';
import { loadConfig } from '../../shared/config.js';
import { initialCheckpoint, type MigrationJobData } from '../../shared/job.js';
import { apiRedis, createQueue, JOB_NAME, jobOptions, vmLockKey } from '../../shared/queue.js';
import { requestFor } from './fill.js';

const config = loadConfig({ env: process.env });
const redis = apiRedis(config);
const queue = createQueue(config, redis);
const app = express();
app.disable('x-powered-by');

app.post('/vms/:name/migrate', express.json({ limit: '16kb' }), (req, res, next) => {
  const now = new Date();
  const request = requestFor(config, String(req.params.name), String(req.body?.remote_host), now.getTime());
  const data: MigrationJobData = { request, checkpoint: initialCheckpoint(now) };
  const id = randomUUID();
  queue.add(JOB_NAME, data, { ...jobOptions(config, id, vmLockKey(request.sourceUri, request.vm)), timestamp: now.getTime() }).then(
    (job) => void res.status(job.id === id ? 202 : 409).json({ id: job.id }),
    next,
  );
});

// Serialised on every answer, as res.json does in the API.
let body: unknown = null;
app.get('/tasks/:id', (_req, res) => {
  body ??= JSON.parse(readFileSync(process.env.BENCH_BODY_FILE ?? '/dev/null', 'utf8') || 'null');
  res.json(body);
});

await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
const server = app.listen(0, '127.0.0.1', () => process.send?.({ ready: true, address: server.address() }));
process.on('SIGTERM', () => {
  server.close();
  void queue.close().finally(() => {
    redis.disconnect();
    process.exit(0);
  });
});
