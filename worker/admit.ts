/**
 * What a worker checks before it acts on a job: that the job is one the API
 * could have made with this configuration. The API validates every request
 * and builds both libvirt URIs from config; a job in Redis that says
 * otherwise was written by something else (a queue tool, a hand in Redis),
 * and libvirt URIs can do more than name a host (the ext transport runs a
 * program). Such a job fails before any libvirt call, whatever stage its
 * checkpoint claims.
 *
 * A source URI is either this worker's libvirt.source_uri or the template
 * filled with a host (another host's API sharing the queue).
 *
 * A configuration changed under a queued or running job (a new
 * destination_uri_template) fails it the same way: the job no longer says
 * what this service would do, so it is not run on the new settings' word.
 */
import { destinationUri, type Config } from '../shared/config.js';
import { migrationError, type ErrorJSON } from '../shared/errors.js';
import { initialCheckpoint, type Checkpoint, type MigrationJobData } from '../shared/job.js';
import { isRemoteHost } from '../shared/remote-host.js';

/** Why the request is not one this service's API makes with `libvirt`, or null when it is. */
export function foreignRequest(request: unknown, libvirt: Pick<Config['libvirt'], 'source_uri' | 'destination_uri_template'>): string | null {
  if (typeof request !== 'object' || request === null) return 'it carries no request';
  const r = request as Record<string, unknown>;
  if (typeof r.vm !== 'string' || r.vm === '') return 'it names no virtual machine';
  if (r.sourceUri !== libvirt.source_uri && !isTemplateUri(r.sourceUri, libvirt.destination_uri_template)) {
    return 'its source URI is neither libvirt.source_uri nor libvirt.destination_uri_template with a host';
  }
  if (!isRemoteHost(r.remoteHost)) return 'its remote host is not a host name or an IP address';
  if (r.destinationUri !== destinationUri(libvirt.destination_uri_template, r.remoteHost)) return 'its destination URI is not libvirt.destination_uri_template with its remote host';
  return null;
}

/**
 * Whether `uri` is the destination template filled with a valid host. Several
 * APIs, one per host, may share one queue and its workers; each one's source
 * is then another host's destination URI, so that is a source workers accept.
 */
export function isTemplateUri(uri: unknown, template: string): boolean {
  if (typeof uri !== 'string' || !template.includes('{host}')) return false;
  const parts = template.split('{host}').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const m = new RegExp(`^${parts.join('(.+?)')}$`).exec(uri);
  if (!m) return false;
  const host = m[1]!.startsWith('[') && m[1]!.endsWith(']') ? m[1]!.slice(1, -1) : m[1]!;
  return isRemoteHost(host) && destinationUri(template, host) === uri;
}

/** The VM's name as far as it can be shown: a refused job's data is not trusted to be a string, or short. */
const shownName = (request: unknown) => {
  const vm = (request as { vm?: unknown } | null)?.vm;
  return typeof vm === 'string' && vm !== '' ? vm.slice(0, 255) : 'an unnamed virtual machine';
};

/**
 * The job's refusal, or null to run it: the error, and the checkpoint that
 * ends it with that error (so its task shows why).
 */
export function refusal(data: MigrationJobData | undefined, libvirt: Config['libvirt'], now: Date): { error: ErrorJSON; checkpoint: Checkpoint } | null {
  const why = foreignRequest(data?.request, libvirt);
  if (why === null) return null;
  const error = migrationError('FOREIGN_JOB', { name: shownName(data?.request), detail: why }).toJSON();
  const cp = typeof data?.checkpoint === 'object' && data.checkpoint !== null && Array.isArray(data.checkpoint.history) ? data.checkpoint : initialCheckpoint(now);
  const { slotWait: _, ...rest } = cp;
  return { error, checkpoint: { ...rest, step: 'done', error, history: [...cp.history, { at: now.toISOString(), stage: 'check', event: 'error', detail: error.reason }] } };
}
