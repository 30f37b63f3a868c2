//! The simulator: sensors that need no hub, and whole simulated devices against a tiny fake hub
//! on 127.0.0.1 (real tokio-tungstenite sockets, real handshake with token and subprotocol).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firmware::sim::sensors::{BATTERY, HUMIDITY, PRESSURE, TEMPERATURE};
use firmware::sim::{DeviceReport, RecordedReading, SimDevice, SimSensors, run_device};
use futures_util::{SinkExt, StreamExt};
use shared::{Batch, Clock, CloseReason, DeviceConfig, DeviceMsg, Hello, HubMsg, Welcome};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Bytes, Message};

const TOKEN: &str = "tok-123";

/// Fast settings, so a test sees many batches in a fraction of a second.
fn fast() -> DeviceConfig {
    DeviceConfig {
        sample_interval_ms: 20,
        batch_max_readings: 6,
        batch_max_age_ms: 200,
        heartbeat_ms: 10_000,
    }
}

fn device(url: &str, seed: u64) -> SimDevice {
    let mut d = SimDevice::new(url, TOKEN, format!("dev-{seed}"), seed);
    d.record = true;
    d.sample_interval = Duration::from_millis(20);
    d.batch_max_readings = 6;
    d.batch_max_age = Duration::from_millis(200);
    d.backoff.initial_ms = 50;
    d.backoff.max_ms = 200;
    d.drain_timeout = Duration::from_secs(3);
    d
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// Welcome, store, ack: what the real hub promises.
    Normal,
    /// On the first connection, store this many batches without acking them, then drop the
    /// socket without a close frame.
    CutFirstConnectionAfter(usize),
    /// Refuse every token with 401.
    Unauthorized,
    /// Answer Hello with Goodbye { Revoked } and close with 1008.
    Revoke,
}

#[derive(Debug, Default)]
struct HubState {
    hellos: Vec<Hello>,
    /// By boot id, as the real hub keys exactly-once storage.
    boots: BTreeMap<u32, Boot>,
    connections: usize,
    /// Pongs to the ping each connection starts with.
    pongs: usize,
}

#[derive(Debug, Default)]
struct Boot {
    stored: BTreeMap<u32, Batch>,
    cursor: Option<u32>,
}

impl HubState {
    /// The one device of a single-device test.
    fn only(&self) -> &Boot {
        assert_eq!(self.boots.len(), 1);
        self.boots.values().next().unwrap()
    }
}

struct FakeHub {
    url: String,
    state: Arc<Mutex<HubState>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn fake_hub(behaviour: Behaviour) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws/device", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(HubState::default()));
    let shared_state = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, behaviour, shared_state.clone()));
        }
    });
    FakeHub { url, state }
}

#[allow(clippy::result_large_err)] // the upgrade callback's signature is tungstenite's
async fn serve(stream: tokio::net::TcpStream, behaviour: Behaviour, state: Arc<Mutex<HubState>>) {
    let check = |req: &Request, resp: Response| check_upgrade(behaviour, req, resp);
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let connection = {
        let mut s = state.lock().unwrap();
        s.connections += 1;
        s.connections
    };
    // The real hub pings idle sockets; the device must answer while it keeps reading.
    let _ = ws.send(Message::Ping(Bytes::from_static(b"hub"))).await;
    let mut unacked_batches = 0;
    let mut boot_id = None;
    while let Some(Ok(message)) = ws.next().await {
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Pong(_) => {
                state.lock().unwrap().pongs += 1;
                continue;
            }
            _ => continue,
        };
        let reply = match shared::decode_device(&bytes).expect("the simulator sends valid frames") {
            DeviceMsg::Hello(hello) => {
                if behaviour == Behaviour::Revoke {
                    send(
                        &mut ws,
                        &HubMsg::Goodbye {
                            reason: CloseReason::Revoked,
                        },
                    )
                    .await;
                    let _ = ws.close(None).await;
                    return;
                }
                let mut s = state.lock().unwrap();
                boot_id = Some(hello.boot_id);
                let stored_seq = s.boots.entry(hello.boot_id).or_default().cursor;
                s.hellos.push(hello);
                HubMsg::Welcome(Welcome {
                    hub_time_ms: unix_ms(),
                    stored_seq,
                    config: fast(),
                })
            }
            DeviceMsg::Batch(batch) => {
                let mut s = state.lock().unwrap();
                let boot = s
                    .boots
                    .get_mut(&boot_id.expect("Hello comes first"))
                    .unwrap();
                if boot.cursor.is_none_or(|c| batch.seq > c) {
                    boot.cursor = Some(batch.seq);
                    boot.stored.insert(batch.seq, batch);
                }
                match behaviour {
                    Behaviour::CutFirstConnectionAfter(n) if connection == 1 => {
                        unacked_batches += 1;
                        if unacked_batches == n {
                            // Gone without a word, acks never sent.
                            return;
                        }
                        continue;
                    }
                    _ => {}
                }
                HubMsg::Ack {
                    seq: boot.cursor.unwrap_or(0),
                }
            }
            DeviceMsg::Heartbeat(hb) => HubMsg::Pong {
                hub_time_ms: unix_ms(),
                uptime_ms: hb.uptime_ms,
            },
        };
        send(&mut ws, &reply).await;
    }
}

/// The upgrade as the hub does it: bearer token and subprotocol checked, 401 otherwise, the
/// subprotocol echoed.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn check_upgrade(
    behaviour: Behaviour,
    req: &Request,
    mut resp: Response,
) -> Result<Response, ErrorResponse> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let proto = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if behaviour == Behaviour::Unauthorized
        || auth != Some(&format!("Bearer {TOKEN}"))
        || proto != Some(shared::SUBPROTOCOL)
    {
        let mut refusal = ErrorResponse::new(Some("unauthorized".into()));
        *refusal.status_mut() = StatusCode::UNAUTHORIZED;
        return Err(refusal);
    }
    resp.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(shared::SUBPROTOCOL),
    );
    Ok(resp)
}

async fn send<S: futures_util::Sink<Message> + Unpin>(ws: &mut S, msg: &HubMsg) {
    let mut buf = [0u8; 256];
    let bytes = shared::encode(msg, &mut buf).unwrap();
    let _ = ws
        .send(Message::Binary(Bytes::copy_from_slice(bytes)))
        .await;
}

/// Run `device` for `run` and then stop it; the report must come back within a bound.
async fn run_for(device: SimDevice, run: Duration) -> DeviceReport {
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_device(device, stop_rx));
    tokio::time::sleep(run).await;
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the device stops in bounded time")
        .unwrap()
}

/// What the hub stored, flattened to readings in the form the report records them.
fn stored_readings(boot: &Boot) -> Vec<RecordedReading> {
    boot.stored
        .values()
        .flat_map(|b| {
            b.readings.iter().map(|r| RecordedReading {
                seq: b.seq,
                sensor: r.sensor,
                clock: b.clock,
                offset_ms: r.offset_ms,
                value: r.value,
            })
        })
        .collect()
}

#[test]
fn sensors_are_deterministic_and_plausible() {
    let day = 24 * 3600 * 1000;
    let read_day = |seed| {
        let mut s = SimSensors::new(seed);
        (0..24 * 60)
            .map(|minute| {
                let t = minute * 60_000;
                [TEMPERATURE, HUMIDITY, PRESSURE, BATTERY].map(|id| s.read(id, t))
            })
            .collect::<Vec<_>>()
    };
    let a = read_day(1);
    assert_eq!(a, read_day(1), "same seed, same day");
    assert_ne!(a, read_day(2), "another device differs");

    for [t, h, p, v] in &a {
        assert!((5.0..35.0).contains(t), "temperature {t}");
        assert!((5.0..=100.0).contains(h), "humidity {h}");
        assert!((950.0..=1050.0).contains(p), "pressure {p}");
        assert!((3.3..4.3).contains(v), "battery {v}");
    }
    let temps: Vec<f32> = a.iter().map(|r| r[0]).collect();
    let hums: Vec<f32> = a.iter().map(|r| r[1]).collect();
    let spread = temps.iter().cloned().fold(f32::MIN, f32::max)
        - temps.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 3.0, "a daily curve, not a constant: {spread}");
    assert!(
        correlation(&temps, &hums) < -0.8,
        "humidity falls as it warms"
    );
    // Pressure moves slowly: no jump over a minute beyond a fraction of a hPa.
    assert!(a.windows(2).all(|w| (w[0][2] - w[1][2]).abs() < 0.5));
    // The battery drains.
    let mut s = SimSensors::new(1);
    assert!(s.read(BATTERY, 0) > s.read(BATTERY, 10 * day) + 0.05);
}

fn correlation(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len() as f32;
    let (mx, my) = (x.iter().sum::<f32>() / n, y.iter().sum::<f32>() / n);
    let cov: f32 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f32 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f32 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_device_delivers_every_reading_exactly_as_generated() {
    let hub = fake_hub(Behaviour::Normal).await;
    let report = run_for(device(&hub.url, 1), Duration::from_millis(700)).await;

    assert_eq!(report.error, None);
    assert!(report.acked_all, "{report:?}");
    assert!(report.generated >= 40, "{}", report.generated);
    assert_eq!(report.generated as usize, report.generated_readings.len());
    assert_eq!(report.dropped, 0);
    assert_eq!(report.reconnects, 0);
    let state = hub.state.lock().unwrap();
    assert_eq!(stored_readings(state.only()), report.generated_readings);
    assert_eq!(report.acked_seq, state.only().cursor.unwrap());
    assert_eq!(state.pongs, 1, "the device answered the hub's ping");
    let hello = &state.hellos[0];
    assert_eq!(hello.boot_id, report.boot_id);
    assert_eq!(hello.sensors.len(), 4);
    // Readings sampled before the Welcome carry uptime; after it, the hub's clock.
    assert!(matches!(
        report.generated_readings[0].clock,
        Clock::Uptime { .. }
    ));
    let last = report.generated_readings.last().unwrap();
    let wall = last.unix_ms().expect("hub clock after the Welcome");
    assert!(wall.abs_diff(unix_ms()) < 5_000, "{wall}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_loses_nothing_and_stores_nothing_twice() {
    let hub = fake_hub(Behaviour::CutFirstConnectionAfter(3)).await;
    let report = run_for(device(&hub.url, 2), Duration::from_millis(1_200)).await;

    assert!(report.acked_all, "{report:?}");
    assert!(report.reconnects >= 1);
    let state = hub.state.lock().unwrap();
    assert!(state.connections >= 2);
    assert_eq!(
        stored_readings(state.only()),
        report.generated_readings,
        "every reading once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sntp_every_batch_carries_the_host_clock() {
    let hub = fake_hub(Behaviour::Normal).await;
    let mut d = device(&hub.url, 3);
    d.sntp = true;
    let before = unix_ms();
    let report = run_for(d, Duration::from_millis(400)).await;
    let after = unix_ms();
    assert!(report.acked_all);
    for r in &report.generated_readings {
        assert!(matches!(r.clock, Clock::Sntp { .. }), "{r:?}");
        let t = r.unix_ms().unwrap();
        assert!(
            t + 50 >= before && t <= after + 50,
            "{t} outside {before}..{after}"
        );
    }
    assert_eq!(
        stored_readings(hub.state.lock().unwrap().only()),
        report.generated_readings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_backed_off_from() {
    let hub = fake_hub(Behaviour::Unauthorized).await;
    let mut d = device(&hub.url, 4);
    d.drain_timeout = Duration::from_millis(300);
    let report = run_for(d, Duration::from_millis(600)).await;
    assert!(report.auth_failures >= 2, "{report:?}");
    assert!(
        report.auth_failures < 40,
        "backed off, not hammering: {}",
        report.auth_failures
    );
    assert_eq!(report.connections, 0);
    assert!(!report.acked_all);
    assert!(report.generated > 0);
    assert_eq!(hub.state.lock().unwrap().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_stops_by_itself() {
    let hub = fake_hub(Behaviour::Revoke).await;
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        run_device(device(&hub.url, 5), stop_rx),
    )
    .await
    .expect("a revoked device returns without being stopped");
    assert!(report.revoked);
    assert_eq!(report.last_goodbye, Some(CloseReason::Revoked));
    assert_eq!(report.connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_devices_share_one_process() {
    let hub = fake_hub(Behaviour::Normal).await;
    // One hub token for all: the fake hub does not tell devices apart, it only counts.
    let devices: Vec<SimDevice> = (0..200).map(|i| device(&hub.url, 100 + i)).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet = tokio::spawn(firmware::sim::run_fleet(devices, stop_rx));
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop_tx.send_replace(true);
    let reports = tokio::time::timeout(Duration::from_secs(15), fleet)
        .await
        .unwrap()
        .unwrap();
    let summary = firmware::sim::FleetSummary::of(&reports);
    assert_eq!(summary.devices, 200);
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.undelivered, 0, "{summary}");
    assert_eq!(summary.acked, summary.generated);
    let state = hub.state.lock().unwrap();
    assert_eq!(state.connections, 200);
    for r in &reports {
        let stored: usize = state.boots[&r.boot_id]
            .stored
            .values()
            .map(|b| b.readings.len())
            .sum();
        assert_eq!(stored as u64, r.generated, "{}", r.name);
    }
}
