//! The values of one series, in whichever of two codecs codes them in fewer bits:
//! - **decimal**: when every value is the `f32` nearest to a whole number of steps of 1, 0.1,
//!   0.01 or 0.001 (what devices report: sensors have a resolution, firmware rounds to it), the
//!   series is coded as those integers: the first in the header, then a Rice code per value of
//!   its delta, or delta-of-delta, in steps. Sensor noise of a few steps costs 2 to 5 bits.
//! - **XOR** (Gorilla): any `f32` bit pattern; each value as its XOR with the previous one.
//!   Steps of 0.01 have no short binary form, so their XORs spread over the mantissa: 8 to 30
//!   bits per changed value.
//!
//! The encoder prices every codec the series allows by writing it to a
//! [`BitCount`](super::bits::BitCount) and keeps the cheapest.

use alloc::vec::Vec;

use super::bits::{BitCount, BitReader, BitSink};
use super::bytes::{ByteCursor, unzigzag, varint_len, write_varint, zigzag};
use super::{PayloadError, Point};

/// Bits 6..0 of a series' mode byte: `0` for XOR, else `1 o dd kkk`: decimal, `o` = 1 for
/// delta-of-deltas, `dd` decimals, `kkk` the Rice parameter.
const DECIMAL: u8 = 0x40;
const DELTA_OF_DELTA: u8 = 0x20;
const DECIMALS_SHIFT: u8 = 3;

/// Steps per unit for 0, 1, 2, 3 decimals.
const STEPS_PER_UNIT: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

/// Step counts are kept within ±2^53, where every integer is an exact `f64`; values beyond
/// (over 9e12 at 0.001) are XOR'd.
const MAX_STEPS: f64 = 9_007_199_254_740_992.0;

/// Largest Rice parameter: 3 bits of the mode byte.
const MAX_RICE_K: u32 = 7;

/// A Rice quotient this large is not written in unary: the code is this many 1-bits, 6 bits of
/// `len - 1`, then the `len` bits of the zigzag'd number.
const RICE_ESCAPE: u32 = 8;

/// A decimal series' parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decimal {
    /// Values are multiples of 10^-decimals: 0..=3.
    decimals: u8,
    /// Codes are delta-of-deltas of the step counts, else their deltas.
    delta_of_delta: bool,
    /// How many low bits of a zigzag'd code are written as they are: 0..=7.
    rice_k: u32,
}

impl Decimal {
    fn value(self, steps: i64) -> f32 {
        (steps as f64 / STEPS_PER_UNIT[usize::from(self.decimals & 3)]) as f32
    }

    /// The step count nearest to `value` times 10^decimals, if its [`Decimal::value`] gives
    /// `value` back to the bit.
    fn steps(self, value: f32) -> Option<i64> {
        // Exact: 24 significant bits times at most 10.
        let scaled = f64::from(value) * STEPS_PER_UNIT[usize::from(self.decimals & 3)];
        // Refuses NaN and the infinities too.
        if !(-MAX_STEPS..=MAX_STEPS).contains(&scaled) {
            return None;
        }
        let truncated = scaled as i64;
        let fraction = scaled - truncated as f64;
        let steps = if fraction >= 0.5 {
            truncated + 1
        } else if fraction <= -0.5 {
            truncated - 1
        } else {
            truncated
        };
        (self.value(steps).to_bits() == value.to_bits()).then_some(steps)
    }
}

/// How a series' values are coded, as its mode byte names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ValueCodec {
    Xor,
    Decimal(Decimal),
}

impl ValueCodec {
    pub(super) fn mode_bits(self) -> u8 {
        match self {
            Self::Xor => 0,
            Self::Decimal(d) => {
                DECIMAL
                    | if d.delta_of_delta { DELTA_OF_DELTA } else { 0 }
                    | (d.decimals << DECIMALS_SHIFT)
                    | d.rice_k as u8
            }
        }
    }

    /// The codec of mode bits 6..0 (bit 7 must be clear); `None` if no codec has them.
    pub(super) fn from_mode_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::Xor),
            _ if bits & 0xc0 == DECIMAL => Some(Self::Decimal(Decimal {
                decimals: (bits >> DECIMALS_SHIFT) & 3,
                delta_of_delta: bits & DELTA_OF_DELTA != 0,
                rice_k: u32::from(bits) & MAX_RICE_K,
            })),
            _ => None,
        }
    }
}

/// The values of one series, ready to write in the codec chosen for them.
pub(super) enum Coded<'a> {
    Xor(&'a [Point]),
    Decimal(Decimal, Vec<i64>),
}

impl<'a> Coded<'a> {
    /// Picks the codec that takes the fewest bits for `series` (at least one point), header
    /// bytes included; among equals, the first of XOR, decimal deltas with k = 0..=7,
    /// decimal delta-of-deltas with k = 0..=7.
    pub(super) fn cheapest(series: &'a [Point]) -> Self {
        let xor_bits = {
            let mut count = BitCount(32);
            write_xor(&mut count, series);
            count.0
        };
        // The coarsest step that gives every value back; finer ones only make bigger numbers.
        let Some(step) = (0..4)
            .map(|decimals| Decimal {
                decimals,
                delta_of_delta: false,
                rice_k: 0,
            })
            .find(|d| series.iter().all(|p| d.steps(p.value).is_some()))
        else {
            return Coded::Xor(series);
        };
        let steps: Vec<i64> = series.iter().filter_map(|p| step.steps(p.value)).collect();
        let first_bits = 8 * u64::from(varint_len(zigzag(steps.first().copied().unwrap_or(0))));
        let mut best: (u64, Option<Decimal>) = (xor_bits, None);
        for delta_of_delta in [false, true] {
            let mut counts: [BitCount; MAX_RICE_K as usize + 1] =
                core::array::from_fn(|_| BitCount(first_bits));
            for z in codes(&steps, delta_of_delta) {
                for (rice_k, count) in (0..).zip(&mut counts) {
                    write_rice(count, z, rice_k);
                }
            }
            for (rice_k, count) in (0..).zip(&counts) {
                if count.0 < best.0 {
                    let d = Decimal {
                        delta_of_delta,
                        rice_k,
                        ..step
                    };
                    best = (count.0, Some(d));
                }
            }
        }
        match best.1 {
            Some(d) => Coded::Decimal(d, steps),
            None => Coded::Xor(series),
        }
    }

    pub(super) fn codec(&self) -> ValueCodec {
        match self {
            Self::Xor(_) => ValueCodec::Xor,
            Self::Decimal(d, _) => ValueCodec::Decimal(*d),
        }
    }

    /// The first value, in the series header: 4 bytes (big-endian `f32` bits) for XOR, the
    /// zigzag varint of its step count for decimal.
    pub(super) fn write_first(&self, out: &mut Vec<u8>) {
        match self {
            Self::Xor(series) => {
                let bits = series.first().map_or(0, |p| p.value.to_bits());
                out.extend_from_slice(&bits.to_be_bytes());
            }
            Self::Decimal(_, steps) => {
                write_varint(out, zigzag(steps.first().copied().unwrap_or(0)))
            }
        }
    }

    /// One code per value after the first, in the bit stream.
    pub(super) fn write_codes(&self, bits: &mut impl BitSink) {
        match self {
            Self::Xor(series) => write_xor(bits, series),
            Self::Decimal(d, steps) => {
                for z in codes(steps, d.delta_of_delta) {
                    write_rice(bits, z, d.rice_k);
                }
            }
        }
    }
}

/// The zigzag'd deltas (or delta-of-deltas) of the step counts after the first; the delta
/// before the first is 0.
fn codes(steps: &[i64], delta_of_delta: bool) -> impl Iterator<Item = u64> + '_ {
    let mut prev_delta = 0i64;
    steps.windows(2).map(move |pair| {
        let delta = pair[1].wrapping_sub(pair[0]);
        let code = if delta_of_delta {
            delta.wrapping_sub(prev_delta)
        } else {
            delta
        };
        prev_delta = delta;
        zigzag(code)
    })
}

/// A series' first value as its header gives it, with the codec of the rest.
#[derive(Clone, Copy)]
pub(super) enum Start {
    Xor(u32),
    Decimal(Decimal, i64),
}

pub(super) fn read_first(
    cursor: &mut ByteCursor<'_>,
    codec: ValueCodec,
) -> Result<Start, PayloadError> {
    Ok(match codec {
        ValueCodec::Xor => Start::Xor(cursor.u32_be()?),
        ValueCodec::Decimal(d) => Start::Decimal(d, unzigzag(cursor.varint()?)),
    })
}

/// Sets the values of `series` (the points of one series, timestamps already set) from
/// `start` and the codes that follow in `bits`.
pub(super) fn read_codes(
    bits: &mut BitReader<'_>,
    sensor: u8,
    start: Start,
    series: &mut [Point],
) -> Result<(), PayloadError> {
    let Some((first, rest)) = series.split_first_mut() else {
        return Ok(());
    };
    match start {
        Start::Xor(first_bits) => {
            first.value = f32::from_bits(first_bits);
            read_xor(bits, sensor, first_bits, rest)
        }
        Start::Decimal(d, mut steps) => {
            first.value = d.value(steps);
            let mut delta = 0i64;
            for p in rest {
                let code = unzigzag(read_rice(bits, d.rice_k)?);
                delta = if d.delta_of_delta {
                    delta.wrapping_add(code)
                } else {
                    code
                };
                steps = steps.wrapping_add(delta);
                p.value = d.value(steps);
            }
            Ok(())
        }
    }
}

/// Rice code of parameter `k`: the quotient `z >> k` in unary (that many 1-bits, then a
/// 0-bit), then the `k` low bits of `z`; a quotient of [`RICE_ESCAPE`] or more as the escape.
fn write_rice(bits: &mut impl BitSink, z: u64, k: u32) {
    let quotient = z >> k;
    if quotient < u64::from(RICE_ESCAPE) {
        bits.bits(((1 << quotient) - 1) << 1, quotient as u32 + 1);
        bits.bits(z, k);
    } else {
        let len = 64 - z.leading_zeros();
        bits.bits((1 << RICE_ESCAPE) - 1, RICE_ESCAPE);
        bits.bits(u64::from(len - 1), 6);
        bits.bits(z, len);
    }
}

fn read_rice(bits: &mut BitReader<'_>, k: u32) -> Result<u64, PayloadError> {
    let mut quotient = 0;
    while quotient < RICE_ESCAPE && bits.bit()? {
        quotient += 1;
    }
    if quotient == RICE_ESCAPE {
        let len = bits.bits(6)? as u32 + 1;
        return bits.bits(len);
    }
    Ok((u64::from(quotient) << k) | bits.bits(k)?)
}

/// Per value after the first, its XOR with the previous one: `0` (same value), `10` + the
/// XOR's bits inside the current window, or `11` + 5 bits of leading zeros + 5 bits of
/// (meaningful length - 1) + the meaningful bits, which sets the window.
fn write_xor(bits: &mut impl BitSink, series: &[Point]) {
    let Some((first, rest)) = series.split_first() else {
        return;
    };
    let mut prev = first.value.to_bits();
    let mut window: Option<XorWindow> = None;
    for p in rest {
        let value = p.value.to_bits();
        let xor = value ^ prev;
        prev = value;
        if xor == 0 {
            bits.bit(false);
            continue;
        }
        let tight = XorWindow {
            leading: xor.leading_zeros(),
            trailing: xor.trailing_zeros(),
        };
        match window {
            Some(w) if w.holds(tight) && w.len() <= tight.len() + XorWindow::HEADER_BITS => {
                bits.bits(0b10, 2);
                bits.bits(u64::from(xor >> w.trailing), w.len());
            }
            _ => {
                bits.bits(0b11, 2);
                bits.bits(u64::from(tight.leading), 5);
                bits.bits(u64::from(tight.len() - 1), 5);
                bits.bits(u64::from(xor >> tight.trailing), tight.len());
                window = Some(tight);
            }
        }
    }
}

fn read_xor(
    bits: &mut BitReader<'_>,
    sensor: u8,
    first_bits: u32,
    rest: &mut [Point],
) -> Result<(), PayloadError> {
    let mut prev = first_bits;
    let mut window: Option<XorWindow> = None;
    for p in rest {
        if bits.bit()? {
            let w = if bits.bit()? {
                let leading = bits.bits(5)? as u32;
                let len = bits.bits(5)? as u32 + 1;
                let trailing =
                    32u32
                        .checked_sub(leading + len)
                        .ok_or(PayloadError::XorWindowTooWide {
                            sensor,
                            leading: leading as u8,
                            len: len as u8,
                        })?;
                let w = XorWindow { leading, trailing };
                window = Some(w);
                w
            } else {
                window.ok_or(PayloadError::NoXorWindow { sensor })?
            };
            prev ^= (bits.bits(w.len())? as u32) << w.trailing;
        }
        p.value = f32::from_bits(prev);
    }
    Ok(())
}

/// Where an XOR's meaningful bits lie: `leading` zeros above them, `trailing` zeros below.
/// Never empty: `leading + trailing < 32`.
#[derive(Clone, Copy)]
struct XorWindow {
    leading: u32,
    trailing: u32,
}

impl XorWindow {
    /// What a new window costs over reusing one: 5 bits of leading zeros, 5 of length.
    const HEADER_BITS: u32 = 10;

    fn len(self) -> u32 {
        32 - self.leading - self.trailing
    }

    fn holds(self, inner: XorWindow) -> bool {
        inner.leading >= self.leading && inner.trailing >= self.trailing
    }
}
