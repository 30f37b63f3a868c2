//! Item 6: a 7-day range of 1 Hz data (604,800 points of one sensor), about 1,000 buckets,
//! through the HTTP API of the real hub: warm (the same hub, 100 requests in a row) and cold
//! (a fresh hub process for each request, the database file dropped from the page cache after
//! the hub's start-up check and before the request).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hub::store::{Durability, IncomingBatch, Store, StoreConfig, TimeSource};
use shared::payload::Point;

use crate::procs::{self, Bins};

const DAYS: i64 = 7;
const PER_BATCH: i64 = 60;

/// Write 7 days of 1 Hz readings ending a minute ago, in arrival order, through the store (so
/// the roll-ups are kept up to date at ingest, as in the hub).
fn build(dir: &Path) -> anyhow::Result<(PathBuf, i64, i64)> {
    let (db, _) = procs::create_db(dir, "history", 1, "hist")?;
    let to = hub::time::unix_ms() / 60_000 * 60_000 - 60_000;
    let from = to - DAYS * 24 * 3_600_000;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = Store::open(StoreConfig {
            path: db.clone(),
            commit_interval: Duration::from_secs(3600),
            durability: Durability::ProcessCrash,
            ..StoreConfig::default()
        })?;
        let mut sensor = firmware::sim::SimSensors::new(7);
        let mut tickets = Vec::new();
        let mut seq = 0u32;
        let mut t = from;
        while t < to {
            seq += 1;
            let points: Vec<Point> = (0..PER_BATCH)
                .map(|k| Point {
                    sensor: 0,
                    ts_ms: t + k * 1000,
                    value: sensor.read(0, (t + k * 1000 - from) as u64),
                })
                .collect();
            tickets.push(
                store
                    .enqueue(IncomingBatch {
                        device_id: 1,
                        boot_id: 1,
                        seq,
                        time_source: TimeSource::Sntp,
                        dropped: 0,
                        points: points.into(),
                        received_ms: t + PER_BATCH * 1000,
                    })
                    .await?,
            );
            t += PER_BATCH * 1000;
            if tickets.len() == 1000 {
                store.flush().await?;
                for ticket in tickets.drain(..) {
                    ticket.await?;
                }
            }
        }
        store.flush().await?;
        for ticket in tickets {
            ticket.await?;
        }
        store.close().await?;
        anyhow::Ok(())
    })?;
    Ok((db, from, to))
}

/// Drop the database's pages from the page cache (`dd iflag=nocache` = `posix_fadvise`
/// DONTNEED on the file; no root needed, other files untouched).
fn evict(db: &Path) {
    for suffix in ["", "-wal"] {
        let _ = Command::new("dd")
            .arg(format!("if={}{suffix}", db.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status();
    }
}

fn timed(port: u16, path: &str, session: &procs::Session) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let (status, _, body) = procs::http(port, "GET", path, &session.headers(), "")?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        status == 200,
        "history answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok((ms, v["buckets"].as_array().map_or(0, Vec::len)))
}

pub fn run(bins: &Bins, dir: &Path, requests: usize, cold_runs: usize) -> anyhow::Result<()> {
    let built = Instant::now();
    let (db, from, to) = build(dir)?;
    let has_user = procs::add_user(bins, &db);
    eprintln!(
        "history: {} points written in {:.1} s; database {:.1} MB",
        (to - from) / 1000,
        built.elapsed().as_secs_f64(),
        procs::disk_bytes(&db) as f64 / 1e6
    );
    let path = format!("/api/devices/hist-00000/history?sensor=0&from={from}&to={to}&points=1000");
    let log = dir.join("hub-history.log");

    let mut cold = Vec::new();
    let mut buckets = 0;
    for _ in 0..cold_runs {
        let port = procs::free_port()?;
        let hub = procs::start_hub(bins, &db, port, 1000, &log)?;
        let session = procs::login(port, has_user)?;
        evict(&db);
        let (ms, n) = timed(port, &path, &session)?;
        cold.push(ms);
        buckets = n;
        hub.stop(Duration::from_secs(30))?;
    }

    let port = procs::free_port()?;
    let hub = procs::start_hub(bins, &db, port, 1000, &log)?;
    let session = procs::login(port, has_user)?;
    let _ = timed(port, &path, &session)?;
    let mut warm = Vec::new();
    for _ in 0..requests {
        let (ms, n) = timed(port, &path, &session)?;
        warm.push(ms);
        buckets = n;
    }
    hub.stop(Duration::from_secs(30))?;
    warm.sort_by(f64::total_cmp);
    cold.sort_by(f64::total_cmp);
    println!(
        "history: 7 days of 1 Hz ({} points) as {buckets} buckets: warm p50 {:.2} ms, p99 {:.2} ms over {requests} requests \
         (target p99 <= 50 ms); cold p50 {:.2} ms, p99 {:.2} ms over {cold_runs} hub restarts (target <= 200 ms) [load {}]",
        (to - from) / 1000,
        procs::percentile(&warm, 0.5),
        procs::percentile(&warm, 0.99),
        procs::percentile(&cold, 0.5),
        procs::percentile(&cold, 0.99),
        procs::load_average()
    );
    Ok(())
}
