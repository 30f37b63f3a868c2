//! Load mode: many lean devices in one process, for benchmarks (`simulator --load`).
//!
//! A load device speaks the same protocol as a simulated device (token, `telemetry.v1`,
//! Hello, Welcome, Batch, cumulative Ack) but skips the core's per-reading schedule: each
//! batch is sampled in one go when it is due, so one process can offer a million readings per
//! second or hold ten thousand sockets. Each device keeps at most `window` batches unacked;
//! with `rate = 0` it sends whenever the window has room (the hub's acks pace it), otherwise
//! `rate` batches per second, and a batch that falls due while the window is full waits (it is
//! offered at its due time; its ack latency is counted from when it was sent).
//!
//! The measured window starts once every device has its Welcome (or `connect_timeout` has
//! passed) plus `warmup`, and lasts `duration`. The run prints, on stdout, one line
//! `LOAD_MEASURE_START` and one `LOAD_MEASURE_END` at its edges (so a bench can read a hub's
//! counters at the same instants), a progress line per second on stderr, and at the end
//! [`LoadReport`] as text and as one `LOAD_RESULT {json}` line.
//!
//! The last reading of every batch is stamped with the Unix time it was sent (SNTP clock,
//! millisecond resolution): a live client on the same machine subtracts it from its own
//! clock to get send-to-live latency.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use shared::{Batch, Clock, DeviceMsg, Heartbeat, Hello, HubMsg, Reading, ResetReason};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::link::{self, Ws};
use super::sensors::{self, SimSensors};
use crate::core::XorShift64;

/// Connection attempts in progress at once: ten thousand SYNs at the same instant would
/// overflow the hub's accept backlog and turn into retransmit timeouts, not a measurement.
const CONNECT_CONCURRENCY: usize = 128;
/// A connection attempt (TCP + upgrade + Hello/Welcome) may take this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause before reconnecting after a lost connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// Latency samples a device keeps before handing them to the shared list.
const LOCAL_SAMPLES: usize = 512;

/// Settings of one load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The hub's device endpoint.
    pub url: String,
    /// One token per device.
    pub tokens: Vec<String>,
    /// Batches per second per device; 0: as fast as the window allows.
    pub rate: f64,
    /// Readings per batch (spread over the 4 simulated sensors).
    pub batch: u16,
    /// Unacked batches per device, at most.
    pub window: usize,
    /// Hold connections open and send no batches (the hub's pings are answered).
    pub idle: bool,
    /// Length of the measured window.
    pub duration: Duration,
    /// Time after the last device connected before the window opens.
    pub warmup: Duration,
    /// Longest wait for every device to connect before the window opens anyway.
    pub connect_timeout: Duration,
    /// Device i seeds its sensors with `seed + i`.
    pub seed: u64,
}

/// Counters every device adds to.
#[derive(Debug, Default)]
struct Shared {
    connected: AtomicU64,
    offered_readings: AtomicU64,
    sent_batches: AtomicU64,
    acked_readings: AtomicU64,
    acked_batches: AtomicU64,
    rejected_readings: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    measuring: AtomicBool,
    /// Ack latencies (µs) of batches acked inside the window.
    latencies_us: Mutex<Vec<u32>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    offered_readings: u64,
    sent_batches: u64,
    acked_readings: u64,
    acked_batches: u64,
    rejected_readings: u64,
    reconnects: u64,
    connect_failures: u64,
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            offered_readings: get(&self.offered_readings),
            sent_batches: get(&self.sent_batches),
            acked_readings: get(&self.acked_readings),
            acked_batches: get(&self.acked_batches),
            rejected_readings: get(&self.rejected_readings),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
        }
    }
}

/// What a load run measured inside its window.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub devices: usize,
    /// Devices connected when the window opened.
    pub connected: u64,
    pub window_s: f64,
    pub offered_readings: u64,
    pub sent_batches: u64,
    pub acked_readings: u64,
    pub acked_batches: u64,
    pub rejected_readings: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    /// Ack latency of the batches acked in the window, µs.
    pub ack_p50_us: u32,
    pub ack_p99_us: u32,
    pub ack_max_us: u32,
    /// Seconds from start until every device had its Welcome.
    pub connect_s: f64,
}

impl LoadReport {
    /// One line of JSON (no serde in the firmware crate; every field is a number).
    pub fn json(&self) -> String {
        format!(
            "{{\"devices\":{},\"connected\":{},\"window_s\":{:.3},\"offered_readings\":{},\"sent_batches\":{},\
             \"acked_readings\":{},\"acked_batches\":{},\"rejected_readings\":{},\"reconnects\":{},\
             \"connect_failures\":{},\"ack_p50_us\":{},\"ack_p99_us\":{},\"ack_max_us\":{},\"connect_s\":{:.3}}}",
            self.devices,
            self.connected,
            self.window_s,
            self.offered_readings,
            self.sent_batches,
            self.acked_readings,
            self.acked_batches,
            self.rejected_readings,
            self.reconnects,
            self.connect_failures,
            self.ack_p50_us,
            self.ack_p99_us,
            self.ack_max_us,
            self.connect_s
        )
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_s = |n: u64| n as f64 / self.window_s.max(1e-9);
        write!(
            f,
            "{} devices ({} connected in {:.1} s), {:.1} s window: {} readings offered ({:.0}/s), {} acked ({:.0}/s), \
             {} rejected; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} reconnects, {} failed connects",
            self.devices,
            self.connected,
            self.connect_s,
            self.window_s,
            self.offered_readings,
            per_s(self.offered_readings),
            self.acked_readings,
            per_s(self.acked_readings),
            self.rejected_readings,
            f64::from(self.ack_p50_us) / 1000.0,
            f64::from(self.ack_p99_us) / 1000.0,
            f64::from(self.ack_max_us) / 1000.0,
            self.reconnects,
            self.connect_failures
        )
    }
}

/// Run the load until the window has passed (or `stop` turns true), then close every socket.
pub async fn run_load(cfg: LoadConfig, mut stop: watch::Receiver<bool>) -> LoadReport {
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (end_tx, end_rx) = watch::channel(false);
    let started = Instant::now();
    let tasks: Vec<_> = (0..cfg.tokens.len())
        .map(|i| {
            tokio::spawn(run_one(
                i,
                cfg.clone(),
                shared.clone(),
                gate.clone(),
                end_rx.clone(),
            ))
        })
        .collect();
    let devices = cfg.tokens.len() as u64;

    // Wait for every device, printing progress.
    let mut report = LoadReport {
        devices: cfg.tokens.len(),
        ..LoadReport::default()
    };
    let connect_deadline = started + cfg.connect_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let connected = shared.connected.load(Ordering::Relaxed);
        if connected >= devices || Instant::now() >= connect_deadline || *stop.borrow() {
            report.connected = connected;
            report.connect_s = started.elapsed().as_secs_f64();
            break;
        }
        tokio::select! {
            _ = tick.tick() => progress(&shared, started),
            _ = stop.changed() => {}
        }
    }
    eprintln!(
        "load: {} of {devices} devices connected after {:.1} s",
        report.connected, report.connect_s
    );
    let _ = sleep_or_stop(cfg.warmup, &mut stop, &shared, started).await;

    let before = shared.snapshot();
    shared.measuring.store(true, Ordering::SeqCst);
    let window_start = Instant::now();
    println!("LOAD_MEASURE_START");
    let _ = sleep_or_stop(cfg.duration, &mut stop, &shared, started).await;
    shared.measuring.store(false, Ordering::SeqCst);
    let after = shared.snapshot();
    report.window_s = window_start.elapsed().as_secs_f64();
    println!("LOAD_MEASURE_END");

    end_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    report.offered_readings = after.offered_readings - before.offered_readings;
    report.sent_batches = after.sent_batches - before.sent_batches;
    report.acked_readings = after.acked_readings - before.acked_readings;
    report.acked_batches = after.acked_batches - before.acked_batches;
    report.rejected_readings = after.rejected_readings - before.rejected_readings;
    report.reconnects = after.reconnects - before.reconnects;
    report.connect_failures = after.connect_failures - before.connect_failures;
    let mut lat = std::mem::take(
        &mut *shared
            .latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    lat.sort_unstable();
    let pick = |q: f64| {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * q).round() as usize]
        }
    };
    report.ack_p50_us = pick(0.50);
    report.ack_p99_us = pick(0.99);
    report.ack_max_us = lat.last().copied().unwrap_or(0);
    report
}

fn progress(shared: &Shared, started: Instant) {
    let s = shared.snapshot();
    eprintln!(
        "load: t={:.0}s connected={} offered={} acked={} reconnects={} failed_connects={}",
        started.elapsed().as_secs_f64(),
        shared.connected.load(Ordering::Relaxed),
        s.offered_readings,
        s.acked_readings,
        s.reconnects,
        s.connect_failures
    );
}

/// Sleep `d` (printing progress each second); false if `stop` came first.
async fn sleep_or_stop(
    d: Duration,
    stop: &mut watch::Receiver<bool>,
    shared: &Shared,
    started: Instant,
) -> bool {
    let end = Instant::now() + d;
    let mut tick = tokio::time::interval_at(
        Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(end) => return true,
            _ = tick.tick() => progress(shared, started),
            _ = stop.changed() => {}
        }
    }
}

/// One load device: connect, Hello, Welcome, then send until `end`; reconnect when lost.
async fn run_one(
    i: usize,
    cfg: Arc<LoadConfig>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut end: watch::Receiver<bool>,
) {
    let seed = cfg.seed.wrapping_add(i as u64);
    let mut device = LoadDevice {
        index: i,
        sensors: SimSensors::new(seed),
        rng: XorShift64::new(seed ^ 0xA5A5_5A5A_1234_4321),
        started: Instant::now(),
        latencies: Vec::new(),
    };
    let mut first = true;
    while !*end.borrow() {
        let permit = gate.acquire().await;
        let connected = tokio::select! {
            c = device.handshake(&cfg) => c,
            _ = end.changed() => break,
        };
        drop(permit);
        let Some((mut ws, heartbeat)) = connected else {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                _ = end.changed() => break,
            }
        };
        if !first {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let ended = device
            .session(&mut ws, heartbeat, &cfg, &shared, &mut end)
            .await;
        shared.connected.fetch_sub(1, Ordering::Relaxed);
        device.hand_over_latencies(&shared);
        if ended {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
            _ = end.changed() => break,
        }
    }
    device.hand_over_latencies(&shared);
}

struct LoadDevice {
    index: usize,
    sensors: SimSensors,
    rng: XorShift64,
    started: Instant,
    latencies: Vec<u32>,
}

/// A batch sent and not yet acked.
struct InFlight {
    seq: u32,
    sent: Instant,
    readings: u16,
}

impl LoadDevice {
    /// Connect and exchange Hello/Welcome (a new boot id each time: sequence numbers restart).
    /// Returns the socket and the heartbeat interval the hub asked for.
    async fn handshake(&mut self, cfg: &LoadConfig) -> Option<(Ws, Duration)> {
        let token = cfg.tokens[self.index].clone();
        let attempt = async {
            let mut ws = link::connect(cfg.url.clone(), token, HANDSHAKE_TIMEOUT)
                .await
                .ok()?;
            let mut sensors = heapless::Vec::new();
            for d in sensors::declarations() {
                let _ = sensors.push(d);
            }
            let hello = DeviceMsg::Hello(Hello {
                firmware: heapless::String::try_from("load-gen").unwrap_or_default(),
                boot_id: self.rng.next_u32() | 1,
                uptime_ms: self.started.elapsed().as_millis() as u64,
                reset_reason: ResetReason::PowerOn,
                declared_rate: u16::MAX,
                sensors,
            });
            send(&mut ws, &hello).await.ok()?;
            ws.flush().await.ok()?;
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Binary(b) = m {
                    return match shared::decode_hub(&b) {
                        Ok(HubMsg::Welcome(w)) => Some((
                            ws,
                            Duration::from_millis(u64::from(w.config.heartbeat_ms.max(100))),
                        )),
                        _ => None,
                    };
                }
            }
            None
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
            .await
            .ok()
            .flatten()
    }

    /// Send and read until `end` (true) or the connection is lost (false). A device with
    /// nothing else to send sends a Heartbeat each `heartbeat`, as a board does: the hub closes
    /// a device it has not heard from in three.
    async fn session(
        &mut self,
        ws: &mut Ws,
        heartbeat: Duration,
        cfg: &LoadConfig,
        shared: &Shared,
        end: &mut watch::Receiver<bool>,
    ) -> bool {
        let paced = cfg.rate > 0.0;
        let period = if paced {
            Duration::from_secs_f64(1.0 / cfg.rate)
        } else {
            Duration::from_secs(3600)
        };
        // A random phase, so that devices do not all send in the same instant.
        let phase = period.mul_f64(self.rng.unit_f32() as f64);
        let mut next_due = Instant::now() + if paced { phase } else { Duration::ZERO };
        let mut due: u64 = 0;
        let mut seq: u32 = 0;
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(cfg.window.min(256));
        let mut last_sent = Instant::now();
        loop {
            if !cfg.idle {
                let mut wrote = false;
                while in_flight.len() < cfg.window && (!paced || due > 0) {
                    seq += 1;
                    let (msg, readings) = self.batch(seq, cfg, period);
                    if send(ws, &msg).await.is_err() {
                        return false;
                    }
                    wrote = true;
                    due = due.saturating_sub(1);
                    if !paced {
                        shared
                            .offered_readings
                            .fetch_add(u64::from(readings), Ordering::Relaxed);
                    }
                    shared.sent_batches.fetch_add(1, Ordering::Relaxed);
                    in_flight.push_back(InFlight {
                        seq,
                        sent: Instant::now(),
                        readings,
                    });
                }
                if wrote {
                    if ws.flush().await.is_err() {
                        return false;
                    }
                    last_sent = Instant::now();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(last_sent + heartbeat) => {
                    let beat = DeviceMsg::Heartbeat(Heartbeat {
                        uptime_ms: self.started.elapsed().as_millis() as u64,
                    });
                    if send(ws, &beat).await.is_err() || ws.flush().await.is_err() {
                        return false;
                    }
                    last_sent = Instant::now();
                }
                _ = tokio::time::sleep_until(next_due), if paced && !cfg.idle => {
                    due += 1;
                    next_due += period;
                    shared.offered_readings.fetch_add(u64::from(cfg.batch), Ordering::Relaxed);
                }
                m = ws.next() => {
                    let Some(Ok(m)) = m else { return false };
                    let Message::Binary(b) = m else {
                        if matches!(m, Message::Close(_)) {
                            return false;
                        }
                        continue;
                    };
                    match shared::decode_hub(&b) {
                        Ok(HubMsg::Ack { seq: acked }) => {
                            let now = Instant::now();
                            let measuring = shared.measuring.load(Ordering::Relaxed);
                            let (mut batches, mut readings) = (0u64, 0u64);
                            while in_flight.front().is_some_and(|f| f.seq <= acked) {
                                let Some(f) = in_flight.pop_front() else { break };
                                batches += 1;
                                readings += u64::from(f.readings);
                                if measuring {
                                    let us = now.saturating_duration_since(f.sent).as_micros();
                                    self.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                                }
                            }
                            shared.acked_batches.fetch_add(batches, Ordering::Relaxed);
                            shared.acked_readings.fetch_add(readings, Ordering::Relaxed);
                            if self.latencies.len() >= LOCAL_SAMPLES {
                                self.hand_over_latencies(shared);
                            }
                        }
                        Ok(HubMsg::Reject { seq: rejected, .. }) => {
                            if let Some(f) = in_flight
                                .iter()
                                .position(|f| f.seq == rejected)
                                .and_then(|at| in_flight.remove(at))
                            {
                                shared
                                    .rejected_readings
                                    .fetch_add(u64::from(f.readings), Ordering::Relaxed);
                            }
                        }
                        Ok(HubMsg::Goodbye { .. }) => return false,
                        _ => {}
                    }
                }
                _ = end.changed() => return true,
            }
        }
    }

    /// Batch `seq`: `cfg.batch` readings over the 4 sensors, sampled over the last `period`
    /// (at most one second), the last one stamped with the Unix time now.
    fn batch(&mut self, seq: u32, cfg: &LoadConfig, period: Duration) -> (DeviceMsg, u16) {
        let n = usize::from(cfg.batch).clamp(1, shared::limits::MAX_READINGS_PER_BATCH);
        let sensor_count = 4usize;
        let samples = n.div_ceil(sensor_count) as u64;
        let span_ms = period.as_millis().min(1000) as u64;
        let step_ms = (span_ms / samples.max(1)).max(1);
        let now_ms = unix_ms();
        let first_ms = now_ms.saturating_sub(step_ms * (samples - 1));
        let uptime = self.started.elapsed().as_millis() as u64;
        let mut readings = heapless::Vec::new();
        for k in 0..n {
            let sample = (k / sensor_count) as u64;
            let sensor = (k % sensor_count) as u8;
            let offset_ms = (step_ms * sample) as u32;
            let value = self.sensors.read(sensor, uptime + step_ms * sample);
            let _ = readings.push(Reading {
                sensor,
                offset_ms,
                value,
            });
        }
        let msg = DeviceMsg::Batch(Batch {
            seq,
            clock: Clock::Sntp { base_ms: first_ms },
            dropped: 0,
            readings,
        });
        (msg, n as u16)
    }

    fn hand_over_latencies(&mut self, shared: &Shared) {
        if !self.latencies.is_empty() {
            shared
                .latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut self.latencies);
        }
    }
}

async fn send(ws: &mut Ws, msg: &DeviceMsg) -> Result<(), ()> {
    let mut buf = [0u8; shared::limits::MAX_DEVICE_FRAME_BYTES];
    let bytes = shared::encode(msg, &mut buf).map_err(|_| ())?;
    ws.feed(Message::Binary(Bytes::copy_from_slice(bytes)))
        .await
        .map_err(|_| ())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
