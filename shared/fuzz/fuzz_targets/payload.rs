//! The storage payload codec, two ways per input:
//! - the bytes as a stored payload: `decode` never panics, leaves `out` as it was on error,
//!   and what it returns is a payload's promise (at most `MAX_READINGS_PER_BATCH` points,
//!   grouped by ascending sensor) that re-encodes and decodes to the same points;
//! - the bytes as a recipe for readings (`arbitrary`): device-like series (shared timestamps,
//!   a period with jitter, decimal values) mixed with raw bit patterns; `encode` then `decode`
//!   gives back exactly those points, grouped by sensor and sorted by time (stable).
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shared::limits::MAX_READINGS_PER_BATCH;
use shared::payload::{Point, decode, encode};

fuzz_target!(|data: &[u8]| {
    decode_any_bytes(data);
    if let Ok(points) = readings(&mut Unstructured::new(data)) {
        round_trip(&points);
    }
});

fn decode_any_bytes(data: &[u8]) {
    let sentinel = Point {
        sensor: 7,
        ts_ms: -1,
        value: f32::from_bits(0x7fc0_0001),
    };
    let mut out = vec![sentinel];
    match decode(data, &mut out) {
        Err(_) => assert_eq!(
            exact(&out),
            exact(&[sentinel]),
            "a failed decode changed `out`"
        ),
        Ok(()) => {
            assert_eq!(
                exact(&out[..1]),
                exact(&[sentinel]),
                "decode overwrote `out`"
            );
            let points = &out[1..];
            assert!(points.len() <= MAX_READINGS_PER_BATCH);
            assert!(
                points.windows(2).all(|w| w[0].sensor <= w[1].sensor),
                "not grouped"
            );
            round_trip(points);
        }
    }
}

/// `encode` then `decode` returns the points grouped by sensor, sorted by time, ties in order;
/// encoding is deterministic.
fn round_trip(points: &[Point]) {
    let mut bytes = Vec::new();
    encode(points, &mut bytes);
    let mut again = Vec::new();
    encode(points, &mut again);
    assert_eq!(bytes, again, "encode is not deterministic");
    let mut back = Vec::new();
    decode(&bytes, &mut back).unwrap_or_else(|e| panic!("{points:?} encoded to {bytes:02x?}: {e}"));
    assert_eq!(exact(&back), grouped(points), "round trip of {bytes:02x?}");
}

/// Points as comparable bits: `f32` equality would call NaN unequal and -0.0 equal to 0.0.
fn exact(points: &[Point]) -> Vec<(u8, i64, u32)> {
    points
        .iter()
        .map(|p| (p.sensor, p.ts_ms, p.value.to_bits()))
        .collect()
}

fn grouped(points: &[Point]) -> Vec<(u8, i64, u32)> {
    let mut sorted = exact(points);
    sorted.sort_by_key(|&(sensor, ts_ms, _)| (sensor, ts_ms));
    sorted
}

/// Readings shaped like a device's (the codec's fast paths) with the fuzzer choosing where
/// they go wrong: jitter, independent timestamps, raw float bits, wrapping extremes.
fn readings(u: &mut Unstructured<'_>) -> Result<Vec<Point>> {
    let base: i64 = if u.arbitrary()? {
        u.arbitrary()?
    } else {
        1_764_000_000_000
    };
    let period: i64 = match u.int_in_range(0u8..=3)? {
        0 => 1000,
        1 => u.int_in_range(-1000..=100_000)?,
        2 => u.arbitrary()?,
        _ => 0,
    };
    let mut sensors: Vec<u8> = Vec::new();
    for _ in 0..u.int_in_range(1u8..=8)? {
        sensors.push(u.arbitrary()?);
    }
    let decimals = u.int_in_range(0u8..=4)?;
    let scale = 10f64.powi(i32::from(decimals));
    let rows = u.int_in_range(0..=MAX_READINGS_PER_BATCH / sensors.len())?;
    let mut points = Vec::with_capacity(rows * sensors.len());
    let mut steps: Vec<i64> = vec![0; sensors.len()];
    for row in 0..rows as i64 {
        let jitter: i64 = if u.ratio(1u8, 4)? {
            i64::from(u.arbitrary::<i8>()?)
        } else {
            0
        };
        let row_ts = base
            .wrapping_add(period.wrapping_mul(row))
            .wrapping_add(jitter);
        for (i, &sensor) in sensors.iter().enumerate() {
            let ts_ms = if u.ratio(1u8, 16)? {
                u.arbitrary()?
            } else {
                row_ts
            };
            let value = match u.int_in_range(0u8..=7)? {
                // Raw bits: NaN payloads, infinities, subnormals, -0.0.
                0 => f32::from_bits(u.arbitrary()?),
                1 => {
                    steps[i] = u.arbitrary::<i32>()?.into();
                    (steps[i] as f64 / scale) as f32
                }
                // Sensor noise: a few steps from the last value.
                _ => {
                    steps[i] = steps[i].wrapping_add(u.int_in_range(-3..=3)?);
                    (steps[i] as f64 / scale) as f32
                }
            };
            points.push(Point {
                sensor,
                ts_ms,
                value,
            });
        }
    }
    Ok(points)
}
