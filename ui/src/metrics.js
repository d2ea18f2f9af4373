// Charts from the daemon's own data: claim latency by source, pool depth and hibernate /
// restore times over time (the daemon's recent history, GET /api/v1/samples when the page
// opens, continued by /ws events), and the totals of /metrics (re-read when an event
// arrives, not on a timer).
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { get } from './api.js';
import { loadHistory, useStore } from './state.js';
import { html } from './ui.js';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

// Joins per-series points {t, y} onto one sorted x axis (null where a series has no point).
function align(seriesMap) {
  const names = Object.keys(seriesMap);
  const xs = [...new Set(names.flatMap((n) => seriesMap[n].map((p) => p.t)))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = names.map((n) => {
    const col = new Array(xs.length).fill(null);
    for (const p of seriesMap[n]) col[index.get(p.t)] = p.y;
    return col;
  });
  return { names, data: [xs, ...ys] };
}

export function Chart({ title, unit, seriesMap, points }) {
  const box = useRef(null);
  const plot = useRef(null);
  const { names, data } = align(seriesMap);
  const key = names.join('|');
  useEffect(() => {
    if (!box.current) return undefined;
    const width = Math.max(280, box.current.clientWidth - 8);
    const opts = {
      width,
      height: 220,
      series: [
        {},
        ...names.map((n, i) => ({
          label: n,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          points: { show: !!points, size: 6 },
          spanGaps: true,
        })),
      ],
      // A few points must not stretch the time axis over years: pad around them instead.
      scales: {
        x: {
          time: true,
          range: (u) => {
            const xs = u.data[0];
            const now = Date.now() / 1000;
            return xs.length ? [xs[0] - 60, xs[xs.length - 1] + 60] : [now - 600, now];
          },
        },
      },
      axes: [{}, { label: unit, size: 60 }],
      legend: { show: true },
    };
    plot.current = new uPlot(opts, data, box.current);
    const resize = () => plot.current && plot.current.setSize({ width: Math.max(280, box.current.clientWidth - 8), height: 220 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current.destroy();
      plot.current = null;
    };
  }, [key]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  });
  const n = Object.values(seriesMap).reduce((a, pts) => a + pts.length, 0);
  return html`<figure class="card chart">
    <figcaption>${title} <span class="muted">(${n} points)</span></figcaption>
    <div ref=${box} role="img" aria-label=${`${title}: ${n} points`}></div>
    ${!n && html`<p class="muted">no data yet</p>`}
  </figure>`;
}

// The families the table shows, from the Prometheus text.
function parseProm(text) {
  const out = [];
  for (const line of String(text).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-z_:]+)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const name = m[1];
    if (name.endsWith('_bucket')) continue;
    if (!/claim_duration_seconds_(count|sum)|claims_total|releases_total|idle_timeouts_total|pool_(ready|warming|size)|instances\b|snapshot_duration_seconds_(count|sum)|snapshot_stored_bytes|trigger_events_total|reconcile_queue_depth|ws_clients|process_/.test(name))
      continue;
    out.push({ name, labels: m[2] || '', value: Number(m[3]) });
  }
  return out;
}

function Totals({ bump }) {
  const [rows, setRows] = useState(null);
  const [zeros, setZeros] = useState(false);
  const [err, setErr] = useState('');
  useEffect(() => {
    const t = setTimeout(() => get('/metrics').then((x) => setRows(parseProm(x))).catch((e) => setErr(e.message)), 200);
    return () => clearTimeout(t);
  }, [bump]);
  if (err) return html`<p class="error" role="alert">${err}</p>`;
  if (!rows) return html`<p class="muted">loading /metrics…</p>`;
  const shown = zeros ? rows : rows.filter((r) => r.value !== 0);
  return html`<label class="inline"><input type="checkbox" checked=${zeros} onChange=${(e) => setZeros(e.target.checked)} />
    Show series at zero</label>
  <div class="table-wrap"><table class="metrics-table" aria-label="current metric values">
    <thead><tr><th scope="col">Series</th><th scope="col">Labels</th><th scope="col">Value</th></tr></thead>
    <tbody>${shown.map((r) => html`<tr><th scope="row"><code>${r.name}</code></th><td><code>${r.labels}</code></td>
      <td>${Number.isInteger(r.value) ? r.value : r.value.toFixed(4)}</td></tr>`)}</tbody>
  </table></div>`;
}

export function MetricsPage() {
  const store = useStore();
  useEffect(() => {
    loadHistory();
  }, []);
  const latency = {};
  for (const p of store.claimLatency) (latency[p.source] ||= []).push({ t: p.t, y: p.ms });
  const depth = {};
  for (const [pool, pts] of Object.entries(store.poolDepth)) depth[`${pool} ready`] = pts.map((p) => ({ t: p.t, y: p.ready }));
  const hib = {};
  for (const p of store.hibernate) (hib[p.kind] ||= []).push({ t: p.t, y: p.ms });
  return html`<section aria-labelledby="met-h">
    <h1 id="met-h">Metrics</h1>
    <p class="muted">Charts open with the daemon's last 15 minutes and follow its event stream; the table is${' '}
      <a href="/metrics">/metrics</a> (Prometheus text), re-read when events arrive.</p>
    <div class="grid2">
      <${Chart} title="Claim latency by source" unit="ms" seriesMap=${latency} points />
      <${Chart} title="Pool depth (ready instances)" unit="instances" seriesMap=${depth} />
      <${Chart} title="Hibernate and restore time" unit="ms" seriesMap=${hib} points />
    </div>
    <h2>Current values</h2>
    <${Totals} bump=${store.events.length ? store.events[0].id : 0} />
  </section>`;
}
