// Tenants (with search), triggers (recent events and verdicts), Lua policies and the audit
// log (with filters).
import { useEffect, useState } from 'preact/hooks';
import { get } from './api.js';
import { useStore } from './state.js';
import { Phase, fmtBytes, fmtTime, html } from './ui.js';

const enc = encodeURIComponent;

export function TenantsPage() {
  const store = useStore();
  const [q, setQ] = useState('');
  const needle = q.trim().toLowerCase();
  const snaps = {};
  for (const s of store.snapshots) (snaps[s.tenantId] ||= []).push(s);
  const names = new Set([...store.tenants.map((t) => t.tenantId), ...Object.keys(snaps)]);
  const rows = [...names].filter((n) => n.toLowerCase().includes(needle)).sort();
  return html`<section aria-labelledby="ten-h">
    <h1 id="ten-h">Tenants</h1>
    <span class="field search"><label for="tenant-search">Search tenants</label>
      <input id="tenant-search" type="search" value=${q} onInput=${(e) => setQ(e.target.value)} /></span>
    <p class="muted" role="status">${rows.length} of ${names.size} tenants</p>
    <div class="table-wrap"><table class="tenants">
      <thead><tr><th scope="col">Tenant</th><th scope="col">Claims</th><th scope="col">Snapshots</th></tr></thead>
      <tbody>${rows.map((name) => {
        const t = store.tenants.find((x) => x.tenantId === name);
        return html`<tr data-tenant=${name}><th scope="row">${name}</th>
          <td>${(t?.claims || []).map((c) => html`<div>${c.workload} <${Phase} phase=${c.phase} />
            ${c.instanceId && html` <a href=${`#/instance/${enc(c.instanceId)}`}>${c.instanceId}</a>`}</div>`)}</td>
          <td>${(snaps[name] || []).map((s) => html`<div>${s.workloadRef}: ${fmtBytes(s.sizeBytes)}, ${fmtTime(s.createdAt)}</div>`)}</td>
        </tr>`;
      })}</tbody>
    </table></div>
  </section>`;
}

function TriggerEvents({ name, bump }) {
  const [events, setEvents] = useState(null);
  useEffect(() => {
    get(`/api/v1/triggers/${enc(name)}/events?limit=20`)
      .then((r) => setEvents(r.events || []))
      .catch(() => setEvents([]));
  }, [name, bump]);
  if (!events) return html`<p class="muted">loading…</p>`;
  if (!events.length) return html`<p class="muted">no events yet</p>`;
  return html`<div class="table-wrap"><table class="trigger-events" aria-label=${`recent events of ${name}`}>
    <thead><tr><th scope="col">At</th><th scope="col">Tenant</th><th scope="col">Verdict</th>
      <th scope="col">Latency</th><th scope="col">Error</th></tr></thead>
    <tbody>${events.map((e) => html`<tr><td>${fmtTime(e.at)}</td><td>${e.tenant}</td>
      <td><span class=${`verdict verdict-${e.verdict}`}>${e.verdict}</span></td><td>${e.latencyMs} ms</td>
      <td>${e.error || ''}</td></tr>`)}</tbody>
  </table></div>`;
}

export function TriggersPage() {
  const store = useStore();
  const live = store.events.filter((e) => e.type === 'trigger.event');
  return html`<section aria-labelledby="trg-h">
    <h1 id="trg-h">Triggers</h1>
    <h2>Live</h2>
    <ul class="feed" aria-live="polite">${live.slice(0, 20).map((e) => html`<li data-trigger=${e.trigger}>
      ${fmtTime(e.time)} <strong>${e.trigger}</strong> → ${e.tenant || '—'}:
      <span class=${`verdict verdict-${e.verdict}`}>${e.verdict}</span> in ${e.latencyMs} ms ${e.error || ''}</li>`)}
      ${!live.length && html`<li class="muted">no trigger events since this page opened</li>`}</ul>
    ${store.triggers.map((t) => {
      const bump = live.filter((e) => e.trigger === t.name).length;
      return html`<article class="card" data-trigger=${t.name}>
        <h2>${t.name} <${Phase} phase=${t.status?.phase} /></h2>
        <p class="muted">${t.spec?.type} → ${t.spec?.workloadRef}; events ${t.status?.events ?? 0},
          denied ${t.status?.denied ?? 0}, failed ${t.status?.failed ?? 0}, last ${fmtTime(t.status?.lastEventAt)}</p>
        ${t.status?.detail && html`<p class="detail">${t.status.detail}</p>`}
        <${TriggerEvents} name=${t.name} bump=${bump} />
      </article>`;
    })}
    ${!store.triggers.length && html`<p class="muted">No triggers.</p>`}
  </section>`;
}

export function PoliciesPage() {
  const [data, setData] = useState(null);
  const [err, setErr] = useState('');
  useEffect(() => {
    get('/api/v1/policies').then(setData).catch((e) => setErr(e.message));
  }, []);
  if (err) return html`<section><h1>Policies</h1><p class="error" role="alert">${err}</p></section>`;
  if (!data) return html`<section><h1>Policies</h1><p class="muted">loading…</p></section>`;
  const list = data.policies || [];
  return html`<section aria-labelledby="pol-h">
    <h1 id="pol-h">Lua policies</h1>
    <p class="muted">from <code>${data.dir || '(no policy directory)'}</code></p>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Script</th><th scope="col">Version</th><th scope="col">Loaded</th>
        <th scope="col">Calls</th><th scope="col">Denials</th><th scope="col">Failures</th><th scope="col">Last error</th></tr></thead>
      <tbody>${list.map((p) => html`<tr><th scope="row">${p.name}</th><td><code>${(p.versionHash || '').slice(0, 12)}</code></td>
        <td>${fmtTime(p.loadedAt)}</td><td>${p.calls}</td><td>${p.denials}</td><td>${p.failures}</td>
        <td class=${p.lastError ? 'error' : 'muted'}>${typeof p.lastError === 'object' && p.lastError
          ? p.lastError.message || JSON.stringify(p.lastError) : p.lastError || 'none'}</td></tr>`)}</tbody>
    </table></div>
    ${!list.length && html`<p class="muted">No policies loaded.</p>`}
  </section>`;
}

export function AuditPage() {
  const [f, setF] = useState({ tenant: '', actor: '', since: '', limit: '100' });
  const [rows, setRows] = useState(null);
  const [err, setErr] = useState('');
  const search = async (e) => {
    if (e) e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v.trim()) q.set(k, v.trim());
    try {
      setRows(await get(`/api/v1/audit?${q}`));
      setErr('');
    } catch (x) {
      setErr(x.message);
    }
  };
  useEffect(() => {
    search();
  }, []);
  const field = (k, label, type = 'text', hint) => html`<span class="field"><label for=${`audit-${k}`}>${label}</label>
    <input id=${`audit-${k}`} type=${type} name=${k} value=${f[k]} placeholder=${hint || ''}
      onInput=${(e) => setF({ ...f, [k]: e.target.value })} /></span>`;
  return html`<section aria-labelledby="aud-h">
    <h1 id="aud-h">Audit log</h1>
    <form class="card filters" onSubmit=${search} aria-label="Audit filters">
      ${field('tenant', 'Tenant')} ${field('actor', 'Actor')}
      ${field('since', 'Since', 'text', '2026-01-01T00:00:00Z')} ${field('limit', 'Limit', 'number')}
      <button type="submit" class="primary">Filter</button>
    </form>
    ${err && html`<p class="error" role="alert">${err}</p>`}
    <div class="table-wrap"><table class="audit">
      <thead><tr><th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Tenant</th>
        <th scope="col">Target</th><th scope="col">Outcome</th><th scope="col">Error</th></tr></thead>
      <tbody>${(rows || []).map((r) => html`<tr><td>${fmtTime(r.at)}</td><td>${r.actor}</td><td>${r.action}</td>
        <td>${r.tenant || ''}</td><td>${r.target || ''}</td><td>${r.outcome}${r.status ? ` (${r.status})` : ''}</td>
        <td>${r.error || ''}</td></tr>`)}</tbody>
    </table></div>
  </section>`;
}
