//! What a commit does with one batch: the exactly-once check against the device's cursor,
//! the batch row, the cursor and counters, all inside the writer's transaction.
//!
//! Work that needs no database (checking, compressing, per-minute aggregates) is done in
//! [`PreparedBatch::new`], on the caller's task, so the writer thread only runs SQL.

use std::cell::RefCell;

use rusqlite::{OptionalExtension, ToSql, Transaction, params, params_from_iter};
use shared::limits::{MAX_BATCH_SPAN_MS, MAX_FUTURE_SKEW_MS, MAX_READINGS_PER_BATCH};
use shared::payload::Encoder;
use shared::{SeqVerdict, check_seq};

use super::rollup::{self, MinuteAgg};
use super::{
    BATCH_BUCKET_MS, Committed, DeviceId, IncomingBatch, LATE_BATCH_MS, StoreError, TimeSource,
};

thread_local! {
    /// The payload encoder's working space, kept on each thread that prepares batches.
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::default());
}

/// A checked batch, its payload compressed, ready for the writer.
#[derive(Debug)]
pub struct PreparedBatch {
    pub device_id: DeviceId,
    pub boot_id: u32,
    pub seq: u32,
    pub time_source: TimeSource,
    pub dropped: u32,
    pub received_ms: i64,
    pub t_first_ms: i64,
    pub t_last_ms: i64,
    pub count: u32,
    pub payload: Vec<u8>,
    /// This batch's readings aggregated per (minute, sensor), for the roll-ups.
    pub minutes: Vec<MinuteAgg>,
}

impl PreparedBatch {
    pub fn new(b: IncomingBatch) -> Result<PreparedBatch, StoreError> {
        if b.seq == 0 {
            return Err(StoreError::InvalidBatch("seq 0 is not a batch"));
        }
        if b.points.is_empty() {
            return Err(StoreError::InvalidBatch("no readings"));
        }
        if b.points.len() > MAX_READINGS_PER_BATCH {
            return Err(StoreError::InvalidBatch(
                "more readings than MAX_READINGS_PER_BATCH",
            ));
        }
        if b.points.iter().any(|p| !p.value.is_finite()) {
            return Err(StoreError::InvalidBatch("a reading is NaN or infinite"));
        }
        let t_first_ms = b.points.iter().map(|p| p.ts_ms).min().unwrap_or(0);
        let t_last_ms = b.points.iter().map(|p| p.ts_ms).max().unwrap_or(0);
        // These two bounds are what lets a query by reading time find every batch (see
        // LATE_BATCH_MS); the handler's validation already enforces both.
        if t_last_ms - t_first_ms > i64::from(MAX_BATCH_SPAN_MS) {
            return Err(StoreError::InvalidBatch(
                "readings span more than MAX_BATCH_SPAN_MS",
            ));
        }
        if t_last_ms > b.received_ms.saturating_add(MAX_FUTURE_SKEW_MS as i64) {
            return Err(StoreError::InvalidBatch(
                "a reading lies beyond MAX_FUTURE_SKEW_MS after arrival",
            ));
        }
        let mut payload = Vec::with_capacity(b.points.len() * 4 + 8);
        ENCODER.with_borrow_mut(|encoder| encoder.encode(&b.points, &mut payload));
        Ok(PreparedBatch {
            device_id: b.device_id,
            boot_id: b.boot_id,
            seq: b.seq,
            time_source: b.time_source,
            dropped: b.dropped,
            received_ms: b.received_ms,
            t_first_ms,
            t_last_ms,
            count: b.points.len() as u32,
            minutes: rollup::minute_aggregates(&b.points),
            payload,
        })
    }

    pub fn is_late(&self) -> bool {
        self.t_first_ms < self.received_ms - LATE_BATCH_MS
    }
}

/// The cursor row of the device's current boot.
struct Cursor {
    boot_id: Option<u32>,
    last_seq: u32,
    boot_dropped: u32,
}

/// Store `b` unless it is already stored. The outer error aborts the transaction; the inner
/// one answers only this batch.
pub fn store_batch(
    tx: &Transaction<'_>,
    b: &PreparedBatch,
) -> rusqlite::Result<Result<Committed, StoreError>> {
    let Some(cursor) = current_cursor(tx, b.device_id)? else {
        return Ok(Err(StoreError::UnknownDevice(b.device_id)));
    };
    // Which cursor this batch counts against: the current boot's, an earlier boot's (a late
    // frame from before a reboot), or none yet (its first batch starts a new boot).
    let earlier: Option<(u32, u32)> = if cursor.boot_id == Some(b.boot_id) {
        None
    } else {
        tx.prepare_cached(
            "SELECT last_seq, dropped FROM boots WHERE device_id = ?1 AND boot_id = ?2",
        )?
        .query_row(params![b.device_id, b.boot_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
    };
    let stored = match (cursor.boot_id == Some(b.boot_id), earlier) {
        (true, _) => Some(cursor.last_seq),
        (false, Some((last_seq, _))) => Some(last_seq),
        (false, None) => None,
    };
    let gap = match check_seq(stored, b.seq) {
        Ok(SeqVerdict::Duplicate) => return Ok(Ok(Committed::Duplicate)),
        Ok(SeqVerdict::New { gap }) => gap,
        Err(_) => return Ok(Err(StoreError::InvalidBatch("seq 0 is not a batch"))),
    };

    let mut dropped_before_delta = 0u32;
    let current_boot = cursor.boot_id == Some(b.boot_id);
    match (current_boot, earlier) {
        // The usual case: the cursor's seq moves with the counters below, in one statement.
        (true, _) => {}
        (false, Some((_, dropped))) => {
            tx.prepare_cached("UPDATE boots SET last_seq = ?3, dropped = max(dropped, ?4) WHERE device_id = ?1 AND boot_id = ?2")?
                .execute(params![b.device_id, b.boot_id, b.seq, b.dropped])?;
            dropped_before_delta = b.dropped.saturating_sub(dropped);
        }
        (false, None) => {
            if let Some(old_boot) = cursor.boot_id {
                tx.prepare_cached("INSERT OR REPLACE INTO boots (device_id, boot_id, last_seq, dropped) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![b.device_id, old_boot, cursor.last_seq, cursor.boot_dropped])?;
            }
            tx.prepare_cached(
                "UPDATE cursors SET boot_id = ?2, last_seq = ?3, dropped_before = dropped_before + boot_dropped, boot_dropped = ?4 \
                 WHERE device_id = ?1",
            )?
            .execute(params![b.device_id, b.boot_id, b.seq, b.dropped])?;
        }
    }

    let late = b.is_late();
    tx.prepare_cached(
        "INSERT INTO batches (bucket, device_id, boot_id, seq, time_source, late, t_first_ms, t_last_ms, count, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        b.received_ms.div_euclid(BATCH_BUCKET_MS),
        b.device_id,
        b.boot_id,
        b.seq,
        b.time_source.code(),
        late,
        b.t_first_ms,
        b.t_last_ms,
        b.count,
        b.payload,
    ])?;
    if late {
        let id = tx.last_insert_rowid();
        tx.prepare_cached("INSERT INTO late_batches (device_id, t_first_ms, batch_id, t_last_ms) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![b.device_id, b.t_first_ms, id, b.t_last_ms])?;
    }
    let counts: [&dyn ToSql; 7] = [
        &b.device_id,
        &dropped_before_delta,
        &b.count,
        &gap,
        &b.t_first_ms,
        &b.t_last_ms,
        &b.received_ms,
    ];
    if current_boot {
        let seq: [&dyn ToSql; 2] = [&b.seq, &b.dropped];
        tx.prepare_cached(COUNT_IN_CURRENT_BOOT)?
            .execute(params_from_iter(counts.iter().chain(&seq)))?;
    } else {
        tx.prepare_cached(COUNT)?.execute(&counts[..])?;
    }
    Ok(Ok(Committed::Stored { gap }))
}

/// What a stored batch adds to its device's cursor (`?1` the device, `?2`..`?7` the counts).
macro_rules! cursor_counters {
    () => {
        "dropped_before = dropped_before + ?2, stored_readings = stored_readings + ?3, \
         stored_batches = stored_batches + 1, lost_batches = lost_batches + ?4, \
         first_ts_ms = min(coalesce(first_ts_ms, ?5), ?5), last_ts_ms = max(coalesce(last_ts_ms, ?6), ?6), \
         last_received_ms = max(coalesce(last_received_ms, ?7), ?7)"
    };
}
const COUNT: &str = concat!(
    "UPDATE cursors SET ",
    cursor_counters!(),
    " WHERE device_id = ?1"
);
/// The usual case, a batch of the device's current boot: its seq (`?8`, `?9` the dropped
/// count) moves in the same statement.
const COUNT_IN_CURRENT_BOOT: &str = concat!(
    "UPDATE cursors SET last_seq = ?8, boot_dropped = max(boot_dropped, ?9), ",
    cursor_counters!(),
    " WHERE device_id = ?1"
);

/// The device's cursor row; created on first use for a registered device, `None` for an
/// unknown one.
fn current_cursor(tx: &Transaction<'_>, device: DeviceId) -> rusqlite::Result<Option<Cursor>> {
    let read = |tx: &Transaction<'_>| {
        tx.prepare_cached(
            "SELECT boot_id, last_seq, boot_dropped FROM cursors WHERE device_id = ?1",
        )?
        .query_row([device], |r| {
            Ok(Cursor {
                boot_id: r.get(0)?,
                last_seq: r.get(1)?,
                boot_dropped: r.get(2)?,
            })
        })
        .optional()
    };
    if let Some(c) = read(tx)? {
        return Ok(Some(c));
    }
    let created = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO cursors (device_id) SELECT id FROM devices WHERE id = ?1",
        )?
        .execute([device])?;
    if created == 0 { Ok(None) } else { read(tx) }
}
