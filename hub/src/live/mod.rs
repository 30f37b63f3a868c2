//! Live fan-out: readings and device status go from device sessions to every `/ws/live`
//! client that wants them, without ever making a device wait or taking CPU from storing.
//!
//! One `tokio::sync::broadcast` ring of events shared by all clients: a device session
//! publishes the facts once (no serialization, no per-client work on the ingest path); each
//! event's JSON is written once, by the first client that sends it; each client task filters
//! by its subscription and writes at its own pace. A client that falls more than the ring's
//! length behind skips ahead and is told how many events it missed: memory stays bounded by
//! the ring, whatever the browsers do.
//!
//! The client tasks run on their own thread at the lowest CPU priority ([`runtime`]): while
//! the box has CPU to spare, live events go out at once; when ingest needs every core, the
//! live view lags (and says so) instead of slowing down storage.
//!
//! - [`event`]: the JSON shapes sent to browsers.
//! - [`client`]: one `/ws/live` connection: subscriptions, filtering, lag notices.
//! - [`runtime`]: the low-priority thread the clients run on.

pub mod client;
pub mod event;
pub mod runtime;

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use shared::payload::Point;
use tokio::sync::broadcast;

use crate::store::TimeSource;
use event::{DeviceStatus, Readings};
use runtime::LiveRuntime;

/// One event: what it is about, and its JSON, written once by the first client that sends it.
///
/// A device session only records the facts (no serialization on the ingest path); events that
/// every client skips (lagging under load) are never serialized at all.
#[derive(Debug)]
pub struct LiveEvent {
    /// The device's name, for subscription filtering.
    pub device: Arc<str>,
    /// The sensor this event is about, `None` for device status events.
    pub sensor: Option<u8>,
    what: What,
    json: OnceLock<Utf8Bytes>,
}

#[derive(Debug)]
enum What {
    /// The readings of `sensor` among a batch's points (shared by the batch's events).
    Readings {
        seq: u32,
        time_source: TimeSource,
        points: Arc<[Point]>,
    },
    Status {
        online: bool,
        firmware: Option<Box<str>>,
        ts_ms: i64,
    },
    /// Already serialized (tests).
    #[cfg(test)]
    Json,
}

impl LiveEvent {
    /// `{"type":"readings"}` for `sensor`'s points among `points`.
    pub fn readings(
        device: Arc<str>,
        sensor: u8,
        seq: u32,
        time_source: TimeSource,
        points: Arc<[Point]>,
    ) -> Self {
        Self {
            device,
            sensor: Some(sensor),
            what: What::Readings {
                seq,
                time_source,
                points,
            },
            json: OnceLock::new(),
        }
    }

    /// `{"type":"device"}`: the device came online (with its firmware) or went offline.
    pub fn status(device: Arc<str>, online: bool, firmware: Option<&str>, ts_ms: i64) -> Self {
        Self {
            device,
            sensor: None,
            what: What::Status {
                online,
                firmware: firmware.map(Into::into),
                ts_ms,
            },
            json: OnceLock::new(),
        }
    }

    #[cfg(test)]
    pub fn with_json(device: &str, sensor: Option<u8>, json: &'static str) -> Self {
        Self {
            device: device.into(),
            sensor,
            what: What::Json,
            json: OnceLock::from(Utf8Bytes::from_static(json)),
        }
    }

    /// The event as sent to clients.
    pub fn json(&self) -> &Utf8Bytes {
        self.json.get_or_init(|| {
            let text = match &self.what {
                What::Readings {
                    seq,
                    time_source,
                    points,
                } => serde_json::to_string(&Readings::new(
                    &self.device,
                    self.sensor.unwrap_or_default(),
                    *seq,
                    *time_source,
                    points,
                )),
                What::Status {
                    online,
                    firmware,
                    ts_ms,
                } => serde_json::to_string(&DeviceStatus {
                    kind: "device",
                    device: &self.device,
                    online: *online,
                    firmware: firmware.as_deref(),
                    ts_ms: *ts_ms,
                }),
                #[cfg(test)]
                What::Json => Ok(String::new()),
            };
            Utf8Bytes::from(text.unwrap_or_default())
        })
    }
}

/// The sending side, cloned into every device session, and the thread clients run on.
#[derive(Clone)]
pub struct LiveFanout {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    runtime: LiveRuntime,
}

impl LiveFanout {
    /// `capacity` events are kept for the slowest client (see `Config::live_buffer`).
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Ok(Self {
            tx,
            runtime: LiveRuntime::start()?,
        })
    }

    /// Run a client's task on the live thread.
    pub fn spawn_client<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(task);
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
