//! Queries, on a few read-only connections. WAL readers see the last commit and never wait
//! for the writer; each query runs in one read transaction, so it sees one consistent state
//! (the roll-up watermarks and the rows they describe).
//!
//! Finding a device's batches by reading time: a batch row is indexed by the second it
//! arrived in, and every batch that is not late holds readings from at most `LATE_BATCH_MS`
//! before its arrival to at most `MAX_FUTURE_SKEW_MS` after it. So readings in `[from, to)`
//! are in the receive buckets `[from - MAX_FUTURE_SKEW_MS, to + LATE_BATCH_MS]`, plus late
//! batches, found through `late_batches` by device and first reading time.
//!
//! Every query has a limit named here; beyond it the answer is [`StoreError::QueryTooLarge`].

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use shared::limits::{MAX_BATCH_SPAN_MS, MAX_FUTURE_SKEW_MS};
use shared::payload::Point;

use super::rollup::{Agg, HOUR_MS, MINUTE_MS, floor_to};
use super::{BATCH_BUCKET_MS, DeviceId, LATE_BATCH_MS, Store, StoreError, TimeSource, schema};

/// Buckets one history answer may hold at most.
pub const MAX_HISTORY_POINTS: usize = 10_000;
/// Longest history range: two years of hour roll-ups (17,520 rows per series).
pub const MAX_HISTORY_RANGE_MS: i64 = 2 * 366 * 24 * HOUR_MS;
/// History reads raw readings only for ranges up to an hour (3,600 batch rows of a device
/// that sends one batch per second)...
pub const RAW_HISTORY_MAX_RANGE_MS: i64 = HOUR_MS;
/// ...minute roll-ups for ranges up to a week (10,080 rows per series), hour roll-ups beyond.
pub const MINUTE_HISTORY_MAX_RANGE_MS: i64 = 7 * 24 * HOUR_MS;
/// Longest range of a raw-points query.
pub const MAX_RAW_RANGE_MS: i64 = HOUR_MS;
/// Most points one raw-points query returns.
pub const MAX_RAW_POINTS: usize = 100_000;

/// Which rows a history answer was computed from (its tail, newer than the roll-ups, always
/// comes from raw readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

/// One bucket of a history answer: readings with `t_ms <= ts < t_ms + step_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub t_ms: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// A history answer: buckets of `step_ms`, oldest first, empty buckets left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub resolution: Resolution,
    pub step_ms: i64,
    pub buckets: Vec<Bucket>,
}

/// One stored reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RawPoint {
    pub sensor: u8,
    pub ts_ms: i64,
    pub value: f32,
    pub time_source: TimeSource,
}

/// What the store knows about a device's data: the completeness figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStats {
    pub device_id: DeviceId,
    pub stored_readings: u64,
    pub stored_batches: u64,
    /// Readings the device reports it dropped (outbox full), summed over its boots.
    pub dropped_readings: u64,
    /// Batches never stored: gaps in the sequence numbers (dropped by the device, rejected).
    pub lost_batches: u64,
    /// Earliest and latest reading time stored.
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
    pub last_received_ms: Option<i64>,
    pub boot_id: Option<u32>,
    pub last_seq: u32,
}

impl DeviceStats {
    /// stored / (stored + missing), where missing readings are the device's own count of
    /// dropped readings or, if larger, the lost batches times the mean batch size (a batch the
    /// device dropped shows up in both, so they are not added).
    pub fn completeness(&self) -> f64 {
        if self.stored_readings == 0 {
            return if self.dropped_readings == 0 && self.lost_batches == 0 {
                1.0
            } else {
                0.0
            };
        }
        let per_batch = self.stored_readings as f64 / self.stored_batches.max(1) as f64;
        let missing = (self.dropped_readings as f64).max(self.lost_batches as f64 * per_batch);
        self.stored_readings as f64 / (self.stored_readings as f64 + missing)
    }
}

/// A few read-only connections, opened on first use, at most `max` at a time.
pub struct Readers {
    path: PathBuf,
    max: usize,
    busy_timeout: Duration,
    slots: Mutex<(Vec<Connection>, usize)>,
    freed: Condvar,
}

impl Readers {
    pub fn new(path: PathBuf, max: usize, busy_timeout: Duration) -> Readers {
        Readers {
            path,
            max,
            busy_timeout,
            slots: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
        }
    }

    /// Run `f` on a reader, waiting for one if all `max` are busy.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(conn) = slots.0.pop() {
                    break conn;
                }
                if slots.1 < self.max {
                    slots.1 += 1;
                    drop(slots);
                    match schema::open_reader(&self.path, self.busy_timeout) {
                        Ok(conn) => break conn,
                        Err(e) => {
                            self.slots.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                            self.freed.notify_one();
                            return Err(e);
                        }
                    }
                }
                slots = self.freed.wait(slots).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = f(&mut conn);
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .push(conn);
        self.freed.notify_one();
        result
    }
}

fn watermarks(tx: &Transaction<'_>) -> rusqlite::Result<(i64, i64)> {
    tx.query_row(
        "SELECT minute_watermark_ms, hour_watermark_ms FROM rollup_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Call `f` with every batch of `device` that may hold readings in `[from, to)`, each once.
pub fn device_batches(
    tx: &Transaction<'_>,
    device: DeviceId,
    from: i64,
    to: i64,
    mut f: impl FnMut(TimeSource, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    // On-time batches: walk the receive buckets that exist in range (a skip scan: empty
    // stretches cost one seek) and seek this device in each.
    let last = (to + LATE_BATCH_MS).div_euclid(BATCH_BUCKET_MS);
    let mut bucket = (from - MAX_FUTURE_SKEW_MS as i64).div_euclid(BATCH_BUCKET_MS);
    let mut next = tx.prepare_cached(
        "SELECT bucket FROM batches WHERE bucket >= ?1 AND bucket <= ?2 ORDER BY bucket LIMIT 1",
    )?;
    let mut in_bucket = tx.prepare_cached(
        "SELECT time_source, payload FROM batches WHERE bucket = ?1 AND device_id = ?2 AND late = 0 AND t_first_ms < ?3 AND t_last_ms >= ?4",
    )?;
    while let Some(found) = next
        .query_row(params![bucket, last], |r| r.get::<_, i64>(0))
        .optional()?
    {
        let mut rows = in_bucket.query(params![found, device, to, from])?;
        while let Some(row) = rows.next()? {
            f(time_source(row.get(0)?), row.get_ref(1)?.as_blob()?)?;
        }
        bucket = found + 1;
    }
    // Late batches: by device and first reading time.
    let mut late = tx.prepare_cached(
        "SELECT b.time_source, b.payload FROM late_batches l JOIN batches b ON b.id = l.batch_id \
         WHERE l.device_id = ?1 AND l.t_first_ms >= ?2 AND l.t_first_ms < ?3 AND l.t_last_ms >= ?4",
    )?;
    let mut rows = late.query(params![
        device,
        from - i64::from(MAX_BATCH_SPAN_MS),
        to,
        from
    ])?;
    while let Some(row) = rows.next()? {
        f(time_source(row.get(0)?), row.get_ref(1)?.as_blob()?)?;
    }
    Ok(())
}

/// Unknown codes (a newer hub's) read as `Arrival`, the least trusted.
pub fn time_source(code: i64) -> TimeSource {
    TimeSource::from_code(code).unwrap_or(TimeSource::Arrival)
}

fn decode(payload: &[u8], out: &mut Vec<Point>) -> Result<(), StoreError> {
    out.clear();
    shared::payload::decode(payload, out)
        .map_err(|e| StoreError::Internal(format!("a stored payload does not decode: {e}")))
}

/// Sum readings into buckets of `step` starting at `start`.
struct Bucketing {
    start: i64,
    step: i64,
    aggs: Vec<Option<Agg>>,
}

impl Bucketing {
    fn add(&mut self, t: i64, agg: &Agg) {
        if t < self.start {
            return;
        }
        if let Some(slot) = self.aggs.get_mut(((t - self.start) / self.step) as usize) {
            match slot {
                Some(a) => a.merge(agg),
                None => *slot = Some(*agg),
            }
        }
    }

    fn buckets(self) -> Vec<Bucket> {
        let (start, step) = (self.start, self.step);
        self.aggs
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.map(|a| Bucket {
                    t_ms: start + i as i64 * step,
                    min: a.min,
                    max: a.max,
                    mean: a.mean(),
                    count: a.count,
                })
            })
            .collect()
    }
}

/// A roll-up table: its name, its time column, its bucket width.
#[derive(Clone, Copy)]
struct Level(&'static str, &'static str, i64);

const MINUTES: Level = Level("rollup_minute", "minute_ms", MINUTE_MS);
const HOURS: Level = Level("rollup_hour", "hour_ms", HOUR_MS);

/// Roll-up rows of one series with start times in `[from, to)` (both whole buckets):
/// one key seek per bucket.
fn rollup_rows(
    tx: &Transaction<'_>,
    Level(table, time, unit): Level,
    (device, sensor): (DeviceId, u8),
    from: i64,
    to: i64,
    out: &mut Bucketing,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let sql = format!(
        "WITH RECURSIVE t(at) AS (SELECT ?1 UNION ALL SELECT at + ?3 FROM t WHERE at + ?3 < ?2) \
         SELECT r.{time}, r.min_value, r.max_value, r.sum_value, r.count FROM t CROSS JOIN {table} r \
         ON r.{time} = t.at AND r.device_id = ?4 AND r.sensor = ?5"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![from, to, unit, device, sensor])?;
    while let Some(row) = rows.next()? {
        let agg = Agg {
            min: row.get(1)?,
            max: row.get(2)?,
            sum: row.get(3)?,
            count: row.get::<_, i64>(4)? as u64,
        };
        out.add(row.get(0)?, &agg);
    }
    Ok(())
}

fn raw_into(
    tx: &Transaction<'_>,
    device: DeviceId,
    sensor: u8,
    from: i64,
    to: i64,
    out: &mut Bucketing,
) -> Result<(), StoreError> {
    let mut points = Vec::new();
    device_batches(tx, device, from, to, |_, payload| {
        decode(payload, &mut points)?;
        for p in points
            .iter()
            .filter(|p| p.sensor == sensor && p.ts_ms >= from && p.ts_ms < to)
        {
            out.add(p.ts_ms, &Agg::of(f64::from(p.value)));
        }
        Ok(())
    })
}

/// The history of one series in `[from, to)`, in at most `max_points` buckets. See
/// [`Store::history`].
pub fn history(
    tx: &Transaction<'_>,
    device: DeviceId,
    sensor: u8,
    from: i64,
    to: i64,
    max_points: usize,
) -> Result<History, StoreError> {
    let range = to.saturating_sub(from);
    if range > MAX_HISTORY_RANGE_MS {
        return Err(StoreError::QueryTooLarge {
            what: "history range (ms)",
            requested: range,
            max: MAX_HISTORY_RANGE_MS,
        });
    }
    let max_points = max_points.clamp(1, MAX_HISTORY_POINTS) as i64;
    if range <= 0 {
        return Ok(History {
            resolution: Resolution::Raw,
            step_ms: 1,
            buckets: Vec::new(),
        });
    }
    let wanted_step = (range + max_points - 1) / max_points;
    let (resolution, unit) = if range <= RAW_HISTORY_MAX_RANGE_MS && wanted_step < MINUTE_MS {
        (Resolution::Raw, 1)
    } else if range <= MINUTE_HISTORY_MAX_RANGE_MS && wanted_step < HOUR_MS {
        (Resolution::Minute, MINUTE_MS)
    } else {
        (Resolution::Hour, HOUR_MS)
    };
    // Roll-up buckets start on whole minutes or hours: so do the answer's.
    let start = floor_to(from, unit);
    let step = {
        let s = (to - start + max_points - 1) / max_points;
        (s + unit - 1) / unit * unit
    };
    let count = ((to - start + step - 1) / step) as usize;
    let mut out = Bucketing {
        start,
        step,
        aggs: vec![None; count],
    };
    let (minute_mark, hour_mark) = watermarks(tx)?;
    // Each source covers what the coarser one did not: hour rows up to the hour watermark,
    // minute rows up to the minute watermark, raw readings after that.
    let mut covered = start;
    if resolution == Resolution::Hour {
        let end = ceil_to(to, HOUR_MS).min(hour_mark).max(covered);
        rollup_rows(tx, HOURS, (device, sensor), covered, end, &mut out)?;
        covered = end;
    }
    if resolution != Resolution::Raw {
        let end = ceil_to(to, MINUTE_MS).min(minute_mark).max(covered);
        rollup_rows(tx, MINUTES, (device, sensor), covered, end, &mut out)?;
        covered = end;
    }
    raw_into(tx, device, sensor, covered, to, &mut out)?;
    Ok(History {
        resolution,
        step_ms: step,
        buckets: out.buckets(),
    })
}

fn ceil_to(t: i64, unit: i64) -> i64 {
    floor_to(t + unit - 1, unit)
}

impl Store {
    /// The history of one sensor of one device over `[from_ms, to_ms)`, in at most
    /// `max_points` buckets (capped at [`MAX_HISTORY_POINTS`]). Raw readings for ranges up to
    /// [`RAW_HISTORY_MAX_RANGE_MS`] when the buckets come out under a minute, minute roll-ups
    /// up to [`MINUTE_HISTORY_MAX_RANGE_MS`], hour roll-ups beyond; the newest stretch that
    /// is not rolled up yet always comes from raw readings. Hour and minute answers start on a
    /// whole hour or minute at or before `from_ms`.
    pub async fn history(
        &self,
        device: DeviceId,
        sensor: u8,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<History, StoreError> {
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                history(
                    &conn.transaction()?,
                    device,
                    sensor,
                    from_ms,
                    to_ms,
                    max_points,
                )
            })
        })
        .await
    }

    /// Stored readings of a device (one sensor or all) in `[from_ms, to_ms)`, oldest first,
    /// at most `limit` (capped at [`MAX_RAW_POINTS`]); the range at most [`MAX_RAW_RANGE_MS`].
    pub async fn raw_points(
        &self,
        device: DeviceId,
        sensor: Option<u8>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<RawPoint>, StoreError> {
        let range = to_ms.saturating_sub(from_ms);
        if range > MAX_RAW_RANGE_MS {
            return Err(StoreError::QueryTooLarge {
                what: "raw range (ms)",
                requested: range,
                max: MAX_RAW_RANGE_MS,
            });
        }
        let limit = limit.min(MAX_RAW_POINTS);
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                let tx = conn.transaction()?;
                let (mut out, mut points) = (Vec::new(), Vec::new());
                device_batches(&tx, device, from_ms, to_ms, |source, payload| {
                    decode(payload, &mut points)?;
                    let wanted = points.iter().filter(|p| {
                        sensor.is_none_or(|s| s == p.sensor)
                            && p.ts_ms >= from_ms
                            && p.ts_ms < to_ms
                    });
                    out.extend(wanted.map(|p| RawPoint {
                        sensor: p.sensor,
                        ts_ms: p.ts_ms,
                        value: p.value,
                        time_source: source,
                    }));
                    // Arrival order is not time order: keep the earliest `limit` so far.
                    if out.len() > 2 * limit.max(1024) {
                        out.sort_by_key(|p| (p.ts_ms, p.sensor));
                        out.truncate(limit);
                    }
                    Ok(())
                })?;
                out.sort_by_key(|p| (p.ts_ms, p.sensor));
                out.truncate(limit);
                Ok(out)
            })
        })
        .await
    }

    /// Stored, dropped and lost counts of a device, its first and last reading time.
    pub async fn device_stats(&self, device: DeviceId) -> Result<Option<DeviceStats>, StoreError> {
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT stored_readings, stored_batches, dropped_before + boot_dropped, lost_batches, first_ts_ms, last_ts_ms, \
                         last_received_ms, boot_id, last_seq FROM cursors WHERE device_id = ?1",
                    )?
                    .query_row([device], |r| {
                        Ok(DeviceStats {
                            device_id: device,
                            stored_readings: r.get::<_, i64>(0)? as u64,
                            stored_batches: r.get::<_, i64>(1)? as u64,
                            dropped_readings: r.get::<_, i64>(2)? as u64,
                            lost_batches: r.get::<_, i64>(3)? as u64,
                            first_ts_ms: r.get(4)?,
                            last_ts_ms: r.get(5)?,
                            last_received_ms: r.get(6)?,
                            boot_id: r.get(7)?,
                            last_seq: r.get(8)?,
                        })
                    })
                    .optional()?)
            })
        })
        .await
    }
}
