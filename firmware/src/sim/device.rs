//! One simulated device: its settings ([`SimDevice`]), its event loop ([`run_device`]) and what
//! it did ([`DeviceReport`]).
//!
//! The loop is the shell around the core, in the order the core expects: drain
//! `poll_action` (connect, sample, disconnect), send what `poll_transmit` has through the
//! transport seam, then sleep until the core's `poll_timeout`, a frame, a finished connect
//! attempt or the stop signal, whichever comes first. Uptime is the time since the task
//! started.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use embedded_svc::ws::FrameType;
use futures_util::StreamExt;
use shared::{Clock, CloseReason, DeviceConfig, RejectReason, ResetReason};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::link::{self, ConnectError, FrameQueue, Ws};
use super::sensors::{self, SimSensors};
use crate::core::{Action, BackoffConfig, CoreConfig, DeviceCore, SessionState, Stamp, XorShift64};
use crate::transport::WsTransport;

/// The core every simulated device runs: the board's default outbox (16 KiB, 64 frames).
pub type SimCore = DeviceCore;

/// Writing one round of frames may take this long before the link counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sending our close frame may take this long; then the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One simulated device. [`SimDevice::new`] fills in the defaults documented per field.
#[derive(Debug, Clone)]
pub struct SimDevice {
    /// The hub's device endpoint, `ws://host:port/ws/device`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// For logs and reports.
    pub name: String,
    /// Seeds the sensors (and, mixed with the boot id, the backoff jitter).
    pub seed: u64,
    /// Firmware version in Hello. Default `sim-<crate version>`.
    pub firmware: String,
    /// Default 1 s.
    pub sample_interval: Duration,
    /// Default 32.
    pub batch_max_readings: u16,
    /// Default 1 s.
    pub batch_max_age: Duration,
    /// Default 10 s.
    pub heartbeat: Duration,
    /// Apply the settings the hub sends in Welcome/Config (default true). False keeps the
    /// four settings above whatever the hub says.
    pub follow_hub_config: bool,
    /// Keep every generated reading in the report (for tests; grows without bound). Default
    /// false.
    pub record: bool,
    /// Set the device clock from the host clock at boot, as SNTP would: every batch carries
    /// `Clock::Sntp` with exact host times. Default false: the clock starts unset, batches
    /// carry `Clock::Uptime` until the first Welcome and `Clock::Hub` after it.
    pub sntp: bool,
    /// Default `None`: random per run, as on a real board. A fixed boot id reused against the
    /// same hub database makes the hub take new batches for already-stored ones.
    pub boot_id: Option<u32>,
    /// Default `ResetReason::PowerOn`.
    pub reset_reason: ResetReason,
    /// Outbox limits within the 16 KiB / 64 frames of [`SimCore`]. Default: all of it.
    pub outbox_bytes: usize,
    pub outbox_frames: usize,
    /// Unacked batch frames at most. Default 4.
    pub max_in_flight: u8,
    /// Default: 500 ms first ceiling, 30 s cap, full jitter (the seed is derived per device).
    pub backoff: BackoffConfig,
    /// From connect to Welcome, at most. Default 10 s.
    pub handshake_timeout: Duration,
    /// After stop, how long to keep trying to get the outbox acked. Default 5 s.
    pub drain_timeout: Duration,
    /// What a `wss://` URL's certificate must chain to (the hub's CA). Default none.
    pub tls: Option<super::link::TlsConfig>,
}

impl SimDevice {
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        name: impl Into<String>,
        seed: u64,
    ) -> Self {
        let hub = DeviceConfig::default();
        Self {
            url: url.into(),
            token: token.into(),
            name: name.into(),
            seed,
            firmware: concat!("sim-", env!("CARGO_PKG_VERSION")).to_owned(),
            sample_interval: Duration::from_millis(u64::from(hub.sample_interval_ms)),
            batch_max_readings: hub.batch_max_readings,
            batch_max_age: Duration::from_millis(u64::from(hub.batch_max_age_ms)),
            heartbeat: Duration::from_millis(u64::from(hub.heartbeat_ms)),
            follow_hub_config: true,
            record: false,
            sntp: false,
            boot_id: None,
            reset_reason: ResetReason::PowerOn,
            outbox_bytes: usize::MAX,
            outbox_frames: usize::MAX,
            max_in_flight: 4,
            backoff: BackoffConfig {
                initial_ms: 500,
                max_ms: 30_000,
                ..BackoffConfig::default()
            },
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    fn core_config(&self, boot_id: u32) -> Result<CoreConfig, crate::core::ConfigError> {
        let mut c = CoreConfig::new(
            &self.firmware,
            boot_id,
            self.reset_reason,
            &sensors::declarations(),
        )?;
        c.device = DeviceConfig {
            sample_interval_ms: millis_u32(self.sample_interval),
            batch_max_readings: self.batch_max_readings,
            batch_max_age_ms: millis_u32(self.batch_max_age),
            heartbeat_ms: millis_u32(self.heartbeat),
        };
        c.follow_hub_config = self.follow_hub_config;
        c.backoff = BackoffConfig {
            seed: self.seed ^ (u64::from(boot_id) << 32),
            ..self.backoff
        };
        c.max_in_flight = self.max_in_flight;
        c.handshake_timeout_ms = millis_u32(self.handshake_timeout);
        c.outbox_max_bytes = self.outbox_bytes;
        c.outbox_max_frames = self.outbox_frames;
        Ok(c)
    }
}

/// One generated reading, exactly as it travels: batch `seq`, the batch's `clock` (source and
/// base) and the reading's `offset_ms` from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedReading {
    pub seq: u32,
    pub sensor: u8,
    pub clock: Clock,
    pub offset_ms: u32,
    pub value: f32,
}

impl RecordedReading {
    fn new(stamp: Stamp, sensor: u8, value: f32) -> Self {
        Self {
            seq: stamp.seq,
            sensor,
            clock: stamp.clock,
            offset_ms: stamp.offset_ms,
            value,
        }
    }

    /// `base + offset`: Unix ms for `Clock::Sntp`/`Clock::Hub`, uptime ms for `Clock::Uptime`.
    pub fn timestamp_ms(&self) -> u64 {
        Stamp {
            seq: self.seq,
            clock: self.clock,
            offset_ms: self.offset_ms,
        }
        .timestamp_ms()
    }

    /// The Unix ms timestamp, when the device knew the wall time (`None` for `Clock::Uptime`:
    /// the hub maps those with Hello's uptime).
    pub fn unix_ms(&self) -> Option<u64> {
        Stamp {
            seq: self.seq,
            clock: self.clock,
            offset_ms: self.offset_ms,
        }
        .unix_ms()
    }
}

/// What one simulated device did.
#[derive(Debug, Clone, Default)]
pub struct DeviceReport {
    pub name: String,
    pub boot_id: u32,
    /// Readings generated (accepted into batches).
    pub generated: u64,
    /// Readings dropped at the outbox limit (the cumulative `Batch.dropped`).
    pub dropped: u64,
    /// Readings in batches the hub rejected.
    pub rejected: u64,
    /// Highest seq the hub acknowledged.
    pub acked_seq: u32,
    /// Readings released by acks.
    pub acked_readings: u64,
    pub batches_closed: u32,
    /// Batch frames sent, resends included.
    pub batches_sent: u64,
    /// Connections opened (WebSocket handshakes that succeeded).
    pub connections: u32,
    /// Connections after the first.
    pub reconnects: u32,
    /// Handshakes the hub refused with 401.
    pub auth_failures: u32,
    /// Other failed connection attempts.
    pub connect_failures: u32,
    /// Hub frames that did not decode.
    pub bad_frames: u32,
    /// Nothing left unacked at the end (no open batch, empty outbox).
    pub acked_all: bool,
    /// The hub revoked the token; the device stopped.
    pub revoked: bool,
    pub last_goodbye: Option<CloseReason>,
    pub last_reject: Option<(u32, RejectReason)>,
    /// Why the device could not run at all.
    pub error: Option<String>,
    /// Every generated reading, in generation order (only with `SimDevice::record`).
    pub generated_readings: Vec<RecordedReading>,
}

/// Run one device until `stop` turns true (or its sender is dropped), then stop sampling,
/// flush the open batch, wait up to `drain_timeout` for the outbox to be acked and close with
/// 1000. Returns early if the hub revokes the token.
pub async fn run_device(cfg: SimDevice, mut stop: watch::Receiver<bool>) -> DeviceReport {
    let boot_id = cfg.boot_id.unwrap_or_else(|| random_boot_id(cfg.seed));
    let mut report = DeviceReport {
        name: cfg.name.clone(),
        boot_id,
        ..DeviceReport::default()
    };
    let core = cfg.core_config(boot_id).and_then(|c| SimCore::new(c, 0));
    let mut core = match core {
        Ok(core) => Box::new(core),
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let start = Instant::now();
    let uptime = || start.elapsed().as_millis() as u64;
    if cfg.sntp {
        core.handle_wall_clock(0, unix_now_ms());
    }

    let mut sensors = SimSensors::new(cfg.seed);
    let mut transport = WsTransport::new();
    let mut queue = FrameQueue::default();
    let mut link = Link::Down;
    let mut stopping = *stop.borrow();
    let mut drain_deadline: Option<u64> = None;

    loop {
        let now = uptime();
        if stopping && drain_deadline.is_none() {
            tracing::debug!(device = %cfg.name, "stopping: flushing and draining the outbox");
            core.begin_shutdown(now);
            drain_deadline = Some(now + cfg.drain_timeout.as_millis() as u64);
        }

        while let Some(action) = core.poll_action(now) {
            match action {
                Action::Connect => {
                    tracing::debug!(device = %cfg.name, "connecting");
                    let attempt = link::connect_with(
                        cfg.url.clone(),
                        cfg.token.clone(),
                        cfg.handshake_timeout,
                        cfg.tls.clone(),
                    );
                    link = Link::Connecting(Box::pin(async move { attempt.await.map(Box::new) }));
                }
                Action::Sample { sensor } => {
                    let value = sensors.read(sensor, now);
                    match core.handle_reading(now, sensor, value) {
                        Ok(stamp) if cfg.record => report
                            .generated_readings
                            .push(RecordedReading::new(stamp, sensor, value)),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(device = %cfg.name, "reading refused: {e}"),
                    }
                }
                Action::Disconnect { reason } => {
                    tracing::debug!(device = %cfg.name, ?reason, "closing the connection");
                    link.close(reason.close_code()).await;
                    transport.reset();
                }
            }
        }

        if let Link::Up(ws) = &mut link {
            // `FrameQueue` cannot fail; the real failure shows when writing it out.
            let _ = transport.send_pending(&mut core, now, &mut queue);
            let written = if queue.is_empty() {
                Ok(())
            } else {
                queue.write_to(ws, WRITE_TIMEOUT).await
            };
            if let Err(e) = written {
                tracing::info!(device = %cfg.name, "connection lost while sending: {e}");
                link = Link::Down;
                transport.reset();
                core.handle_disconnected(uptime());
                continue;
            }
        }

        match core.state() {
            SessionState::Stopped => break,
            SessionState::Revoked => {
                tracing::warn!(device = %cfg.name, "token revoked by the hub: stopping");
                break;
            }
            _ => {}
        }
        if drain_deadline.is_some_and(|d| now >= d) {
            tracing::warn!(device = %cfg.name, unacked = core.outbox().len(), "drain timed out");
            break;
        }

        let wake = [core.poll_timeout(), drain_deadline]
            .into_iter()
            .flatten()
            .min();
        // With nothing scheduled the timer branch is disabled; give it a harmless deadline.
        let wake_at = wake.unwrap_or(now + 86_400_000);
        let sleep = tokio::time::sleep_until(start + Duration::from_millis(wake_at));
        let woke = tokio::select! {
            event = link.next_event() => Wake::Link(event),
            _ = sleep, if wake.is_some() => Wake::Timer,
            changed = stop.changed(), if !stopping => Wake::Stop(changed.is_err() || *stop.borrow()),
        };
        let now = uptime();
        match woke {
            Wake::Timer => {}
            Wake::Stop(stop_now) => stopping = stop_now,
            Wake::Link(LinkEvent::Connected(Ok(ws))) => {
                tracing::debug!(device = %cfg.name, "connected");
                link = Link::Up(ws);
                core.handle_connected(now);
            }
            Wake::Link(LinkEvent::Connected(Err(e))) => {
                match e {
                    ConnectError::Unauthorized => {
                        report.auth_failures += 1;
                        tracing::warn!(device = %cfg.name, "the hub refused the token; backing off");
                    }
                    e => {
                        report.connect_failures += 1;
                        tracing::debug!(device = %cfg.name, "connect failed: {e}");
                    }
                }
                link = Link::Down;
                core.handle_disconnected(now);
            }
            Wake::Link(LinkEvent::Message(Some(Ok(message)))) => {
                let (frame_type, data): (FrameType, &[u8]) = match &message {
                    Message::Binary(b) => (FrameType::Binary(false), b),
                    Message::Text(t) => (FrameType::Text(false), t.as_bytes()),
                    Message::Close(_) => (FrameType::Close, &[]),
                    // tungstenite answers pings itself while we keep reading.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                transport.receive(&mut core, now, frame_type, data);
                if frame_type == FrameType::Close {
                    tracing::debug!(device = %cfg.name, "the hub closed the connection");
                    link.close(1000).await;
                }
            }
            Wake::Link(LinkEvent::Message(end)) => {
                if let Some(Err(e)) = end {
                    tracing::debug!(device = %cfg.name, "connection lost: {e}");
                }
                link = Link::Down;
                transport.receive(&mut core, now, FrameType::SocketClose, &[]);
            }
        }
    }

    // Whatever happened, say goodbye properly.
    link.close(1000).await;
    fill_report(&mut report, &core);
    report
}

fn fill_report(report: &mut DeviceReport, core: &SimCore) {
    let s = core.stats();
    report.generated = s.generated;
    report.dropped = u64::from(s.dropped_readings);
    report.rejected = s.rejected_readings;
    report.acked_seq = s.acked_seq;
    report.acked_readings = s.acked_readings;
    report.batches_closed = s.batches_closed;
    report.batches_sent = s.batches_sent;
    report.connections = s.connections;
    report.reconnects = s.connections.saturating_sub(1);
    report.bad_frames = s.bad_frames;
    report.acked_all = core.is_drained();
    report.revoked = core.is_revoked();
    report.last_goodbye = s.last_goodbye;
    report.last_reject = s.last_reject;
}

type Connecting = Pin<Box<dyn Future<Output = Result<Box<Ws>, ConnectError>> + Send>>;

/// The device's side of the network, as far as the loop is concerned.
enum Link {
    Down,
    Connecting(Connecting),
    Up(Box<Ws>),
}

enum LinkEvent {
    Connected(Result<Box<Ws>, ConnectError>),
    Message(Option<Result<Message, tungstenite::Error>>),
}

enum Wake {
    Link(LinkEvent),
    Timer,
    Stop(bool),
}

impl Link {
    /// The next thing the network has for us; never completes while down. Cancel-safe: the
    /// connect attempt lives in `self`, and `StreamExt::next` loses nothing when dropped.
    async fn next_event(&mut self) -> LinkEvent {
        match self {
            Link::Down => std::future::pending().await,
            Link::Connecting(attempt) => LinkEvent::Connected(attempt.as_mut().await),
            Link::Up(ws) => LinkEvent::Message(ws.next().await),
        }
    }

    /// Close with `code` (bounded), or abandon a connect attempt.
    async fn close(&mut self, code: u16) {
        if let Link::Up(mut ws) = std::mem::replace(self, Link::Down) {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
        }
    }
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A boot id that differs between runs and between devices started in the same instant: the
/// host clock, the device seed and a process-wide counter, mixed.
fn random_boot_id(seed: u64) -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rng = XorShift64::new(
        nanos ^ seed.rotate_left(17) ^ n.rotate_left(41) ^ u64::from(std::process::id()),
    );
    loop {
        let id = rng.next_u32();
        if id != 0 {
            return id;
        }
    }
}
