// The hub's HTTP API (docs/api.md), as the dashboard uses it. Paths are relative to the page,
// so a hub served under a path prefix works unchanged; requests carry the page's cookies
// (same-origin): the session cookie. A 401 means the session ended: back to the login page.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'hub unreachable');
  }
  if (response.status === 401) toLogin();
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) {
      // Not JSON (a proxy's error page): keep the status text.
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

/** Go to the login page, coming back here (view included) afterwards. */
export function toLogin() {
  const here = location.pathname + location.search + location.hash;
  location.assign(`login?next=${encodeURIComponent(here)}`);
}

/** Whether the session still holds (a live socket refused at the upgrade looks like a network error). */
export async function sessionValid() {
  try {
    const response = await fetch('api/health', { cache: 'no-store' });
    return response.status !== 401;
  } catch (_) {
    return true;
  }
}

const device = (name) => `api/devices/${encodeURIComponent(name)}`;

/** Every device with its status and completeness. */
export const devices = () => getJson('api/devices');

/** Buckets (min, max, mean, count) of one sensor over [from, to), at most `points` of them. */
export function history(name, sensor, from, to, points) {
  const q = new URLSearchParams({ sensor, from: Math.floor(from), to: Math.ceil(to), points: Math.max(1, Math.round(points)) });
  return getJson(`${device(name)}/history?${q}`);
}

/** Where the CSV of a device's readings over [from, to) downloads from (all sensors when
 * `sensor` is null). */
export function csvUrl(name, from, to, sensor = null) {
  const q = new URLSearchParams({ from: Math.floor(from), to: Math.ceil(to) });
  if (sensor !== null) q.set('sensor', sensor);
  return `${device(name)}/readings.csv?${q}`;
}

/** The live socket's URL: same host, ws: or wss: as the page is http: or https:. */
export function liveUrl() {
  const url = new URL('ws/live', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** Longest CSV range the API serves (31 days); `hub export` has no limit. */
export const MAX_CSV_RANGE_MS = 31 * 24 * 3600 * 1000;
/** Most buckets the API returns in one history answer. */
export const MAX_HISTORY_POINTS = 5000;
