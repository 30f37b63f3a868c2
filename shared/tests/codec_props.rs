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
