//! The storage payload codec: its exact bytes (the golden vector of `docs/storage-payload.md`),
//! round trips of any input, refusals that say why, and what it costs on realistic sensor data.
#![cfg(feature = "alloc")]

use proptest::prelude::*;
use shared::limits::MAX_READINGS_PER_BATCH;
use shared::payload::{FORMAT_VERSION, PayloadError, Point, decode, encode};

fn encoded(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(points, &mut out);
    out
}

fn decoded(bytes: &[u8]) -> Result<Vec<Point>, PayloadError> {
    let mut out = Vec::new();
    decode(bytes, &mut out).map(|()| out)
}

/// Points as comparable bits: `f32` equality would call NaN unequal and -0.0 equal to 0.0.
fn exact(points: &[Point]) -> Vec<(u8, i64, u32)> {
    points
        .iter()
        .map(|p| (p.sensor, p.ts_ms, p.value.to_bits()))
        .collect()
}

/// What decode promises: grouped by sensor, ascending, then by time; ties keep their order.
fn grouped(points: &[Point]) -> Vec<(u8, i64, u32)> {
    let mut sorted = exact(points);
    sorted.sort_by_key(|&(sensor, ts_ms, _)| (sensor, ts_ms));
    sorted
}

fn point(sensor: u8, ts_ms: i64, value: f32) -> Point {
    Point {
        sensor,
        ts_ms,
        value,
    }
}

// ---- golden vector ------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000;

/// Two sensors, four readings each, in arrival order (interleaved by sampling tick).
fn golden_points() -> Vec<Point> {
    vec![
        point(1, T0, 21.5),
        point(2, T0 + 2, 45.0),
        point(1, T0 + 1000, 21.5),
        point(2, T0 + 1001, 45.5),
        point(1, T0 + 2000, 21.75),
        point(2, T0 + 2003, 45.5),
        point(1, T0 + 3000, 21.5),
        point(2, T0 + 3002, 46.0),
    ]
}

const GOLDEN_HEX: &str = "0102010480a0abfef962020404e3e8106b00001b81b7c76a11a00006e05b05c0";

#[test]
fn golden_points_encode_to_the_documented_bytes() {
    assert_eq!(hex::encode(encoded(&golden_points())), GOLDEN_HEX);
}

#[test]
fn documented_bytes_decode_to_the_golden_points_grouped_by_sensor() {
    let bytes = hex::decode(GOLDEN_HEX).unwrap();
    assert_eq!(exact(&decoded(&bytes).unwrap()), grouped(&golden_points()));
}

#[test]
fn empty_batch_is_two_bytes() {
    assert_eq!(encoded(&[]), [FORMAT_VERSION, 0]);
    assert_eq!(decoded(&[FORMAT_VERSION, 0]), Ok(vec![]));
}

// ---- what it costs ------------------------------------------------------------------------

#[test]
fn steady_one_hz_series_with_a_constant_value_costs_two_bits_per_reading() {
    let points: Vec<Point> = (0..256).map(|i| point(7, T0 + 1000 * i, 3.3)).collect();
    // Header: version, series count, sensor, count (2-byte varint), first ts (6-byte varint).
    let header = 1 + 1 + 1 + 2 + 6;
    // Bits: first delta (16: prefix 1110 + 12 bits), 254 zero delta-of-deltas, first value
    // (32), 255 unchanged values.
    let stream_bits = 16 + 254 + 32 + 255;
    assert_eq!(
        encoded(&points).len(),
        header + (stream_bits as usize).div_ceil(8)
    );
}

#[test]
fn timestamps_jittering_by_a_few_ms_cost_six_bits_each() {
    let steady: Vec<Point> = (0..8).map(|i| point(0, T0 + 1000 * i, 1.0)).collect();
    let jitter = [0, 2, 1, 3, 1, 0, 2, 1];
    let jittery: Vec<Point> = (0..8)
        .map(|i| point(0, T0 + 1000 * i + jitter[i as usize], 1.0))
        .collect();
    // Header: version, series count, sensor, count, first ts: 10 bytes. Bits: first delta 16,
    // 6 delta-of-deltas, first value 32, 7 unchanged values 7. Steady, the delta-of-deltas are
    // 0 (1 bit each); jittery they are -3, 3, -4, 1, 3, -3 (`10` + 4 bits each).
    assert_eq!(
        encoded(&steady).len(),
        10 + (16 + 6 + 32 + 7usize).div_ceil(8)
    );
    assert_eq!(
        encoded(&jittery).len(),
        10 + (16 + 6 * 6 + 32 + 7usize).div_ceil(8)
    );
}

/// Deterministic noise for the realistic data: splitmix64, and Box-Muller for a normal.
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, sigma: f64) -> f64 {
        let (u1, u2) = (1.0 - self.uniform(), self.uniform());
        sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn jitter_ms(&mut self, max: i64) -> i64 {
        (self.next_u64() % (2 * max as u64 + 1)) as i64 - max
    }
}

/// The value a device reports, in f32 as it computes it: `steps` of `1 / per_unit`.
fn quantised(x: f64, per_unit: f64) -> f32 {
    (x * per_unit).round() as f32 / per_unit as f32
}

/// One hour of a 4-sensor device at 1 Hz in arrival order, each reading with its own jitter
/// of up to `jitter_ms` (the values do not depend on it). Values as the device reports them, in
/// steps of 0.01, with noise near what a BME280-class sensor and an ADC show: temperature (°C,
/// daily curve, σ 0.01), humidity (%RH, daily curve, σ 0.03), pressure (hPa, slow drift,
/// σ 0.01), battery (V, slow discharge, σ 0.003).
fn realistic_hour(jitter_ms: i64) -> Vec<Point> {
    let mut noise = Noise(0x5eed);
    let day = 86_400.0;
    let tau = std::f64::consts::TAU;
    let start_ms = 1_750_000_000_000i64;
    let mut points = Vec::new();
    for tick in 0..3600 {
        let t = 30_000.0 + f64::from(tick); // seconds into the day: mid-morning, warming up
        let daily = (tau * t / day).sin();
        let values = [
            quantised(21.0 + 3.0 * daily + noise.normal(0.01), 100.0),
            quantised(50.0 - 8.0 * daily + noise.normal(0.03), 100.0),
            quantised(
                1013.25 + 2.0 * (tau * t / (2.0 * day)).sin() + noise.normal(0.01),
                100.0,
            ),
            quantised(4.05 - 0.3 * t / day + noise.normal(0.003), 100.0),
        ];
        for (sensor, value) in values.into_iter().enumerate() {
            let jitter = noise.jitter_ms(3).clamp(-jitter_ms, jitter_ms);
            points.push(point(
                sensor as u8,
                start_ms + 1000 * i64::from(tick) + jitter,
                value,
            ));
        }
    }
    points
}

fn bytes_per_reading(points: &[Point], batch_len: usize) -> f64 {
    let bytes: usize = points
        .chunks(batch_len)
        .map(|batch| encoded(batch).len())
        .sum();
    bytes as f64 / points.len() as f64
}

#[test]
fn realistic_one_hz_device_costs_under_three_and_a_half_bytes_per_reading() {
    let hour = realistic_hour(3);
    for batch in hour.chunks(32) {
        assert_eq!(exact(&decoded(&encoded(batch)).unwrap()), grouped(batch));
    }
    let per_reading = bytes_per_reading(&hour, 32);
    // With every value 0.0: what headers, timestamps and first values cost on their own.
    let zeroed: Vec<Point> = hour.iter().map(|p| Point { value: 0.0, ..*p }).collect();
    let steady = realistic_hour(0);
    println!("storage payload, bytes per reading (plain layout: 13):");
    println!("  realistic, ±3 ms jitter, 32-reading batches: {per_reading:.3}");
    println!(
        "    of which headers, timestamps, first values: {:.3}",
        bytes_per_reading(&zeroed, 32)
    );
    println!(
        "  the same without jitter:                     {:.3}",
        bytes_per_reading(&steady, 32)
    );
    println!(
        "  256-reading batches, with / without jitter:  {:.3} / {:.3}",
        bytes_per_reading(&hour, 256),
        bytes_per_reading(&steady, 256)
    );
    assert!(per_reading < 3.5, "{per_reading:.3} bytes per reading");
}

// ---- round trips --------------------------------------------------------------------------

#[test]
fn negative_zero_nan_payloads_and_infinities_round_trip_bit_exact() {
    let values = [
        -0.0,
        0.0,
        f32::NAN,
        f32::from_bits(0xffc0_0001),
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 2.0,
        -0.0,
    ];
    let points: Vec<Point> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| point(3, T0 + i as i64, v))
        .collect();
    assert_eq!(exact(&decoded(&encoded(&points)).unwrap()), exact(&points));
}

#[test]
fn timestamps_at_the_i64_bounds_round_trip() {
    let points = [
        point(0, i64::MAX, 1.0),
        point(0, i64::MIN, 2.0),
        point(0, 0, 3.0),
        point(1, i64::MIN, 4.0),
        point(2, i64::MAX, 5.0),
        point(2, -1, 6.0),
    ];
    assert_eq!(
        exact(&decoded(&encoded(&points)).unwrap()),
        grouped(&points)
    );
}

#[test]
fn points_come_back_grouped_by_sensor_then_sorted_by_time_keeping_ties_in_order() {
    let points = [
        point(9, 30, 1.0),
        point(2, 20, 2.0),
        point(9, 10, 3.0),
        point(2, 20, 4.0),
        point(0, 5, 5.0),
        point(2, 10, 6.0),
    ];
    let back = exact(&decoded(&encoded(&points)).unwrap());
    let order: Vec<(u8, i64, f32)> = back
        .iter()
        .map(|&(s, t, v)| (s, t, f32::from_bits(v)))
        .collect();
    assert_eq!(
        order,
        [
            (0, 5, 5.0),
            (2, 10, 6.0),
            (2, 20, 2.0),
            (2, 20, 4.0),
            (9, 10, 3.0),
            (9, 30, 1.0)
        ]
    );
}

#[test]
fn decode_appends_to_what_is_already_in_out() {
    let mut out = vec![point(1, 1, 1.0)];
    decode(&encoded(&[point(2, 2, 2.0)]), &mut out).unwrap();
    assert_eq!(
        exact(&out),
        [(1, 1, 1.0f32.to_bits()), (2, 2, 2.0f32.to_bits())]
    );
}

// ---- refusals -----------------------------------------------------------------------------

#[test]
fn every_strict_prefix_of_a_payload_is_refused_as_truncated() {
    let bytes = hex::decode(GOLDEN_HEX).unwrap();
    for len in 0..bytes.len() {
        assert_eq!(
            decoded(&bytes[..len]),
            Err(PayloadError::Truncated),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn bytes_after_the_payload_are_refused_with_their_count() {
    let mut bytes = hex::decode(GOLDEN_HEX).unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        decoded(&bytes),
        Err(PayloadError::TrailingBytes { extra: 3 })
    );
}

#[test]
fn set_padding_bits_are_refused() {
    let mut bytes = hex::decode(GOLDEN_HEX).unwrap();
    *bytes.last_mut().unwrap() |= 1;
    assert_eq!(decoded(&bytes), Err(PayloadError::NonZeroPadding));
}

#[test]
fn an_unknown_format_version_is_refused_with_its_number() {
    assert_eq!(
        decoded(&[2, 0]),
        Err(PayloadError::UnsupportedVersion {
            version: 2,
            supported: FORMAT_VERSION
        })
    );
}

#[test]
fn more_points_than_a_batch_holds_are_refused_before_anything_is_allocated() {
    // One series claiming u64::MAX points.
    let huge = [
        1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0,
    ];
    assert_eq!(
        decoded(&huge),
        Err(PayloadError::TooManyPoints {
            count: u64::MAX,
            max: MAX_READINGS_PER_BATCH
        })
    );
    // Two series of 200 points each (varint 200 = c8 01).
    let split = [1, 2, 0, 0xc8, 0x01, 0, 1, 0xc8, 0x01, 0];
    assert_eq!(
        decoded(&split),
        Err(PayloadError::TooManyPoints {
            count: 400,
            max: MAX_READINGS_PER_BATCH
        })
    );
    // A series count beyond what the point limit allows.
    assert_eq!(
        decoded(&[1, 0x81, 0x02]),
        Err(PayloadError::TooManySeries {
            count: 257,
            max: MAX_READINGS_PER_BATCH
        })
    );
}

#[test]
fn exactly_a_full_batch_round_trips() {
    let points: Vec<Point> = (0..MAX_READINGS_PER_BATCH as i64)
        .map(|i| point((i % 4) as u8, T0 + i * 250, i as f32))
        .collect();
    assert_eq!(
        exact(&decoded(&encoded(&points)).unwrap()),
        grouped(&points)
    );
}

#[test]
fn series_out_of_sensor_order_or_empty_are_refused_with_the_sensor() {
    // Sensors 5 then 5; then 5 then 3; then an empty series of sensor 4.
    assert_eq!(
        decoded(&[1, 2, 5, 1, 0, 5, 1, 0]),
        Err(PayloadError::SensorOutOfOrder {
            sensor: 5,
            previous: 5
        })
    );
    assert_eq!(
        decoded(&[1, 2, 5, 1, 0, 3, 1, 0]),
        Err(PayloadError::SensorOutOfOrder {
            sensor: 3,
            previous: 5
        })
    );
    assert_eq!(
        decoded(&[1, 1, 4, 0, 0]),
        Err(PayloadError::EmptySeries { sensor: 4 })
    );
}

#[test]
fn a_varint_over_64_bits_is_malformed() {
    assert_eq!(
        decoded(&[
            1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02
        ]),
        Err(PayloadError::Malformed)
    );
}

#[test]
fn xor_codes_that_name_no_window_or_too_wide_a_window_are_refused() {
    // Sensor 6, two points at ts 0: bit stream = one dod `0`, value 32 bits, then the XOR code.
    let header = [1, 1, 6, 2, 0];
    // `0` + 32 zero bits + `10` (reuse a window that was never set).
    let no_window = [&header[..], &[0, 0, 0, 0, 0b0100_0000]].concat();
    assert_eq!(
        decoded(&no_window),
        Err(PayloadError::NoXorWindow { sensor: 6 })
    );
    // `0` + 32 zero bits + `11` + leading 31 + length 32: 63 bits wide.
    let too_wide = [&header[..], &[0, 0, 0, 0, 0b0111_1111, 0b1111_1000]].concat();
    assert_eq!(
        decoded(&too_wide),
        Err(PayloadError::XorWindowTooWide {
            sensor: 6,
            leading: 31,
            len: 32
        })
    );
}

#[test]
fn a_failed_decode_leaves_out_as_it_was() {
    let mut bytes = hex::decode(GOLDEN_HEX).unwrap();
    bytes.pop();
    let mut out = vec![point(1, 1, 1.0)];
    assert_eq!(decode(&bytes, &mut out), Err(PayloadError::Truncated));
    assert_eq!(exact(&out), [(1, 1, 1.0f32.to_bits())]);
}

// ---- properties ---------------------------------------------------------------------------

/// Timestamps mostly as devices send them (near now, roughly regular), sometimes anything.
fn any_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (0i64..10_000).prop_map(|i| 1_750_000_000_000 + i * 997),
        2 => 1_500_000_000_000i64..2_000_000_000_000,
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)],
    ]
}

/// Values as any bit pattern, or drawn from few so runs of equal values occur.
fn any_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => prop_oneof![Just(-0.0f32), Just(0.0), Just(21.5), Just(21.51), Just(f32::NAN)],
        1 => (2000i32..2100).prop_map(|c| c as f32 / 100.0),
    ]
}

fn any_point() -> impl Strategy<Value = Point> {
    (
        prop_oneof![3 => 0u8..4, 1 => any::<u8>()],
        any_ts(),
        any_value(),
    )
        .prop_map(|(sensor, ts_ms, value)| Point {
            sensor,
            ts_ms,
            value,
        })
}

proptest! {
    // No regression file: integration tests have no lib.rs beside them to anchor it.
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_points_round_trip_grouped_and_bit_exact(points in prop::collection::vec(any_point(), 0..=MAX_READINGS_PER_BATCH)) {
        prop_assert_eq!(exact(&decoded(&encoded(&points)).unwrap()), grouped(&points));
    }

    #[test]
    fn any_bytes_decode_to_a_result_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decoded(&bytes);
        // Past the version byte, so that the header and bit stream are exercised too.
        let _ = decoded(&[&[FORMAT_VERSION][..], &bytes].concat());
    }

    #[test]
    fn a_corrupted_payload_decodes_to_a_result_never_a_panic(
        points in prop::collection::vec(any_point(), 1..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let mut bytes = encoded(&points);
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if let Ok(back) = decoded(&bytes) {
            prop_assert!(back.len() <= MAX_READINGS_PER_BATCH);
        }
    }
}
