// Starting a migration: the precheck runs as soon as a guest and a
// destination are filled in, its blockers are shown before anything is
// submitted, and Migrate is offered only when the checks pass.
import { call, el, showError } from './api.js';

const DEBOUNCE_MS = 400;

export function createForm({ onStarted, canWrite }) {
  const form = document.getElementById('migrate-form');
  const button = document.getElementById('migrate');
  const out = document.getElementById('precheck');
  let timer = null;
  let asked = 0;
  let readyFor = null;

  const values = () => {
    const f = new FormData(form);
    const vm = String(f.get('vm') ?? '').trim();
    const remote_host = String(f.get('remote_host') ?? '').trim();
    const bw = String(f.get('bandwidth') ?? '').trim();
    return { vm, body: { remote_host, ...(bw ? { bandwidth: Number(bw) } : {}) } };
  };
  const key = (v) => JSON.stringify(v);

  function say(cls, ...children) {
    out.className = cls;
    out.replaceChildren(...children);
  }

  async function precheck() {
    const v = values();
    readyFor = null;
    button.disabled = true;
    if (!v.vm || !v.body.remote_host) return say('', '');
    const ticket = ++asked;
    say('checking', 'Checking…');
    let res;
    try {
      res = await call('POST', `/vms/${encodeURIComponent(v.vm)}/migrate`, { ...v.body, dry_run: true });
    } catch (e) {
      return say('failed', e.message);
    }
    if (ticket !== asked) return; // the form changed meanwhile: a newer check is on its way
    const { status, body } = res;
    if (status === 200) {
      readyFor = key(v);
      button.disabled = !canWrite();
      const passed = body.checks.filter((c) => c.ok).length;
      return say('ready', `Ready: ${passed} checks passed for ${v.vm} → ${v.body.remote_host}.`);
    }
    if (status === 422 && Array.isArray(body.blockers)) {
      return say('blocked', `${v.vm} cannot move to ${v.body.remote_host}:`,
        el('ul', { 'data-testid': 'blockers' }, body.blockers.map((b) => el('li', {}, el('code', {}, b.code), ' ', b.reason.replace(/^\w+: /, '')))));
    }
    say('blocked', el('ul', { 'data-testid': 'blockers' }, el('li', {}, body?.reason ?? `the precheck answered ${status}`)));
  }

  form.addEventListener('input', () => {
    clearTimeout(timer);
    button.disabled = true;
    timer = setTimeout(() => void precheck(), DEBOUNCE_MS);
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = values();
    if (readyFor !== key(v)) return void precheck();
    button.disabled = true;
    // One key per click: a retried request cannot start a second migration.
    const { status, body } = await call('POST', `/vms/${encodeURIComponent(v.vm)}/migrate`, v.body, { 'idempotency-key': crypto.randomUUID() });
    if (status === 202) {
      say('', `Started: task ${body.id}.`);
      readyFor = null;
      onStarted(body);
    } else if (status === 409 && body.task) {
      say('blocked', body.reason);
      onStarted(body.task);
    } else {
      showError(body?.reason ?? `the migration was refused (${status})`);
      button.disabled = false;
    }
  });

  function setWritable(writable) {
    for (const input of form.elements) input.disabled = !writable;
    if (!writable) say('muted', 'Viewers watch migrations; an operator token starts and cancels them.');
  }

  return { setWritable };
}

/** Fills the form's suggestions: the source's guests and the known peers. */
export async function loadSuggestions() {
  const [vms, peers] = await Promise.all([call('GET', '/vms'), call('GET', '/peers?verbose=true')]);
  if (vms.status === 200) {
    document.getElementById('vm-list').replaceChildren(...vms.body.map((v) => el('option', { value: v.name }, `${v.state}${v.migration ? ', migrating' : ''}`)));
  }
  if (peers.status === 200) {
    document.getElementById('peer-list').replaceChildren(...peers.body.map((p) => el('option', { value: p.host }, p.name ?? p.url ?? '')));
  }
}
