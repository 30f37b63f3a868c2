// History: the ranges a person can pick, loading them from the HTTP API (downsampled by the
// hub into min/max/mean buckets), CSV links for the same range, and refilling a live series
// from history where the live socket could not deliver (before the page opened, while it
// was reconnecting, after it lagged).

import * as api from './api.js';

/** The ranges on the toolbar; `live` follows the socket over a rolling window. */
export const RANGES = {
  live: { label: 'Live', ms: null },
  '15m': { label: '15 min', ms: 15 * 60_000 },
  '1h': { label: '1 h', ms: 3_600_000 },
  '24h': { label: '24 h', ms: 86_400_000 },
  '7d': { label: '7 d', ms: 7 * 86_400_000 },
  custom: { label: 'Custom', ms: null },
};

/** Rolling windows of the live view. */
export const WINDOWS = [60_000, 5 * 60_000, 15 * 60_000, 30 * 60_000, 3_600_000];
export const DEFAULT_WINDOW_MS = 5 * 60_000;

/** Buckets asked for when a chart shows a history range: about one per pixel, at most 1,000. */
export const MAX_CHART_BUCKETS = 1000;

/** Refilling a live series asks for buckets this narrow at least, so each holds about one
 * reading of a device sampling at 10 Hz or slower and the refilled line looks like the live one. */
const REFILL_BUCKET_MS = 50;

/** [from, to) of a range at `now`; `custom` is the picked one. */
export function rangeBounds(range, now, windowMs, custom) {
  if (range === 'live') return { from: now - windowMs, to: now };
  if (range === 'custom') return custom;
  return { from: now - RANGES[range].ms, to: now };
}

/** Load the history a chart shows: about one bucket per pixel. */
export async function loadChart(card, from, to) {
  const points = Math.min(MAX_CHART_BUCKETS, Math.round(card.plotWidth()));
  return api.history(card.device, card.sensor.id, from, to, points);
}

/**
 * Put history into `series` over [from, to): everything the hub has stored there replaces
 * what the series holds up to the last stored bucket; live points newer than that (not yet
 * committed by the hub) stay. Resolves to the number of buckets put in.
 */
export async function refill(series, device, sensor, from, to) {
  if (!(to > from)) return 0;
  const points = Math.min(api.MAX_HISTORY_POINTS, Math.ceil((to - from) / REFILL_BUCKET_MS));
  const answer = await api.history(device, sensor, from, to, points);
  const buckets = answer.buckets;
  if (!buckets.length) return 0;
  const last = buckets[buckets.length - 1].t_ms;
  series.replaceRange(from, last, buckets.map((b) => [b.t_ms, b.mean]));
  return buckets.length;
}

/** The CSV link of a device over a range (all its sensors); null if the range is longer than
 * the API serves. */
export function csvLink(device, from, to) {
  if (to - from > api.MAX_CSV_RANGE_MS) return null;
  return api.csvUrl(device, from, to);
}
