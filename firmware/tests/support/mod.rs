//! A fake hub and a virtual clock for driving the device core deterministically: no sockets,
//! no sleeps. The "network" delivers frames instantly while connected; the hub decodes what
//! the core sends with `shared::decode_device` and answers with `HubMsg`s the way the real hub
//! promises to (exactly-once by seq, cumulative acks, Welcome with the stored seq).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use firmware::core::{Action, CoreConfig, DeviceCore, Stamp};
use shared::{
    Batch, CloseReason, DeviceConfig, DeviceMsg, Hello, HubMsg, ResetReason, SensorDecl,
    SensorKind, Welcome,
};

/// The hub's clock at device uptime 0 (2026-05-28).
pub const HUB_EPOCH_MS: u64 = 1_780_000_000_000;

pub fn sensors() -> [SensorDecl; 2] {
    [
        SensorDecl {
            id: 1,
            kind: SensorKind::Temperature,
            unit: "°C".try_into().unwrap(),
        },
        SensorDecl {
            id: 2,
            kind: SensorKind::Humidity,
            unit: "%RH".try_into().unwrap(),
        },
    ]
}

/// One sample round per second of two sensors; batches of 4 readings (two rounds).
pub fn device_config() -> DeviceConfig {
    DeviceConfig {
        sample_interval_ms: 1000,
        batch_max_readings: 4,
        batch_max_age_ms: 10_000,
        heartbeat_ms: 10_000,
    }
}

pub fn config() -> CoreConfig {
    let mut c = CoreConfig::new("test-1.0", 0xB007, ResetReason::PowerOn, &sensors()).unwrap();
    c.device = device_config();
    c.backoff.initial_ms = 1000;
    c.backoff.max_ms = 16_000;
    c.backoff.seed = 7;
    c
}

/// A hub that keeps what it stores and answers like the real one.
#[derive(Debug)]
pub struct FakeHub {
    /// Accepts connections.
    pub online: bool,
    /// Answers frames; false models a hub that reads nothing and says nothing.
    pub responsive: bool,
    /// The current connection went half-open: frames vanish, nothing comes back, until the
    /// device connects again (over TCP a live connection never loses frames; a dead one
    /// never heals).
    pub black_hole: bool,
    /// Batches vanish inside the hub (neither stored nor acked) while everything else is
    /// answered: a broken hub on a live connection, until the device connects again.
    pub lose_batches: bool,
    /// Acks each stored batch at once; false holds acks until `ack()`.
    pub auto_ack: bool,
    pub config: DeviceConfig,
    /// Batch seqs to reject instead of storing.
    pub reject: BTreeSet<u32>,
    /// Stored batches by seq.
    pub stored: BTreeMap<u32, Batch>,
    /// Highest stored seq (the real hub's per-boot cursor).
    pub cursor: Option<u32>,
    /// Every message received, in order (one `Vec` per connection).
    pub connections: Vec<Vec<DeviceMsg>>,
    /// Replies waiting to be delivered.
    pub replies: VecDeque<HubMsg>,
    /// Added to the hub's clock (a hub whose clock was stepped).
    pub epoch_shift_ms: u64,
}

impl Default for FakeHub {
    fn default() -> Self {
        Self {
            online: true,
            responsive: true,
            black_hole: false,
            lose_batches: false,
            auto_ack: true,
            config: device_config(),
            reject: BTreeSet::new(),
            stored: BTreeMap::new(),
            cursor: None,
            connections: Vec::new(),
            replies: VecDeque::new(),
            epoch_shift_ms: 0,
        }
    }
}

impl FakeHub {
    pub fn hub_time(now: u64) -> u64 {
        HUB_EPOCH_MS + now
    }

    pub fn on_connect(&mut self) {
        self.black_hole = false;
        self.lose_batches = false;
        self.connections.push(Vec::new());
    }

    pub fn on_frame(&mut self, now: u64, bytes: &[u8]) {
        let msg = shared::decode_device(bytes).expect("the core sends only valid frames");
        if let Some(conn) = self.connections.last_mut() {
            conn.push(msg.clone());
        }
        if !self.responsive || self.black_hole {
            return;
        }
        match msg {
            DeviceMsg::Hello(h) => {
                assert!(shared::validate_hello(&h).is_ok());
                self.replies.push_back(HubMsg::Welcome(Welcome {
                    hub_time_ms: Self::hub_time(now) + self.epoch_shift_ms,
                    stored_seq: self.cursor,
                    config: self.config,
                }));
            }
            DeviceMsg::Batch(b) => {
                if self.lose_batches {
                    return;
                }
                if self.reject.contains(&b.seq) {
                    self.replies.push_back(HubMsg::Reject {
                        seq: b.seq,
                        reason: shared::RejectReason::Empty,
                    });
                    return;
                }
                // Exactly once: a seq at or below the cursor is acked again, not stored.
                if self.cursor.is_none_or(|c| b.seq > c) {
                    self.cursor = Some(b.seq);
                    self.stored.insert(b.seq, b);
                }
                if self.auto_ack {
                    self.ack();
                }
            }
            DeviceMsg::Heartbeat(h) => {
                self.replies.push_back(HubMsg::Pong {
                    hub_time_ms: Self::hub_time(now) + self.epoch_shift_ms,
                    uptime_ms: h.uptime_ms,
                });
            }
        }
    }

    pub fn ack(&mut self) {
        if let Some(seq) = self.cursor {
            self.replies.push_back(HubMsg::Ack { seq });
        }
    }

    pub fn goodbye(&mut self, reason: CloseReason) {
        self.replies.push_back(HubMsg::Goodbye { reason });
    }

    /// Seqs of the batches received on connection `i`, in order.
    pub fn batch_seqs(&self, i: usize) -> Vec<u32> {
        self.connections[i]
            .iter()
            .filter_map(|m| match m {
                DeviceMsg::Batch(b) => Some(b.seq),
                _ => None,
            })
            .collect()
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.connections
            .iter()
            .flatten()
            .filter_map(|m| match m {
                DeviceMsg::Hello(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn stored_readings(&self) -> usize {
        self.stored.values().map(|b| b.readings.len()).sum()
    }
}

/// One generated reading: where the core put it, and what it was.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    pub stamp: Stamp,
    pub sensor: u8,
    pub value: f32,
}

/// The core, the fake hub and a virtual clock.
pub struct Harness<
    const B: usize = { firmware::core::DEFAULT_OUTBOX_BYTES },
    const F: usize = { firmware::core::DEFAULT_OUTBOX_FRAMES },
> {
    pub core: DeviceCore<B, F>,
    pub hub: FakeHub,
    pub now: u64,
    pub connected: bool,
    pub generated: Vec<Generated>,
    /// Every action with the time it came.
    pub actions: Vec<(u64, Action)>,
    next_value: f32,
}

impl<const B: usize, const F: usize> Harness<B, F> {
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            core: DeviceCore::new(cfg, 0).unwrap(),
            hub: FakeHub::default(),
            now: 0,
            connected: false,
            generated: Vec::new(),
            actions: Vec::new(),
            next_value: 0.0,
        }
    }

    /// Do everything due at `now` until nothing moves: actions, frames both ways.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(action) = self.core.poll_action(self.now) {
                moved = true;
                self.actions.push((self.now, action));
                match action {
                    Action::Connect => {
                        if self.hub.online {
                            self.connected = true;
                            self.hub.on_connect();
                            self.core.handle_connected(self.now);
                        } else {
                            self.core.handle_disconnected(self.now);
                        }
                    }
                    Action::Sample { sensor } => {
                        // Distinct values, so every reading can be traced.
                        let value = self.next_value;
                        self.next_value += 1.0;
                        let stamp = self.core.handle_reading(self.now, sensor, value).unwrap();
                        self.generated.push(Generated {
                            stamp,
                            sensor,
                            value,
                        });
                    }
                    Action::Disconnect { .. } => self.drop_link(),
                }
            }
            if self.connected {
                while let Some(frame) = self.core.poll_transmit(self.now) {
                    moved = true;
                    let bytes = frame.to_vec();
                    self.hub.on_frame(self.now, &bytes);
                }
                while let Some(msg) = self.hub.replies.pop_front() {
                    moved = true;
                    self.deliver(&msg);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the core never settled at {}", self.now);
    }

    /// Advance virtual time to `t`, stopping at every time the core asked to be woken.
    pub fn run_until(&mut self, t: u64) {
        self.settle();
        while self.now < t {
            let next = self.core.poll_timeout().map_or(t, |w| w.min(t));
            self.now = next.max(self.now + 1);
            self.settle();
        }
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Send a hub message to the core now (as if the hub had sent it).
    pub fn deliver(&mut self, msg: &HubMsg) {
        let mut buf = [0u8; shared::limits::MAX_HUB_FRAME_BYTES];
        let bytes = shared::encode(msg, &mut buf).unwrap();
        self.core.handle_frame(self.now, bytes).unwrap();
    }

    /// The network cuts the connection under both ends.
    pub fn cut(&mut self) {
        if self.connected {
            self.drop_link();
            self.core.handle_disconnected(self.now);
        }
    }

    fn drop_link(&mut self) {
        self.connected = false;
        self.hub.replies.clear();
    }

    /// Times of the `Connect` actions.
    pub fn connects(&self) -> Vec<u64> {
        self.actions
            .iter()
            .filter(|(_, a)| *a == Action::Connect)
            .map(|(t, _)| *t)
            .collect()
    }
}

impl<const B: usize, const F: usize> Harness<B, F> {
    /// Step the hub's clock by `ms` (it answers Pongs and Welcomes with the new time).
    pub fn hub_epoch_shift(&mut self, ms: u64) {
        self.hub.epoch_shift_ms += ms;
    }
}

impl<const B: usize, const F: usize> Harness<B, F> {
    /// A reading pushed by the board at `now`, outside the sampling schedule.
    pub fn read(&mut self, sensor: u8) {
        let value = self.next_value;
        self.next_value += 1.0;
        if let Ok(stamp) = self.core.handle_reading(self.now, sensor, value) {
            self.generated.push(Generated {
                stamp,
                sensor,
                value,
            });
        }
    }
}
