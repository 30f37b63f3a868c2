//! Property: whatever the network and the hub do, no reading is lost silently. Every reading
//! the core accepted is stored by the hub (exactly as generated, once), still held by the
//! device (outbox or open batch), or counted in the device's `dropped`.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use shared::Clock;
use support::{Harness, config};

/// A small outbox (4 frames) so that overflow happens often.
type Small = Harness<2048, 4>;

#[derive(Debug, Clone)]
enum Op {
    /// Let time pass (sampling, batching, heartbeats, reconnects).
    Advance(u32),
    /// A reading pushed by the board outside the schedule.
    Reading(u8),
    /// The network drops the connection.
    Cut,
    /// The hub goes away / comes back.
    Online(bool),
    /// The connection goes half-open (until the device reconnects).
    HalfOpen,
    /// The hub holds its acks back / acks each batch.
    AutoAck(bool),
    /// The hub sends a cumulative ack for what it stored.
    Ack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..8_000).prop_map(Op::Advance),
        2 => prop_oneof![Just(1u8), Just(2u8)].prop_map(Op::Reading),
        1 => Just(Op::Cut),
        1 => any::<bool>().prop_map(Op::Online),
        1 => Just(Op::HalfOpen),
        1 => any::<bool>().prop_map(Op::AutoAck),
        2 => Just(Op::Ack),
    ]
}

fn apply(h: &mut Small, op: &Op) {
    match op {
        Op::Advance(ms) => h.run_for(u64::from(*ms)),
        Op::Reading(sensor) => h.read(*sensor),
        Op::Cut => h.cut(),
        Op::Online(on) => h.hub.online = *on,
        Op::HalfOpen => h.hub.black_hole = true,
        Op::AutoAck(on) => h.hub.auto_ack = *on,
        Op::Ack => {
            if h.connected && !h.hub.black_hole {
                h.hub.ack();
            }
        }
    }
    h.settle();
}

/// A batch as generated: its clock and its readings (sensor, offset, value).
type BatchAsGenerated = (Clock, Vec<(u8, u32, f32)>);

fn check_nothing_lost(h: &Small) -> Result<(), TestCaseError> {
    let mut by_seq: BTreeMap<u32, BatchAsGenerated> = BTreeMap::new();
    for g in &h.generated {
        let entry = by_seq
            .entry(g.stamp.seq)
            .or_insert((g.stamp.clock, Vec::new()));
        prop_assert_eq!(entry.0, g.stamp.clock, "one clock per batch");
        entry.1.push((g.sensor, g.stamp.offset_ms, g.value));
    }
    let held: Vec<u32> = h.core.outbox().seqs().collect();
    let open = h.core.open_batch().map(|(seq, _)| seq);
    let mut unaccounted = 0u64;
    for (seq, (clock, readings)) in &by_seq {
        if let Some(stored) = h.hub.stored.get(seq) {
            // Stored exactly as generated: same clock, same readings, in order, once.
            prop_assert_eq!(stored.clock, *clock);
            let got: Vec<(u8, u32, f32)> = stored
                .readings
                .iter()
                .map(|r| (r.sensor, r.offset_ms, r.value))
                .collect();
            prop_assert_eq!(&got, readings, "batch {}", seq);
        } else if !held.contains(seq) && open != Some(*seq) {
            unaccounted += readings.len() as u64;
        }
    }
    let stats = h.core.stats();
    prop_assert!(
        unaccounted <= u64::from(stats.dropped_readings),
        "{} readings neither stored, held nor counted dropped ({} counted)",
        unaccounted,
        stats.dropped_readings
    );
    prop_assert!(
        h.hub.stored.keys().all(|seq| by_seq.contains_key(seq)),
        "the hub stored only what was generated"
    );
    prop_assert_eq!(stats.generated, h.generated.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_reading_is_ever_lost_silently(ops in prop::collection::vec(op(), 1..80), in_flight in 1u8..5) {
        let mut cfg = config();
        cfg.max_in_flight = in_flight;
        let mut h = Small::new(cfg);
        for op in &ops {
            apply(&mut h, op);
            check_nothing_lost(&h)?;
        }
        // Then a calm network: everything still held gets through.
        h.hub.online = true;
        h.hub.auto_ack = true;
        h.core.begin_shutdown(h.now);
        h.run_for(300_000);
        check_nothing_lost(&h)?;
        prop_assert!(h.core.is_drained(), "outbox {:?}, open {:?}", h.core.outbox().seqs().collect::<Vec<_>>(), h.core.open_batch());
        let stats = h.core.stats();
        prop_assert_eq!(h.hub.stored_readings() as u64 + u64::from(stats.dropped_readings) >= h.generated.len() as u64, true);
    }
}
