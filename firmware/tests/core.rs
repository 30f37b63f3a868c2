//! The device core against a fake hub, on virtual time: each test is one promise the core
//! keeps. No sockets, no sleeps; every run replays exactly.

mod support;

use firmware::core::{Action, ClockSource, DisconnectReason, ReadingError, SessionState};
use shared::{Clock, CloseReason, DeviceConfig, DeviceMsg, HubMsg, RejectReason};
use support::{FakeHub, HUB_EPOCH_MS, Harness, config};

type H = Harness;

fn disconnects(h: &H) -> Vec<(u64, DisconnectReason)> {
    h.actions
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Disconnect { reason } => Some((*t, *reason)),
            _ => None,
        })
        .collect()
}

/// Samples come in rounds of two sensors, one round a second from uptime 0, with values
/// 0, 1, 2...: value v was sampled at uptime 1000 * (v / 2).
fn sampled_at(value: f32) -> u64 {
    1000 * (value as u64 / 2)
}

#[test]
fn hello_is_the_first_frame_on_every_connection() {
    let mut h = H::new(config());
    h.run_until(5_000);
    h.cut();
    h.run_until(20_000);

    assert!(h.hub.connections.len() >= 2);
    for conn in &h.hub.connections {
        assert!(
            matches!(conn[0], DeviceMsg::Hello(_)),
            "first frame: {:?}",
            conn[0]
        );
        assert_eq!(
            conn.iter()
                .filter(|m| matches!(m, DeviceMsg::Hello(_)))
                .count(),
            1
        );
    }
    let hellos = h.hub.hellos();
    let connects = h.connects();
    for (hello, at) in hellos.iter().zip(&connects) {
        assert_eq!(hello.boot_id, 0xB007);
        assert_eq!(hello.firmware.as_str(), "test-1.0");
        assert_eq!(hello.reset_reason, shared::ResetReason::PowerOn);
        assert_eq!(hello.sensors.as_slice(), support::sensors().as_slice());
        // Two sensors once a second.
        assert_eq!(hello.declared_rate, 2);
        assert_eq!(hello.uptime_ms, *at);
    }
}

#[test]
fn readings_before_first_welcome_carry_uptime_clock() {
    let mut h = H::new(config());
    h.hub.online = false;
    h.run_until(6_000);
    assert!(
        h.generated
            .iter()
            .all(|g| matches!(g.stamp.clock, Clock::Uptime { .. }))
    );
    h.hub.online = true;
    h.run_until(30_000);

    let first_hello = h.hub.hellos()[0].clone();
    // The fake network has no latency: the hub read Hello at its own time of the same instant.
    let hub_time_at_hello = FakeHub::hub_time(first_hello.uptime_ms);
    let mut saw = (false, false);
    for batch in h.hub.stored.values() {
        for r in &batch.readings {
            let wall = match batch.clock {
                // How the hub maps uptime: the boot began at (hub time at Hello - Hello's uptime).
                Clock::Uptime { base_ms } => {
                    saw.0 = true;
                    hub_time_at_hello - first_hello.uptime_ms + base_ms + u64::from(r.offset_ms)
                }
                Clock::Hub { base_ms } => {
                    saw.1 = true;
                    base_ms + u64::from(r.offset_ms)
                }
                Clock::Sntp { .. } => panic!("no SNTP in this test"),
            };
            assert_eq!(
                wall,
                HUB_EPOCH_MS + sampled_at(r.value),
                "reading {r:?} of batch {}",
                batch.seq
            );
        }
    }
    assert_eq!(
        saw,
        (true, true),
        "uptime batches before the Welcome, hub-clock batches after"
    );
    // Every reading arrived.
    assert_eq!(h.hub.stored_readings(), h.generated.len());
}

#[test]
fn unacked_batches_are_resent_in_order_after_reconnect() {
    let mut cfg = config();
    cfg.max_in_flight = 16;
    let mut h = H::new(cfg);
    h.hub.auto_ack = false;
    h.run_until(12_000);
    let unacked: Vec<u32> = h.core.outbox().seqs().collect();
    assert!(unacked.len() >= 5, "{unacked:?}");
    assert_eq!(h.hub.batch_seqs(0), unacked);

    // The hub lost them (crashed before its commit), and the connection with it.
    h.cut();
    h.hub.stored.clear();
    h.hub.cursor = None;
    h.hub.auto_ack = true;
    h.run_until(30_000);

    let resent = h.hub.batch_seqs(1);
    assert_eq!(
        &resent[..unacked.len()],
        unacked.as_slice(),
        "oldest first, none skipped"
    );
    assert!(resent.windows(2).all(|w| w[0] < w[1]));
    // The same bytes as the first time.
    let first: Vec<_> = h.hub.connections[0]
        .iter()
        .filter(|m| matches!(m, DeviceMsg::Batch(_)))
        .collect();
    let again: Vec<_> = h.hub.connections[1]
        .iter()
        .filter(|m| matches!(m, DeviceMsg::Batch(_)))
        .take(first.len())
        .collect();
    assert_eq!(first, again);
    assert!(h.core.outbox().is_empty());
}

#[test]
fn cumulative_ack_releases_every_batch_up_to_seq() {
    let mut cfg = config();
    cfg.max_in_flight = 16;
    let mut h = H::new(cfg);
    h.hub.auto_ack = false;
    h.run_until(12_000);
    let held: Vec<u32> = h.core.outbox().seqs().collect();
    assert!(held.len() >= 5);
    let readings_through_4: usize = h.generated.iter().filter(|g| g.stamp.seq <= 4).count();

    h.deliver(&HubMsg::Ack { seq: 4 });

    assert_eq!(h.core.outbox().seqs().collect::<Vec<_>>(), held[4..]);
    let s = h.core.stats();
    assert_eq!(s.acked_seq, 4);
    assert_eq!(s.acked_readings, readings_through_4 as u64);
    // An old ack releases nothing more and does not move the mark back.
    h.deliver(&HubMsg::Ack { seq: 2 });
    assert_eq!(h.core.stats().acked_seq, 4);
    assert_eq!(h.core.outbox().len(), held.len() - 4);
}

#[test]
fn full_outbox_drops_oldest_and_counts_readings() {
    let mut cfg = config();
    cfg.outbox_max_frames = 3;
    let mut h = H::new(cfg);
    h.hub.online = false;
    h.run_until(11_500);
    // Six full batches (4 readings each) closed; only the newest three fit.
    assert_eq!(h.core.stats().batches_closed, 6);
    assert_eq!(h.core.outbox().seqs().collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(h.core.stats().dropped_readings, 12);
    let dropped_values: Vec<f32> = h
        .generated
        .iter()
        .filter(|g| g.stamp.seq <= 3)
        .map(|g| g.value)
        .collect();
    assert_eq!(dropped_values.len(), 12);

    h.hub.online = true;
    h.run_until(30_000);
    // The survivors arrive oldest first, each carrying the cumulative drop count as of its
    // closing, including the frames dropped to make room for it.
    let first = h.hub.stored.values().next().unwrap();
    // Closing batch k into a full three-frame outbox dropped batch k - 3.
    assert_eq!(first.dropped, 4 * (first.seq - 3));
    assert!(
        h.hub
            .stored
            .values()
            .zip(h.hub.stored.values().skip(1))
            .all(|(a, b)| a.dropped <= b.dropped)
    );
    let last = h.hub.stored.values().last().unwrap();
    assert_eq!(last.dropped, h.core.stats().dropped_readings);
    assert!(
        h.hub
            .stored
            .values()
            .flat_map(|b| &b.readings)
            .all(|r| !dropped_values.contains(&r.value))
    );
    let open = h.core.open_batch().map_or(0, |(_, n)| n) as u64;
    assert_eq!(
        h.hub.stored_readings() as u64 + u64::from(last.dropped) + open,
        h.generated.len() as u64
    );
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_resets_after_welcome() {
    let mut h = H::new(config());
    h.hub.online = false;
    h.run_until(120_000);
    let connects = h.connects();
    let gaps: Vec<u64> = connects.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 8, "{gaps:?}");
    // Full jitter: attempt k waits uniformly in 0..=min(16 s, 1 s * 2^k).
    let ceiling = |k: usize| (1000u64 << k.min(20)).min(16_000);
    for (k, gap) in gaps.iter().enumerate() {
        assert!(
            *gap <= ceiling(k),
            "attempt {k} waited {gap} ms, over {}",
            ceiling(k)
        );
    }
    assert!(
        gaps.iter()
            .enumerate()
            .skip(1)
            .any(|(k, g)| *g > ceiling(k - 1)),
        "delays grow past earlier ceilings: {gaps:?}"
    );
    let mut distinct = gaps.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() > gaps.len() / 2,
        "jittered, not fixed: {gaps:?}"
    );

    h.hub.online = true;
    let welcomed_at = h.core.next_connect_at().unwrap();
    h.run_until(welcomed_at + 1);
    assert_eq!(h.core.state(), SessionState::Streaming);
    assert_eq!(h.core.backoff_attempt(), 0);
    let cut_at = h.now;
    h.cut();
    let next = h.core.next_connect_at().unwrap();
    assert!(
        next - cut_at <= 1000,
        "first delay after a Welcome is short again: {}",
        next - cut_at
    );
}

#[test]
fn silent_connection_is_declared_dead_after_three_heartbeats() {
    let slow = DeviceConfig {
        sample_interval_ms: 600_000,
        batch_max_readings: 4,
        batch_max_age_ms: 10_000,
        heartbeat_ms: 10_000,
    };
    let mut cfg = config();
    cfg.device = slow;
    let mut h = H::new(cfg);
    h.hub.config = slow;
    h.run_until(100);
    assert_eq!(h.core.state(), SessionState::Streaming);
    // Half-open: our frames vanish, nothing comes back. The last thing heard was at 0.
    h.hub.responsive = false;
    h.run_until(45_000);

    let heartbeats: Vec<u64> = h.hub.connections[0]
        .iter()
        .filter_map(|m| match m {
            DeviceMsg::Heartbeat(hb) => Some(hb.uptime_ms),
            _ => None,
        })
        .collect();
    assert_eq!(
        heartbeats,
        [10_000, 20_000],
        "a heartbeat after each idle interval"
    );
    let d = disconnects(&h);
    assert_eq!(d[0], (30_000, DisconnectReason::Silent));
    assert_eq!(DisconnectReason::Silent.close_code(), 4001);
    assert!(
        h.connects().iter().any(|t| *t >= 30_000),
        "and it reconnects"
    );
}

#[test]
fn batches_unacked_on_a_live_connection_are_resent_on_a_new_one() {
    let mut h = H::new(config());
    h.run_until(10);
    // The hub answers heartbeats but loses every batch on this connection: the link looks
    // alive, nothing is acked.
    h.hub.lose_batches = true;
    h.run_until(33_000);
    assert!(!h.hub.batch_seqs(0).is_empty());
    // Batch 2 went out at 2000; three heartbeat intervals later, a new connection.
    assert_eq!(disconnects(&h), [(32_000, DisconnectReason::AckTimeout)]);
    assert_eq!(DisconnectReason::AckTimeout.close_code(), 4001);
    h.run_until(60_000);
    assert_eq!(h.hub.batch_seqs(1)[0], 2, "resent from the oldest unacked");
    let open = h.core.open_batch().map_or(0, |(_, n)| n);
    assert_eq!(h.hub.stored_readings() + open, h.generated.len());
}

#[test]
fn heartbeats_keep_a_quiet_connection_alive_and_pongs_correct_the_clock() {
    let slow = DeviceConfig {
        sample_interval_ms: 600_000,
        batch_max_readings: 4,
        batch_max_age_ms: 10_000,
        heartbeat_ms: 10_000,
    };
    let mut cfg = config();
    cfg.device = slow;
    let mut h = H::new(cfg);
    h.hub.config = slow;
    h.run_until(100);
    assert_eq!(h.core.clock().hub_offset_ms(), Some(HUB_EPOCH_MS as i64));
    h.run_until(25_000);
    // The hub's clock was stepped 5 s forward (NTP caught up): the next Pong carries it over.
    h.hub_epoch_shift(5_000);
    h.run_until(100_000);
    assert_eq!(h.hub.connections.len(), 1, "never declared dead");
    assert!(disconnects(&h).is_empty());
    assert_eq!(
        h.core.clock().hub_offset_ms(),
        Some(HUB_EPOCH_MS as i64 + 5_000)
    );
}

#[test]
fn revoked_device_stops_reconnecting() {
    let mut h = H::new(config());
    h.run_until(3_000);
    h.hub.goodbye(CloseReason::Revoked);
    h.settle();
    assert_eq!(h.core.state(), SessionState::Revoked);
    assert!(h.core.is_revoked());
    assert_eq!(
        disconnects(&h),
        [(3_000, DisconnectReason::Goodbye(CloseReason::Revoked))]
    );
    let actions_then = h.actions.len();
    h.run_until(3_600_000);
    assert_eq!(
        h.actions.len(),
        actions_then,
        "no connects, no samples: {:?}",
        &h.actions[actions_then..]
    );
    assert_eq!(h.core.poll_timeout(), None);
    assert_eq!(h.hub.connections.len(), 1);
}

#[test]
fn shutdown_and_overloaded_goodbyes_reconnect_with_backoff() {
    for reason in [
        CloseReason::Shutdown,
        CloseReason::Overloaded,
        CloseReason::Replaced,
    ] {
        let mut h = H::new(config());
        h.run_until(3_000);
        h.hub.goodbye(reason);
        h.settle();
        assert_eq!(
            disconnects(&h),
            [(3_000, DisconnectReason::Goodbye(reason))]
        );
        let again = h.core.next_connect_at().unwrap();
        assert!(
            again <= 4_000,
            "{reason:?}: reconnect within the first backoff ceiling, at {again}"
        );
        h.run_until(10_000);
        assert_eq!(h.hub.connections.len(), 2, "{reason:?}");
        assert_eq!(h.core.state(), SessionState::Streaming);
    }
}

#[test]
fn welcome_stored_seq_releases_already_stored_batches() {
    let mut cfg = config();
    cfg.max_in_flight = 16;
    let mut h = H::new(cfg);
    // Stored, but the acks never make it back.
    h.hub.auto_ack = false;
    h.run_until(9_000);
    let stored = h.hub.cursor.unwrap();
    assert!(stored >= 4);
    assert!(h.core.outbox().seqs().any(|s| s == stored));
    h.cut();
    h.hub.auto_ack = true;
    h.run_until(30_000);

    let resent = h.hub.batch_seqs(1);
    assert_eq!(
        resent.first(),
        Some(&(stored + 1)),
        "nothing at or below stored_seq is sent again"
    );
    let mut all: Vec<u32> = h
        .hub
        .connections
        .iter()
        .enumerate()
        .flat_map(|(i, _)| h.hub.batch_seqs(i))
        .collect();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "every batch crossed the wire once");
    assert_eq!(h.hub.stored_readings(), h.generated.len());
}

#[test]
fn a_rejected_batch_is_dropped_and_the_rest_flow() {
    let mut h = H::new(config());
    h.hub.reject.insert(2);
    h.run_until(12_000);
    let s = h.core.stats();
    assert_eq!(s.rejected_batches, 1);
    assert_eq!(s.last_reject, Some((2, RejectReason::Empty)));
    assert!(!h.hub.stored.contains_key(&2));
    assert!(h.hub.stored.contains_key(&3));
    assert!(h.core.outbox().seqs().all(|s| s != 2));
    assert_eq!(
        h.hub.batch_seqs(0).iter().filter(|s| **s == 2).count(),
        1,
        "never resent"
    );
}

#[test]
fn undecodable_hub_frames_are_counted_and_ignored() {
    let mut h = H::new(config());
    h.run_until(1_500);
    assert_eq!(h.core.state(), SessionState::Streaming);
    let mut buf = [0u8; 64];
    let welcome = shared::encode(&HubMsg::Ack { seq: 1_000_000 }, &mut buf)
        .unwrap()
        .to_vec();
    let frames: [&[u8]; 5] = [
        &[],
        &[0xff, 0xff, 0xff],
        &welcome[..welcome.len() - 1],
        &[0u8; 300],
        &[6, 0],
    ];
    for f in frames {
        assert!(h.core.handle_frame(h.now, f).is_err(), "{f:?}");
    }
    assert_eq!(h.core.stats().bad_frames, 5);
    assert_eq!(h.core.state(), SessionState::Streaming);
    h.run_until(10_000);
    assert_eq!(h.hub.connections.len(), 1);
}

#[test]
fn in_flight_window_limits_unacked_frames() {
    let mut h = H::new(config());
    h.hub.auto_ack = false;
    h.run_until(20_000);
    assert!(h.core.outbox().len() > 4);
    assert_eq!(
        h.hub.batch_seqs(0),
        [1, 2, 3, 4],
        "no more than max_in_flight (4) unacked"
    );
    assert_eq!(h.core.outbox().in_flight(), 4);
    h.hub.ack();
    h.settle();
    assert_eq!(h.hub.batch_seqs(0), [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_clock_source_change_closes_the_open_batch() {
    let mut h = H::new(config());
    // Batch 1 closed at the Welcome, batch 2 at 2000 (full); batch 3 opened at 3000.
    h.run_until(3_500);
    let (open_seq, _) = h.core.open_batch().expect("a batch is open");
    assert!(h.core.handle_wall_clock(h.now, HUB_EPOCH_MS + 60_000));
    assert!(h.core.open_batch().is_none(), "closed on the switch");
    assert!(h.core.outbox().seqs().any(|s| s == open_seq) || h.hub.stored.contains_key(&open_seq));
    h.run_until(10_000);

    let mut by_seq = std::collections::BTreeMap::new();
    for g in &h.generated {
        let source = ClockSource::of(g.stamp.clock).0;
        assert_eq!(
            *by_seq.entry(g.stamp.seq).or_insert(source),
            source,
            "batch {} mixes clocks",
            g.stamp.seq
        );
    }
    assert!(by_seq.values().any(|s| *s == ClockSource::Hub));
    assert!(by_seq.values().any(|s| *s == ClockSource::Sntp));
    // SNTP outranks the hub from now on: stamped with the board's clock.
    let last = h.generated.last().unwrap();
    assert_eq!(
        last.stamp.unix_ms(),
        Some(HUB_EPOCH_MS + 60_000 + sampled_at(last.value) - 3_500)
    );
}

#[test]
fn shutdown_flushes_the_open_batch_and_closes_once_everything_is_acked() {
    let mut h = H::new(config());
    h.hub.auto_ack = false;
    h.run_until(3_500);
    assert!(h.core.open_batch().is_some());
    h.core.begin_shutdown(h.now);
    h.settle();
    assert!(h.core.open_batch().is_none());
    assert!(disconnects(&h).is_empty(), "waits for the acks");
    assert_eq!(h.core.state(), SessionState::Streaming);

    h.hub.ack();
    h.settle();
    assert_eq!(disconnects(&h), [(3_500, DisconnectReason::Drained)]);
    assert_eq!(DisconnectReason::Drained.close_code(), 1000);
    assert_eq!(h.core.state(), SessionState::Stopped);
    assert_eq!(h.hub.stored_readings(), h.generated.len());
    let actions_then = h.actions.len();
    h.run_until(60_000);
    assert_eq!(
        h.actions.len(),
        actions_then,
        "no samples, no reconnects after stopping"
    );
}

#[test]
fn a_hub_that_never_welcomes_times_out_the_handshake() {
    let mut h = H::new(config());
    h.hub.responsive = false;
    h.run_until(10_500);
    assert_eq!(
        disconnects(&h),
        [(10_000, DisconnectReason::HandshakeTimeout)]
    );
    assert_eq!(DisconnectReason::HandshakeTimeout.close_code(), 4001);
    assert!(matches!(
        h.core.state(),
        SessionState::Waiting { .. } | SessionState::AwaitingWelcome { .. }
    ));
}

#[test]
fn non_finite_and_undeclared_readings_are_refused() {
    let mut h = H::new(config());
    assert_eq!(
        h.core.handle_reading(0, 1, f32::NAN),
        Err(ReadingError::NonFinite { sensor: 1 })
    );
    assert_eq!(
        h.core.handle_reading(0, 1, f32::INFINITY),
        Err(ReadingError::NonFinite { sensor: 1 })
    );
    assert_eq!(
        h.core.handle_reading(0, 9, 1.0),
        Err(ReadingError::UndeclaredSensor { sensor: 9 })
    );
    assert_eq!(h.core.stats().invalid_readings, 2);
    assert_eq!(h.core.stats().generated, 0);
    assert!(h.core.open_batch().is_none());
    h.run_until(100);
}

#[test]
fn hub_config_is_applied_but_held_to_workable_bounds() {
    let mut h = H::new(config());
    h.hub.config = DeviceConfig {
        sample_interval_ms: 0,
        batch_max_readings: 0,
        batch_max_age_ms: 500,
        heartbeat_ms: 0,
    };
    h.run_until(1_000);
    let c = h.core.device_config();
    assert_eq!(
        (
            c.sample_interval_ms,
            c.batch_max_readings,
            c.batch_max_age_ms,
            c.heartbeat_ms
        ),
        (10, 1, 500, 100)
    );
    h.run_until(2_000);
    // One reading per batch now.
    assert!(h.hub.stored.values().skip(1).all(|b| b.readings.len() == 1));

    let mut pinned = config();
    pinned.follow_hub_config = false;
    let mut h = H::new(pinned);
    h.hub.config = DeviceConfig {
        sample_interval_ms: 50,
        ..DeviceConfig::default()
    };
    h.run_until(1_000);
    assert_eq!(h.core.device_config(), support::device_config());
}

#[test]
fn a_batch_closes_when_its_first_reading_is_max_age_old() {
    let cfg_on_hub = DeviceConfig {
        sample_interval_ms: 1000,
        batch_max_readings: 200,
        batch_max_age_ms: 5_000,
        heartbeat_ms: 10_000,
    };
    let mut h = H::new(config());
    h.hub.config = cfg_on_hub;
    h.run_until(20_000);
    let b = &h.hub.stored[&2];
    // Opened at 1000 (batch 1 closed at the Welcome), closed at 6000: rounds 1..=5, 2 readings each.
    assert_eq!(b.readings.len(), 10);
    assert_eq!(b.readings.last().unwrap().offset_ms, 4_000);
}

#[test]
fn a_stored_seq_beyond_our_own_moves_our_seqs_past_it_and_counts_what_it_gives_up() {
    // The hub already holds seq 50 for this boot id (a boot id reused by accident): batches
    // at or below it would be acked as duplicates and never stored.
    let mut h = H::new(config());
    h.hub.cursor = Some(50);
    h.run_until(10_000);
    let s = h.core.stats();
    assert_eq!(s.seq_conflicts, 1);
    assert!(h.hub.stored.keys().all(|s| *s > 50));
    // The two readings sampled before the Welcome went into batch 1: given up on, counted.
    assert_eq!(s.dropped_readings, 2);
    let open = h.core.open_batch().map_or(0, |(_, n)| n);
    assert_eq!(h.hub.stored_readings() + 2 + open, h.generated.len());
}
