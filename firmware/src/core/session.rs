//! The device session: one state machine that owns sampling, batching, the outbox, the
//! connection lifecycle and the clock mapping.
//!
//! ```text
//!            Connect            handle_connected        Welcome
//! Waiting ───────────> Connecting ──────────> AwaitingWelcome ──────> Streaming
//!    ^                      │                       │                     │
//!    └── backoff ───────────┴── failure, timeout, ──┴── Goodbye, silence ─┘
//!                                                  Goodbye(Revoked) ──> Revoked
//!                         begin_shutdown + outbox drained ──> Stopped
//! ```
//!
//! Sans-IO, after quinn-proto: every input is a `handle_*(now, ..)` call, every output is
//! polled ([`DeviceCore::poll_action`], [`DeviceCore::poll_transmit`],
//! [`DeviceCore::poll_timeout`]), and `now` (ms of device uptime) is always an argument. A shell
//! loops: feed events, drain `poll_action` and `poll_transmit`, sleep until `poll_timeout` or
//! the next event.
//!
//! Every connection starts with Hello; batches flow only after Welcome, whose `stored_seq`
//! releases what the hub already has, so a reconnect resends only what is really missing,
//! oldest first, at most `max_in_flight` at a time. Samples keep being taken and batched while
//! disconnected; the outbox bounds what waits.

use shared::limits::MAX_DEVICE_FRAME_BYTES;
use shared::{
    CloseReason, DecodeError, DeviceConfig, Heartbeat, Hello, HubMsg, SensorDecl, Welcome,
};

use super::action::{Action, CoreStats, DisconnectReason, ReadingError, SessionState};
use super::backoff::Backoff;
use super::batcher::{Batcher, SampleSchedule, Stamp};
use super::clock::ClockMap;
use super::config::{ConfigError, CoreConfig, declared_rate, sanitize};
use super::frame;
use super::outbox::Outbox;
use super::sleep::SleepTrack;

/// Default outbox ring: 16 KiB, about 45 full 32-reading batches (a minute of 4 sensors at
/// 1 Hz costs ~1.4 KiB). Sized for an ESP32-C3 that must keep Wi-Fi buffers too.
pub const DEFAULT_OUTBOX_BYTES: usize = 16 * 1024;

/// Default outbox entries: 64 frames.
pub const DEFAULT_OUTBOX_FRAMES: usize = 64;

/// The device core, with an outbox of `OUTBOX_BYTES` and `OUTBOX_FRAMES`.
///
/// About 8 KiB plus the outbox: keep it in a `static` or a `Box` on small stacks.
pub struct DeviceCore<
    const OUTBOX_BYTES: usize = DEFAULT_OUTBOX_BYTES,
    const OUTBOX_FRAMES: usize = DEFAULT_OUTBOX_FRAMES,
> {
    pub(super) hello: Hello,
    device: DeviceConfig,
    max_in_flight: usize,
    handshake_timeout_ms: u64,
    dead_after_heartbeats: u64,
    follow_hub_config: bool,
    pub(super) state: SessionState,
    backoff: Backoff,
    pub(super) clock: ClockMap,
    schedule: SampleSchedule,
    pub(super) batcher: Batcher,
    pub(super) outbox: Outbox<OUTBOX_BYTES, OUTBOX_FRAMES>,
    /// Hello, Heartbeat and closing batches are encoded here (one at a time).
    scratch: [u8; MAX_DEVICE_FRAME_BYTES],
    hello_pending: bool,
    hello_sent_at: u64,
    heartbeat_pending: bool,
    heartbeat_sent_at: Option<u64>,
    /// Since when the oldest batch in flight has waited for an ack (None: none in flight).
    ack_wait_since: Option<u64>,
    last_tx: u64,
    last_rx: u64,
    pending_disconnect: Option<DisconnectReason>,
    sampling: bool,
    stopping: bool,
    pub(super) stats: CoreStats,
    /// Deep-sleep bookkeeping (see [`super::sleep`]); inert for an always-on device.
    pub(super) sleep: SleepTrack,
}

impl<const OUTBOX_BYTES: usize, const OUTBOX_FRAMES: usize>
    DeviceCore<OUTBOX_BYTES, OUTBOX_FRAMES>
{
    /// A core booted at uptime `now`: it will ask to connect at once and sample from `now`.
    pub fn new(cfg: CoreConfig, now: u64) -> Result<Self, ConfigError> {
        let device = sanitize(cfg.device);
        let hello = Hello {
            firmware: cfg.firmware,
            boot_id: cfg.boot_id,
            uptime_ms: now,
            reset_reason: cfg.reset_reason,
            declared_rate: declared_rate(cfg.sensors.len(), device.sample_interval_ms),
            sensors: cfg.sensors,
        };
        shared::validate_hello(&hello)?;
        let sensors = hello.sensors.len();
        Ok(Self {
            hello,
            device,
            max_in_flight: usize::from(cfg.max_in_flight.max(1)),
            handshake_timeout_ms: u64::from(cfg.handshake_timeout_ms.max(1)),
            dead_after_heartbeats: u64::from(cfg.dead_after_heartbeats.max(1)),
            follow_hub_config: cfg.follow_hub_config,
            state: SessionState::Waiting { reconnect_at: now },
            backoff: Backoff::new(cfg.backoff),
            clock: ClockMap::new(),
            schedule: SampleSchedule::new(now, sensors),
            batcher: Batcher::new(),
            outbox: Outbox::with_limits(cfg.outbox_max_bytes, cfg.outbox_max_frames),
            scratch: [0; MAX_DEVICE_FRAME_BYTES],
            hello_pending: false,
            hello_sent_at: now,
            heartbeat_pending: false,
            heartbeat_sent_at: None,
            ack_wait_since: None,
            last_tx: now,
            last_rx: now,
            pending_disconnect: None,
            sampling: true,
            stopping: false,
            stats: CoreStats::default(),
            sleep: SleepTrack::default(),
        })
    }

    // ---- inputs -------------------------------------------------------------------------

    /// The WebSocket is open (after `Action::Connect`): Hello goes out first.
    pub fn handle_connected(&mut self, now: u64) {
        if matches!(self.state, SessionState::Revoked | SessionState::Stopped) {
            return;
        }
        self.state = SessionState::AwaitingWelcome { since: now };
        self.hello_pending = true;
        self.heartbeat_pending = false;
        self.last_rx = now;
        self.last_tx = now;
        self.outbox.rewind();
        self.ack_wait_since = None;
        self.pending_disconnect = None;
        bump(&mut self.stats.connections);
    }

    /// The connection failed or closed (from either side). Reconnects after a backoff.
    pub fn handle_disconnected(&mut self, now: u64) {
        match self.state {
            SessionState::Connecting { .. }
            | SessionState::AwaitingWelcome { .. }
            | SessionState::Streaming => {
                self.schedule_reconnect(now);
                bump(&mut self.stats.disconnects);
            }
            // The core ended it itself, or is done: the shell confirms what it already knows.
            SessionState::Waiting { .. } | SessionState::Revoked | SessionState::Stopped => {
                self.pending_disconnect = None;
            }
        }
    }

    /// A binary frame from the hub. A frame that does not decode is counted and ignored (the
    /// error is returned for logging); nothing from the network can panic the core.
    pub fn handle_frame(&mut self, now: u64, frame: &[u8]) -> Result<(), DecodeError> {
        // Any traffic, even garbage, shows the link is alive.
        self.last_rx = now;
        let msg = match shared::decode_hub(frame) {
            Ok(msg) => msg,
            Err(e) => {
                bump(&mut self.stats.bad_frames);
                return Err(e);
            }
        };
        match msg {
            HubMsg::Welcome(w) => self.on_welcome(now, w),
            // Acks and Rejects are facts about storage: true whatever state we are in.
            HubMsg::Ack { seq } => self.release(now, seq),
            HubMsg::Reject { seq, reason } => {
                if let Some(readings) = self.outbox.remove(seq) {
                    bump(&mut self.stats.rejected_batches);
                    self.stats.rejected_readings += u64::from(readings);
                    self.ack_progress(now);
                }
                self.stats.last_reject = Some((seq, reason));
            }
            HubMsg::Config(c) => self.apply_hub_config(now, c),
            HubMsg::Pong {
                hub_time_ms,
                uptime_ms,
            } => {
                // Only an echo of our own last heartbeat gives a trustworthy round trip.
                if self.heartbeat_sent_at == Some(uptime_ms)
                    && self.clock.sync_hub(now, uptime_ms, hub_time_ms)
                {
                    self.on_clock_change();
                } else {
                    bump(&mut self.stats.ignored_frames);
                }
            }
            HubMsg::Goodbye { reason } => self.on_goodbye(now, reason),
        }
        Ok(())
    }

    /// A sensor value read at `now`. Returns where it went (batch seq, clock, offset): the
    /// exact timestamp it travels with.
    pub fn handle_reading(
        &mut self,
        now: u64,
        sensor: u8,
        value: f32,
    ) -> Result<Stamp, ReadingError> {
        if !self.sampling {
            return Err(ReadingError::NotSampling);
        }
        if !self.hello.sensors.iter().any(|s| s.id == sensor) {
            return Err(ReadingError::UndeclaredSensor { sensor });
        }
        if !value.is_finite() {
            bump(&mut self.stats.invalid_readings);
            return Err(ReadingError::NonFinite { sensor });
        }
        let (source, ts) = self.clock.stamp(now);
        if !self.batcher.fits(source, ts) {
            self.close_batch();
        }
        let stamp = self
            .batcher
            .push(now, source, ts, sensor, value)
            .ok_or(ReadingError::Unbatchable)?;
        self.stats.generated += 1;
        if self.batcher.len() >= usize::from(self.device.batch_max_readings) {
            self.close_batch();
        }
        Ok(stamp)
    }

    /// The board set its clock (SNTP) to `unix_ms` at uptime `now`. Times before 2020 are
    /// ignored (returns false).
    pub fn handle_wall_clock(&mut self, now: u64, unix_ms: u64) -> bool {
        let accepted = self.clock.set_wall_clock(now, unix_ms);
        if accepted {
            self.on_clock_change();
        }
        accepted
    }

    /// Time passed: run the timers (batch age, heartbeat, dead connection, handshake timeout,
    /// shutdown drain). `poll_action` calls this too, so a shell may skip it.
    pub fn handle_tick(&mut self, now: u64) {
        match self.state {
            SessionState::Connecting { since } | SessionState::AwaitingWelcome { since } => {
                if now >= since.saturating_add(self.handshake_timeout_ms) {
                    self.drop_connection(now, DisconnectReason::HandshakeTimeout);
                }
            }
            SessionState::Streaming => {
                if now >= self.dead_at() {
                    self.drop_connection(now, DisconnectReason::Silent);
                } else if self
                    .ack_wait_since
                    .is_some_and(|t| now >= t.saturating_add(self.dead_after_ms()))
                {
                    self.drop_connection(now, DisconnectReason::AckTimeout);
                } else if now >= self.heartbeat_at() {
                    self.heartbeat_pending = true;
                }
            }
            SessionState::Waiting { .. } | SessionState::Revoked | SessionState::Stopped => {}
        }
        if self
            .batcher
            .deadline(self.device.batch_max_age_ms)
            .is_some_and(|d| now >= d)
        {
            self.close_batch();
        }
        if self.stopping && self.is_drained() {
            match self.state {
                SessionState::Connecting { .. }
                | SessionState::AwaitingWelcome { .. }
                | SessionState::Streaming => {
                    self.pending_disconnect = Some(DisconnectReason::Drained);
                    self.state = SessionState::Stopped;
                }
                SessionState::Waiting { .. } => self.state = SessionState::Stopped,
                SessionState::Revoked | SessionState::Stopped => {}
            }
        }
    }

    /// Stop sampling and close the open batch; once the outbox is acked the core ends the
    /// connection (`Disconnect { Drained }`) and stops. While disconnected it keeps
    /// reconnecting to deliver: bound the wait in the shell.
    pub fn begin_shutdown(&mut self, now: u64) {
        self.stopping = true;
        self.sampling = false;
        self.close_batch();
        self.handle_tick(now);
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing to do at `now`, if any. Call until `None`.
    pub fn poll_action(&mut self, now: u64) -> Option<Action> {
        self.handle_tick(now);
        if let Some(reason) = self.pending_disconnect.take() {
            return Some(Action::Disconnect { reason });
        }
        if self.sleep.may_connect
            && matches!(self.state, SessionState::Waiting { reconnect_at } if now >= reconnect_at)
        {
            self.state = SessionState::Connecting { since: now };
            return Some(Action::Connect);
        }
        let due = if self.sampling {
            self.schedule.poll(now, self.device.sample_interval_ms)
        } else {
            None
        };
        due.and_then(|i| self.hello.sensors.get(i))
            .map(|s| Action::Sample { sensor: s.id })
    }

    /// The next frame to send on the open connection at `now`, as a binary WebSocket frame.
    /// Call until `None`. A frame returned here counts as sent; if sending fails, call
    /// `handle_disconnected` and it goes out again on the next connection.
    pub fn poll_transmit(&mut self, now: u64) -> Option<&[u8]> {
        match self.state {
            SessionState::AwaitingWelcome { .. } if self.hello_pending => {
                self.hello_pending = false;
                self.hello.uptime_ms = now;
                self.hello.declared_rate =
                    declared_rate(self.hello.sensors.len(), self.device.sample_interval_ms);
                match frame::encode_hello(&self.hello, &mut self.scratch) {
                    Ok(bytes) => {
                        self.hello_sent_at = now;
                        self.last_tx = now;
                        Some(bytes)
                    }
                    Err(_) => None,
                }
            }
            SessionState::Streaming => {
                if let Some(bytes) = self.outbox.next_unsent(self.max_in_flight) {
                    self.ack_wait_since.get_or_insert(now);
                    self.last_tx = now;
                    self.heartbeat_pending = false;
                    self.stats.batches_sent += 1;
                    return Some(bytes);
                }
                if !self.heartbeat_pending {
                    return None;
                }
                self.heartbeat_pending = false;
                match frame::encode_heartbeat(&Heartbeat { uptime_ms: now }, &mut self.scratch) {
                    Ok(bytes) => {
                        self.heartbeat_sent_at = Some(now);
                        self.last_tx = now;
                        bump(&mut self.stats.heartbeats_sent);
                        Some(bytes)
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        }
    }

    /// The earliest uptime at which the core wants `poll_action` called again, assuming the
    /// shell already drained `poll_action` and `poll_transmit`. `None`: only events matter.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut earliest: Option<u64> = None;
        let mut at = |t: u64| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        match self.state {
            SessionState::Waiting { reconnect_at } if self.sleep.may_connect => at(reconnect_at),
            SessionState::Waiting { .. } => {}
            SessionState::Connecting { since } | SessionState::AwaitingWelcome { since } => {
                at(since.saturating_add(self.handshake_timeout_ms));
            }
            SessionState::Streaming => {
                at(self.dead_at());
                if let Some(t) = self.ack_wait_since {
                    at(t.saturating_add(self.dead_after_ms()));
                }
                if !self.heartbeat_pending {
                    at(self.heartbeat_at());
                }
            }
            SessionState::Revoked | SessionState::Stopped => {}
        }
        if self.sampling {
            at(self.schedule.next_due());
        }
        if let Some(d) = self.batcher.deadline(self.device.batch_max_age_ms) {
            at(d);
        }
        earliest
    }

    /// When the next connection attempt is due, while waiting for one.
    pub fn next_connect_at(&self) -> Option<u64> {
        match self.state {
            SessionState::Waiting { reconnect_at } => Some(reconnect_at),
            _ => None,
        }
    }

    // ---- observation --------------------------------------------------------------------

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn stats(&self) -> CoreStats {
        CoreStats {
            dropped_readings: self.outbox.dropped_readings(),
            ..self.stats
        }
    }

    pub fn is_revoked(&self) -> bool {
        self.state == SessionState::Revoked
    }

    /// Nothing left to deliver: no open batch, empty outbox.
    pub fn is_drained(&self) -> bool {
        !self.batcher.is_open() && self.outbox.is_empty()
    }

    pub fn boot_id(&self) -> u32 {
        self.hello.boot_id
    }

    pub fn sensors(&self) -> &[SensorDecl] {
        &self.hello.sensors
    }

    /// The settings in force (the hub's, once it sent them).
    pub fn device_config(&self) -> DeviceConfig {
        self.device
    }

    pub fn clock(&self) -> &ClockMap {
        &self.clock
    }

    pub fn outbox(&self) -> &Outbox<OUTBOX_BYTES, OUTBOX_FRAMES> {
        &self.outbox
    }

    /// The open batch's seq and reading count, if one is open.
    pub fn open_batch(&self) -> Option<(u32, usize)> {
        self.batcher.open_seq().map(|seq| (seq, self.batcher.len()))
    }

    /// Backoff attempts since the last Welcome.
    pub fn backoff_attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    // ---- internals ----------------------------------------------------------------------

    fn on_welcome(&mut self, now: u64, w: Welcome) {
        if !matches!(self.state, SessionState::AwaitingWelcome { .. }) || self.hello_pending {
            bump(&mut self.stats.ignored_frames);
            return;
        }
        if let Some(stored) = w.stored_seq {
            let first_unsent = self.batcher.open_seq().unwrap_or(self.batcher.next_seq());
            if stored >= first_unsent {
                // The hub holds seqs this boot never sent: the boot id was reused (a board
                // without a working RNG). Everything numbered at or below `stored` would be
                // acked as a duplicate and never stored, so give it up *and count it*, and
                // number new batches past the hub's.
                self.close_batch();
                self.outbox.drop_through(stored);
                self.batcher.skip_past(stored);
                bump(&mut self.stats.seq_conflicts);
            } else {
                self.release(now, stored);
            }
        }
        if self.clock.sync_hub(now, self.hello_sent_at, w.hub_time_ms) {
            self.on_clock_change();
        }
        self.apply_hub_config(now, w.config);
        self.backoff.reset();
        self.sleep.unreported_reset = None;
        self.state = SessionState::Streaming;
        self.last_tx = now;
        bump(&mut self.stats.welcomes);
    }

    fn on_goodbye(&mut self, now: u64, reason: CloseReason) {
        self.stats.last_goodbye = Some(reason);
        if !matches!(
            self.state,
            SessionState::Connecting { .. }
                | SessionState::AwaitingWelcome { .. }
                | SessionState::Streaming
        ) {
            bump(&mut self.stats.ignored_frames);
            return;
        }
        if reason == CloseReason::Revoked {
            self.state = SessionState::Revoked;
            self.sampling = false;
            self.hello_pending = false;
            self.heartbeat_pending = false;
            self.outbox.rewind();
            self.pending_disconnect = Some(DisconnectReason::Goodbye(reason));
            bump(&mut self.stats.disconnects);
        } else {
            self.drop_connection(now, DisconnectReason::Goodbye(reason));
        }
    }

    fn release(&mut self, now: u64, seq: u32) {
        let released = self.outbox.release_through(seq);
        self.stats.acked_readings += released.readings;
        self.stats.acked_seq = self.stats.acked_seq.max(seq);
        if released.frames > 0 {
            self.ack_progress(now);
        }
    }

    /// The hub answered for a batch in flight: the ack clock restarts for the rest.
    fn ack_progress(&mut self, now: u64) {
        self.ack_wait_since = (self.outbox.in_flight() > 0).then_some(now);
    }

    fn apply_hub_config(&mut self, now: u64, c: DeviceConfig) {
        if !self.follow_hub_config {
            return;
        }
        let c = sanitize(c);
        if c.sample_interval_ms != self.device.sample_interval_ms {
            self.schedule.reschedule(now, c.sample_interval_ms);
        }
        self.device = c;
        if self.batcher.len() >= usize::from(c.batch_max_readings) {
            self.close_batch();
        }
    }

    /// A batch never mixes clock sources: a new source closes the open batch.
    fn on_clock_change(&mut self) {
        if self
            .batcher
            .source()
            .is_some_and(|s| s != self.clock.source())
        {
            self.close_batch();
        }
    }

    /// Encode the open batch into the outbox. The frame carries the cumulative drop count
    /// *including* frames dropped to make room for it, so the count reaches the hub even if
    /// this is the last batch: encode, reserve room, and encode again if reserving dropped
    /// anything (at most once per frame held, as each round drops one).
    pub(super) fn close_batch(&mut self) {
        let Some(seq) = self.batcher.open_seq() else {
            return;
        };
        let readings = self.batcher.len() as u16;
        let mut dropped = self.outbox.dropped_readings();
        let len = loop {
            let Some(batch) = self.batcher.current(dropped) else {
                return;
            };
            let encoded = frame::encode_batch(batch, &mut self.scratch).map(|b| b.len());
            let Ok(len) = encoded else {
                self.lose_open_batch(readings);
                return;
            };
            if self.outbox.reserve(len).is_err() {
                self.lose_open_batch(readings);
                return;
            }
            let now_dropped = self.outbox.dropped_readings();
            if now_dropped == dropped {
                break len;
            }
            dropped = now_dropped;
        };
        if self
            .outbox
            .push(seq, readings, &self.scratch[..len])
            .is_err()
        {
            self.lose_open_batch(readings);
            return;
        }
        self.batcher.finish();
        bump(&mut self.stats.batches_closed);
    }

    fn lose_open_batch(&mut self, readings: u16) {
        self.outbox.record_lost(readings);
        bump(&mut self.stats.lost_batches);
        self.batcher.finish();
    }

    fn schedule_reconnect(&mut self, now: u64) {
        let delay = self.backoff.next_delay_ms();
        self.state = SessionState::Waiting {
            reconnect_at: now.saturating_add(delay),
        };
        self.outbox.rewind();
        self.ack_wait_since = None;
        self.hello_pending = false;
        self.heartbeat_pending = false;
    }

    fn drop_connection(&mut self, now: u64, reason: DisconnectReason) {
        self.schedule_reconnect(now);
        self.pending_disconnect = Some(reason);
        bump(&mut self.stats.disconnects);
    }

    fn heartbeat_ms(&self) -> u64 {
        u64::from(self.device.heartbeat_ms)
    }

    fn heartbeat_at(&self) -> u64 {
        self.last_tx.saturating_add(self.heartbeat_ms())
    }

    fn dead_after_ms(&self) -> u64 {
        self.dead_after_heartbeats * self.heartbeat_ms()
    }

    fn dead_at(&self) -> u64 {
        self.last_rx.saturating_add(self.dead_after_ms())
    }
}

/// Counters saturate rather than wrap: a wrapped counter would lie.
fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}
