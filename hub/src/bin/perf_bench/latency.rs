//! Item 5: ack latency and hub CPU per batch under paced load; send-to-live latency with 20
//! dashboard clients; ingest with and without those clients.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::procs::{self, Bins, Load, Session};

/// `/ws/live` clients subscribed to everything (a new connection's default), all on one
/// thread of the bench's own.
pub struct LiveClients {
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    pub connected: Arc<AtomicU64>,
    pub lagged: Arc<AtomicU64>,
    /// Events received while measuring, every client together.
    pub received: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

/// What the bench's live clients do with each event.
#[derive(Clone, Copy, PartialEq)]
pub enum ClientMode {
    /// Parse it and time it against the newest point in it (the latency figure).
    Timing,
    /// Count it, at the lowest CPU priority: they stand in for browsers, which run on other
    /// machines, so beside an ingest figure they take only CPU the hub leaves idle. Only
    /// `lagged` notices are parsed.
    Counting,
}

impl LiveClients {
    pub fn start(
        port: u16,
        session: &Session,
        n: usize,
        mode: ClientMode,
    ) -> anyhow::Result<LiveClients> {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let latencies_ms = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicU64::new(0));
        let lagged = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let headers = session.headers();
        let (m, s, l, c, g, r) = (
            measuring.clone(),
            stop.clone(),
            latencies_ms.clone(),
            connected.clone(),
            lagged.clone(),
            received.clone(),
        );
        let thread = std::thread::spawn(move || {
            if mode == ClientMode::Counting {
                hub::priority::lowest();
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (m, s, l, c, g, r, headers) = (
                            m.clone(),
                            s.clone(),
                            l.clone(),
                            c.clone(),
                            g.clone(),
                            r.clone(),
                            headers.clone(),
                        );
                        tokio::spawn(async move {
                            let Ok(mut req) =
                                format!("ws://127.0.0.1:{port}/ws/live").into_client_request()
                            else {
                                return;
                            };
                            for (k, v) in headers {
                                if let Ok(v) = HeaderValue::from_str(&v) {
                                    req.headers_mut().insert(k, v);
                                }
                            }
                            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await
                            else {
                                eprintln!("live client: connection refused");
                                return;
                            };
                            c.fetch_add(1, Ordering::SeqCst);
                            let mut local = Vec::new();
                            while !s.load(Ordering::Relaxed) {
                                let next =
                                    tokio::time::timeout(Duration::from_millis(200), ws.next())
                                        .await;
                                let Ok(Some(Ok(Message::Text(t)))) = next else {
                                    if matches!(next, Ok(None) | Ok(Some(Err(_)))) {
                                        break;
                                    }
                                    continue;
                                };
                                if m.load(Ordering::Relaxed) {
                                    r.fetch_add(1, Ordering::Relaxed);
                                }
                                if mode == ClientMode::Counting
                                    && !t.as_str().starts_with(r#"{"type":"lagged""#)
                                {
                                    continue;
                                }
                                let now_ms = procs::unix_s_f64() * 1000.0;
                                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                                    continue;
                                };
                                match v["type"].as_str() {
                                    Some("readings")
                                        if mode == ClientMode::Timing
                                            && m.load(Ordering::Relaxed) =>
                                    {
                                        let newest = v["points"]
                                            .as_array()
                                            .into_iter()
                                            .flatten()
                                            .filter_map(|p| p[0].as_f64())
                                            .fold(f64::MIN, f64::max);
                                        local.push(now_ms - newest);
                                    }
                                    Some("lagged") if m.load(Ordering::Relaxed) => {
                                        g.fetch_add(
                                            v["missed"].as_u64().unwrap_or(0),
                                            Ordering::Relaxed,
                                        );
                                    }
                                    _ => {}
                                }
                            }
                            l.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .append(&mut local);
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Ok(LiveClients {
            measuring,
            stop,
            latencies_ms,
            connected,
            lagged,
            received,
            thread,
        })
    }

    pub fn measure(&self, on: bool) {
        self.measuring.store(on, Ordering::SeqCst);
    }

    /// Stop every client; the latencies measured, sorted.
    pub fn stop(self) -> Vec<f64> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        let mut v =
            std::mem::take(&mut *self.latencies_ms.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by(f64::total_cmp);
        v
    }
}

/// Paced ack latency: `devices` x `rate` batches/s of 32 readings.
pub fn paced(
    bins: &Bins,
    dir: &Path,
    devices: usize,
    rate: f64,
    seconds: u64,
) -> anyhow::Result<()> {
    let load = Load {
        devices,
        rate,
        batch: 32,
        window: 64,
        warmup_s: 5,
        duration_s: seconds,
        idle: false,
    };
    let f = crate::ingest::hub_run(bins, dir, &load, 1000, 0)?;
    let acked_batches = f.load["acked_batches"].as_f64().unwrap_or(0.0);
    let window = f.load["window_s"].as_f64().unwrap_or(1.0);
    let cpu_us_per_batch = f.cpu_per_s * 1e6 / (acked_batches / window).max(1.0);
    println!(
        "paced {devices} devices x {rate} batches/s x 32 readings: offered {:.0} readings/s, persisted {:.0}/s; \
         ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (commit interval 1000 ms; target p99 <= 1020 ms); \
         hub CPU {:.2} cores = {:.2} us per batch (target < 10 us); reconnects {} [load {}]",
        f.load["offered_readings"].as_f64().unwrap_or(0.0) / window,
        f.readings_per_s,
        ms(&f.load["ack_p50_us"]),
        ms(&f.load["ack_p99_us"]),
        ms(&f.load["ack_max_us"]),
        f.cpu_per_s,
        cpu_us_per_batch,
        f.load["reconnects"],
        procs::load_average()
    );
    // The floor under that figure: the same paced load against the bare tokio-tungstenite sink
    // (reads and discards, acks every read; no decoding, no store).
    let (sink_readings_per_s, sink_cpu) = crate::ingest::socket_run(bins, dir, &load)?;
    let sink_batches_per_s = (sink_readings_per_s / f64::from(load.batch)).max(1.0);
    println!(
        "paced, socket layer alone (bare tokio-tungstenite sink, an ack per read): CPU {:.2} cores = {:.2} us per batch \
         ({:.0} readings/s acked); the hub takes {:.1}x that [load {}]",
        sink_cpu,
        sink_cpu * 1e6 / sink_batches_per_s,
        sink_readings_per_s,
        cpu_us_per_batch / (sink_cpu * 1e6 / sink_batches_per_s).max(f64::MIN_POSITIVE),
        procs::load_average()
    );
    Ok(())
}

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN) / 1000.0
}

/// Send-to-live latency: `devices` x 4 sensors x 10 Hz (a 4-reading batch every 100 ms) with
/// `clients` live clients subscribed to everything.
pub fn live(
    bins: &Bins,
    dir: &Path,
    devices: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let (db, tokens) = procs::create_db(dir, "live", devices, "live")?;
    let has_user = procs::add_user(bins, &db);
    let port = procs::free_port()?;
    let hub = procs::start_hub(bins, &db, port, 1000, &dir.join("hub-live.log"))?;
    let session = procs::login(port, has_user)?;
    let live = LiveClients::start(port, &session, clients, ClientMode::Timing)?;
    let load = Load {
        devices,
        rate: 10.0,
        batch: 4,
        window: 64,
        warmup_s: 3,
        duration_s: seconds,
        idle: false,
    };
    let run = procs::start_load(bins, port, &tokens, &load)?;
    run.wait_for("LOAD_MEASURE_START", Duration::from_secs(120))?;
    live.measure(true);
    run.wait_for("LOAD_MEASURE_END", Duration::from_secs(seconds + 60))?;
    live.measure(false);
    let result = run.result()?;
    let connected = live.connected.load(Ordering::SeqCst);
    let lagged = live.lagged.load(Ordering::SeqCst);
    let lat = live.stop();
    hub.stop(Duration::from_secs(30))?;
    println!(
        "live: {devices} devices x 4 sensors x 10 Hz, {connected} of {clients} live clients: {} events timed, \
         send-to-live latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (1 ms timestamp resolution; target p99 <= 10 ms); \
         {lagged} events missed by lagging clients; ack p99 {:.1} ms [load {}]",
        lat.len(),
        procs::percentile(&lat, 0.5),
        procs::percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        ms(&result["ack_p99_us"]),
        procs::load_average()
    );
    Ok(())
}

/// Unpaced ingest at `devices` devices, without and then with `clients` live clients.
pub fn ingest_with_live(
    bins: &Bins,
    dir: &Path,
    devices: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let load = Load {
        devices,
        rate: 0.0,
        batch: 32,
        window: 64,
        warmup_s: 5,
        duration_s: seconds,
        idle: false,
    };
    let without = crate::ingest::hub_run(bins, dir, &load, 1000, 0)?;
    let with = crate::ingest::hub_run(bins, dir, &load, 1000, clients)?;
    let window = with.load["window_s"].as_f64().unwrap_or(1.0).max(1.0);
    println!(
        "ingest at {devices} devices: {:.0} readings/s without live clients, {:.0}/s with {clients}: {:.1} % (target >= 95 %); \
         hub CPU {:.2} vs {:.2} cores; each live client (nice 19, counting) received {:.0} events/s and was told of {:.0}/s missed [load {}]",
        without.readings_per_s,
        with.readings_per_s,
        100.0 * with.readings_per_s / without.readings_per_s.max(1.0),
        without.cpu_per_s,
        with.cpu_per_s,
        with.live_received as f64 / clients.max(1) as f64 / window,
        with.live_missed as f64 / clients.max(1) as f64 / window,
        procs::load_average()
    );
    Ok(())
}
