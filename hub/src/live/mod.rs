//! Live fan-out: readings and device status go from device sessions to every `/ws/live`
//! client that wants them, without ever making a device wait.
//!
//! One `tokio::sync::broadcast` ring of pre-serialized JSON events, shared by all clients:
//! a device session publishes once (no per-client work on the ingest path), each client task
//! filters by its subscription and writes at its own pace. A client that falls more than the
//! ring's length behind skips ahead and is told how many events it missed — memory stays
//! bounded by the ring, whatever the browsers do.
//!
//! - [`event`]: the JSON shapes sent to browsers.
//! - [`client`]: one `/ws/live` connection: subscriptions, filtering, lag notices.

pub mod client;
pub mod event;

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;

/// One event, serialized once for every client.
#[derive(Debug)]
pub struct LiveEvent {
    /// The device's name, for subscription filtering.
    pub device: Arc<str>,
    /// The sensor this event is about, `None` for device status events.
    pub sensor: Option<u8>,
    pub json: Utf8Bytes,
}

/// The sending side, cloned into every device session.
#[derive(Clone)]
pub struct LiveFanout {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl LiveFanout {
    /// `capacity` events are kept for the slowest client (see `Config::live_buffer`).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }

    /// Publish an event. Never waits; with no client listening the event is simply dropped.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    /// Clients connected right now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}
