// One migration in detail: its figures, its stage history, and a chart of
// data remaining and transfer rate over time (the stored series, extended
// live from the event stream while it runs).
import uPlot from '/ui/vendor/uPlot.esm.js';
import { call, el, mib, seconds, when } from './api.js';

const TERMINAL = new Set(['finished', 'failed', 'killed']);

export function createDetail() {
  const section = document.getElementById('detail');
  const figures = document.getElementById('figures');
  const history = document.getElementById('history');
  const chartBox = document.getElementById('chart');
  let current = null;
  let points = [];
  let plot = null;
  let loading = 0;
  let shownBefore = null;

  async function show(task) {
    if (!task) return;
    current = task.id;
    section.hidden = false;
    render(task);
    const ticket = ++loading;
    const { status, body } = await call('GET', `/tasks/${encodeURIComponent(task.id)}/series`);
    if (ticket !== loading) return;
    // Without a stored series (not sampled yet, or gone) the points seen live stay.
    if (status === 200 && Array.isArray(body?.points)) points = fromSeries(body.points);
    else if (shownBefore !== task.id) points = [];
    shownBefore = task.id;
    draw();
  }

  /** A task changed: refresh the panel if it is the one shown, and grow the chart. */
  function update(task) {
    if (task.id !== current) return;
    render(task);
    const p = task.progress;
    if (task.status === 'running' && task.stage === 'migrate' && p?.dataRemaining !== undefined) {
      // libvirt's own elapsed time: the same clock as the stored points, whatever the browser's says.
      const pt = normalise({ elapsedMs: p.elapsedMs, dataRemaining: p.dataRemaining, memoryBps: p.memoryBps });
      if (pt && (!points.length || pt.x > points.at(-1).x)) {
        points.push(pt);
        draw();
      }
    }
    // The stored series is the better record once it is over.
    if (TERMINAL.has(task.status)) void show(task);
  }

  function render(t) {
    document.getElementById('detail-title').textContent = `Migration of ${t.vm}`;
    const p = t.progress ?? {};
    const took = t.started_at && t.finished_at ? Date.parse(t.finished_at) - Date.parse(t.started_at) : null;
    const facts = [
      ['Task', t.id], ['Status', t.status], ['Stage', t.stage],
      ['From', t.source.uri], ['To', t.destination.uri],
      ['Created', when(t.created_at)], ['Started', when(t.started_at)], ['Finished', when(t.finished_at)],
      ['Took', seconds(took)], ['Downtime', p.downtimeMs !== undefined ? `${p.downtimeMs} ms` : '–'],
      ['Transferred', mib(p.dataProcessed)], ['Memory', mib(p.dataTotal)],
      ['Iterations', p.iteration ?? '–'], ['Bandwidth', bandwidthOf(t)],
    ];
    if (t.error) facts.push(['Error', t.error.reason]);
    figures.replaceChildren(...facts.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', { 'data-fact': k.toLowerCase() }, v))));
    history.replaceChildren(...t.history.map((h) =>
      el('li', { class: h.event }, el('span', {}, when(h.at)), `${h.stage} ${h.event}${h.detail ? `: ${h.detail}` : ''}`)));
  }

  function draw() {
    const data = [points.map((p) => p.x), points.map((p) => p.remaining), points.map((p) => p.rate)];
    if (plot) {
      plot.setData(data);
      return;
    }
    plot = new uPlot({
      width: Math.max(320, chartBox.clientWidth || 800),
      height: 240,
      scales: { x: { time: false } },
      axes: [
        { label: 'seconds since the copy started' },
        { label: 'data remaining (MiB)', scale: 'MiB' },
        { label: 'transfer rate (MiB/s)', scale: 'rate', side: 1, grid: { show: false } },
      ],
      series: [
        {},
        { label: 'data remaining', scale: 'MiB', stroke: '#2f6fdb', width: 2, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} MiB`) },
        { label: 'transfer rate', scale: 'rate', stroke: '#1e8e3e', width: 2, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} MiB/s`) },
      ],
    }, data, chartBox);
  }

  addEventListener('resize', () => plot?.setSize({ width: Math.max(320, chartBox.clientWidth), height: 240 }));
  return { show, update };
}

/**
 * A point in seconds since the copy started (libvirt's elapsed time), MiB and
 * MiB/s; null without a time to place it at.
 */
function normalise(p, fallbackMs) {
  const ms = typeof p.elapsedMs === 'number' ? p.elapsedMs : fallbackMs;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return null;
  return { x: ms / 1000, remaining: p.dataRemaining === undefined ? null : p.dataRemaining / 1048576, rate: p.memoryBps === undefined ? null : p.memoryBps / 1048576 };
}

/** Stored points; one without libvirt's elapsed time is placed by the worker's clock (t) instead. */
function fromSeries(raw) {
  const t0 = raw.find((p) => typeof p.t === 'number')?.t ?? 0;
  const out = [];
  for (const p of raw) {
    const pt = normalise(p, typeof p.t === 'number' ? p.t - t0 : undefined);
    if (pt && (!out.length || pt.x > out.at(-1).x)) out.push(pt);
  }
  return out;
}

function bandwidthOf(t) {
  const b = t.policy?.in_force?.bandwidth ?? t.policy?.bandwidth;
  return b === undefined ? '–' : b === 'unlimited' ? 'unlimited' : `${b} MiB/s`;
}
