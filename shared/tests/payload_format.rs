//! The storage payload's bytes never drift: the shipped codec writes, byte for byte, what the
//! reference codec (`payload_oracle/`, the plain bit-by-bit codec the format was first
//! written with) writes, and reads every input, valid or not, to the same points or the same
//! error. Stored rows outlive any build, so a faster encoder must be the same encoder.
//!
//! Inputs: a seeded corpus of batches shaped like device data (shared or jittered timestamps,
//! decimal walks and ramps, constant values, values an ulp off their step, any `f32` bits,
//! timestamps at the `i64` edges, up to a full batch), its digest pinned to what the reference
//! wrote when this test was added; proptest inputs; and corruptions of valid payloads.
#![cfg(feature = "alloc")]

extern crate alloc;

mod payload_oracle;

use proptest::prelude::*;
use shared::limits::MAX_READINGS_PER_BATCH;
use shared::payload::{Encoder, PayloadError, Point, decode, encode};

fn encoded(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(points, &mut out);
    out
}

fn reference_encoded(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    payload_oracle::encode(points, &mut out);
    out
}

/// Points as comparable bits: `f32` equality would call NaN unequal and -0.0 equal to 0.0.
fn exact(points: &[Point]) -> Vec<(u8, i64, u32)> {
    points
        .iter()
        .map(|p| (p.sensor, p.ts_ms, p.value.to_bits()))
        .collect()
}

fn decoded(bytes: &[u8]) -> Result<Vec<(u8, i64, u32)>, PayloadError> {
    let mut out = Vec::new();
    decode(bytes, &mut out).map(|()| exact(&out))
}

fn reference_decoded(bytes: &[u8]) -> Result<Vec<(u8, i64, u32)>, PayloadError> {
    let mut out = Vec::new();
    payload_oracle::decode(bytes, &mut out).map(|()| exact(&out))
}

fn point(sensor: u8, ts_ms: i64, value: f32) -> Point {
    Point {
        sensor,
        ts_ms,
        value,
    }
}

/// splitmix64: the corpus is the same on every machine and every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// One series' values: a decimal walk or ramp (sometimes with noise bursts or one value an ulp
/// off), a constant, a computed ratio, special values, or any bits.
fn values(rng: &mut Rng, len: usize) -> Vec<f32> {
    let kind = rng.below(10);
    let decimals = rng.below(4) as i32;
    let scale = 10f64.powi(decimals);
    let mut steps = match rng.below(4) {
        0 => rng.range(-100, 100),
        1 => rng.range(-100_000, 100_000),
        2 => rng.range(-10_000_000_000, 10_000_000_000),
        _ => rng.range(0, 5000),
    };
    let spread = [0, 1, 3, 10, 100, 10_000][rng.below(6) as usize];
    let mut delta = rng.range(-spread, spread);
    let mut out: Vec<f32> = (0..len)
        .map(|_| match kind {
            0..=4 => {
                let v = (steps as f64 / scale) as f32;
                steps += rng.range(-spread, spread);
                v
            }
            5 => {
                let v = (steps as f64 / scale) as f32;
                delta += rng.range(-1, 1) * (spread / 10).max(1);
                steps += delta;
                v
            }
            6 => (steps as f64 / scale) as f32,
            7 => (rng.range(1, 1000) as f32) / (rng.range(1, 1000) as f32),
            8 => [
                0.0,
                -0.0,
                f32::NAN,
                -f32::NAN,
                f32::from_bits(0x7fc0_0001),
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE / 3.0,
                f32::MAX,
                f32::MIN,
                16_777_217.0,
                9.0e15,
            ][rng.below(12) as usize],
            _ => f32::from_bits(rng.next() as u32),
        })
        .collect();
    if rng.chance(5) && len > 0 {
        let at = rng.below(len as u64) as usize;
        out[at] = f32::from_bits(out[at].to_bits() ^ 1);
    }
    out
}

/// The first timestamp: near now, anywhere, or at the edges of `i64`.
fn first_ts(rng: &mut Rng) -> i64 {
    match rng.below(8) {
        0..=4 => 1_750_000_000_000 + rng.range(0, 100_000_000),
        5 => rng.next() as i64,
        6 => i64::MAX - rng.range(0, 100_000),
        _ => i64::MIN + rng.range(0, 100_000),
    }
}

/// A batch as a device sends one (sensors sampled at shared instants, in arrival order) or
/// with every sensor on its own clock, sometimes shuffled, with readings dropped or repeated.
fn batch(rng: &mut Rng) -> Vec<Point> {
    let most_sensors = if rng.chance(4) { 16 } else { 6 };
    let sensor_count = 1 + rng.below(most_sensors) as usize;
    let mut sensors: Vec<u8> = (0..sensor_count).map(|_| rng.next() as u8).collect();
    if rng.chance(2) {
        sensors = (0..sensor_count as u8).collect();
    }
    let max_instants = (MAX_READINGS_PER_BATCH / sensor_count).max(1);
    let most_instants = if rng.chance(8) {
        max_instants as u64
    } else {
        (max_instants as u64).min(40)
    };
    let instants = 1 + rng.below(most_instants) as usize;
    let period = [1, 10, 100, 1000, 1000, 1000, 60_000, 3_600_000][rng.below(8) as usize];
    let jitter = [0, 0, 1, 3, 50, 5000][rng.below(6) as usize];
    let per_sensor_clock = rng.chance(4);
    let mut clock = first_ts(rng);
    let mut ticks: Vec<Vec<i64>> = vec![Vec::with_capacity(instants); sensor_count];
    for _ in 0..instants {
        let tick_jitter = rng.range(-jitter, jitter);
        for ts in &mut ticks {
            let own = if per_sensor_clock {
                rng.range(-jitter, jitter)
            } else {
                0
            };
            ts.push(clock.wrapping_add(tick_jitter).wrapping_add(own));
        }
        clock = clock.wrapping_add(if rng.chance(20) { 0 } else { period });
        if rng.chance(30) {
            clock = clock.wrapping_add(period * rng.range(-3, 50));
        }
    }
    let series: Vec<Vec<f32>> = (0..sensor_count).map(|_| values(rng, instants)).collect();
    let mut points: Vec<Point> = (0..instants)
        .flat_map(|i| {
            let (sensors, ticks, series) = (&sensors, &ticks, &series);
            (0..sensor_count).map(move |s| point(sensors[s], ticks[s][i], series[s][i]))
        })
        .collect();
    for _ in 0..rng.below(3) {
        if !points.is_empty() && rng.chance(2) {
            let at = rng.below(points.len() as u64) as usize;
            points.remove(at);
        }
    }
    if rng.chance(10) && !points.is_empty() && points.len() < MAX_READINGS_PER_BATCH {
        let at = rng.below(points.len() as u64) as usize;
        points.push(points[at]);
    }
    if rng.chance(5) {
        for i in (1..points.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            points.swap(i, j);
        }
    }
    points
}

fn corpus() -> impl Iterator<Item = Vec<Point>> {
    let mut rng = Rng(0x0051_07ed_ba7c);
    core::iter::once(Vec::new()).chain((0..20_000).map(move |_| batch(&mut rng)))
}

/// FNV-1a over every encoding, each preceded by its length.
fn digest(payloads: impl Iterator<Item = Vec<u8>>) -> (u64, usize) {
    let (mut hash, mut bytes) = (0xcbf2_9ce4_8422_2325u64, 0);
    for payload in payloads {
        bytes += payload.len();
        for b in (payload.len() as u32).to_le_bytes().iter().chain(&payload) {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (hash, bytes)
}

/// What the reference encoder wrote for the corpus when this test was added.
const CORPUS_DIGEST: (u64, usize) = (0xf0dc_3a29_21fc_80e6, 4_919_345);

#[test]
fn the_corpus_encodes_to_the_bytes_the_reference_encoder_wrote() {
    for (i, points) in corpus().enumerate() {
        let ours = encoded(&points);
        assert_eq!(
            hex(&ours),
            hex(&reference_encoded(&points)),
            "corpus batch {i}: {points:?}"
        );
    }
    assert_eq!(
        digest(corpus().map(|p| reference_encoded(&p))),
        CORPUS_DIGEST
    );
    assert_eq!(digest(corpus().map(|p| encoded(&p))), CORPUS_DIGEST);
}

/// The hub's store keeps one `Encoder` for every batch; what the columns hold from one batch
/// must never show in the next (the corpus mixes every size, shorter after longer).
#[test]
fn one_encoder_reused_over_the_corpus_writes_the_same_bytes() {
    let mut encoder = Encoder::default();
    let reused = corpus().map(|points| {
        let mut out = vec![];
        encoder.encode(&points, &mut out);
        out
    });
    assert_eq!(digest(reused), CORPUS_DIGEST);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_corpus_and_its_corruptions_decode_as_the_reference_decodes_them() {
    let mut rng = Rng(0xdec0de);
    for (i, points) in corpus().enumerate().step_by(4) {
        let bytes = encoded(&points);
        assert_eq!(decoded(&bytes), reference_decoded(&bytes), "batch {i}");
        assert!(decoded(&bytes).is_ok(), "batch {i}");
        let mut flipped = bytes.clone();
        let bit = rng.below(8 * bytes.len() as u64);
        flipped[bit as usize / 8] ^= 0x80 >> (bit % 8);
        assert_eq!(decoded(&flipped), reference_decoded(&flipped), "batch {i}");
        let cut = &bytes[..rng.below(bytes.len() as u64) as usize];
        assert_eq!(decoded(cut), reference_decoded(cut), "batch {i}");
        let mut longer = bytes.clone();
        longer.push(rng.next() as u8);
        assert_eq!(decoded(&longer), reference_decoded(&longer), "batch {i}");
        let mut garbled = bytes.clone();
        let from = rng.below(bytes.len() as u64) as usize;
        for b in &mut garbled[from..] {
            *b = rng.next() as u8;
        }
        assert_eq!(decoded(&garbled), reference_decoded(&garbled), "batch {i}");
    }
}

fn any_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (0i64..10_000).prop_map(|i| 1_750_000_000_000 + i * 997),
        2 => 1_500_000_000_000i64..2_000_000_000_000,
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)],
    ]
}

fn any_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => prop_oneof![Just(-0.0f32), Just(0.0), Just(21.5), Just(21.51), Just(f32::NAN)],
        2 => (2000i32..2100).prop_map(|c| c as f32 / 100.0),
        1 => (-50i32..50).prop_map(|c| c as f32),
    ]
}

fn any_point() -> impl Strategy<Value = Point> {
    (
        prop_oneof![3 => 0u8..4, 1 => any::<u8>()],
        any_ts(),
        any_value(),
    )
        .prop_map(|(sensor, ts_ms, value)| point(sensor, ts_ms, value))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_points_encode_as_the_reference_encodes_them(
        points in prop::collection::vec(any_point(), 0..=MAX_READINGS_PER_BATCH)
    ) {
        prop_assert_eq!(hex(&encoded(&points)), hex(&reference_encoded(&points)));
    }

    #[test]
    fn a_reused_encoder_writes_what_encode_writes(
        batches in prop::collection::vec(prop::collection::vec(any_point(), 0..=40), 1..6)
    ) {
        let mut encoder = Encoder::default();
        for points in &batches {
            let mut out = vec![7];
            encoder.encode(points, &mut out);
            prop_assert_eq!(hex(&out[1..]), hex(&encoded(points)));
        }
    }

    #[test]
    fn any_bytes_decode_as_the_reference_decodes_them(
        bytes in (0u8..6, prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(series, rest)| [vec![1, series], rest].concat())
    ) {
        prop_assert_eq!(decoded(&bytes), reference_decoded(&bytes));
    }
}
