//! The store's promises, each a test, by area: [`commit`], [`rollups`], [`files`], [`reads`].
//! Real SQLite files in temp dirs; commit intervals are either tiny or an hour with explicit
//! `flush()`, so nothing depends on timing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use shared::payload::Point;
use tempfile::TempDir;

use super::rollup::{Agg, HOUR_MS, MINUTE_MS, floor_to};
use super::*;

/// 2026-01-01T00:00:00Z, a whole hour.
const T0: i64 = 1_767_225_600_000;

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        path: dir.path().join("hub.db"),
        commit_interval: Duration::from_millis(5),
        ..StoreConfig::default()
    }
}

/// A config whose commits happen only on `flush()`.
fn manual_config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        commit_interval: Duration::from_secs(3600),
        ..config(dir)
    }
}

async fn device(store: &Store, name: &str) -> DeviceId {
    store
        .add_device(name, &format!("hash-of-{name}"))
        .await
        .unwrap()
}

/// `n` points per sensor, `step_ms` apart from `start`, values exact in binary (sums stay exact).
fn points(start: i64, n: usize, step_ms: i64, sensors: &[u8]) -> Vec<Point> {
    let mut out = Vec::new();
    for &sensor in sensors {
        for k in 0..n {
            let ts = start + k as i64 * step_ms;
            out.push(Point {
                sensor,
                ts_ms: ts,
                value: ((ts / 1000 + i64::from(sensor) * 7) % 64) as f32 * 0.25,
            });
        }
    }
    out
}

fn batch(
    device_id: DeviceId,
    boot_id: u32,
    seq: u32,
    received_ms: i64,
    points: Vec<Point>,
) -> IncomingBatch {
    IncomingBatch {
        device_id,
        boot_id,
        seq,
        time_source: TimeSource::Sntp,
        dropped: 0,
        points: points.into(),
        received_ms,
    }
}

fn raw_db(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

mod commit;
mod files;
mod reads;
mod rollups;
