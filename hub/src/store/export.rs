//! CSV export of stored readings: `device,sensor,ts_ms,iso_time,value,time_source`.
//!
//! Streams: one batch is decoded at a time, so memory stays bounded whatever the range. Rows
//! come in storage order (batches in arrival order, then late batches), not sorted by time:
//! sorting would need the whole range in memory; `sort -t, -k3,3n` does it outside.

use std::collections::HashMap;
use std::io::Write;

use rusqlite::{Connection, params};
use shared::limits::{MAX_BATCH_SPAN_MS, MAX_FUTURE_SKEW_MS};

use super::read::{device_batches, time_source};
use super::{BATCH_BUCKET_MS, DeviceId, LATE_BATCH_MS, Store, StoreError, TimeSource};

/// The header line.
pub const CSV_HEADER: &str = "device,sensor,ts_ms,iso_time,value,time_source\n";

impl Store {
    /// Write every stored reading with `from_ms <= ts < to_ms` (of one device, or all) as CSV
    /// to `out`, header first. Returns the number of readings written.
    ///
    /// Blocking, and it holds one read transaction for its whole run (the WAL cannot be
    /// checkpointed past it meanwhile): call it from `spawn_blocking` or a CLI.
    pub fn export_csv(
        &self,
        from_ms: i64,
        to_ms: i64,
        device: Option<DeviceId>,
        out: impl Write,
    ) -> Result<u64, StoreError> {
        self.inner
            .readers
            .with(|conn| export(conn, from_ms, to_ms, device, out))
    }
}

fn export(
    conn: &mut Connection,
    from: i64,
    to: i64,
    device: Option<DeviceId>,
    out: impl Write,
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let names: HashMap<DeviceId, String> = {
        let mut stmt = tx.prepare("SELECT id, name FROM devices")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, csv_field(&r.get::<_, String>(1)?))))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut csv = CsvWriter {
        out: std::io::BufWriter::new(out),
        names,
        points: Vec::new(),
        rows: 0,
        from,
        to,
    };
    csv.out.write_all(CSV_HEADER.as_bytes())?;
    if from < to {
        match device {
            Some(id) => device_batches(&tx, id, from, to, |source, payload| {
                csv.batch(id, source, payload)
            })?,
            None => {
                // Every device: on-time batches by receive bucket (one range scan), then late ones.
                let mut stmt = tx.prepare(
                    "SELECT device_id, time_source, payload FROM batches WHERE bucket >= ?1 AND bucket <= ?2 AND late = 0 \
                     AND t_first_ms < ?3 AND t_last_ms >= ?4 ORDER BY bucket",
                )?;
                let first = (from - MAX_FUTURE_SKEW_MS as i64).div_euclid(BATCH_BUCKET_MS);
                let last = (to + LATE_BATCH_MS).div_euclid(BATCH_BUCKET_MS);
                let mut rows = stmt.query(params![first, last, to, from])?;
                while let Some(row) = rows.next()? {
                    csv.batch(
                        row.get(0)?,
                        time_source(row.get(1)?),
                        row.get_ref(2)?.as_blob()?,
                    )?;
                }
                let mut stmt = tx.prepare(
                    "SELECT b.device_id, b.time_source, b.payload FROM late_batches l JOIN batches b ON b.id = l.batch_id \
                     WHERE l.t_first_ms >= ?1 AND l.t_first_ms < ?2 AND l.t_last_ms >= ?3",
                )?;
                let mut rows =
                    stmt.query(params![from - i64::from(MAX_BATCH_SPAN_MS), to, from])?;
                while let Some(row) = rows.next()? {
                    csv.batch(
                        row.get(0)?,
                        time_source(row.get(1)?),
                        row.get_ref(2)?.as_blob()?,
                    )?;
                }
            }
        }
    }
    csv.out.flush()?;
    Ok(csv.rows)
}

struct CsvWriter<W: Write> {
    out: W,
    names: HashMap<DeviceId, String>,
    points: Vec<shared::payload::Point>,
    rows: u64,
    from: i64,
    to: i64,
}

impl<W: Write> CsvWriter<W> {
    fn batch(
        &mut self,
        device: DeviceId,
        source: TimeSource,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.points.clear();
        shared::payload::decode(payload, &mut self.points)
            .map_err(|e| StoreError::Internal(format!("a stored payload does not decode: {e}")))?;
        let unknown;
        let name = match self.names.get(&device) {
            Some(n) => n.as_str(),
            None => {
                unknown = device.to_string();
                &unknown
            }
        };
        for p in self
            .points
            .iter()
            .filter(|p| p.ts_ms >= self.from && p.ts_ms < self.to)
        {
            writeln!(
                self.out,
                "{name},{},{},{},{},{}",
                p.sensor,
                p.ts_ms,
                iso_time(p.ts_ms),
                p.value,
                source.as_str()
            )?;
            self.rows += 1;
        }
        Ok(())
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
/// A CSV field as RFC 4180 quotes it (only when it holds a comma, quote or line break).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Unix ms as RFC 3339 UTC with milliseconds: `2026-11-25T23:44:00.123Z`.
pub fn iso_time(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}
