//! Per-minute and per-hour roll-ups (min, max, sum, count per device, sensor and bucket),
//! kept up to date at ingest without rewriting a page per series per commit.
//!
//! One watermark per level splits the work. A minute before `minute_watermark` is complete in
//! `rollup_minute`; a minute at or after it lives only in the writer's memory
//! ([`OpenRollups`]) and, as always, in the batch rows. Each commit:
//! - adds its batches' readings to the open minutes in memory;
//! - moves the watermark to `LATE_BATCH_MS` before the newest arrival (no batch that is not
//!   late can still add to a minute before it) and appends the minutes it passed to
//!   `rollup_minute`, once, in key order: time first, so they land at the end of the table;
//! - adds readings of late batches for minutes already written to their rows directly
//!   (`ON CONFLICT DO UPDATE`: rare, and each one touches one row);
//! - when the watermark crosses an hour, computes that hour's rows from its minute rows.
//!
//! The watermarks are written in the same transaction as the rows they describe. After a crash
//! the open minutes are rebuilt from the batch rows of readings at or after the minute
//! watermark ([`OpenRollups::load`]), so the tables never miss or double-count a reading.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params};
use shared::limits::MAX_FUTURE_SKEW_MS;
use shared::payload::Point;

use super::ingest::PreparedBatch;
use super::{BATCH_BUCKET_MS, DeviceId, LATE_BATCH_MS, StoreError};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// Aggregate of some readings of one series in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Agg {
    pub fn of(value: f64) -> Agg {
        Agg {
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// One batch's readings of one sensor in one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteAgg {
    pub minute_ms: i64,
    pub sensor: u8,
    pub agg: Agg,
}

/// (minute or hour start, device, sensor): the tables' key order.
type Key = (i64, DeviceId, u8);

pub fn floor_to(t: i64, unit: i64) -> i64 {
    t.div_euclid(unit) * unit
}

/// Aggregate a batch's readings per (minute, sensor).
pub fn minute_aggregates(points: &[Point]) -> Vec<MinuteAgg> {
    let mut map: BTreeMap<(i64, u8), Agg> = BTreeMap::new();
    for p in points {
        let a = Agg::of(f64::from(p.value));
        map.entry((floor_to(p.ts_ms, MINUTE_MS), p.sensor))
            .and_modify(|e| e.merge(&a))
            .or_insert(a);
    }
    map.into_iter()
        .map(|((minute_ms, sensor), agg)| MinuteAgg {
            minute_ms,
            sensor,
            agg,
        })
        .collect()
}

/// The roll-up state the writer keeps between commits.
#[derive(Debug, Default)]
pub struct OpenRollups {
    open: BTreeMap<Key, Agg>,
    minute_watermark: i64,
    hour_watermark: i64,
    max_received_ms: i64,
}

/// What one commit writes to the roll-up tables, and the state once it has committed.
#[derive(Debug, Default)]
pub struct RollupPlan {
    minute_watermark: i64,
    hour_watermark: i64,
    max_received_ms: i64,
    /// Added to `rollup_minute` (closing minutes, and late readings for closed ones).
    minute_rows: BTreeMap<Key, Agg>,
    /// Added to `rollup_hour` (late readings for closed hours).
    hour_rows: BTreeMap<Key, Agg>,
    /// Readings for minutes still open: merged into memory after the commit.
    still_open: Vec<(Key, Agg)>,
}

impl OpenRollups {
    /// Read the watermarks and rebuild the open minutes from the batch rows (a clean shutdown
    /// leaves none; a crash leaves up to a few minutes of them).
    pub fn load(conn: &Connection) -> Result<OpenRollups, StoreError> {
        let (minute_watermark, hour_watermark): (i64, i64) = conn.query_row(
            "SELECT minute_watermark_ms, hour_watermark_ms FROM rollup_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let max_bucket: Option<i64> =
            conn.query_row("SELECT max(bucket) FROM batches", [], |r| r.get(0))?;
        let mut state = OpenRollups {
            minute_watermark,
            hour_watermark,
            max_received_ms: max_bucket.unwrap_or(0) * BATCH_BUCKET_MS,
            ..Default::default()
        };
        // Any batch holding a reading at or after the watermark arrived at most
        // MAX_FUTURE_SKEW_MS before it.
        let first_bucket =
            (minute_watermark - MAX_FUTURE_SKEW_MS as i64).div_euclid(BATCH_BUCKET_MS);
        let mut stmt = conn.prepare(
            "SELECT id, device_id, payload FROM batches WHERE bucket >= ?1 AND t_last_ms >= ?2",
        )?;
        let mut rows = stmt.query(params![first_bucket, minute_watermark])?;
        let mut points = Vec::new();
        let (mut batches, mut undecodable) = (0u64, 0u64);
        while let Some(row) = rows.next()? {
            let (id, device): (i64, DeviceId) = (row.get(0)?, row.get(1)?);
            points.clear();
            if let Err(e) = shared::payload::decode(row.get_ref(2)?.as_blob()?, &mut points) {
                undecodable += 1;
                tracing::error!(batch = id, error = %e, "a stored payload does not decode; its readings are left out of the roll-ups");
                continue;
            }
            batches += 1;
            for p in points.iter().filter(|p| p.ts_ms >= minute_watermark) {
                let a = Agg::of(f64::from(p.value));
                state
                    .open
                    .entry((floor_to(p.ts_ms, MINUTE_MS), device, p.sensor))
                    .and_modify(|e| e.merge(&a))
                    .or_insert(a);
            }
        }
        if batches > 0 || undecodable > 0 {
            tracing::info!(
                batches,
                undecodable,
                open_buckets = state.open.len(),
                "rebuilt open roll-up buckets from batch rows"
            );
        }
        Ok(state)
    }

    /// Plan the roll-up writes of a commit holding `stored` (the batches it stores) and
    /// batches received up to `max_received_ms`. `close_all` (shutdown) writes every open
    /// minute too. Nothing changes in memory until [`apply`](Self::apply).
    pub fn plan<'a>(
        &self,
        stored: impl Iterator<Item = &'a PreparedBatch>,
        max_received_ms: i64,
        close_all: bool,
    ) -> RollupPlan {
        let mut delta: BTreeMap<Key, Agg> = BTreeMap::new();
        for b in stored {
            for m in &b.minutes {
                delta
                    .entry((m.minute_ms, b.device_id, m.sensor))
                    .and_modify(|e| e.merge(&m.agg))
                    .or_insert(m.agg);
            }
        }
        let max_received_ms = self.max_received_ms.max(max_received_ms);
        let mut minute_watermark = self
            .minute_watermark
            .max(floor_to(max_received_ms - LATE_BATCH_MS, MINUTE_MS));
        if close_all {
            let last_open = self
                .open
                .keys()
                .next_back()
                .into_iter()
                .chain(delta.keys().next_back())
                .map(|k| k.0)
                .max();
            if let Some(last) = last_open {
                minute_watermark = minute_watermark.max(last + MINUTE_MS);
            }
        }
        let mut plan = RollupPlan {
            minute_watermark,
            hour_watermark: self.hour_watermark.max(floor_to(minute_watermark, HOUR_MS)),
            max_received_ms,
            ..Default::default()
        };
        for (key, agg) in self.open.range(..(minute_watermark, DeviceId::MIN, 0)) {
            plan.minute_rows.insert(*key, *agg);
        }
        for (key, agg) in delta {
            if key.0 >= minute_watermark {
                plan.still_open.push((key, agg));
                continue;
            }
            if key.0 < self.hour_watermark {
                let hour = (floor_to(key.0, HOUR_MS), key.1, key.2);
                plan.hour_rows
                    .entry(hour)
                    .and_modify(|e| e.merge(&agg))
                    .or_insert(agg);
            }
            plan.minute_rows
                .entry(key)
                .and_modify(|e| e.merge(&agg))
                .or_insert(agg);
        }
        plan
    }

    /// Write a plan inside the commit's transaction.
    pub fn write(&self, tx: &Transaction<'_>, plan: &RollupPlan) -> rusqlite::Result<()> {
        let mut minute = tx.prepare_cached(
            "INSERT INTO rollup_minute (minute_ms, device_id, sensor, min_value, max_value, sum_value, count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (minute_ms, device_id, sensor) DO UPDATE SET \
             min_value = min(min_value, excluded.min_value), max_value = max(max_value, excluded.max_value), \
             sum_value = sum_value + excluded.sum_value, count = count + excluded.count",
        )?;
        for ((t, device, sensor), a) in &plan.minute_rows {
            minute.execute(params![
                t,
                device,
                sensor,
                a.min,
                a.max,
                a.sum,
                a.count as i64
            ])?;
        }
        let mut hour = tx.prepare_cached(
            "INSERT INTO rollup_hour (hour_ms, device_id, sensor, min_value, max_value, sum_value, count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (hour_ms, device_id, sensor) DO UPDATE SET \
             min_value = min(min_value, excluded.min_value), max_value = max(max_value, excluded.max_value), \
             sum_value = sum_value + excluded.sum_value, count = count + excluded.count",
        )?;
        for ((t, device, sensor), a) in &plan.hour_rows {
            hour.execute(params![
                t,
                device,
                sensor,
                a.min,
                a.max,
                a.sum,
                a.count as i64
            ])?;
        }
        if plan.hour_watermark > self.hour_watermark {
            // The hours just closed, from their (now complete) minute rows. Nothing can have
            // written these hours before: readings for them went to the minute table only.
            tx.prepare_cached(
                "INSERT OR REPLACE INTO rollup_hour (hour_ms, device_id, sensor, min_value, max_value, sum_value, count) \
                 SELECT minute_ms - minute_ms % 3600000, device_id, sensor, min(min_value), max(max_value), sum(sum_value), sum(count) \
                 FROM rollup_minute WHERE minute_ms >= ?1 AND minute_ms < ?2 GROUP BY 1, 2, 3",
            )?
            .execute(params![self.hour_watermark, plan.hour_watermark])?;
        }
        if plan.minute_watermark != self.minute_watermark
            || plan.hour_watermark != self.hour_watermark
        {
            tx.prepare_cached("UPDATE rollup_state SET minute_watermark_ms = ?1, hour_watermark_ms = ?2 WHERE id = 1")?
                .execute(params![plan.minute_watermark, plan.hour_watermark])?;
        }
        Ok(())
    }

    /// The plan has committed: drop the minutes it wrote, keep the ones still open.
    pub fn apply(&mut self, plan: RollupPlan) {
        self.open = self
            .open
            .split_off(&(plan.minute_watermark, DeviceId::MIN, 0));
        for (key, agg) in plan.still_open {
            self.open
                .entry(key)
                .and_modify(|e| e.merge(&agg))
                .or_insert(agg);
        }
        self.minute_watermark = plan.minute_watermark;
        self.hour_watermark = plan.hour_watermark;
        self.max_received_ms = plan.max_received_ms;
    }

    /// Open (unwritten) minute buckets, for tests and health.
    pub fn open_buckets(&self) -> usize {
        self.open.len()
    }
}
