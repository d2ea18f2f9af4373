// Small shared pieces: htm bound to Preact, formatting, the confirmation dialog, the idle bar.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

export function fmtBytes(n) {
  if (n == null || n < 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
}

export function fmtSecs(s) {
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export const Phase = ({ phase }) =>
  html`<span class="phase phase-${String(phase || 'unknown').toLowerCase()}">${phase || 'Unknown'}</span>`;

// A second-by-second clock for countdowns: local time only, nothing is fetched.
export function useNow(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

// Idle time left, counted down locally from the value read with the claim.
export function IdleBar({ left, total, readAt, tenant }) {
  const now = useNow();
  if (left == null) return html`<span class="muted">no idle timeout</span>`;
  const rest = Math.max(0, left - (now - readAt) / 1000);
  const max = Math.max(total || left, 1);
  const pct = Math.min(100, (rest / max) * 100);
  const label = `idle time left for ${tenant}`;
  return html`<span class="idle">
    <span class="bar" role="meter" aria-label=${label} aria-valuemin="0" aria-valuemax=${Math.round(max)}
      aria-valuenow=${Math.round(rest)} data-seconds=${Math.round(rest)}>
      <span class=${'fill' + (pct < 20 ? ' low' : '')} style=${`width:${pct}%`}></span>
    </span>
    <span class="idle-text">${fmtSecs(rest)}</span>
  </span>`;
}

// A modal confirmation (native <dialog>: focus kept inside, Escape cancels).
let openConfirm = null;
export function confirmAction(message, danger) {
  return new Promise((resolve) => openConfirm && openConfirm({ message, danger, resolve }));
}

export function ConfirmHost() {
  const [req, setReq] = useState(null);
  const ref = useRef(null);
  useEffect(() => {
    openConfirm = setReq;
    return () => (openConfirm = null);
  }, []);
  useEffect(() => {
    if (req && ref.current && !ref.current.open) ref.current.showModal();
  }, [req]);
  const done = (ok) => {
    if (ref.current && ref.current.open) ref.current.close();
    if (req) req.resolve(ok);
    setReq(null);
  };
  return html`<dialog ref=${ref} aria-labelledby="confirm-msg" onCancel=${() => done(false)}>
    <p id="confirm-msg">${req && req.message}</p>
    <div class="row">
      <button type="button" onClick=${() => done(false)}>Cancel</button>
      <button type="button" class=${req && req.danger ? 'danger' : 'primary'} onClick=${() => done(true)}>
        Confirm
      </button>
    </div>
  </dialog>`;
}

// A button that runs an async action, shows it busy, and reports failure next to itself.
export function ActionButton({ label, run, confirm, danger, title }) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState('');
  const click = async () => {
    if (confirm && !(await confirmAction(confirm, danger))) return;
    setBusy(true);
    setErr('');
    try {
      await run();
    } catch (e) {
      setErr(e.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action">
    <button type="button" class=${danger ? 'danger' : ''} disabled=${busy} title=${title} onClick=${click}>
      ${busy ? '…' : label}
    </button>
    ${err && html`<span class="error" role="alert">${err}</span>`}
  </span>`;
}
