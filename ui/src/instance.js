// One instance: details, labels, endpoint and how to connect, and its resource use and log
// tail, live: the page watches the instance over /ws (instance=<id>), which streams its
// stats samples and log lines as they happen; the charts open with the daemon's recent
// history (GET .../samples, once per connection), so nothing here runs on a timer.
import { useEffect, useRef, useState } from 'preact/hooks';
import { Live, get } from './api.js';
import { Chart } from './metrics.js';
import { useStore } from './state.js';
import { IdleBar, Phase, fmtBytes, fmtTime, html } from './ui.js';

const POINTS_KEPT = 720; // an hour of live samples on top of the 15 minutes of history
const LOG_KEPT = 256 * 1024; // characters of log the page holds
const enc = encodeURIComponent;

function useInstance(id, store) {
  const [inst, setInst] = useState(null);
  const [err, setErr] = useState('');
  const [readAt, setReadAt] = useState(Date.now());
  // Re-read when an event about this instance arrives (store.events changes).
  const newest = store.events.find((e) => e.instance === id || e.instanceId === id);
  useEffect(() => {
    get(`/api/v1/instances/${enc(id)}`)
      .then((i) => {
        setInst(i);
        setReadAt(Date.now());
        setErr('');
      })
      .catch((e) => setErr(e.message));
  }, [id, newest && newest.id]);
  return { inst, err, readAt };
}

// Merges samples (history or live) into the sorted list, one per time.
function mergePoints(list, more) {
  const byT = new Map(list.map((p) => [p.t, p]));
  for (const p of more) byT.set(p.t, p);
  const out = [...byT.values()].sort((a, b) => a.t - b.t);
  return out.length > POINTS_KEPT ? out.slice(out.length - POINTS_KEPT) : out;
}

// The watch stream of one instance: {points, log, state}.
function useWatch(id) {
  const [points, setPoints] = useState([]);
  const [log, setLog] = useState(null);
  const [state, setState] = useState('connecting');
  useEffect(() => {
    setPoints([]);
    setLog(null);
    const live = new Live({
      params: { instance: id, types: 'instance.stats,instance.log' },
      onState: setState,
      onResync: () =>
        get(`/api/v1/instances/${enc(id)}/samples`)
          .then((r) => setPoints((pts) => mergePoints(pts, r.points || [])))
          .catch(() => {}),
      onEvent: (ev) => {
        if (ev.type === 'instance.stats') setPoints((pts) => mergePoints(pts, [ev]));
        if (ev.type !== 'instance.log') return;
        setLog((cur) => {
          const text = ev.reset || cur == null ? ev.text : cur + ev.text;
          return text.length > LOG_KEPT ? text.slice(text.indexOf('\n', text.length - LOG_KEPT) + 1) : text;
        });
      },
    });
    live.start();
    return () => live.stop();
  }, [id]);
  return { points, log, state };
}

// Per-second rates of a counter between consecutive samples (null where unknown).
function rates(points, key, scale) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const dt = b.t - a.t;
    if (dt > 0 && a[key] >= 0 && b[key] >= a[key]) out.push({ t: b.t, y: ((b[key] - a[key]) / dt) * scale });
  }
  return out;
}

const MiB = 1024 * 1024;
const level = (points, key) => points.filter((p) => p[key] >= 0).map((p) => ({ t: p.t, y: p[key] / MiB }));

function Stats({ points }) {
  const st = points[points.length - 1];
  if (!st) return html`<p class="muted">waiting for the first sample…</p>`;
  const cpu = rates(points, 'cpuNs', 100 / 1e9);
  const last = cpu[cpu.length - 1];
  const memPct = st.memoryLimitBytes > 0 ? (st.memoryBytes / st.memoryLimitBytes) * 100 : null;
  const net = rates(points, 'netBytes', 1 / 1024);
  return html`<dl class="stats" data-points=${points.length}>
    <dt>CPU</dt><dd data-k="cpu">${last ? `${last.y.toFixed(1)} % of one core` : 'measuring…'}
      <span class="muted"> (${(st.cpuNs / 1e9).toFixed(2)} s in all)</span></dd>
    <dt>Memory</dt><dd data-k="memory">${fmtBytes(st.memoryBytes)}${st.memoryLimitBytes > 0
      ? html` of ${fmtBytes(st.memoryLimitBytes)} <meter min="0" max="100" value=${memPct} aria-label="memory use"></meter>`
      : ''}</dd>
    <dt>Network</dt><dd data-k="network">${st.netBytes >= 0 ? `${fmtBytes(st.netBytes)} in and out` : '—'}
      ${net.length ? html`<span class="muted"> (${net[net.length - 1].y.toFixed(1)} KiB/s)</span>` : ''}</dd>
    <dt>Disk</dt><dd data-k="disk">${st.diskBytes >= 0 ? `${fmtBytes(st.diskBytes)} of ${fmtBytes(st.diskLimitBytes)}` : '—'}</dd>
    <dt>Sampled</dt><dd data-k="sampled">${new Date(st.t * 1000).toLocaleTimeString()}</dd>
  </dl>`;
}

function Charts({ points }) {
  return html`<div class="grid2">
    <${Chart} title="CPU" unit="% of one core" seriesMap=${{ cpu: rates(points, 'cpuNs', 100 / 1e9) }} />
    <${Chart} title="Memory" unit="MiB" seriesMap=${{ memory: level(points, 'memoryBytes') }} />
    <${Chart} title="Network" unit="KiB/s" seriesMap=${{ 'in+out': rates(points, 'netBytes', 1 / 1024) }} />
    <${Chart} title="Disk" unit="MiB used" seriesMap=${{ disk: level(points, 'diskBytes') }} />
  </div>`;
}

function Logs({ text }) {
  const [follow, setFollow] = useState(true);
  const pre = useRef(null);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return html`<section aria-labelledby="logs-h">
    <h2 id="logs-h">Log</h2>
    <label class="inline"><input type="checkbox" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} /> Follow</label>
    <pre class="log" ref=${pre} tabindex="0" aria-label="instance log">${text == null ? 'connecting…' : text || '(empty)'}</pre>
  </section>`;
}

function connectHint(inst) {
  const ep = inst.endpoint;
  if (!ep) return 'no endpoint (not running)';
  if (ep.socket) return `curl --unix-socket ${ep.socket} http://instance/`;
  const host = ep.host || ep.address;
  const port = ep.port || (ep.ports && ep.ports[0] && (ep.ports[0].host || ep.ports[0].port));
  if (host && port) return `curl http://${host}:${port}/`;
  return JSON.stringify(ep);
}

export function InstancePage({ id }) {
  const store = useStore();
  const { inst, err, readAt } = useInstance(id, store);
  const watch = useWatch(id);
  if (err) return html`<section><h1>Instance ${id}</h1><p class="error" role="alert">${err}</p></section>`;
  if (!inst) return html`<section><h1>Instance ${id}</h1><p class="muted">loading…</p></section>`;
  const wl = store.workloads.find((w) => w.name === inst.workloadRef);
  const labels = Object.entries(inst.labels || {});
  return html`<section aria-labelledby="inst-h">
    <h1 id="inst-h">Instance <code>${inst.id}</code> <${Phase} phase=${inst.phase} /></h1>
    <div class="grid2">
      <div class="card"><h2>Details</h2><dl>
        <dt>Tenant</dt><dd>${inst.tenantId || html`<span class="muted">pool (unclaimed)</span>`}</dd>
        <dt>Workload</dt><dd>${inst.workloadRef} <span class="muted">generation ${inst.workloadGeneration}</span></dd>
        <dt>Network</dt><dd>${inst.network || '—'}</dd>
        <dt>Created</dt><dd>${fmtTime(inst.createdAt)}</dd>
        <dt>Started</dt><dd>${fmtTime(inst.startedAt)}</dd>
        <dt>Last activity</dt><dd>${fmtTime(inst.lastActivity)}</dd>
        <dt>Idle time left</dt><dd><${IdleBar} left=${inst.idleTimeLeftSeconds} total=${wl?.spec?.idle?.timeoutSeconds}
          readAt=${readAt} tenant=${inst.tenantId || inst.id} /></dd>
        <dt>Endpoint</dt><dd>${inst.endpoint ? html`<code>${JSON.stringify(inst.endpoint)}</code>` : '—'}</dd>
        <dt>Connect</dt><dd><code>${connectHint(inst)}</code></dd>
      </dl></div>
      <div class="card"><h2>Resource use <span class="muted" data-watch=${watch.state}>(${watch.state})</span></h2>
        <${Stats} points=${watch.points} />
        <h2>Labels</h2>
        ${labels.length
          ? html`<ul class="labels">${labels.map(([k, v]) => html`<li><code>${k}=${v}</code></li>`)}</ul>`
          : html`<p class="muted">none</p>`}
      </div>
    </div>
    <${Charts} points=${watch.points} />
    <${Logs} text=${watch.log} />
  </section>`;
}
