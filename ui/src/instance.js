// One instance: details, labels, endpoint and how to connect, CPU and memory from its
// cgroup, and its log tail (follow re-reads the tail while ticked: the daemon streams
// events, not logs).
import { useEffect, useRef, useState } from 'preact/hooks';
import { get } from './api.js';
import { useStore } from './state.js';
import { IdleBar, Phase, fmtBytes, fmtTime, html } from './ui.js';

const FOLLOW_MS = 2000;
const STATS_MS = 5000;
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

function Stats({ id }) {
  const [st, setSt] = useState(null);
  const [cpu, setCpu] = useState(null);
  const prev = useRef(null);
  useEffect(() => {
    let stop = false;
    const read = async () => {
      try {
        const s = await get(`/api/v1/instances/${enc(id)}/stats`);
        const now = Date.now();
        if (prev.current && s.cpuNs >= 0 && prev.current.s.cpuNs >= 0) {
          const dt = (now - prev.current.t) * 1e6;
          setCpu(dt > 0 ? ((s.cpuNs - prev.current.s.cpuNs) / dt) * 100 : null);
        }
        prev.current = { s, t: now };
        if (!stop) setSt(s);
      } catch {
        /* the instance went away: its details say so */
      }
    };
    read();
    const t = setInterval(read, STATS_MS);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [id]);
  if (!st) return html`<p class="muted">reading resource use…</p>`;
  const memPct = st.memoryLimitBytes > 0 ? (st.memoryBytes / st.memoryLimitBytes) * 100 : null;
  return html`<dl class="stats">
    <dt>CPU</dt><dd data-k="cpu">${cpu == null ? 'measuring…' : `${cpu.toFixed(1)} % of one core`}
      <span class="muted"> (${(st.cpuNs / 1e9).toFixed(2)} s in all)</span></dd>
    <dt>Memory</dt><dd data-k="memory">${fmtBytes(st.memoryBytes)}${st.memoryLimitBytes > 0
      ? html` of ${fmtBytes(st.memoryLimitBytes)} <meter min="0" max="100" value=${memPct} aria-label="memory use"></meter>`
      : ''}</dd>
    <dt>Network</dt><dd>${fmtBytes(st.netBytes)} in and out</dd>
  </dl>`;
}

function Logs({ id }) {
  const [text, setText] = useState('');
  const [follow, setFollow] = useState(true);
  const pre = useRef(null);
  useEffect(() => {
    let stop = false;
    const read = () =>
      get(`/api/v1/instances/${enc(id)}/logs?tail=200`)
        .then((t) => !stop && setText(String(t)))
        .catch((e) => !stop && setText(`(${e.message})`));
    read();
    const t = follow ? setInterval(read, FOLLOW_MS) : null;
    return () => {
      stop = true;
      if (t) clearInterval(t);
    };
  }, [id, follow]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return html`<section aria-labelledby="logs-h">
    <h2 id="logs-h">Log</h2>
    <label class="inline"><input type="checkbox" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} /> Follow</label>
    <pre class="log" ref=${pre} tabindex="0" aria-label="instance log, last 200 lines">${text || '(empty)'}</pre>
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
      <div class="card"><h2>Resource use</h2><${Stats} id=${id} />
        <h2>Labels</h2>
        ${labels.length
          ? html`<ul class="labels">${labels.map(([k, v]) => html`<li><code>${k}=${v}</code></li>`)}</ul>`
          : html`<p class="muted">none</p>`}
      </div>
    </div>
    <${Logs} id=${id} />
  </section>`;
}
