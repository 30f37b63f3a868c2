// Charts on canvas, drawn by hand: one card per sensor of a shown device.
//
// Readings are kept in a Series (two parallel arrays, sorted by time, bounded). Incoming
// messages only append to a series and mark its card dirty; the page draws dirty cards once
// per animation frame, so a burst of messages costs one drawing. Points never become DOM
// nodes: a card is a canvas plus a handful of text nodes (last, min, max).

import { formatAxisTime as formatAxisLabel, formatTick as formatTickValue, formatValue as fmt, formatDuration as fmtDuration } from './format.js';

/** A series keeps at most this many points (5 minutes at 40 Hz); older ones go first. */
export const MAX_SERIES_POINTS = 12_000;

const COLORS = {
  temperature: '#e8603c',
  humidity: '#2f80ed',
  pressure: '#8e5bd6',
  battery: '#27a060',
  voltage: '#27a060',
  current: '#c99a06',
  light: '#e0a100',
  co2: '#12a3a3',
  other: '#60788a',
};

export function colorFor(kind) {
  return COLORS[kind] || COLORS.other;
}

/** First index with t[i] >= x. */
function lowerBound(t, x, lo = 0, hi = t.length) {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (t[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Series {
  constructor(maxPoints = MAX_SERIES_POINTS) {
    this.t = [];
    this.v = [];
    this.maxPoints = maxPoints;
  }

  get length() {
    return this.t.length;
  }

  lastTs() {
    return this.t.length ? this.t[this.t.length - 1] : null;
  }

  /** Add [ts, value] pairs (a live message: almost always newer than what is here). */
  add(points) {
    for (const [ts, value] of points) {
      const n = this.t.length;
      if (n === 0 || ts > this.t[n - 1]) {
        this.t.push(ts);
        this.v.push(value);
      } else {
        const i = lowerBound(this.t, ts);
        if (this.t[i] === ts) {
          this.v[i] = value; // the same reading again (a device resending): keep one
        } else {
          this.t.splice(i, 0, ts);
          this.v.splice(i, 0, value);
        }
      }
    }
    this.bound();
  }

  /** Replace what lies in [from, to] with `points` (sorted), keeping the rest: how history
   * fills a hole after a reconnect or a lag, or the past of a newly shown series. */
  replaceRange(from, to, points) {
    const i = lowerBound(this.t, from);
    const j = lowerBound(this.t, to + 1e-9);
    this.t.splice(i, j - i, ...points.map((p) => p[0]));
    this.v.splice(i, j - i, ...points.map((p) => p[1]));
    this.bound();
  }

  /** Forget points before `t`, and the oldest beyond `maxPoints`. */
  trimBefore(t) {
    const i = lowerBound(this.t, t);
    if (i > 0) {
      this.t.splice(0, i);
      this.v.splice(0, i);
    }
  }

  bound() {
    const extra = this.t.length - this.maxPoints;
    if (extra > 0) {
      this.t.splice(0, extra);
      this.v.splice(0, extra);
    }
  }

  clear() {
    this.t = [];
    this.v = [];
  }
}

/** A "nice" step (1, 2 or 5 times a power of ten) near `raw`. */
function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

/** Gaps longer than this many typical intervals are drawn as gaps, not bridged. */
const GAP_FACTOR = 3;

/**
 * The typical distance between neighbours among t[i0..i1): the median of up to 64 sampled
 * intervals, so a line breaks only where data is really missing.
 */
function typicalInterval(t, i0, i1) {
  const n = i1 - i0;
  if (n < 3) return Infinity;
  const stride = Math.max(1, Math.floor((n - 1) / 64));
  const d = [];
  for (let i = i0 + 1; i < i1; i += stride) d.push(t[i] - t[i - 1]);
  d.sort((a, b) => a - b);
  return d[d.length >> 1];
}

function theme() {
  const css = getComputedStyle(document.documentElement);
  const get = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return { grid: get('--chart-grid', '#e7ebf0'), axis: get('--chart-axis', '#7b8794'), text: get('--chart-text', '#52606d'), font: '11px system-ui, sans-serif' };
}

export class ChartCard {
  /**
   * @param {object} o device, sensor {id, kind, unit}
   */
  constructor({ device, sensor }) {
    this.device = device;
    this.sensor = sensor;
    this.color = colorFor(sensor.kind);
    this.mode = 'live';
    this.dirty = true;
    this.visible = true;
    this.lastDrawnX1 = null;
    this.series = null;
    this.windowMs = 300_000;
    this.history = null;
    this.message = '';
    this.size = { w: 0, h: 0, dpr: 1 };

    const el = (tag, cls, text) => {
      const e = document.createElement(tag);
      if (cls) e.className = cls;
      if (text !== undefined) e.textContent = text;
      return e;
    };
    this.root = el('article', 'chart-card');
    this.root.dataset.device = device;
    this.root.dataset.sensor = String(sensor.id);
    this.root.style.setProperty('--series', this.color);
    const head = el('header', 'chart-head');
    const title = el('div', 'chart-title');
    title.append(el('span', 'swatch'), el('span', 'chart-kind', sensor.kind || `sensor ${sensor.id}`), el('span', 'chart-id', `#${sensor.id}`));
    this.lastEl = el('span', 'stat-value', '—');
    this.unitEl = el('span', 'stat-unit', sensor.unit || '');
    const last = el('div', 'chart-last');
    last.append(this.lastEl, this.unitEl);
    head.append(title, last);
    const stats = el('div', 'chart-stats');
    this.minEl = el('span', 'stat-num', '—');
    this.maxEl = el('span', 'stat-num', '—');
    this.infoEl = el('span', 'chart-info', '');
    const lab = (name, value) => {
      const s = el('span', 'stat');
      s.append(el('span', 'stat-label', name), value);
      return s;
    };
    stats.append(lab('min', this.minEl), lab('max', this.maxEl), this.infoEl);
    this.canvas = el('canvas', 'chart-canvas');
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', `${sensor.kind} of ${device}`);
    this.root.append(head, stats, this.canvas);
    this.shown = { last: null, min: null, max: null, info: null };
  }

  /** Follow the live series over a rolling window. */
  showLive(series, windowMs) {
    this.mode = 'live';
    this.series = series;
    this.windowMs = windowMs;
    this.history = null;
    this.root.dataset.mode = 'live';
    this.dirty = true;
  }

  /** Show a history answer over [from, to). `null` history: loading. */
  showHistory(from, to, history, message = '') {
    this.mode = 'history';
    this.range = { from, to };
    this.history = history;
    this.message = message;
    this.root.dataset.mode = 'history';
    this.dirty = true;
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(rect.width));
    const h = Math.max(1, Math.round(rect.height));
    if (w !== this.size.w || h !== this.size.h || dpr !== this.size.dpr) {
      this.size = { w, h, dpr };
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.dirty = true;
    }
  }

  /** Plot width in CSS pixels: how many history buckets are worth asking for. */
  plotWidth() {
    return Math.max(50, (this.size.w || this.canvas.getBoundingClientRect().width || 600) - 62);
  }

  /** Draw if anything changed or, live, if time moved by at least a pixel. */
  maybeDraw(now) {
    if (!this.visible) return false;
    if (this.mode === 'live' && !this.dirty && this.lastDrawnX1 !== null) {
      const msPerPx = this.windowMs / this.plotWidth();
      if (now - this.lastDrawnX1 < msPerPx) return false;
    }
    if (!this.dirty && this.mode !== 'live') return false;
    this.draw(now);
    return true;
  }

  draw(now) {
    this.dirty = false;
    const { w, h, dpr } = this.size;
    if (!w || !h) return;
    const ctx = this.canvas.getContext('2d');
    const th = theme();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const plot = { x: 54, y: 16, w: w - 54 - 8, h: h - 16 - 22 };
    if (plot.w < 10 || plot.h < 10) return;

    let x0, x1, data;
    if (this.mode === 'live') {
      const s = this.series;
      x1 = Math.max(now, s && s.length ? s.lastTs() : now);
      x0 = x1 - this.windowMs;
      this.lastDrawnX1 = now;
      data = s ? this.liveExtent(s, x0, x1) : null;
    } else {
      x0 = this.range.from;
      x1 = this.range.to;
      data = this.historyExtent();
    }

    // Value range with a little air; a flat line gets a band around it.
    let lo = data ? data.min : 0;
    let hi = data ? data.max : 1;
    if (hi - lo < 1e-9) {
      const pad = Math.abs(hi) > 1 ? Math.abs(hi) * 0.01 : 1;
      lo -= pad;
      hi += pad;
    }
    const air = (hi - lo) * 0.08;
    lo -= air;
    hi += air;
    const yStep = niceStep((hi - lo) / Math.max(2, Math.floor(plot.h / 36)));
    const X = (t) => plot.x + ((t - x0) / (x1 - x0)) * plot.w;
    const Y = (v) => plot.y + plot.h - ((v - lo) / (hi - lo)) * plot.h;

    // Grid, value ticks, unit.
    ctx.font = th.font;
    ctx.lineWidth = 1;
    ctx.strokeStyle = th.grid;
    ctx.fillStyle = th.text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.beginPath();
    for (let v = Math.ceil(lo / yStep) * yStep; v <= hi; v += yStep) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.fillText(formatTickValue(v, yStep), plot.x - 6, y);
    }
    ctx.stroke();
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(this.sensor.unit || '', 4, 1);

    // Time ticks.
    const span = x1 - x0;
    const minGapPx = 78;
    const tStep = TIME_STEPS.find((s) => (s / span) * plot.w >= minGapPx) || TIME_STEPS[TIME_STEPS.length - 1];
    const tz = new Date(x0).getTimezoneOffset() * 60_000;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    ctx.beginPath();
    for (let t = Math.ceil((x0 - tz) / tStep) * tStep + tz; t <= x1; t += tStep) {
      const x = Math.round(X(t)) + 0.5;
      ctx.moveTo(x, plot.y);
      ctx.lineTo(x, plot.y + plot.h);
      if (x > plot.x + 20 && x < plot.x + plot.w - 20) ctx.fillText(formatAxisLabel(t, tStep), x, plot.y + plot.h + 6);
    }
    ctx.stroke();
    ctx.strokeStyle = th.axis;
    ctx.beginPath();
    ctx.moveTo(plot.x, plot.y + plot.h + 0.5);
    ctx.lineTo(plot.x + plot.w, plot.y + plot.h + 0.5);
    ctx.stroke();

    // Data, clipped to the plot.
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y - 2, plot.w, plot.h + 4);
    ctx.clip();
    if (this.mode === 'live' && data) this.drawLine(ctx, data, X, Y);
    if (this.mode === 'history' && data) this.drawBand(ctx, data, X, Y);
    ctx.restore();

    const empty = !data;
    if (empty) {
      ctx.fillStyle = th.axis;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.font = '13px system-ui, sans-serif';
      const text = this.mode === 'live' ? 'Waiting for readings…' : this.message || (this.history ? 'No readings in this range' : 'Loading…');
      ctx.fillText(text, plot.x + plot.w / 2, plot.y + plot.h / 2);
    }
    this.showStats(data);
  }

  liveExtent(s, x0, x1) {
    // One point before the window, so the line enters from the left edge.
    const i0 = Math.max(0, lowerBound(s.t, x0) - 1);
    const i1 = lowerBound(s.t, x1 + 1);
    if (i1 - i0 <= 0) return null;
    let min = Infinity;
    let max = -Infinity;
    let count = 0;
    for (let i = i0; i < i1; i++) {
      if (s.t[i] < x0) continue;
      const v = s.v[i];
      if (v < min) min = v;
      if (v > max) max = v;
      count += 1;
    }
    if (count === 0) return null;
    return { i0, i1, min, max, last: s.v[i1 - 1], count, t: s.t, v: s.v };
  }

  historyExtent() {
    const b = this.history && this.history.buckets;
    if (!b || b.length === 0) return null;
    let min = Infinity;
    let max = -Infinity;
    for (const x of b) {
      if (x.min < min) min = x.min;
      if (x.max > max) max = x.max;
    }
    return { buckets: b, min, max, last: b[b.length - 1].mean, count: b.length, step: this.history.step_ms };
  }

  /** The live line: every point when they fit, else per pixel column its first, min, max and
   * last value (the shape survives, the work stays proportional to the width). */
  drawLine(ctx, d, X, Y) {
    const { t, v, i0, i1 } = d;
    const gap = Math.max(1500, GAP_FACTOR * typicalInterval(t, i0, i1));
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    const dense = i1 - i0 > 2 * this.size.w;
    let col = null;
    let cMin = 0;
    let cMax = 0;
    let cLast = 0;
    let prevT = -Infinity;
    let lone = [];
    let runLength = 0;
    const flush = () => {
      if (col === null) return;
      ctx.lineTo(col, Y(cMin));
      ctx.lineTo(col, Y(cMax));
      ctx.lineTo(col, Y(cLast));
    };
    for (let i = i0; i < i1; i++) {
      const x = X(t[i]);
      const y = Y(v[i]);
      const broken = t[i] - prevT > gap;
      if (broken) {
        flush();
        col = null;
        if (runLength === 1) lone.push([X(prevT), Y(v[i - 1])]);
        ctx.moveTo(x, y);
        runLength = 0;
      }
      runLength += 1;
      if (!dense) {
        if (!broken) ctx.lineTo(x, y);
      } else {
        const c = Math.round(x);
        if (c !== col) {
          flush();
          col = c;
          cMin = cMax = cLast = v[i];
          ctx.lineTo(c, y);
        } else {
          if (v[i] < cMin) cMin = v[i];
          if (v[i] > cMax) cMax = v[i];
          cLast = v[i];
        }
      }
      prevT = t[i];
    }
    flush();
    ctx.stroke();
    if (runLength === 1) lone.push([X(prevT), Y(v[i1 - 1])]);
    // A point with no neighbour would be invisible as a line: draw it as a dot.
    ctx.fillStyle = this.color;
    for (const [x, y] of lone) {
      ctx.beginPath();
      ctx.arc(x, y, 2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  /** History: a band from each bucket's min to its max, and the mean as a line. */
  drawBand(ctx, d, X, Y) {
    const b = d.buckets;
    const gap = Math.max(1.5 * d.step, GAP_FACTOR * typicalInterval(b.map((x) => x.t_ms), 0, b.length));
    const runs = [];
    let run = [];
    for (let i = 0; i < b.length; i++) {
      if (i > 0 && b[i].t_ms - b[i - 1].t_ms > gap) {
        runs.push(run);
        run = [];
      }
      run.push(b[i]);
    }
    runs.push(run);
    const half = d.step / 2;
    ctx.fillStyle = this.color;
    ctx.globalAlpha = 0.18;
    for (const r of runs) {
      ctx.beginPath();
      r.forEach((x, i) => (i ? ctx.lineTo(X(x.t_ms + half), Y(x.max)) : ctx.moveTo(X(x.t_ms + half), Y(x.max))));
      for (let i = r.length - 1; i >= 0; i--) ctx.lineTo(X(r[i].t_ms + half), Y(r[i].min));
      ctx.closePath();
      if (r.length === 1) {
        const x = X(r[0].t_ms + half);
        ctx.fillRect(x - 1.5, Y(r[0].max), 3, Math.max(1, Y(r[0].min) - Y(r[0].max)));
      } else {
        ctx.fill();
      }
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    for (const r of runs) {
      ctx.beginPath();
      r.forEach((x, i) => (i ? ctx.lineTo(X(x.t_ms + half), Y(x.mean)) : ctx.moveTo(X(x.t_ms + half), Y(x.mean))));
      ctx.stroke();
      if (r.length === 1) {
        ctx.beginPath();
        ctx.arc(X(r[0].t_ms + half), Y(r[0].mean), 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  showStats(data) {
    const set = (key, elem, text) => {
      if (this.shown[key] !== text) {
        this.shown[key] = text;
        elem.textContent = text;
      }
    };
    set('last', this.lastEl, data ? fmt(data.last) : '—');
    set('min', this.minEl, data ? fmt(data.min) : '—');
    set('max', this.maxEl, data ? fmt(data.max) : '—');
    let info = '';
    if (this.mode === 'history' && this.history) {
      info = `${this.history.buckets.length} buckets · ${this.history.resolution} · step ${fmtDuration(this.history.step_ms)}`;
    } else if (this.mode === 'live' && data) {
      info = `${data.count} points`;
    }
    set('info', this.infoEl, info);
    // For people who script the page (and for the browser tests): what is drawn.
    this.root.dataset.points = String(data ? data.count : 0);
    this.root.dataset.last = data ? String(data.last) : '';
  }
}

