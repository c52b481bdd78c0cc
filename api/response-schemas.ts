/**
 * What the API answers, as zod schemas: the OpenAPI document's response
 * schemas. test/openapi.test.ts parses real answers (tasks made by toTask,
 * error bodies, probes) with them, so the document follows the code.
 */
import { z } from 'zod';
import { STAGES } from '../shared/stage.js';

const Time = z.iso.datetime().meta({ description: 'ISO 8601 time, UTC.', examples: ['2026-01-01T10:00:00.000Z'] });

export const ErrorCode = z.string().regex(/^K[A-Z]+\d{4}E$/).meta({ description: 'A stable code from the error catalogue (Kimchi\'s KCHVMxxxxE where Kimchi had one, else KMIGxxxxE).', examples: ['KMIG0001E'] });

export const ErrorBody = z
  .object({
    code: ErrorCode,
    reason: z.string().meta({ description: 'What went wrong and what to do; starts with the code, as Kimchi clients expect.' }),
    status: z.int().min(400).max(599).meta({ description: 'The HTTP status, repeated.' }),
  })
  .meta({ description: 'Every error the API answers: {code, reason, status}. Some add a property (see each response).' });

/** An error as a task or a check stores it. */
export const StoredError = z
  .object({
    code: ErrorCode,
    key: z.string().meta({ description: 'The catalogue entry\'s name, e.g. MIGRATION_TIMEOUT.' }),
    reason: z.string().meta({ description: 'Starts with the code.' }),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ description: 'An error kept in a task or a check result.' });

export const HistoryEntry = z
  .object({
    at: Time,
    stage: z.string().meta({ description: 'A stage name, or "queue" for what happened in the queue.' }),
    event: z.enum(['queued', 'start', 'step', 'done', 'retry', 'error', 'decision', 'resume']),
    detail: z.string().optional(),
  })
  .meta({ description: 'One entry of a task\'s stage history.' });

const bytes = (d: string) => z.number().min(0).optional().meta({ description: d });

export const Progress = z
  .object({
    percent: z.number().min(0).max(100).meta({ description: 'Never goes backwards; stays under 100 until the guest runs on the destination.' }),
    dataTotal: bytes('Bytes to copy in all.'),
    dataProcessed: bytes('Bytes copied so far.'),
    dataRemaining: bytes('Bytes left.'),
    memoryBps: bytes('Transfer rate, bytes a second.'),
    iteration: z.int().min(0).optional().meta({ description: 'Pass over guest memory.' }),
    elapsedMs: z.number().min(0).optional(),
    dirtyRateBps: bytes('Bytes the guest dirties a second.'),
    etaSeconds: z.number().min(0).optional().meta({ description: 'Seconds left at the measured rates; absent while the copy does not converge.' }),
    converging: z.boolean().optional().meta({ description: 'false while what is left does not shrink from pass to pass.' }),
    downtimeMs: z.number().min(0).optional().meta({ description: 'Real downtime libvirt measured, once the migration completed.' }),
  })
  .meta({ description: 'The copy\'s progress, from virDomainGetJobStats.' });

const Bandwidth = z.union([z.number().min(0), z.literal('unlimited')]).meta({ description: 'MiB/s, or "unlimited".' });

export const Policy = z
  .object({
    bandwidth: Bandwidth,
    max_downtime: z.int().meta({ description: 'ms' }),
    deadline: z.int().meta({ description: 'seconds' }),
    deadline_action: z.enum(['abort', 'pause']),
    auto_converge: z.boolean(),
    compression: z.enum(['xbzrle', 'none']),
    in_force: z
      .object({
        bandwidth: Bandwidth,
        max_downtime: z.number().nullable(),
        operator_tuned: z.boolean().meta({ description: 'An operator changed a limit: automatic downtime steps stop.' }),
      })
      .nullable()
      .meta({ description: 'The limits libvirt has in force now; null before the copy starts.' }),
  })
  .meta({ description: 'What the client asked for (or the configured defaults), and what is in force.' });

export const Task = z
  .object({
    id: z.string(),
    status: z.enum(['running', 'finished', 'failed', 'killed']).meta({ description: 'Kimchi\'s: running while queued or in any stage, then finished, failed or killed (cancelled).' }),
    message: z.string().meta({ description: 'What is happening, in words; on failure the error\'s reason.' }),
    target_uri: z.string().meta({ examples: ['/vms/lab-tiny'] }),
    stage: z.enum([...STAGES, 'done']),
    vm: z.string(),
    source: z.object({ uri: z.string() }),
    destination: z.object({ host: z.string(), uri: z.string() }),
    queue_state: z.string().meta({ description: 'BullMQ\'s state: waiting, delayed, prioritized, active, waiting-children, completed, failed.' }),
    attempts: z.int().min(0),
    created_at: Time,
    started_at: Time.nullable(),
    finished_at: Time.nullable(),
    progress: Progress.nullable(),
    policy: Policy,
    error: StoredError.nullable(),
    history: z.array(HistoryEntry),
  })
  .meta({ description: 'A migration as a Kimchi task, with stage, hosts, times, progress, policy and history.' });

export const TaskList = z.array(Task).meta({ description: 'Tasks, newest first.' });

/** 409 KMIG0003E: the VM's migration already queued or running. */
export const InProgressError = ErrorBody.extend({ task: Task }).meta({ description: 'The VM already has a queued or running migration: `task` is that one.' });

/** 422 KMIG0040E with federation.require_peer. */
export const NotAPeerError = ErrorBody.extend({ peers: z.array(z.string()).meta({ description: 'The known peers\' hosts.' }) }).meta({
  description: 'remote_host is not a known peer: `peers` lists the known ones.',
});

export const CheckResult = z
  .object({
    check: z.enum(['destination_reachable', 'not_same_host', 'same_hypervisor', 'same_architecture', 'guest_state', 'no_host_devices', 'shared_storage', 'no_name_clash', 'destination_memory']),
    ok: z.boolean(),
    blockers: z.array(StoredError).meta({ description: 'What this check found; empty when ok.' }),
    skipped: z.string().optional().meta({ description: 'Why the check could not run (an earlier fact is missing).' }),
  })
  .meta({ description: 'One capability check\'s verdict.' });

const destinations = z.array(z.string()).meta({ description: 'The known peers\' hosts: possible destinations.' });

export const PrecheckReady = z
  .object({ ready: z.literal(true), vm: z.string(), remote_host: z.string(), destination_uri: z.string(), checks: z.array(CheckResult), peers: destinations })
  .meta({ description: 'Every check passed: the migration can start.' });

export const PrecheckBlocked = ErrorBody.extend({ ready: z.literal(false), blockers: z.array(StoredError), checks: z.array(CheckResult), peers: destinations }).meta({
  description: 'KMIG0100E: every blocker at once, and which check found what.',
});

export const Peer = z
  .object({
    host: z.string(),
    port: z.int().min(1).max(65535),
    url: z.string().meta({ description: 'Kimchi\'s form: https://host:port.' }),
    libvirt_uri: z.string().meta({ description: 'Where a migration to this peer goes.' }),
    lifetime: z.int().min(0).max(65535).nullable().meta({ description: 'SLP lifetime in seconds (65535: permanent); null for a static peer.' }),
    last_seen: Time.nullable(),
    addresses: z.array(z.string()).meta({ description: 'Addresses its SLP answers came from.' }),
    source: z.enum(['slp', 'static']),
  })
  .meta({ description: 'A known peer (?verbose=true).' });

export const PeerUrls = z.array(z.string()).meta({ description: 'Kimchi\'s answer: the peers as https://host:port.', examples: [['https://kimchi-a.example:8001']] });
export const PeerList = z.array(Peer).meta({ description: 'The known peers, one object each (?verbose=true).' });
export const PeerAnswer = z.union([PeerUrls, PeerList]).meta({ description: 'Kimchi\'s list of URLs, or with ?verbose=true the peers as objects.' });

export const Health = z.object({ status: z.enum(['ok', 'degraded']), redis: z.boolean() }).meta({ description: 'ok while the queue\'s Redis connection is up.' });

export const Alive = z.object({ status: z.literal('alive'), uptime_s: z.int().min(0) }).meta({ description: 'The process is alive.' });

const Verdict = z.object({ ok: z.boolean(), detail: z.string() });
export const Readiness = z
  .object({ ready: z.boolean(), checks: z.object({ redis: Verdict, libvirt: Verdict, workers: Verdict }) })
  .meta({ description: 'Whether the API can do its job now, with each check\'s verdict.' });

export const EventStream = z.string().meta({
  description: 'Server-sent events: `event: task` with the task JSON (schema Task), first the current state, then each change, ending after the terminal status; a comment line every 15 s.',
});

const num = (d: string) => z.number().min(0).nullable().meta({ description: d });

export const SeriesPoint = z
  .object({
    t: z.int().min(0).meta({ description: 'When the worker took the sample, epoch ms.' }),
    elapsedMs: z.number().min(0).optional().meta({ description: "libvirt's time since the copy started." }),
    percent: z.number().min(0).max(100),
    dataRemaining: z.number().min(0).optional(),
    dataProcessed: z.number().min(0).optional(),
    dataTotal: z.number().min(0).optional(),
    memoryBps: z.number().min(0).optional().meta({ description: 'Transfer rate, bytes a second.' }),
    dirtyRateBps: z.number().min(0).optional().meta({ description: 'Bytes the guest dirties a second.' }),
    iteration: z.int().min(0).optional(),
  })
  .meta({ description: 'One progress sample.' });

export const FinalFigures = z
  .object({
    status: z.enum(['finished', 'failed', 'killed']),
    started_at: Time.nullable(),
    finished_at: Time.nullable(),
    durationMs: num('From the first stage start to the last history entry: all stages and every pickup (slot waits, retries, a resume by another worker), as kvm_migrate_migration_duration_seconds measures it; null if no stage started.'),
    copyMs: num('The copy alone, as libvirt timed it.'),
    downtimeMs: num("The guest's real pause at switch-over (finished migrations)."),
    dataProcessed: num('Bytes copied.'),
    dataTotal: num('Bytes to copy.'),
    dataRemaining: num('Bytes left.'),
    iterations: num('Passes over guest memory.'),
    averageBps: num('dataProcessed over copyMs, bytes a second.'),
    percent: num('The last percentage shown.'),
  })
  .meta({ description: 'The figures an ended migration keeps.' });

export const TaskSeries = z
  .object({
    id: z.string(),
    status: Task.shape.status,
    interval_ms: z.int().min(0).nullable().meta({ description: 'Least time between two kept points now (it doubles each time a long series is thinned); null when nothing was recorded.' }),
    points: z.array(SeriesPoint).meta({ description: 'Oldest first.' }),
    final: FinalFigures.nullable().meta({ description: 'null while the task runs.' }),
  })
  .meta({ description: "A task's progress over time (sampled) and its final figures, for plotting." });

export const VmSummary = z
  .object({
    name: z.string(),
    uuid: z.string(),
    state: z.enum(['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended']),
    persistent: z.boolean(),
    migration: z.string().nullable().meta({ description: 'The id of its queued or running migration, or null.' }),
  })
  .meta({ description: 'A guest on the source host.' });
export const VmList = z.array(VmSummary);

export const Html = z.string().meta({ description: 'An HTML page.' });
export const Asset = z.string().meta({ description: 'A file: JavaScript, CSS or HTML.' });
export const AssetParams = z.object({ file: z.string().meta({ description: 'The file\'s name.', examples: ['app.js'] }) });

export const Session = z
  .object({
    name: z.string().meta({ description: "The token's name." }),
    role: z.enum(['viewer', 'operator']),
    expires_at: Time.nullable().meta({ description: 'When the session ends (auth.session_ttl after the login); null with authentication off or with a bearer token.' }),
  })
  .meta({ description: 'Who the request is.' });

export const Metrics = z.string().meta({ description: 'Prometheus text exposition (version 0.0.4).' });

export const OpenApiDocument = z.looseObject({ openapi: z.literal('3.1.0'), info: z.object({ title: z.string(), version: z.string() }) }).meta({ description: 'This document.' });
