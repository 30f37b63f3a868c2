// The dashboard's entry point: state, wiring, and the one animation-frame loop.
//
//   GET /api/devices (every 2 s) ─> DeviceList ─ selection ─> chart cards per sensor
//   /ws/live (LiveConnection) ─> readings ─> Series ─ dirty ─> requestAnimationFrame ─> canvas
//                             └> device events ─> DeviceList
//   history range ─> GET /api/.../history ─> cards (min/max band, mean line)
//   (re)open / lagged ─> refill live series from history, so charts show no hole
//
// What is shown lives in the URL hash (#devices=a,b&range=1h&window=300000), so a view can be
// bookmarked and shared.

import * as api from './api.js';
import { ChartCard, Series } from './chart.js';
import { LiveConnection } from './connection.js';
import { DeviceList } from './devices.js';
import { formatDateTime, formatDuration, fromLocalInput, toLocalInput } from './format.js';
import { DEFAULT_WINDOW_MS, RANGES, WINDOWS, csvLink, loadChart, rangeBounds, refill } from './history.js';

/** The device list is refreshed this often (rates, completeness, devices not subscribed to). */
const DEVICE_POLL_MS = 2000;

const $ = (id) => document.getElementById(id);

const state = {
  selected: [],
  range: 'live',
  windowMs: DEFAULT_WINDOW_MS,
  custom: null,
  devicesLoaded: false,
};

/** "device\u0000sensor" -> Series (live readings of a shown sensor). */
const series = new Map();
/** Same keys -> ChartCard. */
const cards = new Map();
/** Device name -> its <section> in #charts. */
const sections = new Map();
/** Sensors seen in live readings but not (yet) in the device's list. */
const extraSensors = new Map();

const key = (device, sensor) => `${device}\u0000${sensor}`;

// ---------- URL hash ----------

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const devices = q.get('devices');
  if (devices) state.selected = devices.split(',').filter(Boolean);
  const range = q.get('range');
  if (range && range in RANGES) state.range = range;
  const win = Number(q.get('window'));
  if (win > 0) state.windowMs = win;
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  if (from > 0 && to > from) state.custom = { from, to };
  if (state.range === 'custom' && !state.custom) state.range = 'live';
}

function writeHash() {
  const q = new URLSearchParams();
  if (state.selected.length) q.set('devices', state.selected.join(','));
  if (state.range !== 'live') q.set('range', state.range);
  if (state.windowMs !== DEFAULT_WINDOW_MS) q.set('window', String(state.windowMs));
  if (state.range === 'custom' && state.custom) {
    q.set('from', String(Math.round(state.custom.from)));
    q.set('to', String(Math.round(state.custom.to)));
  }
  const hash = q.toString().replaceAll('%2C', ',');
  history.replaceState(null, '', hash ? `#${hash}` : location.pathname + location.search);
}

// ---------- Notices ----------

let noticeTimer = null;
function notice(text, sticky = false) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = !text;
  clearTimeout(noticeTimer);
  if (text && !sticky) noticeTimer = setTimeout(() => (n.hidden = true), 6000);
}

// ---------- Devices ----------

const deviceList = new DeviceList($('devices'), select);

function select(name, additive) {
  let next;
  if (additive) {
    next = state.selected.includes(name) ? state.selected.filter((n) => n !== name) : [...state.selected, name];
  } else {
    next = [name];
  }
  state.selected = next;
  writeHash();
  render();
}

async function pollDevices() {
  try {
    const devices = await api.devices();
    deviceList.update(devices, Date.now());
    $('summary').textContent = summary(devices);
    $('devices').classList.remove('stale');
    const first = !state.devicesLoaded;
    state.devicesLoaded = true;
    if (first && state.selected.length === 0 && devices.length) {
      const online = devices.find((d) => d.online) || devices[0];
      state.selected = [online.name];
      writeHash();
    }
    render();
  } catch (e) {
    $('devices').classList.add('stale');
    $('summary').textContent = e.status === 0 ? 'hub unreachable' : `device list: ${e.message}`;
  } finally {
    setTimeout(pollDevices, DEVICE_POLL_MS);
  }
}

function summary(devices) {
  const online = devices.filter((d) => d.online).length;
  return `${online} of ${devices.length} device${devices.length === 1 ? '' : 's'} online`;
}

// ---------- Charts ----------

function sensorsOf(name) {
  const d = deviceList.device(name);
  const list = d ? [...(d.sensors || [])] : [];
  for (const id of extraSensors.get(name) || []) {
    if (!list.some((s) => s.id === id)) list.push({ id, kind: 'other', unit: '' });
  }
  return list.sort((a, b) => a.id - b.id);
}

/** Make the cards match the selection (keeping existing ones), then the subscription. */
function render() {
  deviceList.setSelected(state.selected);
  const shown = state.selected.filter((n) => deviceList.device(n));
  const wantedKeys = new Set();
  const charts = $('charts');
  for (const name of shown) {
    let section = sections.get(name);
    if (!section) {
      section = createSection(name);
      sections.set(name, section);
    }
    charts.append(section.root); // moves it into selection order
    const sensors = sensorsOf(name);
    section.empty.hidden = sensors.length > 0;
    for (const sensor of sensors) {
      const k = key(name, sensor.id);
      wantedKeys.add(k);
      if (!cards.has(k)) addCard(section, name, sensor);
    }
    updateSectionHead(section, name);
  }
  for (const [k, card] of cards) {
    if (!wantedKeys.has(k)) {
      card.root.remove();
      observer.unobserve(card.canvas);
      cards.delete(k);
      series.delete(k);
    }
  }
  for (const [name, section] of sections) {
    if (!shown.includes(name)) {
      section.root.remove();
      sections.delete(name);
    }
  }
  $('empty').hidden = shown.length > 0 || !state.devicesLoaded;
  $('empty').textContent = deviceList.names().length ? 'Pick a device on the left to see its sensors.' : 'No devices yet. Register one with `hub device add NAME`.';
  connection.setWanted(new Map(shown.map((n) => [n, null])));
  updateCsvLinks();
}

function createSection(name) {
  const root = document.createElement('section');
  root.className = 'device-section';
  root.dataset.device = name;
  const head = document.createElement('header');
  head.className = 'section-head';
  const dot = document.createElement('span');
  dot.className = 'status-dot';
  const title = document.createElement('h2');
  title.textContent = name;
  const meta = document.createElement('span');
  meta.className = 'section-meta';
  const csv = document.createElement('a');
  csv.className = 'button csv';
  csv.textContent = 'Download CSV';
  csv.setAttribute('download', '');
  csv.addEventListener('click', () => {
    // Live ranges end now: make the link exact at the moment it is followed.
    const link = currentCsv(name);
    if (link) csv.href = link;
  });
  head.append(dot, title, meta, csv);
  const grid = document.createElement('div');
  grid.className = 'chart-grid';
  const empty = document.createElement('p');
  empty.className = 'section-empty';
  empty.textContent = 'This device has not said Hello yet, so its sensors are not known.';
  root.append(head, empty, grid);
  return { root, dot, meta, csv, grid, empty };
}

function updateSectionHead(section, name) {
  const d = deviceList.device(name);
  const online = deviceList.isOnline(name);
  section.root.classList.toggle('online', online);
  section.meta.textContent = online ? 'online' : 'offline';
  if (d && d.firmware) section.meta.textContent += ` · fw ${d.firmware}`;
}

function currentBounds() {
  return rangeBounds(state.range, Date.now(), state.windowMs, state.custom);
}

function currentCsv(name) {
  const { from, to } = currentBounds();
  return csvLink(name, from, to);
}

function updateCsvLinks() {
  for (const [name, section] of sections) {
    const link = currentCsv(name);
    if (link) {
      section.csv.href = link;
      section.csv.classList.remove('disabled');
      section.csv.title = 'Readings of every sensor of this device in the shown range';
    } else {
      section.csv.removeAttribute('href');
      section.csv.classList.add('disabled');
      section.csv.title = 'A CSV download covers at most 31 days; use `hub export` for more';
    }
  }
}

function addCard(section, name, sensor) {
  const k = key(name, sensor.id);
  const card = new ChartCard({ device: name, sensor });
  const s = new Series();
  series.set(k, s);
  cards.set(k, card);
  section.grid.append(card.root);
  card.resize();
  observer.observe(card.canvas);
  resizer.observe(card.canvas);
  if (state.range === 'live') {
    card.showLive(s, state.windowMs);
  } else {
    loadHistory(card);
  }
  // The past of the window, from the store: a new card is full at once.
  refillSeries(name, sensor.id, Date.now() - state.windowMs, Date.now());
  requestFrame();
  return card;
}

async function refillSeries(device, sensor, from, to) {
  const s = series.get(key(device, sensor));
  if (!s) return;
  try {
    await refill(s, device, sensor, from, to);
    const card = cards.get(key(device, sensor));
    if (card) card.dirty = true;
    requestFrame();
  } catch (e) {
    notice(`Could not load history of ${device}: ${e.message}`);
  }
}

/** Fill every shown series from history from `since(series)` to now. */
function refillAll(since) {
  const now = Date.now();
  for (const [k, s] of series) {
    const [device, sensor] = k.split('\u0000');
    const from = Math.max(now - state.windowMs, since(s) ?? -Infinity);
    refillSeries(device, Number(sensor), from, now);
  }
}

/** History view: every card loads the picked range. */
let historyGeneration = 0;
function showRange() {
  writeHash();
  for (const b of document.querySelectorAll('#ranges button')) b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
  $('custom').hidden = state.range !== 'custom';
  $('window-label').hidden = state.range !== 'live';
  const { from, to } = currentBounds();
  $('range-info').textContent = state.range === 'live' ? `last ${formatDuration(state.windowMs)}, live` : `${formatDateTime(from)} – ${formatDateTime(to)}`;
  historyGeneration += 1;
  for (const [k, card] of cards) {
    if (state.range === 'live') card.showLive(series.get(k), state.windowMs);
    else loadHistory(card);
  }
  updateCsvLinks();
  requestFrame();
}

async function loadHistory(card) {
  const generation = historyGeneration;
  const { from, to } = currentBounds();
  card.showHistory(from, to, null);
  requestFrame();
  try {
    const answer = await loadChart(card, from, to);
    if (generation !== historyGeneration || !cards.has(key(card.device, card.sensor.id))) return;
    card.showHistory(from, to, answer);
  } catch (e) {
    if (generation !== historyGeneration) return;
    card.showHistory(from, to, { buckets: [], resolution: '', step_ms: 1 }, `Could not load: ${e.message}`);
  }
  requestFrame();
}

// ---------- Drawing: once per animation frame ----------

let frameRequested = false;
function requestFrame() {
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(frame);
  }
}

function frame() {
  frameRequested = false;
  const now = Date.now();
  for (const card of cards.values()) card.maybeDraw(now);
  // Live charts scroll with time: keep the loop going while any is on screen.
  if (state.range === 'live' && cards.size) requestFrame();
}

/** Off-screen cards are not drawn; they catch up when scrolled into view. */
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const card = cardOfCanvas(e.target);
    if (card) {
      card.visible = e.isIntersecting;
      if (card.visible) card.dirty = true;
    }
  }
  requestFrame();
});

const resizer = new ResizeObserver((entries) => {
  for (const e of entries) cardOfCanvas(e.target)?.resize();
  requestFrame();
});

function cardOfCanvas(canvas) {
  for (const card of cards.values()) if (card.canvas === canvas) return card;
  return null;
}

// ---------- Live socket ----------

const connection = new LiveConnection(api.liveUrl(), {
  onMessage,
  onState(readyState, detail, lastClose) {
    const c = $('connection');
    c.dataset.state = readyState;
    c.querySelector('.conn-state').textContent = readyState;
    c.querySelector('.conn-detail').textContent = detail;
    c.title = readyState === 'CLOSED' && lastClose ? `Live socket closed (code ${lastClose.code}${lastClose.reason ? `: ${lastClose.reason}` : ''}). Click to reconnect now.` : `Live socket ${readyState.toLowerCase()}`;
  },
  onOpen(reconnect) {
    // Whatever happened while the socket was down is in the store: fetch it.
    if (reconnect) {
      refillAll((s) => disconnectedAt.get(s) ?? null);
      notice('');
    }
    disconnectedAt = new WeakMap();
  },
  onClose() {
    for (const s of series.values()) if (!disconnectedAt.has(s)) disconnectedAt.set(s, s.lastTs() ?? Date.now());
  },
});

/** Series -> the time of its last point when the socket went down. */
let disconnectedAt = new WeakMap();

function onMessage(event) {
  switch (event.type) {
    case 'readings': {
      const k = key(event.device, event.sensor);
      const s = series.get(k);
      const points = event.points;
      if (points.length) deviceList.seen(event.device, Date.now());
      if (!s) {
        // A sensor the device did not declare when the list was loaded: make room for it.
        if (state.selected.includes(event.device) && deviceList.device(event.device)) {
          const extra = extraSensors.get(event.device) || new Set();
          if (!extra.has(event.sensor) && !sensorsOf(event.device).some((x) => x.id === event.sensor)) {
            extra.add(event.sensor);
            extraSensors.set(event.device, extra);
            render();
          }
        }
        return;
      }
      s.add(points);
      s.trimBefore(Date.now() - Math.max(state.windowMs, ...WINDOWS) - 60_000);
      const card = cards.get(k);
      if (card && card.mode === 'live') {
        card.dirty = true;
        requestFrame();
      }
      break;
    }
    case 'device': {
      deviceList.status(event.device, event.online, event.firmware, event.ts_ms);
      const section = sections.get(event.device);
      if (section) updateSectionHead(section, event.device);
      break;
    }
    case 'lagged':
      // The hub skipped events for this page (it was too slow): take them from the store.
      notice(`Missed ${event.missed} live updates; reloaded them from history.`);
      refillAll(() => null);
      break;
    case 'error':
      notice(`Live socket: ${event.message}`);
      break;
    default:
      break; // 'subscription' answers, and event types of newer hubs
  }
}

// ---------- Toolbar ----------

function setupToolbar() {
  const ranges = $('ranges');
  for (const [id, r] of Object.entries(RANGES)) {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.range = id;
    b.textContent = r.label;
    b.addEventListener('click', () => {
      if (id === 'custom') {
        const { from, to } = state.custom || { from: Date.now() - 6 * 3_600_000, to: Date.now() };
        $('from').value = toLocalInput(from);
        $('to').value = toLocalInput(to);
        $('custom').hidden = false;
        for (const x of ranges.children) x.setAttribute('aria-pressed', String(x === b));
        $('from').focus();
        return;
      }
      state.range = id;
      showRange();
    });
    ranges.append(b);
  }
  const win = $('window');
  for (const ms of WINDOWS) {
    const o = document.createElement('option');
    o.value = String(ms);
    o.textContent = formatDuration(ms);
    win.append(o);
  }
  if (!WINDOWS.includes(state.windowMs)) state.windowMs = DEFAULT_WINDOW_MS;
  win.value = String(state.windowMs);
  win.addEventListener('change', () => {
    const wider = Number(win.value) > state.windowMs;
    state.windowMs = Number(win.value);
    showRange();
    if (wider) refillAll((s) => null);
  });
  $('custom').addEventListener('submit', (e) => {
    e.preventDefault();
    const from = fromLocalInput($('from').value);
    const to = fromLocalInput($('to').value);
    if (from === null || to === null || !(to > from)) {
      notice('Pick a start before the end.');
      return;
    }
    state.custom = { from, to };
    state.range = 'custom';
    showRange();
  });
  $('filter').addEventListener('input', (e) => deviceList.setFilter(e.target.value));
  $('connection').addEventListener('click', () => connection.reconnectNow());
}

// ---------- Start ----------

readHash();
setupToolbar();
showRange();
connection.start();
pollDevices();
setInterval(() => {
  deviceList.tick(Date.now());
  connection.syncState();
  if (state.range === 'live') updateCsvLinks();
}, 1000);

/** For people scripting the page and for the browser tests: a read-only look inside. */
window.telemetry = Object.freeze({
  state: () => ({ ...state, selected: [...state.selected], connection: connection.state, subscription: connection.confirmed }),
  series: (device, sensor) => {
    const s = series.get(key(device, sensor));
    return s ? s.t.map((t, i) => [t, s.v[i]]) : null;
  },
});
