// The device list: every device with online/offline, last seen (relative, ticking), firmware,
// readings per second, sensors and completeness. Rows are built once per device and updated
// in place; nothing is rebuilt on a tick.

import { formatPercent, formatRate, relativeTime } from './format.js';

/** Readings per second are the stored-readings counter's growth over this long. */
const RATE_WINDOW_MS = 10_000;

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

/** Completeness below these shows amber, then red. */
const WARN_BELOW = 0.999;
const BAD_BELOW = 0.95;

export class DeviceList {
  /**
   * @param {HTMLElement} root the <ul>
   * @param {(name: string, additive: boolean) => void} onSelect
   */
  constructor(root, onSelect) {
    this.root = root;
    this.onSelect = onSelect;
    this.rows = new Map();
    this.filter = '';
    this.selected = new Set();
  }

  /** A fresh answer from `GET /api/devices`. */
  update(devices, now) {
    const names = new Set();
    for (const d of devices) {
      names.add(d.name);
      let row = this.rows.get(d.name);
      if (!row) {
        row = this.createRow(d.name);
        this.rows.set(d.name, row);
      }
      row.device = d;
      row.online = d.online;
      row.revoked = d.revoked;
      row.fw = d.firmware;
      row.lastSeen = Math.max(row.lastSeen ?? -Infinity, d.last_seen_ms ?? -Infinity);
      if (!Number.isFinite(row.lastSeen)) row.lastSeen = null;
      const stored = d.stats ? d.stats.stored_readings : 0;
      row.samples.push([now, stored]);
      while (row.samples.length > 2 && now - row.samples[1][0] >= RATE_WINDOW_MS) row.samples.shift();
      this.fill(row);
    }
    for (const [name, row] of this.rows) {
      if (!names.has(name)) {
        row.li.remove();
        this.rows.delete(name);
      }
    }
    // Keep the DOM in name order (the API sends it so).
    let prev = null;
    for (const d of devices) {
      const li = this.rows.get(d.name).li;
      const want = prev ? prev.nextSibling : this.root.firstChild;
      if (li !== want) this.root.insertBefore(li, want);
      prev = li;
    }
    this.applyFilter();
    this.tick(now);
  }

  /** A `device` event from the live socket. */
  status(name, online, firmware, ts) {
    const row = this.rows.get(name);
    if (!row) return;
    row.online = online;
    if (firmware) row.fw = firmware;
    row.lastSeen = Math.max(row.lastSeen ?? 0, ts);
    this.fill(row);
  }

  /** Readings of this device just arrived. */
  seen(name, ts) {
    const row = this.rows.get(name);
    if (row) row.lastSeen = Math.max(row.lastSeen ?? 0, ts);
  }

  names() {
    return [...this.rows.keys()];
  }

  device(name) {
    return this.rows.get(name)?.device ?? null;
  }

  isOnline(name) {
    return this.rows.get(name)?.online ?? false;
  }

  setSelected(selected) {
    this.selected = new Set(selected);
    for (const [name, row] of this.rows) {
      const on = this.selected.has(name);
      row.li.classList.toggle('selected', on);
      row.li.setAttribute('aria-selected', String(on));
      row.check.checked = on;
    }
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    this.applyFilter();
  }

  applyFilter() {
    for (const [name, row] of this.rows) row.li.hidden = this.filter !== '' && !name.toLowerCase().includes(this.filter);
  }

  /** Once a second: relative times move on. */
  tick(now) {
    for (const row of this.rows.values()) {
      setText(row, 'seen', row.seen, relativeTime(row.lastSeen, now));
      row.seen.title = row.lastSeen ? new Date(row.lastSeen).toLocaleString() : 'never';
    }
  }

  createRow(name) {
    const li = el('li', 'device');
    li.dataset.device = name;
    li.tabIndex = 0;
    li.setAttribute('role', 'option');
    const top = el('div', 'device-top');
    const dot = el('span', 'status-dot');
    const title = el('span', 'device-name', name);
    const state = el('span', 'device-state');
    const check = el('input', 'device-check');
    check.type = 'checkbox';
    check.title = 'Show beside the others';
    check.setAttribute('aria-label', `show ${name} beside the others`);
    top.append(dot, title, state, check);
    const meta = el('div', 'device-meta');
    const firmwareEl = el('span', 'device-firmware');
    const rate = el('span', 'device-rate');
    const seen = el('span', 'device-seen');
    meta.append(firmwareEl, rate, seen);
    const sensors = el('div', 'device-sensors');
    const comp = el('div', 'completeness');
    const bar = el('span', 'completeness-bar');
    const fill = el('span', 'completeness-fill');
    bar.append(fill);
    const pct = el('span', 'completeness-pct');
    comp.append(el('span', 'completeness-label', 'complete'), bar, pct);
    li.append(top, meta, sensors, comp);

    li.addEventListener('click', (e) => {
      if (e.target === check) return;
      this.onSelect(name, e.ctrlKey || e.metaKey || e.shiftKey);
    });
    li.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        this.onSelect(name, e.ctrlKey || e.metaKey || e.shiftKey);
      }
    });
    check.addEventListener('change', () => this.onSelect(name, true));
    return { li, dot, state, check, firmwareEl, rate, seen, sensors, fill, pct, comp, samples: [], lastSeen: null, text: {} };
  }

  fill(row) {
    const d = row.device;
    const online = row.online && !row.revoked;
    row.li.dataset.online = String(online);
    row.li.classList.toggle('online', online);
    setText(row, 'state', row.state, row.revoked ? 'revoked' : online ? 'online' : 'offline');
    setText(row, 'firmware', row.firmwareEl, row.fw ? `fw ${row.fw}` : 'no Hello yet');
    setText(row, 'rate', row.rate, formatRate(online ? rateOf(row.samples) : 0));
    const sensorText = (d.sensors || []).map((s) => `${s.kind}${s.unit ? ` ${s.unit}` : ''}`).join('|');
    if (row.text.sensorsKey !== sensorText) {
      row.text.sensorsKey = sensorText;
      row.sensors.replaceChildren(...(d.sensors || []).map((s) => el('span', `chip kind-${s.kind}`, `${s.kind}${s.unit ? ` · ${s.unit}` : ''}`)));
    }
    const c = d.completeness;
    setText(row, 'pct', row.pct, formatPercent(c));
    row.fill.style.width = `${c === null || c === undefined ? 0 : Math.max(2, c * 100)}%`;
    row.comp.classList.toggle('warn', c !== null && c < WARN_BELOW && c >= BAD_BELOW);
    row.comp.classList.toggle('bad', c !== null && c < BAD_BELOW);
    const s = d.stats;
    row.comp.title = s
      ? `${s.stored_readings.toLocaleString()} readings stored; ${s.dropped_readings.toLocaleString()} dropped by the device; ${s.lost_batches.toLocaleString()} batches never arrived`
      : 'nothing stored yet';
  }
}

function setText(row, key, elem, text) {
  if (row.text[key] !== text) {
    row.text[key] = text;
    elem.textContent = text;
  }
}

/** Readings per second over the samples kept (null until two polls are a second apart). */
function rateOf(samples) {
  if (samples.length < 2) return null;
  const [t0, n0] = samples[0];
  const [t1, n1] = samples[samples.length - 1];
  if (t1 - t0 < 1000) return null;
  return Math.max(0, ((n1 - n0) * 1000) / (t1 - t0));
}
