// The daemon's API as the dashboard uses it: same-origin relative URLs (so http and https
// listeners both work), the operator's token in sessionStorage (never shown, never in a URL
// but the one-minute /ws token), and the live event stream with resume-by-id reconnects.
const TOKEN_KEY = 'boilerhouse.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  actor: '',
  scopes: [],
};

export function setToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function api(method, path, body) {
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const type = resp.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `${method} ${path}: HTTP ${resp.status}`;
    throw new ApiError(resp.status, msg);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body ?? {});

// Who the token belongs to: GET /api/v1/whoami where the daemon has scoped tokens; on a
// daemon without it (404) a token that opens an authorized route is the admin key.
export async function whoami() {
  try {
    const me = await get('/api/v1/whoami');
    return { actor: me.actor || 'token', scopes: me.scopes || [] };
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  await get('/api/v1/stats');
  return { actor: 'admin key', scopes: ['admin'] };
}

// Whether the token reads everything (admin or viewer); a tenant:<id> token reads only its
// tenants' claims and instances.
export const readsAll = () => session.scopes.includes('admin') || session.scopes.includes('viewer');
export const tenantScopes = () => session.scopes.filter((s) => s.startsWith('tenant:')).map((s) => s.slice(7));

// What the signed-in token may change: admin everything, tenant:<id> that tenant's claims,
// viewer (or anything else) nothing.
export function can(action, tenant) {
  const s = session.scopes;
  if (s.includes('admin')) return true;
  if (action === 'claim' && tenant) return s.includes(`tenant:${tenant}`);
  return false;
}

export function wsUrl(params) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams(params).toString();
  return `${proto}//${location.host}/ws?${q}`;
}

// The /ws stream: mints a short-lived browser token for each connection (held to the
// token's tenant for a tenant scope), resumes from the last id seen, and reconnects with
// backoff (a daemon restart is a closed socket followed by refused connections until it is
// back). params: more of the query (filters; instance=<id> watches an instance).
// onState('live'|'connecting'|'down', detail); onEvent(event); onResync() when the state
// must be re-read (first connect, resync, or a reconnect after which the ring no longer
// holds what was missed).
export class Live {
  constructor({ onEvent, onState, onResync, params }) {
    Object.assign(this, { onEvent, onState, onResync, params: params || {} });
    this.lastId = -1;
    this.failures = 0;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
  }

  async connect() {
    if (this.stopped) return;
    this.onState('connecting');
    let token;
    try {
      const tenant = readsAll() ? '' : tenantScopes()[0];
      token = (await post(`/api/v1/ws/token${tenant ? `?tenant=${encodeURIComponent(tenant)}` : ''}`)).token;
    } catch (e) {
      if (e.status === 401 || e.status === 403) return this.onState('down', e.message);
      return this.retry();
    }
    const params = { ...this.params, token };
    if (this.lastId >= 0) params.since = String(this.lastId);
    const ws = new WebSocket(wsUrl(params));
    this.socket = ws;
    let opened = false;
    ws.onmessage = (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      if (ev.type === 'hello') {
        opened = true;
        this.failures = 0;
        if (this.lastId < 0) this.lastId = ev.lastId;
        this.onState('live');
        // Missed events are replayed next, but the views are cheap to re-read and a
        // restarted daemon may have changed anything: read them again on every connect.
        this.onResync();
        return;
      }
      if (ev.type === 'resync') {
        this.lastId = ev.lastId ?? this.lastId;
        this.onResync();
        return;
      }
      if (typeof ev.id === 'number') this.lastId = ev.id;
      this.onEvent(ev);
    };
    ws.onclose = () => {
      if (this.socket !== ws) return;
      this.socket = null;
      if (!opened) this.failures++;
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.onState('down');
    const ms = Math.min(10000, 500 * 2 ** Math.min(this.failures, 5));
    this.failures++;
    this.timer = setTimeout(() => this.connect(), ms);
  }
}
