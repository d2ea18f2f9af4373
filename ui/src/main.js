// The Boilerhouse dashboard: login with a token, hash-routed pages, live through /ws.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Live, readsAll, session, setToken, whoami } from './api.js';
import { InstancePage } from './instance.js';
import { MetricsPage } from './metrics.js';
import { AuditPage, PoliciesPage, TenantsPage, TriggersPage } from './pages.js';
import { ALL, changed, onEvent, reload, store, useStore } from './state.js';
import { ConfirmHost, html } from './ui.js';
import { WorkloadsPage } from './workloads.js';

const PAGES = [
  ['workloads', 'Workloads'],
  ['tenants', 'Tenants'],
  ['triggers', 'Triggers'],
  ['policies', 'Policies'],
  ['audit', 'Audit'],
  ['metrics', 'Metrics'],
];

function useRoute() {
  const parse = () => (location.hash.replace(/^#\/?/, '') || 'workloads').split('/').map(decodeURIComponent);
  const [route, setRoute] = useState(parse());
  useEffect(() => {
    const on = () => setRoute(parse());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Login({ onDone }) {
  const [token, setTok] = useState('');
  const [err, setErr] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr('');
    setToken(token.trim());
    try {
      Object.assign(session, await whoami());
      onDone();
    } catch (x) {
      setToken('');
      setErr(x.status === 401 ? 'That token was not accepted.' : x.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} aria-labelledby="login-h">
      <h1 id="login-h">Boilerhouse</h1>
      <p>Sign in with an API token: the daemon's admin key (<code>BOILERHOUSE_API_KEY</code>) or a scoped token.</p>
      <span class="field"><label for="login-token">API token</label><input id="login-token" type="password" name="token"
        autocomplete="current-password" required value=${token} onInput=${(e) => setTok(e.target.value)} /></span>
      <button type="submit" class="primary" disabled=${busy}>${busy ? 'Checking…' : 'Sign in'}</button>
      ${err && html`<p class="error" role="alert">${err}</p>`}
    </form>
  </main>`;
}

let live = null;

function startLive() {
  if (live) live.stop();
  live = new Live({
    onEvent,
    onResync: () => reload(ALL),
    onState: (s, detail) => {
      store.live = s;
      store.liveDetail = detail || '';
      changed();
    },
  });
  live.start();
}

function Shell({ onLogout }) {
  const store2 = useStore();
  const route = useRoute();
  const [page, arg] = route;
  // A tenant token reads its own claims and instances only: the other pages are not for it.
  const pages = readsAll() ? PAGES : PAGES.filter(([k]) => k === 'workloads');
  let body;
  if (page === 'instance' && arg) body = html`<${InstancePage} id=${arg} />`;
  else if (!pages.some(([k]) => k === page)) body = html`<${WorkloadsPage} />`;
  else if (page === 'tenants') body = html`<${TenantsPage} />`;
  else if (page === 'triggers') body = html`<${TriggersPage} />`;
  else if (page === 'policies') body = html`<${PoliciesPage} />`;
  else if (page === 'audit') body = html`<${AuditPage} />`;
  else if (page === 'metrics') body = html`<${MetricsPage} />`;
  else body = html`<${WorkloadsPage} />`;
  const liveText = { live: 'live', connecting: 'connecting…', down: 'reconnecting…' }[store2.live] || store2.live;
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <span class="brand">Boilerhouse</span>
      <nav aria-label="Pages"><ul>${pages.map(([k, label]) => html`<li><a href=${`#/${k}`}
        aria-current=${page === k ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
      <span class=${`live live-${store2.live}`} role="status" data-live=${store2.live}
        title=${store2.liveDetail}>${liveText}</span>
      <span class="who">${session.actor} <span class="muted">(${session.scopes.join(', ') || 'no scopes'})</span></span>
      <button type="button" onClick=${onLogout}>Sign out</button>
    </header>
    ${store2.error && html`<p class="error banner" role="alert">${store2.error}</p>`}
    <main id="main" tabindex="-1">${body}</main>
    <${ConfirmHost} />
  </div>`;
}

function App() {
  const [state, setState] = useState(session.token ? 'checking' : 'login');
  useEffect(() => {
    if (state !== 'checking') return;
    whoami()
      .then((me) => {
        Object.assign(session, me);
        setState('in');
      })
      .catch(() => {
        setToken('');
        setState('login');
      });
  }, [state]);
  useEffect(() => {
    if (state === 'in') startLive();
    return () => live && live.stop();
  }, [state]);
  if (state === 'checking') return html`<p class="muted center">Checking the token…</p>`;
  if (state === 'login') return html`<${Login} onDone=${() => setState('in')} />`;
  return html`<${Shell} onLogout=${() => {
    setToken('');
    session.scopes = [];
    setState('login');
  }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
