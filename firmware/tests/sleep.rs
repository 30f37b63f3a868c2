//! The deep-sleep backlog: a device that samples on every wake, keeps what it has not
//! delivered in a fixed region across sleeps (the board's RTC memory), and delivers every few
//! wakes. Over many simulated wakes with a flaky hub, cut connections, crashes and power
//! losses, every sampled reading is stored by the hub exactly once, or counted as dropped by
//! the device, or was in the region when the power went (and nowhere else).
//!
//! Each reading's value is a unique tag (its sample number), so the hub's store says exactly
//! which readings arrived and how often.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use firmware::core::{
    Action, CoreConfig, DEFAULT_SLEEP_IMAGE_BYTES, DeviceCore, KeptImage, SleepImageError,
    SleepPolicy, WakeReport,
};
use shared::limits::MAX_BATCH_SPAN_MS;
use shared::{Batch, DeviceConfig, DeviceMsg, HubMsg, ResetReason, Welcome};

const SLEEP_MS: u64 = 60_000;

/// A hub that stores exactly once per (boot id, seq), as the real one does.
#[derive(Default)]
struct Hub {
    online: bool,
    /// Stop answering (and storing) after this many more batch frames on the current
    /// connection: the link dies mid-delivery.
    cut_after: Option<usize>,
    stored: BTreeMap<(u32, u32), Batch>,
    cursor: BTreeMap<u32, u32>,
    hellos: Vec<(u32, ResetReason)>,
    duplicates_refused: u32,
    /// Deliveries that died after the hub stored a batch and before its ack got through.
    cuts: u32,
}

impl Hub {
    fn on_frame(&mut self, boot: u32, now: u64, bytes: &[u8]) -> Option<Vec<u8>> {
        let msg = shared::decode_device(bytes).expect("valid frame");
        let reply = match msg {
            DeviceMsg::Hello(h) => {
                assert_eq!(h.boot_id, boot);
                self.hellos.push((h.boot_id, h.reset_reason));
                HubMsg::Welcome(Welcome {
                    hub_time_ms: support::HUB_EPOCH_MS + now,
                    stored_seq: self.cursor.get(&boot).copied(),
                    config: DeviceConfig::default(),
                })
            }
            DeviceMsg::Batch(b) => {
                if let Some(n) = self.cut_after.as_mut() {
                    if *n == 0 {
                        self.cuts += 1;
                        return None;
                    }
                    *n -= 1;
                }
                let seq = b.seq;
                if self.cursor.get(&boot).is_none_or(|c| seq > *c) {
                    self.cursor.insert(boot, seq);
                    self.stored.insert((boot, seq), b);
                } else {
                    self.duplicates_refused += 1;
                }
                HubMsg::Ack { seq }
            }
            DeviceMsg::Heartbeat(h) => HubMsg::Pong {
                hub_time_ms: support::HUB_EPOCH_MS + now,
                uptime_ms: h.uptime_ms,
            },
        };
        let mut buf = [0u8; 256];
        Some(shared::encode(&reply, &mut buf).unwrap().to_vec())
    }

    /// Every stored reading's tag, with how often it was stored.
    fn tags(&self) -> BTreeMap<u32, u32> {
        let mut t = BTreeMap::new();
        for b in self.stored.values() {
            for r in &b.readings {
                *t.entry(r.value as u32).or_insert(0) += 1;
            }
        }
        t
    }

    /// The highest drop count each boot reported.
    fn reported_dropped(&self, boot: u32) -> u32 {
        self.stored
            .iter()
            .filter(|((b, _), _)| *b == boot)
            .map(|(_, batch)| batch.dropped)
            .max()
            .unwrap_or(0)
    }
}

/// What a wake does besides sampling.
#[derive(Clone, Copy, Default)]
struct Twist {
    /// Skip the sensors (for a final drain).
    no_samples: bool,
    /// The board crashes mid-delivery: the image saved before connecting is all that is left.
    crash: bool,
}

/// A board: its RTC region and timer, and what it sampled.
struct Board {
    region: Vec<u8>,
    now: u64,
    next_tag: u32,
    sampled: Vec<u32>,
    /// Readings in the region when the power went.
    lost_to_power: u64,
    /// The device's own drop count, per boot id (as of its last save).
    dropped: BTreeMap<u32, u32>,
    reset: ResetReason,
    boots: u32,
    policy: SleepPolicy,
}

fn config(reset: ResetReason, boot_id: u32) -> CoreConfig {
    let mut c = CoreConfig::new("sleepy-1.0", boot_id, reset, &support::sensors()).unwrap();
    c.device = DeviceConfig {
        sample_interval_ms: SLEEP_MS as u32,
        batch_max_readings: 32,
        batch_max_age_ms: MAX_BATCH_SPAN_MS,
        heartbeat_ms: 10_000,
    };
    c.follow_hub_config = false;
    c.backoff.initial_ms = 500;
    c.backoff.max_ms = 2_000;
    c
}

impl Board {
    fn new(region: usize, policy: SleepPolicy) -> Self {
        Self {
            region: vec![0xff; region],
            now: 0,
            next_tag: 0,
            sampled: Vec::new(),
            lost_to_power: 0,
            dropped: BTreeMap::new(),
            reset: ResetReason::PowerOn,
            boots: 0,
            policy,
        }
    }

    /// One wake: sample, maybe deliver, save, sleep.
    fn wake(&mut self, hub: &mut Hub, twist: Twist) -> WakeReport {
        self.boots += 1;
        let cfg = config(self.reset, 0x5000 + self.boots);
        let (mut core, report) =
            DeviceCore::<16384, 64>::wake(cfg, self.now, &self.region, &self.policy).unwrap();
        let boot = core.boot_id();
        // The sampling round: a sample-only wake never asks to connect.
        while let Some(action) = core.poll_action(self.now) {
            match action {
                Action::Sample { sensor } if !twist.no_samples => {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    core.handle_reading(self.now, sensor, tag as f32).unwrap();
                    self.sampled.push(tag);
                }
                Action::Sample { .. } => {}
                other => panic!("before delivery the core asked for {other:?}"),
            }
        }
        let mut crash_image = None;
        if report.deliver {
            core.start_delivery(self.now);
            // The board saves before connecting, so a crash keeps this wake's samples.
            core.save_for_sleep(self.now, &mut self.region).unwrap();
            if twist.crash {
                crash_image = Some(self.region.clone());
            }
            self.deliver(&mut core, hub, boot);
        }
        if let Some(image) = crash_image {
            // Whatever happened after the first save is gone; the next boot says Panic.
            self.region = image;
            self.reset = ResetReason::Panic;
            self.now += 1_000;
            return report;
        }
        core.save_for_sleep(self.now, &mut self.region).unwrap();
        self.dropped.insert(boot, core.stats().dropped_readings);
        self.now += SLEEP_MS;
        self.reset = ResetReason::DeepSleepWake;
        report
    }

    fn deliver(&mut self, core: &mut DeviceCore<16384, 64>, hub: &mut Hub, boot: u32) {
        let mut connected = false;
        while !core.wake_done(self.now, &self.policy) {
            while let Some(action) = core.poll_action(self.now) {
                match action {
                    Action::Connect if hub.online => {
                        connected = true;
                        core.handle_connected(self.now);
                    }
                    Action::Connect => core.handle_disconnected(self.now),
                    Action::Disconnect { .. } => connected = false,
                    Action::Sample { .. } => {}
                }
            }
            let mut replies = Vec::new();
            let mut died = false;
            while connected && !died {
                let Some(frame) = core.poll_transmit(self.now) else {
                    break;
                };
                let frame = frame.to_vec();
                match hub.on_frame(boot, self.now, &frame) {
                    Some(r) => replies.push(r),
                    None => died = true,
                }
            }
            for r in replies {
                core.handle_frame(self.now + 5, &r).unwrap();
            }
            if died {
                connected = false;
                core.handle_disconnected(self.now);
            }
            self.now += 10;
        }
    }

    /// The power goes: the region is lost with what it held that the hub does not have.
    fn power_loss(&mut self, hub: &Hub) {
        if let Ok(kept) = KeptImage::parse(&self.region) {
            let stored = hub.cursor.get(&kept.boot_id).copied().unwrap_or(0);
            self.lost_to_power += kept.open_readings
                + kept
                    .frames()
                    .filter(|(seq, _)| *seq > stored)
                    .map(|(_, r)| u64::from(r))
                    .sum::<u64>();
        }
        self.region.fill(0);
        self.reset = ResetReason::PowerOn;
        self.now = 0;
    }

    /// Readings still held in the region.
    fn held(&self) -> u64 {
        KeptImage::parse(&self.region).map_or(0, |k| k.readings())
    }
}

/// A tiny deterministic generator for the flaky world.
struct Dice(u64);
impl Dice {
    fn roll(&mut self, percent: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100 < percent
    }
}

#[test]
fn across_thousands_of_wakes_with_a_flaky_hub_every_reading_is_stored_once_or_accounted_for() {
    let policy = SleepPolicy {
        send_every: 5,
        ..SleepPolicy::default()
    };
    let mut board = Board::new(DEFAULT_SLEEP_IMAGE_BYTES, policy);
    let mut hub = Hub::default();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut deliveries = 0;
    for _ in 0..3_000 {
        hub.online = dice.roll(70);
        hub.cut_after = dice.roll(20).then_some(1);
        let twist = Twist {
            crash: dice.roll(3),
            ..Twist::default()
        };
        let report = board.wake(&mut hub, twist);
        deliveries += usize::from(report.deliver);
        if dice.roll(1) {
            board.power_loss(&hub);
        }
    }
    // Drain: the hub stays up and the sensors stop, until the region is empty.
    hub.online = true;
    hub.cut_after = None;
    for _ in 0..board.policy.send_every + 1 {
        board.wake(
            &mut hub,
            Twist {
                no_samples: true,
                ..Twist::default()
            },
        );
    }
    assert_eq!(board.held(), 0, "the drain delivered everything kept");

    let tags = hub.tags();
    assert!(tags.values().all(|&n| n == 1), "a reading was stored twice");
    let sampled: BTreeSet<u32> = board.sampled.iter().copied().collect();
    assert!(tags.keys().all(|t| sampled.contains(t)));
    // A 4 KiB region never filled here: nothing was given up on, so the sum is exact.
    let dropped: u64 = board.dropped.values().map(|&d| u64::from(d)).sum();
    assert_eq!(dropped, 0);
    assert_eq!(
        tags.len() as u64 + board.lost_to_power,
        board.sampled.len() as u64,
        "stored {} + lost to power {} != sampled {}",
        tags.len(),
        board.lost_to_power,
        board.sampled.len()
    );
    // The world really was flaky, and the backlog really was resent.
    assert!(board.lost_to_power > 0);
    assert!(hub.cuts > 0, "no delivery was ever cut");
    // Kept batches the hub already had were released by Welcome's stored_seq, not resent.
    assert_eq!(hub.duplicates_refused, 0);
    assert!(hub.hellos.iter().any(|(_, r)| *r == ResetReason::Panic));
    assert!(
        deliveries < 3_000 / 2,
        "a sleepy device delivered on {deliveries} wakes"
    );
}

#[test]
fn a_backlog_waits_through_failed_deliveries_and_goes_out_whole_under_one_boot_id() {
    let policy = SleepPolicy {
        send_every: 4,
        ..SleepPolicy::default()
    };
    let mut board = Board::new(DEFAULT_SLEEP_IMAGE_BYTES, policy);
    let mut hub = Hub {
        online: true,
        ..Hub::default()
    };
    // The cold start says Hello at once.
    let first = board.wake(&mut hub, Twist::default());
    assert!(matches!(first.cold, Some(SleepImageError::BadMagic { .. })));
    assert!(first.deliver);
    assert_eq!(hub.hellos, vec![(0x5001, ResetReason::PowerOn)]);
    hub.online = false;
    let mut plan = Vec::new();
    for _ in 0..12 {
        let r = board.wake(&mut hub, Twist::default());
        assert_eq!(r.cold, None);
        plan.push(r.deliver);
    }
    // Every 4th wake tries; after a failure every wake tries until one gets through.
    assert_eq!(
        plan,
        [
            false, false, false, true, true, true, true, true, true, true, true, true
        ]
    );
    assert_eq!(board.held(), 2 * 12, "all 12 rounds of 2 sensors are kept");
    hub.online = true;
    let last = board.wake(&mut hub, Twist::default());
    assert_eq!(last.kept_readings, 24);
    assert_eq!(board.held(), 0);
    assert_eq!(hub.tags().len(), 28);
    // One boot id throughout: the hub saw one device boot, not fourteen.
    assert!(hub.stored.keys().all(|(boot, _)| *boot == 0x5001));
    let seqs: Vec<u32> = hub.stored.keys().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as u32).collect::<Vec<_>>());
}

#[test]
fn a_full_region_drops_the_oldest_readings_counts_them_and_tells_the_hub() {
    let policy = SleepPolicy {
        send_every: 1_000,
        send_when_full_permille: 1_001,
        ..SleepPolicy::default()
    };
    let mut board = Board::new(600, policy);
    let mut hub = Hub::default();
    for _ in 0..200 {
        board.wake(&mut hub, Twist::default());
    }
    let boot = 0x5001;
    let dropped = board.dropped[&boot];
    assert!(dropped > 0, "a 600-byte region cannot hold 400 readings");
    assert_eq!(board.held() + u64::from(dropped), 400);
    // Deliver (the cold start's delivery failed: the hub was offline).
    hub.online = true;
    board.policy.send_every = 1;
    board.wake(
        &mut hub,
        Twist {
            no_samples: true,
            ..Twist::default()
        },
    );
    let tags: Vec<u32> = hub.tags().keys().copied().collect();
    // Oldest first: what arrived is exactly the newest readings.
    assert_eq!(tags, (dropped..400).collect::<Vec<_>>());
    assert_eq!(hub.reported_dropped(boot), dropped);
}

#[test]
fn a_damaged_or_foreign_region_is_a_cold_start_with_the_reason() {
    let policy = SleepPolicy::default();
    let mut board = Board::new(DEFAULT_SLEEP_IMAGE_BYTES, policy);
    let mut hub = Hub::default();
    board.wake(&mut hub, Twist::default());
    board.wake(&mut hub, Twist::default());
    assert_eq!(board.held(), 4);
    let mut flipped = board.region.clone();
    flipped[20] ^= 1;
    let (_, r) = DeviceCore::<16384, 64>::wake(
        config(ResetReason::DeepSleepWake, 9),
        board.now,
        &flipped,
        &policy,
    )
    .unwrap();
    assert!(matches!(r.cold, Some(SleepImageError::CrcMismatch { .. })));
    let mut other = board.region.clone();
    other[4] = 2;
    let (_, r) =
        DeviceCore::<16384, 64>::wake(config(ResetReason::DeepSleepWake, 9), 0, &other, &policy)
            .unwrap();
    assert!(matches!(
        r.cold,
        Some(SleepImageError::UnsupportedVersion { found: 2, .. })
    ));
    // An RTC timer that went back (it restarted while the memory survived) cannot continue
    // the boot's uptime: a cold start, said so.
    let (core, r) = DeviceCore::<16384, 64>::wake(
        config(ResetReason::DeepSleepWake, 9),
        5,
        &board.region,
        &policy,
    )
    .unwrap();
    assert!(matches!(
        r.cold,
        Some(SleepImageError::ClockWentBack { now: 5, .. })
    ));
    assert_eq!(core.boot_id(), 9);
    // The intact image continues the boot.
    let (core, r) = DeviceCore::<16384, 64>::wake(
        config(ResetReason::DeepSleepWake, 9),
        board.now,
        &board.region,
        &policy,
    )
    .unwrap();
    assert_eq!((r.cold, r.wake, r.kept_readings), (None, 3, 4));
    assert_eq!(core.boot_id(), 0x5001);
    // Seq 1 went into the outbox at the cold start's (failed) delivery; seq 2 is still open.
    assert_eq!(core.open_batch(), Some((2, 2)));
    assert_eq!(core.outbox().seqs().collect::<Vec<_>>(), [1]);
}

#[test]
fn the_clock_learnt_from_the_hub_survives_the_sleep() {
    let policy = SleepPolicy::default();
    let mut board = Board::new(DEFAULT_SLEEP_IMAGE_BYTES, policy);
    let mut hub = Hub {
        online: true,
        ..Hub::default()
    };
    board.wake(&mut hub, Twist::default());
    let (core, _) = DeviceCore::<16384, 64>::wake(
        config(ResetReason::DeepSleepWake, 9),
        board.now,
        &board.region,
        &policy,
    )
    .unwrap();
    let (source, ts) = core.clock().stamp(board.now);
    assert_eq!(source, firmware::core::ClockSource::Hub);
    // Hello left at uptime 0, the hub stamped Welcome at HUB_EPOCH_MS, and it arrived at 5:
    // wall = uptime + HUB_EPOCH_MS + 5/2 - 5, across the sleep.
    assert_eq!(ts, support::HUB_EPOCH_MS + board.now - 3);
}
