//! One device connection, from Hello to close.
//!
//! ```text
//! frame -> decode -> (Hello | Batch | Heartbeat)
//! Batch -> seq check -> clock -> validate -> live fan-out (now) -> store queue (waits when full)
//!       -> commit -> Ack (cumulative, in order)
//! ```
//! The socket is read only while fewer than `Config::device_inflight` batches wait for their
//! commit and while the store's queue has room: a slow store slows the device down (it keeps
//! its batches in its outbox) instead of filling the hub's memory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use shared::payload::Point;
use shared::{
    BatchView, Clock, CloseReason, DeviceFrame, Hello, HubMsg, Reading, SensorSet, SeqVerdict,
};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Bytes, Message};

use super::rate::{FramePacer, RateGuard};
use super::registry::{Registration, Signal};
use crate::live::LiveEvent;
use crate::metrics::Metrics;
use crate::server::AppState;
use crate::store::{CommitTicket, Committed, DeviceId, IncomingBatch, StoreError, TimeSource};
use crate::time::unix_ms;

/// How long a session closing for shutdown waits for the commits it is owed, so that its
/// last batches are acked rather than resent.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);

/// Why the read loop ended.
enum End {
    /// Tell the device why, then close with this code.
    Close {
        reason: CloseReason,
        code: u16,
        text: &'static str,
    },
    /// The socket is gone or closed by the device: nothing more to send.
    Gone,
}

fn close(reason: CloseReason, code: u16, text: &'static str) -> End {
    End::Close { reason, code, text }
}

/// What the session does with one message.
enum Step {
    Reply(HubMsg),
    Store(IncomingBatch),
    Nothing,
}

/// State of a connection after a valid Hello.
struct Session {
    app: AppState,
    device_id: DeviceId,
    name: Arc<str>,
    boot_id: u32,
    sensors: SensorSet,
    /// Hub wall clock minus device uptime at Hello: maps `Clock::Uptime` batches of this boot.
    uptime_offset_ms: i64,
    /// Highest seq handed to the store (stored or waiting for its commit).
    accepted_seq: u32,
    /// Highest seq known committed (acked).
    committed_seq: u32,
    invalid_streak: u32,
    /// Readings per second of the device's own time, against its declared rate.
    rate: RateGuard,
}

/// Batches handed to the store, oldest first, waiting for their commits. The writer commits
/// in queue order, so only the oldest ticket is polled; nothing is allocated until a batch
/// arrives.
#[derive(Default)]
struct Pending(VecDeque<Waiting>);

struct Waiting {
    seq: u32,
    readings: u64,
    ticket: CommitTicket,
}

/// A batch whose commit landed (or failed).
struct Landed {
    seq: u32,
    readings: u64,
    result: Result<Committed, StoreError>,
}

impl Pending {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, seq: u32, readings: u64, ticket: CommitTicket) {
        self.0.push_back(Waiting {
            seq,
            readings,
            ticket,
        });
    }

    /// The oldest batch once its commit lands; `None` at once when nothing is pending.
    fn next(&mut self) -> impl Future<Output = Option<Landed>> + '_ {
        std::future::poll_fn(|cx| {
            let Some(oldest) = self.0.front_mut() else {
                return std::task::Poll::Ready(None);
            };
            let result = std::task::ready!(std::pin::Pin::new(&mut oldest.ticket).poll(cx));
            let (seq, readings) = (oldest.seq, oldest.readings);
            self.0.pop_front();
            std::task::Poll::Ready(Some(Landed {
                seq,
                readings,
                result,
            }))
        })
    }
}

/// A device's WebSocket, on the connection hyper hands over after the 101.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The whole connection, from hyper's hand-over. An `async move` block rather than an
/// `async fn`: an async fn's arguments are stored twice in its future, and this future is what
/// every connection keeps allocated for its whole life (see the idle-connection bench).
#[allow(clippy::manual_async_fn)]
pub fn run(
    upgrade: OnUpgrade,
    app: AppState,
    device_id: DeviceId,
    name: Arc<str>,
) -> impl Future<Output = ()> + Send {
    async move {
        let Ok(upgraded) = upgrade.await else {
            // The client went away before the hand-over: nothing to close.
            return;
        };
        let mut socket = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(super::socket_config()),
        )
        .await;
        // The opening's state (680 bytes) is boxed, so it is freed once the device streams
        // instead of sizing the task every connection keeps for its whole life. A failed
        // opening has said goodbye already.
        let Some((mut session, registration)) =
            Box::pin(open(&mut socket, &app, device_id, &name)).await
        else {
            return;
        };
        // Shutdown reaches a streaming session as a kick (`ConnectedDevices::kick_all`); one
        // that registered just after it sees the flag.
        let end = if *app.shutdown.borrow() {
            app.devices.unregister(&registration);
            close(CloseReason::Shutdown, 1001, "hub shutting down")
        } else {
            session.stream(&mut socket, registration).await
        };
        finish(&mut socket, end).await;
    }
}

/// The session that streams from here on, or `None` once a failed opening is closed.
async fn open(
    socket: &mut Socket,
    app: &AppState,
    device_id: DeviceId,
    name: &Arc<str>,
) -> Option<(Session, Registration)> {
    match opening(socket, app, device_id, name).await {
        Ok(opened) => Some(opened),
        Err(end) => {
            finish(socket, end).await;
            None
        }
    }
}

/// Hello within the timeout, its checks, Welcome.
async fn opening(
    socket: &mut Socket,
    app: &AppState,
    device_id: DeviceId,
    name: &Arc<str>,
) -> Result<(Session, Registration), End> {
    let mut shutdown = app.shutdown.clone();
    let hello = tokio::select! {
        hello = read_hello(socket, app) => hello,
        _ = tokio::time::sleep(app.config.hello_timeout) => Err(close(CloseReason::PolicyViolation, 1008, "no Hello in time")),
        _ = shutdown.changed() => Err(close(CloseReason::Shutdown, 1001, "hub shutting down")),
    }?;
    let sensors = shared::validate_hello(&hello).map_err(|e| {
        tracing::info!(device = %name, error = %e, "invalid Hello");
        close(CloseReason::PolicyViolation, 1008, "invalid Hello")
    })?;
    let now = unix_ms();
    if let Err(e) = app.store.record_hello(device_id, &hello, now).await {
        tracing::error!(device = %name, error = %e, "could not record Hello");
        return Err(close(CloseReason::Internal, 1011, "store unavailable"));
    }
    let stored_seq = match app.store.cursor(device_id, hello.boot_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(device = %name, error = %e, "could not read cursor");
            return Err(close(CloseReason::Internal, 1011, "store unavailable"));
        }
    };
    let welcome = HubMsg::Welcome(shared::Welcome {
        hub_time_ms: now as u64,
        stored_seq,
        config: app.config.device,
    });
    if send_msg(socket, &welcome).await.is_err() {
        return Err(End::Gone);
    }
    let registration = app.devices.register(device_id);
    app.live
        .publish(status_event(name, true, Some(hello.firmware.as_str())));
    tracing::info!(device = %name, boot_id = hello.boot_id, firmware = %hello.firmware, stored_seq, "device online");

    let session = Session {
        uptime_offset_ms: now - hello.uptime_ms as i64,
        boot_id: hello.boot_id,
        sensors,
        accepted_seq: stored_seq.unwrap_or(0),
        committed_seq: stored_seq.unwrap_or(0),
        invalid_streak: 0,
        // A device that follows the config in Welcome may sample faster than its Hello said
        // (Hello goes out first): the limit is the larger of the two rates.
        rate: RateGuard::new(
            hello.declared_rate.max(configured_rate(
                hello.sensors.len(),
                app.config.device.sample_interval_ms,
            )),
            app.config.rate_limit_factor,
        ),
        name: name.clone(),
        device_id,
        app: app.clone(),
    };
    Ok((session, registration))
}

async fn read_hello(socket: &mut Socket, app: &AppState) -> Result<Box<Hello>, End> {
    loop {
        let frame = next_frame(socket, app).await?;
        let mut readings = Vec::new();
        match decode_frame(&frame, &mut readings, app)? {
            DeviceFrame::Hello(hello) => return Ok(hello),
            DeviceFrame::Heartbeat(_) => continue,
            DeviceFrame::Batch(_) => {
                return Err(close(
                    CloseReason::PolicyViolation,
                    1008,
                    "Hello must come first",
                ));
            }
        }
    }
}

/// The next binary frame, or how the connection ends. Pings and pongs are skipped
/// (tungstenite answers pings itself).
async fn next_frame(socket: &mut Socket, app: &AppState) -> Result<Bytes, End> {
    loop {
        let message = match socket.next().await {
            None => return Err(End::Gone),
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(read_error(e)),
        };
        match message {
            Message::Binary(bytes) => return Ok(bytes),
            Message::Text(_) => {
                Metrics::inc(&app.metrics.frames_malformed_total, 1);
                return Err(close(CloseReason::BadFrame, 1003, "binary frames only"));
            }
            Message::Close(_) => return Err(End::Gone),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        }
    }
}

thread_local! {
    /// The readings of the batch being decoded on this thread. Reused, so decoding a batch
    /// allocates nothing; `Session::handle` is done with it before the session awaits again.
    static READINGS: RefCell<Vec<Reading>> = const { RefCell::new(Vec::new()) };
}

/// A frame's message; a batch's readings go to `readings`.
fn decode_frame<'r>(
    bytes: &[u8],
    readings: &'r mut Vec<Reading>,
    app: &AppState,
) -> Result<DeviceFrame<'r>, End> {
    Metrics::inc(&app.metrics.frames_received_total, 1);
    match shared::decode_device_frame(bytes, readings) {
        Ok(msg) => Ok(msg),
        Err(e) => {
            Metrics::inc(&app.metrics.frames_malformed_total, 1);
            tracing::debug!(error = %e, "undecodable frame");
            Err(match e {
                shared::DecodeError::TooLarge { .. } => {
                    close(CloseReason::BadFrame, 1009, "frame too large")
                }
                _ => close(CloseReason::BadFrame, 1007, "frame does not decode"),
            })
        }
    }
}

/// A read error: a message over the size limit gets 1009; anything else means the socket is
/// broken and there is no one to tell.
fn read_error(e: tungstenite::Error) -> End {
    match e {
        tungstenite::Error::Capacity(_) => close(CloseReason::BadFrame, 1009, "frame too large"),
        tungstenite::Error::Utf8(_) => close(CloseReason::BadFrame, 1007, "invalid UTF-8"),
        tungstenite::Error::Protocol(_) => close(
            CloseReason::PolicyViolation,
            1002,
            "WebSocket protocol error",
        ),
        _ => End::Gone,
    }
}

impl Session {
    async fn stream(&mut self, socket: &mut Socket, registration: Registration) -> End {
        let app = self.app.clone();
        let mut pending = Pending::default();
        let dead_after = (app.config.ping_interval * 3).max(Duration::from_millis(
            u64::from(app.config.device.heartbeat_ms) * 3,
        ));
        let mut last_heard = Instant::now();
        let mut pacer = FramePacer::new(app.config.device_frames_per_s, Instant::now());

        let end = loop {
            tokio::select! {
                frame = next_frame(socket, &app), if pending.len() < app.config.device_inflight => {
                    last_heard = Instant::now();
                    pacer.took(last_heard);
                    // Decided without awaiting, so the message is gone before the next await.
                    let step = match frame.and_then(|bytes| READINGS.with_borrow_mut(|readings| {
                        self.handle(decode_frame(&bytes, readings, &app)?)
                    })) {
                        Ok(step) => step,
                        Err(end) => break end,
                    };
                    match step {
                        Step::Reply(reply) => if send_msg(socket, &reply).await.is_err() { break End::Gone },
                        // Boxed: the hand-off's state (432 bytes) lives only while it runs, not in
                        // every idle connection's task.
                        Step::Store(incoming) => if let Err(end) = Box::pin(self.store(incoming, &mut pending)).await { break end },
                        Step::Nothing => {}
                    }
                    // Over its frame rate, the device is read later, never refused. The timer is
                    // boxed: it lives only while the device waits, not in every idle connection.
                    let ready_at = pacer.ready_at();
                    if ready_at > last_heard {
                        tokio::select! {
                            _ = Box::pin(tokio::time::sleep_until(ready_at)) => {}
                            reason = registration.kick.kicked() => break kicked(reason),
                        }
                    }
                }
                Some(landed) = pending.next() => {
                    if let Err(end) = self.committed(landed) { break end; }
                    // Group commit answers many batches at once: gather every one that is ready
                    // and send one cumulative Ack.
                    let mut failed = None;
                    while let Some(Some(landed)) = pending.next().now_or_never() {
                        if let Err(end) = self.committed(landed) { failed = Some(end); break; }
                    }
                    if let Some(end) = failed { break end; }
                    if send_msg(socket, &HubMsg::Ack { seq: self.committed_seq }).await.is_err() { break End::Gone; }
                }
                // The hub's one ping timer rings every session's round (`ping_all`).
                signal = registration.kick.next() => match signal {
                    Signal::Close(reason) => break kicked(reason),
                    Signal::PingDue => {
                        if last_heard.elapsed() > dead_after {
                            break close(CloseReason::Timeout, 4001, "no traffic within the heartbeat timeout");
                        }
                        if socket.send(Message::Ping(Default::default())).await.is_err() { break End::Gone; }
                    }
                },
            }
        };

        // Whatever the device sent and the store accepted is acked if its commit lands soon:
        // the device then need not resend it.
        if matches!(
            end,
            End::Close {
                reason: CloseReason::Shutdown | CloseReason::Replaced,
                ..
            }
        ) && !pending.is_empty()
        {
            let drain = async {
                while let Some(landed) = pending.next().await {
                    if self.committed(landed).is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(SHUTDOWN_ACK_WAIT, drain).await;
            let _ = send_msg(
                socket,
                &HubMsg::Ack {
                    seq: self.committed_seq,
                },
            )
            .await;
        }
        if app.devices.unregister(&registration) {
            app.live.publish(status_event(&self.name, false, None));
            tracing::info!(device = %self.name, "device offline");
        }
        end
    }

    fn committed(&mut self, landed: Landed) -> Result<(), End> {
        let Landed {
            seq,
            readings,
            result,
        } = landed;
        match result {
            Ok(committed) => {
                if let Committed::Stored { .. } = committed {
                    Metrics::inc(&self.app.metrics.batches_stored_total, 1);
                    Metrics::inc(&self.app.metrics.readings_stored_total, readings);
                }
                self.committed_seq = self.committed_seq.max(seq);
                Ok(())
            }
            Err(e) => {
                tracing::error!(device = %self.name, seq, error = %e, "commit failed");
                Err(close(CloseReason::Internal, 1011, "store failure"))
            }
        }
    }

    /// What one message asks for: a reply now, a batch to store, or nothing.
    fn handle(&mut self, msg: DeviceFrame<'_>) -> Result<Step, End> {
        match msg {
            DeviceFrame::Hello(_) => Err(close(
                CloseReason::PolicyViolation,
                1008,
                "Hello sent twice",
            )),
            DeviceFrame::Heartbeat(hb) => Ok(Step::Reply(HubMsg::Pong {
                hub_time_ms: unix_ms() as u64,
                uptime_ms: hb.uptime_ms,
            })),
            DeviceFrame::Batch(batch) => self.batch(&batch),
        }
    }

    /// Sequence, clock, validation and rate checks; a batch that passes is published live and
    /// returned for the store.
    fn batch(&mut self, batch: &BatchView<'_>) -> Result<Step, End> {
        let seq = batch.seq;
        match shared::check_seq(Some(self.accepted_seq), seq) {
            Ok(SeqVerdict::Duplicate) => {
                Metrics::inc(&self.app.metrics.batches_duplicate_total, 1);
                // Stored, or waiting in a commit that will be acked: with nothing pending, every
                // accepted batch is committed and the cumulative Ack covers this one.
                return Ok(if self.accepted_seq == self.committed_seq {
                    Step::Reply(HubMsg::Ack {
                        seq: self.committed_seq,
                    })
                } else {
                    Step::Nothing
                });
            }
            Ok(SeqVerdict::New { .. }) => {}
            Err(reason) => return self.reject(seq, reason),
        }
        let now = unix_ms();
        let (base_ms, time_source) = match batch.clock {
            Clock::Sntp { base_ms } => (base_ms as i64, TimeSource::Sntp),
            Clock::Hub { base_ms } => (base_ms as i64, TimeSource::HubSynced),
            Clock::Uptime { base_ms } => (
                (base_ms as i64).saturating_add(self.uptime_offset_ms),
                TimeSource::UptimeMapped,
            ),
        };
        if let Err(reason) =
            shared::validate_view(batch, &self.sensors, base_ms.max(0) as u64, now as u64)
        {
            return self.reject(seq, reason);
        }

        let points: Arc<[Point]> = batch
            .readings
            .iter()
            .map(|r| Point {
                sensor: r.sensor,
                ts_ms: base_ms + i64::from(r.offset_ms),
                value: r.value,
            })
            .collect();
        // Validation refuses an empty batch.
        let (first, last) = batch.offset_range().unwrap_or_default();
        let (t_first, t_last) = (base_ms + i64::from(first), base_ms + i64::from(last));
        if !self.rate.admit(t_first, t_last, points.len()) {
            Metrics::inc(&self.app.metrics.batches_rate_limited_total, 1);
            tracing::info!(device = %self.name, seq, "batch over the declared rate");
            return self.reject(seq, shared::RejectReason::RateLimited);
        }
        self.invalid_streak = 0;
        self.publish_live(seq, time_source, &points);
        Ok(Step::Store(IncomingBatch {
            device_id: self.device_id,
            boot_id: self.boot_id,
            seq,
            time_source,
            dropped: batch.dropped,
            points,
            received_ms: now,
        }))
    }

    /// Hand a batch to the store; its commit joins `pending`.
    async fn store(&mut self, incoming: IncomingBatch, pending: &mut Pending) -> Result<(), End> {
        let (seq, readings) = (incoming.seq, incoming.points.len() as u64);
        // Waits while the store's queue is full: this is where backpressure reaches the socket.
        let ticket = match self.app.store.enqueue(incoming).await {
            Ok(ticket) => ticket,
            Err(e) => {
                tracing::error!(device = %self.name, error = %e, "store refused a batch");
                return Err(close(CloseReason::Internal, 1011, "store unavailable"));
            }
        };
        self.accepted_seq = seq;
        pending.push(seq, readings, ticket);
        Ok(())
    }

    fn reject(&mut self, seq: u32, reason: shared::RejectReason) -> Result<Step, End> {
        Metrics::inc(&self.app.metrics.batches_rejected_total, 1);
        self.invalid_streak += 1;
        tracing::debug!(device = %self.name, seq, ?reason, "batch rejected");
        if self.invalid_streak >= self.app.config.max_invalid_batches {
            return Err(close(
                CloseReason::PolicyViolation,
                1008,
                "too many invalid batches",
            ));
        }
        Ok(Step::Reply(HubMsg::Reject { seq, reason }))
    }

    /// One event for the batch, sharing its points; the JSON is written later, on the live
    /// thread.
    fn publish_live(&self, seq: u32, time_source: TimeSource, points: &Arc<[Point]>) {
        if self.app.live.clients() == 0 {
            return;
        }
        self.app.live.publish(LiveEvent::readings(
            self.name.clone(),
            seq,
            time_source,
            points.clone(),
        ));
    }
}

/// How a session told to close ends.
fn kicked(reason: CloseReason) -> End {
    match reason {
        CloseReason::Revoked => close(reason, 1008, "token revoked"),
        CloseReason::Shutdown => close(reason, 1001, "hub shutting down"),
        _ => close(
            CloseReason::Replaced,
            4000,
            "replaced by a newer connection",
        ),
    }
}

/// Readings per second of `sensors` sampled every `interval_ms` (rounded up).
fn configured_rate(sensors: usize, interval_ms: u32) -> u16 {
    let per_s = (sensors as u64 * 1000).div_ceil(u64::from(interval_ms.max(1)));
    per_s.min(u64::from(u16::MAX)) as u16
}

fn status_event(name: &Arc<str>, online: bool, firmware: Option<&str>) -> LiveEvent {
    LiveEvent::status(name.clone(), online, firmware, unix_ms())
}

async fn send_msg(socket: &mut Socket, msg: &HubMsg) -> Result<(), ()> {
    let bytes = encode_hub(msg).ok_or(())?;
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .map_err(|_| ())
}

/// Encoded outside the `async fn`, so the buffer is not part of the session's future.
fn encode_hub(msg: &HubMsg) -> Option<Vec<u8>> {
    let mut buf = [0u8; shared::limits::MAX_HUB_FRAME_BYTES];
    shared::encode(msg, &mut buf)
        .ok()
        .map(|bytes| bytes.to_vec())
}

/// Say goodbye (when there is someone to tell) and close.
async fn finish(socket: &mut Socket, end: End) {
    if let End::Close { reason, code, text } = end {
        let _ = send_msg(socket, &HubMsg::Goodbye { reason }).await;
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: text.into(),
            })))
            .await;
        // Give the close handshake a moment so the device sees the code, bounded.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
    }
}
