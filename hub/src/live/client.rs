//! One `/ws/live` connection: forwards the events its subscription selects, answers
//! subscription messages, reports lag, and closes on shutdown with 1001.
//!
//! A new client receives everything. It narrows or widens that with small JSON messages:
//! `{"type":"subscribe","device":"NAME","sensors":[0,2]}` (sensors optional: all of them),
//! `{"type":"unsubscribe","device":"NAME"}`, and `"device":"*"` for every device. Each is
//! answered with `{"type":"subscription",...}` showing the subscription now in force. Device
//! status events (`{"type":"device",...}`) go to every client whatever it subscribed to.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::{LiveEvent, event::Lagged};

/// Devices one client may name in its subscription.
pub const MAX_SUBSCRIBED_DEVICES: usize = 1024;
/// Largest message a live client may send (subscriptions are tiny).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4096;

/// What a client wants to see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    /// Every device, every sensor.
    all: bool,
    /// Device name -> sensors (`None`: all sensors of it).
    devices: HashMap<Arc<str>, Option<BTreeSet<u8>>>,
}

impl Subscription {
    pub fn everything() -> Self {
        Self {
            all: true,
            devices: HashMap::new(),
        }
    }

    /// Readings of `sensor` of `device` as subscribed; device status (`sensor` None) goes to
    /// every client, so a device list stays current whatever the charts show.
    pub fn wants(&self, device: &str, sensor: Option<u8>) -> bool {
        let Some(sensor) = sensor else {
            return true;
        };
        if self.all {
            return true;
        }
        match self.devices.get(device) {
            None => false,
            Some(None) => true,
            Some(Some(sensors)) => sensors.contains(&sensor),
        }
    }

    /// The messages of `event` this client is sent. A batch of a device it does not follow
    /// is skipped without writing its JSON.
    fn messages<'e>(&self, event: &'e LiveEvent) -> impl Iterator<Item = &'e Utf8Bytes> {
        let follows = !event.is_readings() || self.all || self.devices.contains_key(&*event.device);
        let messages = if follows { event.messages() } else { &[] };
        messages
            .iter()
            .filter(move |m| self.wants(&event.device, m.sensor))
            .map(|m| &m.json)
    }

    fn apply(&mut self, request: ClientRequest) -> Result<(), String> {
        match request {
            ClientRequest::Subscribe { device, sensors } if device == "*" => {
                if sensors.is_some() {
                    return Err("\"*\" takes no sensor list".into());
                }
                self.all = true;
                self.devices.clear();
            }
            ClientRequest::Subscribe { device, sensors } => {
                if !self.all
                    && !self.devices.contains_key(device.as_str())
                    && self.devices.len() >= MAX_SUBSCRIBED_DEVICES
                {
                    return Err(format!(
                        "at most {MAX_SUBSCRIBED_DEVICES} devices per subscription"
                    ));
                }
                if self.all {
                    // Naming a device narrows "everything" down to what is named from now on.
                    self.all = false;
                }
                self.devices
                    .insert(device.into(), sensors.map(|s| s.into_iter().collect()));
            }
            ClientRequest::Unsubscribe { device } if device == "*" => {
                self.all = false;
                self.devices.clear();
            }
            ClientRequest::Unsubscribe { device } => {
                self.devices.remove(device.as_str());
            }
        }
        Ok(())
    }

    fn describe(&self) -> SubscriptionView {
        let mut devices: Vec<DeviceView> = self
            .devices
            .iter()
            .map(|(name, sensors)| DeviceView {
                device: name.to_string(),
                sensors: sensors.as_ref().map(|s| s.iter().copied().collect()),
            })
            .collect();
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        SubscriptionView {
            kind: "subscription",
            all: self.all,
            devices,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientRequest {
    Subscribe {
        device: String,
        sensors: Option<Vec<u8>>,
    },
    Unsubscribe {
        device: String,
    },
}

#[derive(Serialize)]
struct SubscriptionView {
    #[serde(rename = "type")]
    kind: &'static str,
    all: bool,
    devices: Vec<DeviceView>,
}

#[derive(Serialize)]
struct DeviceView {
    device: String,
    sensors: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

fn json<T: Serialize>(value: &T) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(value).unwrap_or_default(),
    ))
}

/// Send one message, or give up on a client that has not taken it within `within`.
async fn send(socket: &mut WebSocket, message: Message, within: Duration) -> Result<(), ()> {
    match tokio::time::timeout(within, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Messages written before one flush (or a few more: a batch's messages go together): a
/// client that is behind gets them in few large writes instead of one system call each.
const MESSAGES_PER_FLUSH: usize = 256;

/// Most events looked at in one go, written or filtered out: a client whose subscription
/// skips most events still returns to its socket and its pings.
const EVENTS_PER_PASS: usize = 1024;

/// Send `first` and whatever else is already waiting (up to [`MESSAGES_PER_FLUSH`]) that the
/// subscription wants, then flush once. A lag found while draining is reported in place.
async fn send_events(
    socket: &mut WebSocket,
    first: Arc<LiveEvent>,
    events: &mut broadcast::Receiver<Arc<LiveEvent>>,
    subscription: &Subscription,
    within: Duration,
) -> Result<(), ()> {
    let write = async {
        let mut event = first;
        let (mut written, mut seen) = (0, 1);
        'drain: loop {
            for json in subscription.messages(&event) {
                socket.feed(Message::Text(json.clone())).await?;
                written += 1;
            }
            if written >= MESSAGES_PER_FLUSH || seen >= EVENTS_PER_PASS {
                break;
            }
            seen += 1;
            event = loop {
                match events.try_recv() {
                    Ok(event) => break event,
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        socket
                            .feed(json(&Lagged {
                                kind: "lagged",
                                missed,
                            }))
                            .await?;
                        written += 1;
                    }
                    Err(_) => break 'drain,
                }
            };
        }
        socket.flush().await
    };
    match tokio::time::timeout(within, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Serve one live client until it leaves, dies, or the hub shuts down.
///
/// `events` is subscribed before the upgrade is answered, so every event published after the
/// client saw its `101` reaches it, however late its task first runs on the live thread.
pub async fn serve(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<Arc<LiveEvent>>,
    mut shutdown: watch::Receiver<bool>,
    ping_interval: Duration,
) {
    let mut subscription = Subscription::everything();
    let mut ping = tokio::time::interval(ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A browser whose TCP window stays full blocks our writes; after this long the client
    // is dropped rather than kept blocked (it could not see pings or shutdown otherwise).
    let stuck_after = ping_interval * 3;

    let close = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if send_events(&mut socket, event, &mut events, &subscription, stuck_after).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if send(&mut socket, json(&Lagged { kind: "lagged", missed }), stuck_after).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break (1001, "hub shutting down"),
            },
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let answer = if text.len() > MAX_CLIENT_MESSAGE_BYTES {
                            json(&ErrorView { kind: "error", message: "message too long" })
                        } else {
                            match serde_json::from_str::<ClientRequest>(text.as_str()).map_err(|e| e.to_string()).and_then(|r| subscription.apply(r)) {
                                Ok(()) => json(&subscription.describe()),
                                Err(message) => json(&ErrorView { kind: "error", message: &message }),
                            }
                        };
                        if send(&mut socket, answer, stuck_after).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break (1003, "live socket takes JSON text frames"),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_interval * 3 {
                    break (1001, "no answer to pings");
                }
                if send(&mut socket, Message::Ping(Default::default()), stuck_after).await.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => break (1001, "hub shutting down"),
        }
    };
    let (code, reason) = close;
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    // Bounded well inside the hub's shutdown deadline.
    let _ = send(&mut socket, close, stuck_after.min(Duration::from_secs(2))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ClientRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_clients_see_everything() {
        let sub = Subscription::everything();
        assert!(sub.wants("a", Some(1)));
        assert!(sub.wants("b", None));
    }

    #[test]
    fn subscribing_to_one_device_hides_every_other_device() {
        let mut sub = Subscription::everything();
        sub.apply(request(r#"{"type":"subscribe","device":"a"}"#))
            .unwrap();
        assert!(sub.wants("a", Some(3)));
        assert!(sub.wants("a", None));
        assert!(!sub.wants("b", Some(3)));
        assert!(sub.wants("b", None), "status events go to everyone");
    }

    #[test]
    fn sensor_subscription_still_delivers_device_status() {
        let mut sub = Subscription::everything();
        sub.apply(request(
            r#"{"type":"subscribe","device":"a","sensors":[2]}"#,
        ))
        .unwrap();
        assert!(sub.wants("a", Some(2)));
        assert!(!sub.wants("a", Some(1)));
        assert!(sub.wants("a", None));
    }

    #[test]
    fn unsubscribe_star_stops_every_reading() {
        let mut sub = Subscription::everything();
        sub.apply(request(r#"{"type":"unsubscribe","device":"*"}"#))
            .unwrap();
        assert!(!sub.wants("a", Some(2)));
        assert!(sub.wants("a", None));
        sub.apply(request(r#"{"type":"subscribe","device":"*"}"#))
            .unwrap();
        assert!(sub.wants("a", Some(2)));
    }

    #[test]
    fn a_batch_sends_only_the_subscribed_sensors() {
        let point = |sensor| shared::payload::Point {
            sensor,
            ts_ms: 1_000,
            value: 1.0,
        };
        let batch = LiveEvent::readings(
            "a".into(),
            1,
            crate::store::TimeSource::Sntp,
            vec![point(0), point(1), point(2)].into(),
        );
        let mut sub = Subscription::everything();
        assert_eq!(sub.messages(&batch).count(), 3);
        sub.apply(request(
            r#"{"type":"subscribe","device":"a","sensors":[0,2]}"#,
        ))
        .unwrap();
        let sent: Vec<_> = sub
            .messages(&batch)
            .map(|j| j.as_str().to_owned())
            .collect();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].contains(r#""sensor":0"#) && sent[1].contains(r#""sensor":2"#));
        sub.apply(request(r#"{"type":"subscribe","device":"b"}"#))
            .unwrap();
        sub.apply(request(r#"{"type":"unsubscribe","device":"a"}"#))
            .unwrap();
        assert_eq!(sub.messages(&batch).count(), 0);
        let status = LiveEvent::status("a".into(), false, None, 5);
        assert_eq!(sub.messages(&status).count(), 1, "status goes to everyone");
    }

    #[test]
    fn unknown_requests_are_refused_by_the_parser() {
        assert!(serde_json::from_str::<ClientRequest>(r#"{"type":"hack"}"#).is_err());
        assert!(serde_json::from_str::<ClientRequest>(r#"{"type":"subscribe"}"#).is_err());
    }
}
