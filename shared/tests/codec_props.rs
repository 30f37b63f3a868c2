//! Properties of the codec over generated messages and arbitrary bytes.

use proptest::prelude::*;
use shared::*;

fn short_string<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    proptest::string::string_regex(".{0,8}")
        .unwrap()
        .prop_filter_map("fits", |s| heapless::String::try_from(s.as_str()).ok())
}

fn sensor_kind() -> impl Strategy<Value = SensorKind> {
    prop_oneof![
        Just(SensorKind::Temperature),
        Just(SensorKind::Humidity),
        Just(SensorKind::Pressure),
        Just(SensorKind::Battery),
        Just(SensorKind::Voltage),
        Just(SensorKind::Current),
        Just(SensorKind::Light),
        Just(SensorKind::Co2),
        Just(SensorKind::Other),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        short_string(),
        any::<u32>(),
        any::<u64>(),
        0u8..7,
        any::<u16>(),
        prop::collection::vec(
            (any::<u8>(), sensor_kind(), short_string()),
            0..=limits::MAX_SENSORS,
        ),
    )
        .prop_map(
            |(firmware, boot_id, uptime_ms, reset, declared_rate, sensors)| Hello {
                firmware,
                boot_id,
                uptime_ms,
                reset_reason: [
                    ResetReason::Unknown,
                    ResetReason::PowerOn,
                    ResetReason::Software,
                    ResetReason::Panic,
                    ResetReason::Brownout,
                    ResetReason::Watchdog,
                    ResetReason::DeepSleepWake,
                ][reset as usize],
                declared_rate,
                sensors: sensors
                    .into_iter()
                    .map(|(id, kind, unit)| SensorDecl { id, kind, unit })
                    .collect(),
            },
        )
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        any::<u64>().prop_map(|base_ms| Clock::Sntp { base_ms }),
        any::<u64>().prop_map(|base_ms| Clock::Hub { base_ms }),
        any::<u64>().prop_map(|base_ms| Clock::Uptime { base_ms }),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        any::<u32>(),
        clock(),
        any::<u32>(),
        prop::collection::vec(
            (any::<u8>(), any::<u32>(), any::<u32>()),
            0..=limits::MAX_READINGS_PER_BATCH,
        ),
    )
        .prop_map(|(seq, clock, dropped, readings)| Batch {
            seq,
            clock,
            dropped,
            // Any bit pattern, NaNs included: the codec must carry what validation later refuses.
            readings: readings
                .into_iter()
                .map(|(sensor, offset_ms, bits)| Reading {
                    sensor,
                    offset_ms,
                    value: f32::from_bits(bits),
                })
                .collect(),
        })
}

fn device_msg() -> impl Strategy<Value = DeviceMsg> {
    prop_oneof![
        hello().prop_map(DeviceMsg::Hello),
        batch().prop_map(DeviceMsg::Batch),
        any::<u64>().prop_map(|uptime_ms| DeviceMsg::Heartbeat(Heartbeat { uptime_ms })),
    ]
}

fn config() -> impl Strategy<Value = DeviceConfig> {
    (any::<u32>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c, d)| DeviceConfig {
        sample_interval_ms: a,
        batch_max_readings: b,
        batch_max_age_ms: c,
        heartbeat_ms: d,
    })
}

fn hub_msg() -> impl Strategy<Value = HubMsg> {
    prop_oneof![
        (any::<u64>(), any::<Option<u32>>(), config()).prop_map(
            |(hub_time_ms, stored_seq, config)| HubMsg::Welcome(Welcome {
                hub_time_ms,
                stored_seq,
                config
            })
        ),
        any::<u32>().prop_map(|seq| HubMsg::Ack { seq }),
        (any::<u32>(), any::<u16>(), any::<u8>()).prop_map(|(seq, index, sensor)| HubMsg::Reject {
            seq,
            reason: RejectReason::UndeclaredSensor { index, sensor }
        }),
        config().prop_map(HubMsg::Config),
        (any::<u64>(), any::<u64>()).prop_map(|(hub_time_ms, uptime_ms)| HubMsg::Pong {
            hub_time_ms,
            uptime_ms
        }),
        Just(HubMsg::Goodbye {
            reason: CloseReason::Revoked
        }),
    ]
}

/// NaN != NaN, so compare readings by bits.
fn same(a: &DeviceMsg, b: &DeviceMsg) -> bool {
    match (a, b) {
        (DeviceMsg::Batch(x), DeviceMsg::Batch(y)) => {
            x.seq == y.seq
                && x.clock == y.clock
                && x.dropped == y.dropped
                && x.readings.len() == y.readings.len()
                && x.readings.iter().zip(&y.readings).all(|(r, s)| {
                    r.sensor == s.sensor
                        && r.offset_ms == s.offset_ms
                        && r.value.to_bits() == s.value.to_bits()
                })
        }
        _ => a == b,
    }
}

/// The hub's clock in the validation properties.
const NOW: u64 = 1_764_000_000_000;

/// Sensors 0..4 declared, as a hub holds them after a Hello.
fn declared() -> SensorSet {
    let mut set = SensorSet::default();
    (0..4).for_each(|id| {
        set.insert(id);
    });
    set
}

/// A batch that passes validation against `declared()` at `NOW`, with its resolved base.
fn valid_batch() -> impl Strategy<Value = (Batch, u64)> {
    let reading = (0u8..4, 0..=limits::MAX_BATCH_SPAN_MS, -1.0e6f32..1.0e6);
    (
        1u32..,
        any::<u32>(),
        limits::MIN_PLAUSIBLE_UNIX_MS..=NOW - u64::from(limits::MAX_BATCH_SPAN_MS),
        prop::collection::vec(reading, 1..=limits::MAX_READINGS_PER_BATCH),
    )
        .prop_map(|(seq, dropped, base_ms, readings)| {
            let batch = Batch {
                seq,
                clock: Clock::Sntp { base_ms },
                dropped,
                readings: readings
                    .into_iter()
                    .map(|(sensor, offset_ms, value)| Reading {
                        sensor,
                        offset_ms,
                        value,
                    })
                    .collect(),
            };
            (batch, base_ms)
        })
}

/// A batch whose readings are each usually valid, so that the first broken rule (if any) can
/// be any rule at any index: a few undeclared sensors, non-finite values, long offsets, and
/// bases anywhere (before 2020, in the future, at the edges of the plausible range, `u64::MAX`).
fn mostly_valid_batch() -> impl Strategy<Value = (Batch, u64)> {
    let reading = (
        prop_oneof![20 => 0u8..4, 1 => any::<u8>()],
        prop_oneof![
            20 => 0..=limits::MAX_BATCH_SPAN_MS,
            2 => prop::sample::select(vec![0, 1, limits::MAX_BATCH_SPAN_MS, limits::MAX_BATCH_SPAN_MS + 1]),
            1 => any::<u32>(),
        ],
        prop_oneof![20 => -1.0e6f32..1.0e6, 1 => any::<u32>().prop_map(f32::from_bits)],
    );
    (
        prop_oneof![20 => 1u32.., 1 => Just(0)],
        prop_oneof![
            4 => limits::MIN_PLAUSIBLE_UNIX_MS..=NOW,
            1 => NOW..=NOW + 2 * limits::MAX_FUTURE_SKEW_MS,
            1 => any::<u64>(),
            // The edges of the plausible range, where an off-by-one would show.
            2 => prop::sample::select(vec![
                limits::MIN_PLAUSIBLE_UNIX_MS - 1,
                limits::MIN_PLAUSIBLE_UNIX_MS,
                NOW + limits::MAX_FUTURE_SKEW_MS - 1,
                NOW + limits::MAX_FUTURE_SKEW_MS,
                u64::MAX,
            ]),
        ],
        prop::collection::vec(reading, 0..=64),
    )
        .prop_map(|(seq, base, readings)| {
            let batch = Batch {
                seq,
                clock: Clock::Hub { base_ms: base },
                dropped: 0,
                readings: readings
                    .into_iter()
                    .map(|(sensor, offset_ms, value)| Reading {
                        sensor,
                        offset_ms,
                        value,
                    })
                    .collect(),
            };
            (batch, base)
        })
}

/// What `validate_batch` promises, rule by rule and without saturating arithmetic: seq 0, then
/// emptiness, then the first reading that is not finite, names an undeclared sensor, lies
/// beyond the span, or falls outside 2020..now + skew.
fn first_broken_rule(batch: &Batch, sensors: &SensorSet, base: u64) -> Result<(), RejectReason> {
    if batch.seq == 0 {
        return Err(RejectReason::InvalidSeq);
    }
    if batch.readings.is_empty() {
        return Err(RejectReason::Empty);
    }
    let latest = u128::from(NOW) + u128::from(limits::MAX_FUTURE_SKEW_MS);
    for (index, r) in (0u16..).zip(&batch.readings) {
        let ts = u128::from(base) + u128::from(r.offset_ms);
        if !r.value.is_finite() {
            return Err(RejectReason::NonFiniteValue { index });
        } else if !sensors.contains(r.sensor) {
            return Err(RejectReason::UndeclaredSensor {
                index,
                sensor: r.sensor,
            });
        } else if r.offset_ms > limits::MAX_BATCH_SPAN_MS {
            return Err(RejectReason::SpanTooLong { index });
        } else if !(u128::from(limits::MIN_PLAUSIBLE_UNIX_MS)..=latest).contains(&ts) {
            return Err(RejectReason::TimestampOutOfRange { index });
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_device_message_round_trips(msg in device_msg()) {
        let bytes = codec::to_vec(&msg).unwrap();
        prop_assert!(bytes.len() <= limits::MAX_DEVICE_FRAME_BYTES);
        let back = decode_device(&bytes).unwrap();
        prop_assert!(same(&msg, &back), "{msg:?} came back as {back:?}");
    }

    #[test]
    fn every_hub_message_round_trips_and_stays_small(msg in hub_msg()) {
        let bytes = codec::to_vec(&msg).unwrap();
        prop_assert!(bytes.len() <= limits::MAX_HUB_FRAME_BYTES);
        prop_assert_eq!(decode_hub(&bytes).unwrap(), msg);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_device(&bytes);
        let _ = decode_hub(&bytes);
    }

    #[test]
    fn truncating_a_valid_frame_gives_an_error_not_a_panic(msg in device_msg(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::to_vec(&msg).unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(decode_device(&bytes[..cut]).is_err());
    }
}

proptest! {
    #[test]
    fn every_valid_batch_stays_valid_after_a_round_trip((batch, base) in valid_batch()) {
        prop_assert_eq!(validate_batch(&batch, &declared(), base, NOW), Ok(()));
        let msg = DeviceMsg::Batch(batch);
        let back = decode_device(&codec::to_vec(&msg).unwrap()).unwrap();
        prop_assert_eq!(&back, &msg);
        let DeviceMsg::Batch(back) = back else { unreachable!() };
        prop_assert_eq!(validate_batch(&back, &declared(), base, NOW), Ok(()));
    }

    #[test]
    fn validation_names_the_first_broken_rule((batch, base) in mostly_valid_batch()) {
        prop_assert_eq!(
            validate_batch(&batch, &declared(), base, NOW),
            first_broken_rule(&batch, &declared(), base)
        );
    }

    #[test]
    fn any_mutation_of_a_valid_frame_is_an_error_or_judged_consistently(
        (batch, base) in valid_batch(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = codec::to_vec(&DeviceMsg::Batch(batch)).unwrap();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        match decode_device(&bytes) {
            Err(_) => {}
            Ok(DeviceMsg::Batch(mutated)) => prop_assert_eq!(
                validate_batch(&mutated, &declared(), base, NOW),
                first_broken_rule(&mutated, &declared(), base),
                "{:?}", mutated
            ),
            // A changed tag can make another message; it must be a whole, canonical one.
            Ok(other) => prop_assert_eq!(decode_device(&codec::to_vec(&other).unwrap()).unwrap(), other),
        }
    }

    #[test]
    fn a_seq_is_new_above_the_stored_one_with_the_gap_between(stored in any::<Option<u32>>(), seq in any::<u32>()) {
        let last = stored.unwrap_or(0);
        let expected = match seq {
            0 => Err(RejectReason::InvalidSeq),
            s if s <= last => Ok(SeqVerdict::Duplicate),
            s => Ok(SeqVerdict::New { gap: s - last - 1 }),
        };
        prop_assert_eq!(check_seq(stored, seq), expected);
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::to_vec(&HubMsg::Ack { seq: 1 }).unwrap();
    bytes.push(0);
    assert_eq!(
        decode_hub(&bytes),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn oversized_frames_are_refused_before_decoding() {
    let bytes = vec![0u8; limits::MAX_DEVICE_FRAME_BYTES + 1];
    assert_eq!(
        decode_device(&bytes),
        Err(DecodeError::TooLarge {
            size: limits::MAX_DEVICE_FRAME_BYTES + 1,
            max: limits::MAX_DEVICE_FRAME_BYTES
        })
    );
}

#[test]
fn unknown_message_tag_is_named_as_such() {
    assert_eq!(
        decode_device(&[9]),
        Err(DecodeError::UnknownMessage { tag: 9 })
    );
    assert_eq!(
        decode_hub(&[6, 0]),
        Err(DecodeError::UnknownMessage { tag: 6 })
    );
    // A known message with an unknown inner variant (ResetReason 200).
    assert_eq!(
        decode_device(&[0, 1, b'x', 1, 0, 200, 1]),
        Err(DecodeError::InvalidValue)
    );
    assert_eq!(decode_device(&[]), Err(DecodeError::Empty));
}

#[test]
fn a_list_longer_than_its_limit_is_refused() {
    // Hello with a sensor count of 17 (> MAX_SENSORS).
    let mut bytes = vec![0u8, 1, b'x', 1, 0, 0, 0, 17];
    bytes.extend(std::iter::repeat_n([0u8, 0, 0], 17).flatten());
    assert_eq!(decode_device(&bytes), Err(DecodeError::InvalidValue));
}

#[test]
fn invalid_utf8_in_a_string_is_refused() {
    // Hello whose firmware string is one byte 0xff.
    assert_eq!(
        decode_device(&[0, 1, 0xff, 1, 0, 0, 0]),
        Err(DecodeError::InvalidUtf8)
    );
}

// `decode_device_frame` (the hub's decoder, a batch's readings into a buffer it keeps) against
// `decode_device` (postcard into `DeviceMsg`): the same frames accepted, meaning the same, and
// the same error for every other frame.

/// Both decoders on one frame: the same message or the same error.
fn decoders_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    // A buffer with stale readings in it: the frame's replace them.
    let mut readings = vec![
        Reading {
            sensor: 9,
            offset_ms: 9,
            value: 9.0
        };
        3
    ];
    match (
        decode_device(bytes),
        decode_device_frame(bytes, &mut readings),
    ) {
        (Err(a), Err(b)) => prop_assert_eq!(a, b, "{:02x?}", bytes),
        (Ok(DeviceMsg::Hello(a)), Ok(DeviceFrame::Hello(b))) => prop_assert_eq!(a, *b),
        (Ok(DeviceMsg::Heartbeat(a)), Ok(DeviceFrame::Heartbeat(b))) => prop_assert_eq!(a, b),
        (Ok(msg @ DeviceMsg::Batch(_)), Ok(DeviceFrame::Batch(view))) => {
            let DeviceMsg::Batch(batch) = &msg else {
                unreachable!()
            };
            prop_assert_eq!(view.readings.len(), batch.readings.len());
            prop_assert!(
                same(&msg, &DeviceMsg::Batch(view.to_batch())),
                "{:?} viewed as {:?}",
                msg,
                view
            );
        }
        (a, b) => prop_assert!(false, "postcard {:?}, view {:?} for {:02x?}", a, b, bytes),
    }
    Ok(())
}

/// A batch frame with any reading count in front of `readings` (which postcard's encoder, held
/// to the limit by heapless, cannot write): the header of `head`, `count` as the varint bytes
/// given, then the readings.
fn batch_frame(head: &Batch, count: &[u8], readings: &[Reading]) -> Vec<u8> {
    let mut empty = head.clone();
    empty.readings.clear();
    let mut bytes = codec::to_vec(&DeviceMsg::Batch(empty)).unwrap();
    assert_eq!(bytes.pop(), Some(0), "an empty batch ends in its count, 0");
    bytes.extend_from_slice(count);
    for r in readings {
        bytes.extend(codec::to_vec(r).unwrap());
    }
    bytes
}

/// Varint bytes for `n`, as postcard writes them.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = vec![];
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

proptest! {
    #[test]
    fn the_frame_view_decodes_every_device_message_as_postcard_does(msg in device_msg()) {
        decoders_agree(&codec::to_vec(&msg).unwrap())?;
    }

    #[test]
    fn the_frame_view_refuses_broken_frames_as_postcard_does(
        msg in device_msg(),
        edits in prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = codec::to_vec(&msg).unwrap();
        for (kind, at, byte) in edits {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => { bytes.remove(at); }
                _ => bytes.truncate(at),
            }
        }
        decoders_agree(&bytes)?;
    }

    #[test]
    fn the_frame_view_agrees_on_arbitrary_bytes(tag in 0u8..4, rest in prop::collection::vec(any::<u8>(), 0..80)) {
        let mut bytes = vec![tag];
        bytes.extend(rest);
        decoders_agree(&bytes)?;
    }

    #[test]
    fn the_frame_view_agrees_on_any_reading_count(
        (head, _) in valid_batch(),
        count in prop_oneof![
            4 => limits::MAX_READINGS_PER_BATCH as u64 - 2..=limits::MAX_READINGS_PER_BATCH as u64 + 2,
            1 => Just(u64::from(u32::MAX) + 1),
            1 => Just(u64::MAX),
        ],
        // Readings present around the count (or around the limit for the huge counts).
        present in -2i64..=2,
        cut in prop_oneof![3 => Just(0usize), 1 => 1usize..6],
        non_canonical in any::<bool>(),
    ) {
        let around = count.min(limits::MAX_READINGS_PER_BATCH as u64 + 1) as i64;
        let present = (around + present) as usize;
        let reading = Reading { sensor: 1, offset_ms: 300, value: 21.5 };
        let mut count = varint(count);
        if non_canonical && count.len() < 5 {
            // The same number with one more, empty, varint byte: postcard accepts it.
            *count.last_mut().unwrap() |= 0x80;
            count.push(0);
        }
        let mut bytes = batch_frame(&head, &count, &vec![reading; present]);
        bytes.truncate(bytes.len().saturating_sub(cut));
        decoders_agree(&bytes)?;
    }

    #[test]
    fn validating_a_view_judges_as_validating_the_batch((batch, base) in mostly_valid_batch()) {
        let bytes = codec::to_vec(&DeviceMsg::Batch(batch.clone())).unwrap();
        let mut readings = vec![];
        let Ok(DeviceFrame::Batch(view)) = decode_device_frame(&bytes, &mut readings) else {
            return Err(TestCaseError::fail("a batch frame"));
        };
        let expected = validate_batch(&batch, &declared(), base, NOW);
        prop_assert_eq!(validate_readings(view.seq, view.readings.iter().copied(), &declared(), base, NOW), expected);
        prop_assert_eq!(validate_view(&view, &declared(), base, NOW), expected);
    }
}

#[test]
fn a_count_over_the_limit_is_refused_once_the_reading_past_it_decodes() {
    let (head, reading) = (
        Batch {
            seq: 1,
            clock: Clock::Sntp { base_ms: NOW },
            dropped: 0,
            readings: heapless::Vec::new(),
        },
        Reading {
            sensor: 0,
            offset_ms: 0,
            value: 1.0,
        },
    );
    let over = limits::MAX_READINGS_PER_BATCH + 1;
    // All 257 readings there: the limit speaks.
    let full = batch_frame(&head, &varint(over as u64), &vec![reading; over]);
    let mut readings = vec![];
    assert_eq!(
        decode_device_frame(&full, &mut readings),
        Err(DecodeError::InvalidValue)
    );
    // Only 256 there: the frame ends first.
    let short = batch_frame(&head, &varint(over as u64), &vec![reading; over - 1]);
    assert_eq!(
        decode_device_frame(&short, &mut readings),
        Err(DecodeError::Truncated)
    );
    for bytes in [full, short] {
        assert_eq!(
            decode_device_frame(&bytes, &mut readings).map(|_| ()),
            decode_device(&bytes).map(|_| ())
        );
    }
}
