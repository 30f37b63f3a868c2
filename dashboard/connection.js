// The live socket (`/ws/live`): its state, shown exactly as the browser reports it
// (readyState: CONNECTING, OPEN, CLOSING, CLOSED); reconnection with exponential backoff and
// jitter; and the subscription, kept equal to what the page shows.

import { sessionValid, toLogin } from './api.js';

export const STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];

/** Reconnect delays: the ceiling doubles from `initialMs` up to `maxMs`; each delay is drawn
 * between half the ceiling and the ceiling ("equal jitter"), so a hub that restarts is not hit
 * by every dashboard at the same instant, and no retry comes sooner than half the ceiling. */
export const BACKOFF = { initialMs: 500, maxMs: 10_000 };

/** A connection that lived this long counts as healthy: the next failure starts the backoff
 * from the beginning again. Shorter ones (accepted, then closed at once) keep growing it. */
const HEALTHY_MS = 10_000;

/** How often the shown state is compared with readyState: the browser moves to CLOSING on
 * the hub's close frame without firing an event. */
const STATE_POLL_MS = 250;

export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** attempt);
  return ceiling / 2 + (random() * ceiling) / 2;
}

export class LiveConnection {
  /**
   * @param {string} url ws:// or wss:// URL of /ws/live
   * @param {object} handlers onMessage(event), onState(state, detail), onOpen(isReconnect)
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.state = 'CLOSED';
    this.attempt = 0;
    this.retryAt = null;
    this.retryTimer = null;
    this.openedAt = null;
    this.everOpened = false;
    this.lastClose = null;
    /** device name -> sensors (null: all) wanted; what the page shows. */
    this.wanted = new Map();
    /** What the hub was told on this socket. */
    this.told = new Map();
    /** The hub's last answer to a subscription message: the subscription in force. */
    this.confirmed = null;
    setInterval(() => this.syncState(), STATE_POLL_MS);
    window.addEventListener('online', () => this.reconnectNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    });
  }

  start() {
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.told = new Map();
    this.confirmed = null;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.openedAt = Date.now();
      const reconnect = this.everOpened;
      this.everOpened = true;
      this.sendSubscriptions(true);
      this.syncState();
      this.handlers.onOpen?.(reconnect);
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws || typeof e.data !== 'string') return;
      let event;
      try {
        event = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (event.type === 'subscription') this.confirmed = event;
      this.handlers.onMessage?.(event);
    };
    ws.onclose = (e) => {
      if (ws !== this.ws) return;
      // Refused before it opened: maybe the session ended (the upgrade got 401).
      if (this.openedAt === null) sessionValid().then((ok) => ok || toLogin());
      this.lastClose = { code: e.code, reason: e.reason };
      if (this.openedAt !== null && Date.now() - this.openedAt >= HEALTHY_MS) this.attempt = 0;
      this.openedAt = null;
      this.handlers.onClose?.();
      this.scheduleRetry();
    };
    this.syncState();
  }

  scheduleRetry() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.syncState();
  }

  /** Skip the wait (a click on the state, the network coming back, the tab shown again). */
  reconnectNow() {
    if (this.ws && this.ws.readyState !== WebSocket.CLOSED) return;
    this.connect();
  }

  /** Mirror readyState; report it (and the retry countdown) when anything changed. */
  syncState() {
    const state = this.ws ? STATES[this.ws.readyState] : 'CLOSED';
    let detail = '';
    if (state === 'CLOSED' && this.retryAt !== null) {
      detail = `retry in ${Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000))} s`;
    }
    if (state !== this.state || detail !== this.detail) {
      this.state = state;
      this.detail = detail;
      this.handlers.onState?.(state, detail, this.lastClose);
    }
  }

  /** Ask for exactly these devices (name -> sensor list or null for all of them). */
  setWanted(wanted) {
    this.wanted = new Map(wanted);
    this.sendSubscriptions(false);
  }

  sendSubscriptions(fresh) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const send = (msg) => ws.send(JSON.stringify(msg));
    // A new socket starts subscribed to everything: narrow it to nothing, then add.
    if (fresh) send({ type: 'unsubscribe', device: '*' });
    for (const [device] of this.told) {
      if (!this.wanted.has(device)) {
        send({ type: 'unsubscribe', device });
        this.told.delete(device);
      }
    }
    for (const [device, sensors] of this.wanted) {
      const key = sensors === null ? '*' : sensors.join(',');
      if (this.told.get(device) === key) continue;
      const msg = { type: 'subscribe', device };
      if (sensors !== null) msg.sensors = sensors;
      send(msg);
      this.told.set(device, key);
    }
  }
}
