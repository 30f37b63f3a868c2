//! What goes in and out of the session: the states it moves through, the actions it asks the
//! shell for, why it ends a connection, the readings it refuses and what it counts.

use shared::{CloseReason, RejectReason};

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// No connection; the next attempt is due at `reconnect_at` (uptime ms).
    Waiting { reconnect_at: u64 },
    /// The shell was told to connect at `since`.
    Connecting { since: u64 },
    /// Connected at `since`; Hello queued or sent, Welcome awaited.
    AwaitingWelcome { since: u64 },
    /// Welcome received: batches flow.
    Streaming,
    /// The hub revoked this device's token: no more connections and no more samples, until
    /// someone re-provisions the device.
    Revoked,
    /// Shut down and drained: nothing left to do.
    Stopped,
}

/// What the shell must do, from [`DeviceCore::poll_action`](super::DeviceCore::poll_action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open the WebSocket; then call `handle_connected` or, on failure, `handle_disconnected`.
    Connect,
    /// Read this sensor now and hand the value to `handle_reading`.
    Sample { sensor: u8 },
    /// Close the socket (or abandon the connect attempt) with `reason.close_code()`. The
    /// session has already moved on; calling `handle_disconnected` afterwards is harmless.
    Disconnect { reason: DisconnectReason },
}

/// Why the core ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Shutting down and every batch is acked.
    Drained,
    /// Nothing received for `dead_after_heartbeats` heartbeat intervals: half-open.
    Silent,
    /// No Welcome within `handshake_timeout_ms` of `Connect`.
    HandshakeTimeout,
    /// Batches in flight and no ack for `dead_after_heartbeats` heartbeat intervals, though
    /// the hub answers otherwise: they were lost on the way (over TCP only a broken hub loses
    /// frames on a live connection). A new connection resends them.
    AckTimeout,
    /// The hub said goodbye.
    Goodbye(CloseReason),
}

impl DisconnectReason {
    /// The WebSocket close code to send: 1000 when done or told to go, 4001 (the hub's own
    /// code for "nothing heard in time") for a dead or stuck connection.
    pub fn close_code(self) -> u16 {
        match self {
            DisconnectReason::Drained | DisconnectReason::Goodbye(_) => 1000,
            DisconnectReason::Silent
            | DisconnectReason::HandshakeTimeout
            | DisconnectReason::AckTimeout => 4001,
        }
    }
}

/// A reading the core refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("sensor {sensor} is not declared")]
    UndeclaredSensor { sensor: u8 },
    /// The hub would reject the whole batch for one NaN, so it never enters one.
    #[error("sensor {sensor} read a value that is not finite")]
    NonFinite { sensor: u8 },
    #[error("the core no longer samples (shutting down or revoked)")]
    NotSampling,
    #[error("the reading could not be placed in a batch")]
    Unbatchable,
}

/// Counters since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Readings accepted into batches.
    pub generated: u64,
    /// Readings refused (non-finite values).
    pub invalid_readings: u32,
    pub batches_closed: u32,
    /// Batch frames handed to the transport, resends included.
    pub batches_sent: u64,
    /// Highest seq the hub said it stored (Ack or Welcome), 0 before any.
    pub acked_seq: u32,
    /// Readings in batches released by an Ack or Welcome.
    pub acked_readings: u64,
    /// Readings dropped at the outbox limit (cumulative, as sent in `Batch.dropped`).
    pub dropped_readings: u32,
    pub rejected_batches: u32,
    pub rejected_readings: u64,
    pub last_reject: Option<(u32, RejectReason)>,
    /// `handle_connected` calls.
    pub connections: u32,
    pub welcomes: u32,
    /// Connections lost or ended by the core.
    pub disconnects: u32,
    pub heartbeats_sent: u32,
    /// Hub frames that did not decode (ignored).
    pub bad_frames: u32,
    /// Hub frames that decoded but made no sense in the current state (ignored).
    pub ignored_frames: u32,
    /// Welcomes whose `stored_seq` was at or past our own next seq (a reused boot id).
    pub seq_conflicts: u32,
    /// Batches that could not be encoded or were too large for the outbox (counted dropped).
    pub lost_batches: u32,
    pub last_goodbye: Option<CloseReason>,
}
