// Formatting shared by the views: values, units, durations, relative and axis times.

/** A reading for people: as many decimals as its size deserves. */
export function formatValue(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 10000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(3);
}

/** Tick labels share the decimals their step needs. */
export function formatTick(v, step) {
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function relativeTime(ts, now) {
  if (ts === null || ts === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** 300000 -> "5 min". */
export function formatDuration(ms) {
  const s = ms / 1000;
  if (s < 60) return `${+s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 60) return `${+m.toFixed(1)} min`;
  const h = m / 60;
  if (h < 48) return `${+h.toFixed(1)} h`;
  return `${+(h / 24).toFixed(1)} d`;
}

export function formatRate(perSecond) {
  if (perSecond === null || perSecond === undefined || !Number.isFinite(perSecond)) return '—';
  return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)}/s`;
}

export function formatPercent(fraction) {
  if (fraction === null || fraction === undefined) return '—';
  const p = fraction * 100;
  return p >= 99.995 ? '100 %' : `${p.toFixed(p >= 99 ? 2 : 1)} %`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Axis label for a tick at `t`, precise enough for ticks `step` ms apart. */
export function formatAxisTime(t, step) {
  const d = new Date(t);
  if (step < 60_000) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (step < 86_400_000 && !(d.getHours() === 0 && d.getMinutes() === 0)) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

/** A full local date and time, for tooltips and range labels. */
export function formatDateTime(t) {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The value of an <input type="datetime-local"> for `t`, and back. */
export function toLocalInput(t) {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? t : null;
}
