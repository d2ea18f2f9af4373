// The workloads tree: each workload with its pool, its claimed instances (live idle bars)
// and its hibernated tenants; the claim form; release, force release and destroy.
import { useState } from 'preact/hooks';
import { can, post, session } from './api.js';
import { reload, useStore } from './state.js';
import { ActionButton, IdleBar, Phase, fmtBytes, fmtTime, html } from './ui.js';

const enc = encodeURIComponent;

function claimsOf(store, workload) {
  const out = [];
  for (const t of store.tenants)
    for (const c of t.claims || []) if (c.workload === workload) out.push(c);
  return out;
}

// The newest snapshot of each tenant of a workload.
function snapshotsOf(store, workload) {
  const by = {};
  for (const s of store.snapshots) {
    if (s.workloadRef !== workload) continue;
    const cur = by[s.tenantId];
    if (!cur || (s.createdAt || '') > (cur.createdAt || '')) by[s.tenantId] = s;
  }
  return by;
}

async function claim(tenant, workload) {
  const r = await post(`/api/v1/tenants/${enc(tenant)}/claim`, { workload });
  reload(['tenants', 'instances', 'snapshots', 'pools']);
  return r;
}

function release(tenant, workload, variant) {
  const path = `/api/v1/tenants/${enc(tenant)}/release${variant ? '/' + variant : ''}`;
  return post(path, { workload }).then(() => reload(['tenants', 'instances', 'snapshots']));
}

export function ClaimForm() {
  const store = useStore();
  const [tenant, setTenant] = useState('');
  const [workload, setWorkload] = useState('');
  const [msg, setMsg] = useState(null);
  const [busy, setBusy] = useState(false);
  const wl = workload || (store.workloads[0] && store.workloads[0].name) || '';
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setMsg(null);
    try {
      const r = await claim(tenant.trim(), wl);
      setMsg({ ok: true, text: `${r.tenantId} claimed ${r.workload}: ${r.phase} from ${r.source} in ${r.latencyMs} ms` });
    } catch (err) {
      setMsg({ ok: false, text: err.message });
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card claim-form" onSubmit=${submit} aria-label="Claim an instance">
    <h2>Claim</h2>
    <span class="field"><label for="claim-tenant">Tenant ID</label><input id="claim-tenant" name="tenant" required maxlength="63" pattern="[A-Za-z0-9]([A-Za-z0-9._\\-]*[A-Za-z0-9])?"
      value=${tenant} onInput=${(e) => setTenant(e.target.value)} autocomplete="off" /></span>
    <span class="field"><label for="claim-workload">Workload</label><select id="claim-workload" name="workload" value=${wl}
      onChange=${(e) => setWorkload(e.target.value)}>
      ${store.workloads.map((w) => html`<option value=${w.name}>${w.name}</option>`)}
    </select></span>
    <button type="submit" class="primary" disabled=${busy || !wl}>${busy ? 'Claiming…' : 'Claim'}</button>
    ${msg && html`<p class=${msg.ok ? 'ok' : 'error'} role="status">${msg.text}</p>`}
  </form>`;
}

function PoolRow({ pool }) {
  const st = pool.status || {};
  const size = pool.spec?.size ?? st.size ?? 0;
  const ready = st.ready ?? 0;
  const warming = st.warming ?? 0;
  return html`<li class="pool">
    <span class="label">pool <strong>${pool.name}</strong></span>
    <span class="pool-bar" role="img" aria-label=${`${ready} ready, ${warming} warming of ${size}`}>
      <span class="ready" style=${`width:${size ? (ready / size) * 100 : 0}%`}></span>
      <span class="warming" style=${`width:${size ? (warming / size) * 100 : 0}%`}></span>
    </span>
    <span class="pool-nums">ready <b data-k="ready">${ready}</b> · warming <b>${warming}</b> · size <b>${size}</b></span>
  </li>`;
}

function ClaimRow({ c, timeout, readAt }) {
  const mayChange = can('claim', c.tenantId);
  const mayDestroy = can('destroy');
  return html`<tr data-tenant=${c.tenantId}>
    <th scope="row">${c.tenantId}</th>
    <td data-label="Phase"><${Phase} phase=${c.phase} /></td>
    <td data-label="Source">${c.source || '—'}</td>
    <td data-label="Claimed at">${fmtTime(c.claimedAt)}</td>
    <td data-label="Instance">${c.instanceId ? html`<a href=${`#/instance/${enc(c.instanceId)}`}>${c.instanceId}</a>` : '—'}</td>
    <td data-label="Idle left">${c.phase === 'Active'
      ? html`<${IdleBar} left=${c.idleTimeLeftSeconds} total=${timeout} readAt=${readAt} tenant=${c.tenantId} />`
      : c.detail || ''}</td>
    <td class="actions">
      ${mayChange && html`<${ActionButton} label="Release" title="Hibernate and release"
        confirm=${`Release ${c.tenantId} from ${c.workload}? Its files are saved.`}
        run=${() => release(c.tenantId, c.workload)} />`}
      ${mayChange && html`<${ActionButton} label="Force release" danger
        confirm=${`Force release ${c.tenantId}? The instance is destroyed WITHOUT saving.`}
        run=${() => release(c.tenantId, c.workload, 'force')} />`}
      ${mayChange && c.phase === 'ReleaseFailed' && html`<${ActionButton} label="Retry release"
        run=${() => release(c.tenantId, c.workload, 'retry')} />`}
      ${mayDestroy && c.instanceId && html`<${ActionButton} label="Destroy" danger
        confirm=${`Destroy instance ${c.instanceId}? Unsaved files are lost.`}
        run=${() => post(`/api/v1/instances/${enc(c.instanceId)}/destroy`).then(() => reload(['instances', 'tenants']))} />`}
    </td>
  </tr>`;
}

function HibernatedRow({ tenant, snap, workload, phase }) {
  return html`<tr data-tenant=${tenant}>
    <th scope="row">${tenant}</th>
    <td data-label="State"><${Phase} phase=${phase || 'Hibernated'} /></td>
    <td data-label="Snapshot">${snap ? fmtBytes(snap.sizeBytes) : '—'}</td>
    <td data-label="Saved at">${snap ? fmtTime(snap.createdAt) : 'no snapshot'}</td>
    <td class="actions">${can('claim', tenant) && html`<${ActionButton} label="Claim"
      title="Restore this tenant's files into an instance" run=${() => claim(tenant, workload)} />`}</td>
  </tr>`;
}

function WorkloadNode({ w, store }) {
  const pools = store.pools.filter((p) => p.spec?.workloadRef === w.name);
  const claims = claimsOf(store, w.name);
  const snaps = snapshotsOf(store, w.name);
  const active = claims.filter((c) => !['Released'].includes(c.phase));
  const activeTenants = new Set(active.map((c) => c.tenantId));
  const hibernated = Object.keys(snaps).filter((t) => !activeTenants.has(t));
  for (const c of claims)
    if (c.phase === 'Released' && !snaps[c.tenantId] && !hibernated.includes(c.tenantId)) hibernated.push(c.tenantId);
  const image = w.spec?.image?.ref || (w.spec?.image?.dockerfile ? 'Dockerfile build' : '—');
  const readAt = store.loadedAt.tenants || Date.now();
  return html`<li class="workload" data-workload=${w.name}>
    <details open>
      <summary>
        <strong>${w.name}</strong> <${Phase} phase=${w.status?.phase} />
        <span class="muted">${image}</span>
        <span class="muted">${w.spec?.network?.access || ''}</span>
        <span class="count">${active.length} claimed · ${hibernated.length} hibernated</span>
      </summary>
      ${w.status?.detail && html`<p class="detail">${w.status.detail}</p>`}
      <ul class="pools">${pools.map((p) => html`<${PoolRow} pool=${p} />`)}
        ${!pools.length && html`<li class="muted">no pool (claims boot cold)</li>`}</ul>
      <div class="table-wrap" hidden=${!active.length}><table aria-label=${`Instances of ${w.name}`} class="claims">
        <caption>Claimed</caption>
        <thead><tr><th scope="col">Tenant</th><th scope="col">Phase</th><th scope="col">Source</th>
          <th scope="col">Claimed at</th><th scope="col">Instance</th><th scope="col">Idle time left</th>
          <th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${active.map((c) => html`<${ClaimRow} c=${c} timeout=${w.spec?.idle?.timeoutSeconds} readAt=${readAt} />`)}</tbody>
      </table></div>
      ${!active.length && html`<p class="muted">Claimed: none</p>`}
      ${!hibernated.length && html`<p class="muted">Hibernated: none</p>`}
      <div class="table-wrap" hidden=${!hibernated.length}><table aria-label=${`Hibernated tenants of ${w.name}`} class="hibernated">
        <caption>Hibernated</caption>
        <thead><tr><th scope="col">Tenant</th><th scope="col">State</th><th scope="col">Snapshot size</th>
          <th scope="col">Saved at</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${hibernated.map((t) => html`<${HibernatedRow} tenant=${t} snap=${snaps[t]} workload=${w.name} />`)}</tbody>
      </table></div>
    </details>
  </li>`;
}

export function WorkloadsPage() {
  const store = useStore();
  const anyClaim = can('claim') || session.scopes.some((s) => s.startsWith('tenant:'));
  return html`<section aria-labelledby="wl-h">
    <h1 id="wl-h">Workloads</h1>
    ${anyClaim && html`<${ClaimForm} />`}
    <ul class="tree">${store.workloads.map((w) => html`<${WorkloadNode} w=${w} store=${store} />`)}</ul>
    ${!store.workloads.length && html`<p class="muted">No workloads yet.</p>`}
  </section>`;
}
