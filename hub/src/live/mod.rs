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

/// One event: a device's checked batch, or a device coming online or going offline. Its JSON
/// messages (one per sensor of a batch) are written once, by the first client that sends them.
///
/// A device session only records the facts (no serialization on the ingest path) and publishes
/// one event per batch; events that every client skips (lagging under load) are never
/// serialized at all.
#[derive(Debug)]
pub struct LiveEvent {
    /// The device's name, for subscription filtering.
    pub device: Arc<str>,
    what: What,
    messages: OnceLock<Box<[LiveMessage]>>,
}

/// One JSON text message as sent to clients.
#[derive(Debug)]
pub struct LiveMessage {
    /// The sensor whose readings it carries, `None` for device status.
    pub sensor: Option<u8>,
    pub json: Utf8Bytes,
}

#[derive(Debug)]
enum What {
    /// A batch's points, shared with the store's copy of the batch.
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
}

impl LiveEvent {
    /// A checked batch: `{"type":"readings"}` for each of its sensors, in sensor order.
    pub fn readings(
        device: Arc<str>,
        seq: u32,
        time_source: TimeSource,
        points: Arc<[Point]>,
    ) -> Self {
        Self {
            device,
            what: What::Readings {
                seq,
                time_source,
                points,
            },
            messages: OnceLock::new(),
        }
    }

    /// `{"type":"device"}`: the device came online (with its firmware) or went offline.
    pub fn status(device: Arc<str>, online: bool, firmware: Option<&str>, ts_ms: i64) -> Self {
        Self {
            device,
            what: What::Status {
                online,
                firmware: firmware.map(Into::into),
                ts_ms,
            },
            messages: OnceLock::new(),
        }
    }

    /// Whether this event carries readings (which subscriptions filter) rather than status.
    pub fn is_readings(&self) -> bool {
        matches!(self.what, What::Readings { .. })
    }

    /// The event as sent to clients.
    pub fn messages(&self) -> &[LiveMessage] {
        self.messages.get_or_init(|| match &self.what {
            What::Readings {
                seq,
                time_source,
                points,
            } => sensors(points)
                .map(|sensor| LiveMessage {
                    sensor: Some(sensor),
                    json: to_json(&Readings::new(
                        &self.device,
                        sensor,
                        *seq,
                        *time_source,
                        points,
                    )),
                })
                .collect(),
            What::Status {
                online,
                firmware,
                ts_ms,
            } => Box::new([LiveMessage {
                sensor: None,
                json: to_json(&DeviceStatus {
                    kind: "device",
                    device: &self.device,
                    online: *online,
                    firmware: firmware.as_deref(),
                    ts_ms: *ts_ms,
                }),
            }]),
        })
    }
}

/// The sensors among `points`, each once, in ascending order.
fn sensors(points: &[Point]) -> impl Iterator<Item = u8> {
    let mut seen = [0u64; 4];
    for p in points {
        seen[usize::from(p.sensor / 64)] |= 1 << (p.sensor % 64);
    }
    (0..=u8::MAX).filter(move |&s| seen[usize::from(s / 64)] & (1 << (s % 64)) != 0)
}

fn to_json<T: serde::Serialize>(value: &T) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(value).unwrap_or_default())
}

/// The sending side, cloned into every device session, and the thread clients run on.
#[derive(Clone)]
pub struct LiveFanout {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    runtime: LiveRuntime,
}

impl LiveFanout {
    /// `capacity` events (batches) are kept for the slowest client (see `Config::live_buffer`).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(sensor: u8, ts_ms: i64, value: f32) -> Point {
        Point {
            sensor,
            ts_ms,
            value,
        }
    }

    #[test]
    fn a_batch_is_one_message_per_sensor_in_sensor_order() {
        let points: Arc<[Point]> = vec![
            point(3, 1_000, 1.5),
            point(0, 1_000, 20.25),
            point(3, 2_000, 2.5),
            point(200, 1_000, -1.0),
        ]
        .into();
        let event = LiveEvent::readings("kitchen".into(), 7, TimeSource::Sntp, points);
        assert!(event.is_readings());
        let messages = event.messages();
        let sensors: Vec<_> = messages.iter().map(|m| m.sensor).collect();
        assert_eq!(sensors, [Some(0), Some(3), Some(200)]);
        let second: serde_json::Value = serde_json::from_str(messages[1].json.as_str()).unwrap();
        assert_eq!(
            second,
            serde_json::json!({"type": "readings", "device": "kitchen", "sensor": 3, "seq": 7,
                "time_source": "sntp", "points": [[1000, 1.5], [2000, 2.5]]})
        );
        // Written once: the same bytes on every call.
        assert!(std::ptr::eq(event.messages(), messages));
    }

    #[test]
    fn status_is_one_message_without_a_sensor() {
        let event = LiveEvent::status("kitchen".into(), true, Some("1.2.0"), 42);
        assert!(!event.is_readings());
        let [message] = event.messages() else {
            panic!("one message")
        };
        assert_eq!(message.sensor, None);
        let v: serde_json::Value = serde_json::from_str(message.json.as_str()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "device", "device": "kitchen", "online": true,
                "firmware": "1.2.0", "ts_ms": 42})
        );
    }
}
