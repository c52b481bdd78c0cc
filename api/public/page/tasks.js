// The task list: one row per migration, newest first, kept live by one
// event stream per running task (bounded) and a slow refresh for the rest.
import { call, el, nextLink, showError, when } from './api.js';

const TERMINAL = new Set(['finished', 'failed', 'killed']);
/** Streams the page keeps open at once; the API bounds them per client too. */
const MAX_STREAMS = 8;
const REFRESH_MS = 5000;
/** Running tasks beyond the first page refreshed by id per round. */
const MAX_REFRESH = 20;
const PAGE = 25;

export function createTaskList({ onSelect, onUpdate, canWrite }) {
  const rows = new Map();
  const tasks = new Map();
  const streams = new Map();
  const body = document.getElementById('task-rows');
  const more = document.getElementById('more');
  const filter = document.getElementById('status-filter');
  let next = null;
  let selected = null;

  const percentOf = (t) => (t.status === 'finished' ? 100 : Math.floor(t.progress?.percent ?? 0));

  function cancel(t, button) {
    button.disabled = true;
    call('DELETE', `/tasks/${t.id}`).then(({ status, body: b }) => {
      if (status >= 400) {
        showError(b?.reason ?? `cancel answered ${status}`);
        button.disabled = false;
      } else update(b);
    }, (e) => showError(e.message));
  }

  function row(t) {
    const pct = percentOf(t);
    const cancelButton = !TERMINAL.has(t.status) && canWrite()
      ? el('button', { type: 'button', class: 'cancel', 'data-testid': 'cancel', onclick: (ev) => { ev.stopPropagation(); cancel(t, ev.currentTarget); } }, 'Cancel')
      : '';
    return el('tr', { class: `${t.status}${selected === t.id ? ' selected' : ''}`, 'data-task': t.id, 'data-status': t.status, onclick: () => select(t.id) },
      el('td', {}, el('strong', {}, t.vm)),
      el('td', { class: 'muted' }, `${hostOf(t.source.uri)} → ${t.destination.host}`),
      el('td', {}, el('span', { class: `status ${t.status}`, 'data-testid': 'status' }, t.status), t.status === 'running' ? el('div', { class: 'muted' }, t.stage) : ''),
      el('td', {}, el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'data-testid': 'bar' },
        el('div', { style: `width:${pct}%` }), el('span', {}, `${pct}%`))),
      el('td', { class: 'msg' }, t.message),
      el('td', { class: 'muted' }, when(t.created_at)),
      el('td', {}, cancelButton));
  }

  function update(t, fromStream = false) {
    if (!t?.id) return;
    const before = tasks.get(t.id);
    // A task with its own stream is shown from the stream alone: a list read can be older.
    if (before && !fromStream && streams.has(t.id)) return;
    // A stream and a refresh can cross: never show an older state over a newer one.
    if (before && TERMINAL.has(before.status) && !TERMINAL.has(t.status)) return;
    tasks.set(t.id, t);
    const fresh = row(t);
    const old = rows.get(t.id);
    if (old) old.replaceWith(fresh);
    else placeNew(t, fresh);
    rows.set(t.id, fresh);
    document.getElementById('empty').hidden = rows.size > 0;
    if (!TERMINAL.has(t.status)) watch(t.id);
    onUpdate(t);
  }

  /** Rows stay in created_at order, newest first. */
  function placeNew(t, tr) {
    for (const other of body.children) {
      const o = tasks.get(other.dataset.task);
      if (o && o.created_at < t.created_at) return other.before(tr);
    }
    body.append(tr);
  }

  function watch(id) {
    if (streams.has(id) || streams.size >= MAX_STREAMS) return;
    const es = new EventSource(`/tasks/${encodeURIComponent(id)}/events`);
    streams.set(id, es);
    es.addEventListener('task', (ev) => {
      const t = JSON.parse(ev.data);
      update(t, true);
      // Close before the server ends the stream, or EventSource would reconnect.
      if (TERMINAL.has(t.status)) stop(id);
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) stop(id);
    });
  }

  function stop(id) {
    streams.get(id)?.close();
    streams.delete(id);
    // A running task that had no stream free may take this one.
    for (const t of tasks.values()) if (!TERMINAL.has(t.status) && !streams.has(t.id)) { watch(t.id); break; }
  }

  function select(id) {
    selected = id;
    for (const [tid, tr] of rows) tr.classList.toggle('selected', tid === id);
    onSelect(tasks.get(id));
  }

  async function load(url) {
    const { status, body: list, headers } = await call('GET', url);
    if (status !== 200) return showError(list?.reason ?? `listing the migrations answered ${status}`);
    for (const t of list) update(t);
    return nextLink(headers);
  }

  const firstPage = () => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (filter.value) q.set('status', filter.value);
    return `/tasks?${q}`;
  };

  async function reload() {
    for (const id of [...streams.keys()]) stop(id);
    rows.clear();
    tasks.clear();
    body.replaceChildren();
    next = await load(firstPage());
    more.hidden = !next;
  }

  more.addEventListener('click', async () => {
    if (!next) return;
    next = await load(next);
    more.hidden = !next;
  });
  filter.addEventListener('change', () => void reload().catch((e) => showError(e.message)));
  // New tasks from other clients; then running ones the first page did not bring and that
  // have no stream of their own (loaded with "Older migrations"), one by one, a few a round.
  async function refresh() {
    const seen = new Set((await call('GET', firstPage()).then(({ status, body: list }) => {
      if (status !== 200) return [];
      for (const t of list) update(t);
      return list.map((t) => t.id);
    })));
    const stale = [...tasks.values()].filter((t) => !TERMINAL.has(t.status) && !streams.has(t.id) && !seen.has(t.id)).slice(0, MAX_REFRESH);
    await Promise.all(stale.map((t) => call('GET', `/tasks/${encodeURIComponent(t.id)}`).then(({ status, body: fresh }) => status === 200 && update(fresh))));
  }
  setInterval(() => void refresh().catch(() => undefined), REFRESH_MS);

  return { reload, update, select, get: (id) => tasks.get(id) };
}

function hostOf(uri) {
  try {
    return new URL(uri).hostname || uri;
  } catch {
    return uri;
  }
}
