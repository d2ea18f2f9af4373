// The dashboard's view of the daemon: lists read over REST, re-read when a /ws event says
// they changed (never on a timer), plus the event history the live pages and charts draw.
import { useEffect, useState } from 'preact/hooks';
import { get, readsAll, tenantScopes } from './api.js';

const EVENTS_KEPT = 500;
const POINTS_KEPT = 2000;

export const store = {
  workloads: [],
  pools: [],
  tenants: [],
  snapshots: [],
  instances: [],
  triggers: [],
  events: [], // newest first
  claimLatency: [], // {t, source, ms}
  hibernate: [], // {t, kind: 'hibernate'|'restore', ms, bytes}
  poolDepth: {}, // pool -> [{t, ready, warming, size}]
  loadedAt: {}, // list -> Date.now() of its last read
  live: 'connecting',
  liveDetail: '',
  error: '',
};

const subscribers = new Set();
let version = 0;

export function changed() {
  version++;
  for (const fn of subscribers) fn(version);
}

// Re-renders the calling component whenever the store changes.
export function useStore() {
  const [, setV] = useState(version);
  useEffect(() => {
    subscribers.add(setV);
    return () => subscribers.delete(setV);
  }, []);
  return store;
}

// A tenant:<id> token reads only its tenants (GET /api/v1/tenants/<id>: 404 when it holds
// no claim) and never asks for the lists it may not read.
function tenantsOfScope() {
  const one = (t) => get(`/api/v1/tenants/${encodeURIComponent(t)}`).catch((e) => (e.status === 404 ? null : Promise.reject(e)));
  return Promise.all(tenantScopes().map(one)).then((l) => l.filter(Boolean));
}
const all = (path) => () => (readsAll() ? get(path) : Promise.resolve([]));

const loaders = {
  workloads: all('/api/v1/workloads'),
  pools: all('/api/v1/pools'),
  tenants: () => (readsAll() ? get('/api/v1/tenants') : tenantsOfScope()),
  snapshots: all('/api/v1/snapshots'),
  instances: all('/api/v1/instances'),
  triggers: all('/api/v1/triggers'),
};

// What a tenant token knows of the workloads: the ones its claims name.
function workloadsOfClaims() {
  const names = new Set(store.tenants.flatMap((t) => (t.claims || []).map((c) => c.workload)));
  return [...names].sort().map((name) => ({ name, spec: {}, status: {} }));
}
export const ALL = Object.keys(loaders);

let pending = new Set();
let timer = null;

async function load(keys) {
  await Promise.all(
    keys.map(async (k) => {
      try {
        store[k] = await loaders[k]();
        store.loadedAt[k] = Date.now();
        store.error = '';
      } catch (e) {
        store.error = `${k}: ${e.message}`;
      }
    }),
  );
  if (!readsAll()) store.workloads = workloadsOfClaims();
  for (const p of store.pools) notePool(p.name, p.status || {}, p.spec || {});
  changed();
}

// Merges points into a series sorted by time, one per key (an event id, or the time).
function mergeSeries(list, more, key) {
  const by = new Map(list.map((p) => [key(p), p]));
  for (const p of more) by.set(key(p), p);
  const out = [...by.values()].sort((a, b) => a.t - b.t);
  return out.length > POINTS_KEPT ? out.slice(out.length - POINTS_KEPT) : out;
}

// The daemon's recent history for the charts (GET /api/v1/samples), merged with what the
// event stream brought: asked once when the metrics page opens.
export async function loadHistory() {
  if (!readsAll()) return;
  let h;
  try {
    h = await get('/api/v1/samples');
  } catch {
    return;
  }
  const byId = (p) => p.id;
  store.claimLatency = mergeSeries(store.claimLatency, (h.claims || []).map((c) => ({ ...c, source: c.source })), byId);
  store.hibernate = mergeSeries(store.hibernate, h.hibernate || [], byId);
  for (const [pool, pts] of Object.entries(h.pools || {}))
    store.poolDepth[pool] = mergeSeries(store.poolDepth[pool] || [], pts, (p) => p.t);
  changed();
}

// Re-reads the given lists soon, coalescing the bursts one claim makes.
export function reload(keys = ALL) {
  for (const k of keys) pending.add(k);
  if (timer) return;
  timer = setTimeout(() => {
    timer = null;
    const keys2 = [...pending];
    pending = new Set();
    load(keys2);
  }, 100);
}

function notePool(name, st, spec) {
  const series = (store.poolDepth[name] ||= []);
  const point = {
    t: Date.now() / 1000,
    ready: st.ready ?? 0,
    warming: st.warming ?? 0,
    size: st.size ?? spec.size ?? 0,
  };
  const last = series[series.length - 1];
  if (last && last.ready === point.ready && last.warming === point.warming) return;
  series.push(point);
  if (series.length > POINTS_KEPT) series.shift();
}

function keep(list, item, max) {
  list.push(item);
  if (list.length > max) list.shift();
}

// Which lists an event type invalidates.
const EFFECTS = [
  ['instance.', ['instances', 'tenants', 'pools']],
  ['pool.', ['pools']],
  ['tenant.', ['tenants', 'instances']],
  ['claim.', ['tenants']],
  ['hibernate.', ['snapshots', 'tenants']],
  ['restore.', ['snapshots', 'tenants']],
  ['workload.', ['workloads']],
  ['trigger.', ['triggers']],
];

export function onEvent(ev) {
  store.events.unshift(ev);
  if (store.events.length > EVENTS_KEPT) store.events.pop();
  const t = Date.parse(ev.time) / 1000 || Date.now() / 1000;
  if (ev.type === 'tenant.claimed')
    keep(store.claimLatency, { id: ev.id, t, source: ev.source || '?', ms: ev.latencyMs }, POINTS_KEPT);
  if (ev.type === 'hibernate.done' || ev.type === 'restore.done')
    keep(store.hibernate, { id: ev.id, t, kind: ev.type.split('.')[0], ms: ev.ms, bytes: ev.bytes }, POINTS_KEPT);
  if (ev.type === 'pool.status') {
    const p = store.pools.find((x) => x.name === ev.pool);
    if (p) p.status = { ...(p.status || {}), ready: ev.ready, warming: ev.warming };
    notePool(ev.pool, ev, {});
  }
  const keys = new Set();
  for (const [prefix, lists] of EFFECTS) if (ev.type.startsWith(prefix)) lists.forEach((k) => keys.add(k));
  if (keys.size) reload([...keys]);
  changed();
}
