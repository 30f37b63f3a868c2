//! Item 3: ingest at 10 / 100 / 1,000 / 5,000 devices, each against the store ceiling and the
//! socket ceiling measured in the same run; then the steady run for bytes written per reading.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware::sim::SimSensors;
use hub::store::{IncomingBatch, Store, StoreConfig, TimeSource};
use shared::payload::Point;

use crate::procs::{self, Bins, Load, ProcSample};

/// One configuration's figures.
pub struct HubFigures {
    pub readings_per_s: f64,
    pub cpu_per_s: f64,
    pub hwm_mib: f64,
    pub written_per_reading: f64,
    pub load: serde_json::Value,
    /// Events the live clients received inside the window, all together, and the events
    /// their `lagged` notices said they missed.
    pub live_received: u64,
    pub live_missed: u64,
}

/// The real hub process under the load generator.
pub fn hub_run(
    bins: &Bins,
    dir: &Path,
    load: &Load,
    commit_ms: u64,
    live_clients: usize,
) -> anyhow::Result<HubFigures> {
    let (db, tokens) =
        procs::create_db(dir, &format!("hub-{}", load.devices), load.devices, "dev")?;
    let has_user = live_clients > 0 && procs::add_user(bins, &db);
    let port = procs::free_port()?;
    let hub = procs::start_hub(bins, &db, port, commit_ms, &dir.join("hub.log"))?;
    let live = if live_clients > 0 {
        let session = procs::login(port, has_user)?;
        Some(crate::latency::LiveClients::start(
            port,
            &session,
            live_clients,
            crate::latency::ClientMode::Counting,
        )?)
    } else {
        None
    };
    let run = procs::start_load(bins, port, &tokens, load)?;
    let connect_wait = Duration::from_secs(load.warmup_s + 180);
    run.wait_for("LOAD_MEASURE_START", connect_wait)?;
    let t0 = procs::unix_s_f64();
    let before = procs::sample(hub.pid())?;
    if let Some(live) = &live {
        live.measure(true);
    }
    run.wait_for(
        "LOAD_MEASURE_END",
        Duration::from_secs(load.duration_s + 60),
    )?;
    let after = procs::sample(hub.pid())?;
    if let Some(live) = &live {
        live.measure(false);
    }
    let t1 = procs::unix_s_f64();
    let result = run.result()?;
    // The last window's batches commit within one interval.
    std::thread::sleep(Duration::from_millis(commit_ms + 500));
    let (from_s, to_s) = (t0.ceil() as i64, t1.floor() as i64);
    let persisted = procs::persisted(&db, from_s, to_s)?;
    let span = after
        .at
        .zip(before.at)
        .map_or(1.0, |(a, b)| (a - b).as_secs_f64());
    let mut figures = figures(
        persisted,
        (to_s - from_s) as f64,
        &before,
        &after,
        span,
        result,
    );
    if let Some(live) = live {
        figures.live_received = live.received.load(Ordering::SeqCst);
        figures.live_missed = live.lagged.load(Ordering::SeqCst);
        live.stop();
    }
    hub.stop(Duration::from_secs(30))?;
    Ok(figures)
}

fn figures(
    persisted: u64,
    counted_s: f64,
    before: &ProcSample,
    after: &ProcSample,
    span_s: f64,
    load: serde_json::Value,
) -> HubFigures {
    let readings_per_s = persisted as f64 / counted_s.max(1.0);
    HubFigures {
        readings_per_s,
        cpu_per_s: (after.cpu_s - before.cpu_s) / span_s,
        hwm_mib: after.hwm_kib as f64 / 1024.0,
        // Bytes over the sample span, readings over the same span at the measured rate.
        written_per_reading: (after.write_bytes - before.write_bytes) as f64
            / (readings_per_s * span_s).max(1.0),
        load,
        live_received: 0,
        live_missed: 0,
    }
}

/// The socket ceiling: the sink (this binary, `sink`) in its own process.
pub fn socket_run(bins: &Bins, dir: &Path, load: &Load) -> anyhow::Result<(f64, f64)> {
    let (_, tokens) =
        procs::create_db(dir, &format!("sock-{}", load.devices), load.devices, "dev")?;
    let port = procs::free_port()?;
    let child = std::process::Command::new(&bins.me)
        .args(["sink", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let sink = procs::Proc {
        child,
        name: "sink",
    };
    procs::wait_listening(port, Duration::from_secs(10))?;
    let run = procs::start_load(bins, port, &tokens, load)?;
    run.wait_for(
        "LOAD_MEASURE_START",
        Duration::from_secs(load.warmup_s + 180),
    )?;
    let before = procs::sample(sink.pid())?;
    run.wait_for(
        "LOAD_MEASURE_END",
        Duration::from_secs(load.duration_s + 60),
    )?;
    let after = procs::sample(sink.pid())?;
    let result = run.result()?;
    sink.stop(Duration::from_secs(5))?;
    let window = result["window_s"].as_f64().unwrap_or(1.0);
    let acked = result["acked_readings"].as_f64().unwrap_or(0.0);
    let span = after
        .at
        .zip(before.at)
        .map_or(1.0, |(a, b)| (a - b).as_secs_f64());
    Ok((acked / window, (after.cpu_s - before.cpu_s) / span))
}

/// The store ceiling: the hub's store (same layout, pragmas, commit interval and queue),
/// batches enqueued directly by one task per device keeping `window` batches in flight.
pub fn store_run(dir: &Path, load: &Load, commit_ms: u64) -> anyhow::Result<f64> {
    let (db, _) = procs::create_db(dir, &format!("store-{}", load.devices), load.devices, "dev")?;
    let hub_defaults = hub::config::Config::default();
    let rt = tokio::runtime::Runtime::new()?;
    let (from_s, to_s) = rt.block_on(async {
        let store = Arc::new(Store::open(StoreConfig {
            path: db.clone(),
            commit_interval: Duration::from_millis(commit_ms),
            queue_batches: hub_defaults.store_queue,
            ..StoreConfig::default()
        })?);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..load.devices)
            .map(|i| {
                let (store, stop, load) = (store.clone(), stop.clone(), load.clone());
                tokio::spawn(async move { device(i, &store, &stop, &load).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(load.warmup_s + 2)).await;
        let t0 = procs::unix_s_f64();
        tokio::time::sleep(Duration::from_secs(load.duration_s)).await;
        let t1 = procs::unix_s_f64();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.context("store device task")??;
        }
        Arc::try_unwrap(store)
            .map_err(|_| anyhow::anyhow!("store still shared"))?
            .close()
            .await?;
        anyhow::Ok((t0.ceil() as i64, t1.floor() as i64))
    })?;
    let persisted = procs::persisted(&db, from_s, to_s)?;
    Ok(persisted as f64 / (to_s - from_s).max(1) as f64)
}

async fn device(i: usize, store: &Store, stop: &AtomicBool, load: &Load) -> anyhow::Result<()> {
    let mut sensors = SimSensors::new(1 + i as u64);
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < load.window {
            seq += 1;
            let now = hub::time::unix_ms();
            let uptime = started.elapsed().as_millis() as u64;
            let samples = usize::from(load.batch).div_ceil(4);
            let points = (0..usize::from(load.batch))
                .map(|k| {
                    let (sample, sensor) = (k / 4, (k % 4) as u8);
                    Point {
                        sensor,
                        ts_ms: now - (samples - 1 - sample) as i64,
                        value: sensors.read(sensor, uptime + sample as u64),
                    }
                })
                .collect();
            let ticket = store
                .enqueue(IncomingBatch {
                    device_id: i as i64 + 1,
                    boot_id: 1,
                    seq,
                    time_source: TimeSource::Sntp,
                    dropped: 0,
                    points,
                    received_ms: now,
                })
                .await?;
            in_flight.push_back(ticket);
        }
        if let Some(t) = in_flight.pop_front() {
            t.await?;
        }
    }
    for t in in_flight {
        t.await?;
    }
    Ok(())
}
