//! The values of one series, in whichever of two codecs codes them in fewer bits:
//! - **decimal**: when every value is the `f32` nearest to a whole number of steps of 1, 0.1,
//!   0.01 or 0.001 (what devices report: sensors have a resolution, firmware rounds to it), the
//!   series is coded as those integers: the first in the header, then a Rice code per value of
//!   its delta, or delta-of-delta, in steps. Sensor noise of a few steps costs 2 to 5 bits.
//! - **XOR** (Gorilla): any `f32` bit pattern; each value as its XOR with the previous one.
//!   Steps of 0.01 have no short binary form, so their XORs spread over the mantissa: 8 to 30
//!   bits per changed value.
//!
//! The encoder prices every codec the series allows and keeps the cheapest (`price`).

use alloc::vec::Vec;

use super::bits::{BitReader, BitWriter};
use super::bytes::{ByteCursor, unzigzag, write_varint, zigzag};
use super::{PayloadError, Point};

/// Bits 6..0 of a series' mode byte: `0` for XOR, else `1 o dd kkk`: decimal, `o` = 1 for
/// delta-of-deltas, `dd` decimals, `kkk` the Rice parameter.
const DECIMAL: u8 = 0x40;
const DELTA_OF_DELTA: u8 = 0x20;
const DECIMALS_SHIFT: u8 = 3;

/// Steps per unit for 0, 1, 2, 3 decimals.
const STEPS_PER_UNIT: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

/// [`Decimal::certain_bounds`] as multiples of 2^exponent, in steps (times steps per unit):
/// half an ulp (2^-24) or at a power of two a quarter (the gap below it is half an ulp), less
/// 2^-20 of that; and half an ulp plus 2^-20 of it.
const CLOSE_FACTOR: [[f64; 4]; 2] = {
    let half_ulp = (1.0 - 1.0 / (1u64 << 20) as f64) / (1u64 << 24) as f64;
    let quarter_ulp = half_ulp / 2.0;
    [
        [
            half_ulp,
            10.0 * half_ulp,
            100.0 * half_ulp,
            1000.0 * half_ulp,
        ],
        [
            quarter_ulp,
            10.0 * quarter_ulp,
            100.0 * quarter_ulp,
            1000.0 * quarter_ulp,
        ],
    ]
};
const FAR_FACTOR: [f64; 4] = {
    let half_ulp = (1.0 + 1.0 / (1u64 << 20) as f64) / (1u64 << 24) as f64;
    [
        half_ulp,
        10.0 * half_ulp,
        100.0 * half_ulp,
        1000.0 * half_ulp,
    ]
};

/// Step counts are kept within ±2^53, where every integer is an exact `f64`; values beyond
/// (over 9e12 at 0.001) are XOR'd.
const MAX_STEPS: f64 = 9_007_199_254_740_992.0;

/// Adding this to a number of magnitude below 2^51 and taking it away again rounds the number
/// to an integer: the sum lies in [2^52, 2^53), where `f64`s are the integers.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// `f32` bits of 2^23, 2^19, 2^16 and 2^13: below them, a value's `close` bound at 0, 1, 2
/// and 3 decimals is under half a step, so at most one step count is that close, and it is
/// the one [`nearest`] finds whichever way it breaks ties.
const FAST_LIMIT_BITS: [u32; 4] = [
    (127 + 23) << 23,
    (127 + 19) << 23,
    (127 + 16) << 23,
    (127 + 13) << 23,
];

/// Largest Rice parameter: 3 bits of the mode byte.
pub(super) const MAX_RICE_K: u32 = 7;

/// A Rice quotient this large is not written in unary: the code is this many 1-bits, 6 bits of
/// `len - 1`, then the `len` bits of the zigzag'd number.
pub(super) const RICE_ESCAPE: u32 = 8;

/// A decimal series' parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Decimal {
    /// Values are multiples of 10^-decimals: 0..=3.
    pub(super) decimals: u8,
    /// Codes are delta-of-deltas of the step counts, else their deltas.
    pub(super) delta_of_delta: bool,
    /// How many low bits of a zigzag'd code are written as they are: 0..=7.
    pub(super) rice_k: u32,
}

impl Decimal {
    fn value(self, steps: i64) -> f32 {
        (steps as f64 / STEPS_PER_UNIT[usize::from(self.decimals & 3)]) as f32
    }

    /// The step count nearest to `value` times 10^decimals, if its [`Decimal::value`] gives
    /// `value` back to the bit.
    pub(super) fn steps(self, value: f32) -> Option<i64> {
        let scaled = self.scaled(value);
        // Refuses NaN and the infinities too.
        if !(-MAX_STEPS..=MAX_STEPS).contains(&scaled) {
            return None;
        }
        let steps = nearest(scaled);
        // Exact: `steps` and `scaled` are within 1 of each other, and `scaled` has at most 34
        // significant bits.
        let off = (steps as f64 - scaled).abs();
        let (close, far) = self.certain_bounds(value);
        if off < close {
            return Some(steps);
        }
        if off > far {
            return None;
        }
        (self.value(steps).to_bits() == value.to_bits()).then_some(steps)
    }

    /// The fewest decimals at which `value` can have a step count: at fewer it has none. Found
    /// from its step count at 3 decimals when that is certain, else 0.
    ///
    /// A count `c` at `d` decimals makes `c * 10^(3 - d)` one at 3 (the same number, so the same
    /// `f64` quotient), and below [`FAST_LIMIT_BITS`] a value has at most one count at 3
    /// decimals (its `f32`s are less than 0.001 apart), so the count at 3 ends in as many zeros
    /// as decimals `value` does without.
    pub(super) fn fewest_decimals(value: f32) -> u8 {
        let thousandths = Decimal {
            decimals: 3,
            delta_of_delta: false,
            rice_k: 0,
        };
        let bits = value.to_bits();
        if bits & 0x7fff_ffff >= FAST_LIMIT_BITS[3] {
            return 0;
        }
        // Rounded as [`StepCounter`] does: below the limit, the only count within `close`.
        let scaled = thousandths.scaled(value);
        let sum = scaled + ROUNDER;
        let (close, _) = thousandths.certain_bounds(value);
        if ((sum - ROUNDER) - scaled).abs() >= close {
            return 0;
        }
        let steps = (sum.to_bits() as i64)
            .wrapping_sub(ROUNDER.to_bits() as i64)
            .unsigned_abs();
        match () {
            _ if !steps.is_multiple_of(10) => 3,
            _ if !steps.is_multiple_of(100) => 2,
            _ if !steps.is_multiple_of(1000) => 1,
            _ => 0,
        }
    }

    /// Spares [`Decimal::steps`] the division that [`Decimal::value`] does, unless `value` lies
    /// right at the edge of what rounds to it: a value less than `close` steps from a whole
    /// number of steps is the `f32` nearest to it, one more than `far` steps away is not.
    ///
    /// `close` is half the gap to the next `f32` below `value` (the smaller of its two gaps),
    /// `far` half the gap above (the larger), both with a margin of 2^-20, far more than the
    /// 2^-53 that the `f64` quotient may be off. `close` is 0 for zeros (whose sign only the
    /// division settles) and subnormals, `far` infinite.
    #[inline(always)]
    fn certain_bounds(self, value: f32) -> (f64, f64) {
        let bits = value.to_bits();
        // 2^exponent, 2^23 times the ulp of `value`.
        let binade = f64::from(f32::from_bits(bits & 0x7f80_0000));
        let power_of_two = bits & 0x007f_ffff == 0;
        let d = usize::from(self.decimals & 3);
        let close = binade * CLOSE_FACTOR[usize::from(power_of_two)][d];
        let far = if binade > 0.0 {
            binade * FAR_FACTOR[d]
        } else {
            f64::INFINITY
        };
        (close, far)
    }

    fn scaled(self, value: f32) -> f64 {
        // Exact: 24 significant bits times at most 10.
        f64::from(value) * STEPS_PER_UNIT[usize::from(self.decimals & 3)]
    }
}

/// [`Decimal::steps`] for the values of one series, most of them by a shortcut past even
/// [`Decimal::certain_bounds`]: the bound that the first value's binade gives holds for every
/// value above that binade's least `f32`, so one test covers the binade and the range; and
/// `scaled` is rounded by adding and taking away 1.5 * 2^52, which leaves the step count in the
/// low bits of the sum, with no conversion to an integer. That rounds ties to even, not away
/// from zero, so the shortcut stops where a tie could be close enough to count
/// ([`FAST_LIMIT_BITS`]).
pub(super) struct StepCounter {
    step: Decimal,
    per_unit: f64,
    /// The first value's binade, as the bits of its least `f32`.
    binade_bits: u32,
    /// `close` for every value above `binade_bits`. A power of two, the least value of its
    /// binade, has a smaller one: it is not above it.
    close: f64,
    /// Magnitudes from `binade_bits + 1` on, below [`FAST_LIMIT_BITS`], as one comparison.
    span: u32,
}

impl StepCounter {
    /// The counter of `step` for a series whose first value has the bits `first`.
    pub(super) fn new(step: Decimal, first: u32) -> Self {
        let d = usize::from(step.decimals & 3);
        let binade_bits = first & 0x7f80_0000;
        Self {
            step,
            per_unit: STEPS_PER_UNIT[d],
            binade_bits,
            close: f64::from(f32::from_bits(binade_bits)) * CLOSE_FACTOR[0][d],
            span: FAST_LIMIT_BITS[d].saturating_sub(binade_bits + 1),
        }
    }

    /// [`Decimal::steps`] of the value with the bits `bits`.
    #[inline(always)]
    pub(super) fn steps(&self, bits: u32) -> Option<i64> {
        let scaled = f64::from(f32::from_bits(bits)) * self.per_unit;
        let sum = scaled + ROUNDER;
        let off = ((sum - ROUNDER) - scaled).abs();
        let in_span = (bits & 0x7fff_ffff).wrapping_sub(self.binade_bits + 1) < self.span;
        if off < self.close && in_span {
            Some((sum.to_bits() as i64).wrapping_sub(ROUNDER.to_bits() as i64))
        } else {
            self.step.steps(f32::from_bits(bits))
        }
    }
}

/// The integer nearest to `scaled` (within ±2^53), halves away from zero.
#[inline(always)]
fn nearest(scaled: f64) -> i64 {
    let truncated = scaled as i64;
    let fraction = scaled - truncated as f64;
    // Flags, not branches: which way a value rounds is a coin toss, so a branch mispredicts.
    truncated + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5)
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

/// The first value, in the series header: 4 bytes (big-endian `f32` bits) for XOR, the
/// zigzag varint of its step count for decimal. `values` are the `f32` bits of a series'
/// values, and `steps` their step counts under a decimal `codec` (unused for XOR).
pub(super) fn write_first(out: &mut Vec<u8>, codec: ValueCodec, values: &[u32], steps: &[i64]) {
    match codec {
        ValueCodec::Xor => {
            if let Some(first) = values.first() {
                out.extend_from_slice(&first.to_be_bytes());
            }
        }
        ValueCodec::Decimal(_) => {
            if let Some(&first) = steps.first() {
                write_varint(out, zigzag(first));
            }
        }
    }
}

/// One code per value after the first, in the bit stream; `values` and `steps` as for
/// [`write_first`].
pub(super) fn write_codes(
    bits: &mut BitWriter<'_>,
    codec: ValueCodec,
    values: &[u32],
    steps: &[i64],
) {
    let ValueCodec::Decimal(d) = codec else {
        write_xor(bits, values);
        return;
    };
    let Some((&first, rest)) = steps.split_first() else {
        return;
    };
    let k = d.rice_k & MAX_RICE_K;
    let small = &SMALL_RICE_CODES[k as usize];
    let (mut prev, mut prev_delta) = (first, 0i64);
    // Two loops, so that neither asks which code it writes.
    if d.delta_of_delta {
        for &steps in rest {
            let delta = steps.wrapping_sub(prev);
            write_rice(bits, small, delta.wrapping_sub(prev_delta), k);
            (prev, prev_delta) = (steps, delta);
        }
    } else {
        for &steps in rest {
            write_rice(bits, small, steps.wrapping_sub(prev), k);
            prev = steps;
        }
    }
}

/// The Rice codes of the zigzags of every code from -64 to 63 (zigzags below 128), each at
/// its code plus 64, for each parameter: the code's bits, and its length in the top 8 bits
/// (at most 8 + 6 + 7 bits, for the escape).
const SMALL_RICE_CODES: [[u32; 128]; 8] = {
    let mut table = [[0; 128]; 8];
    let mut k = 0;
    while k < 8 {
        let mut i = 0;
        while i < 128 {
            let (code, len) = rice_code(zigzag(i as i64 - 64), k as u32);
            table[k][i] = (code as u32) | (len << 24);
            i += 1;
        }
        k += 1;
    }
    table
};

/// The Rice code of `z` with parameter `k` and its length, for `z` below 2^50 (so that the
/// code fits 64 bits).
const fn rice_code(z: u64, k: u32) -> (u64, u32) {
    let quotient = z >> k;
    if quotient < RICE_ESCAPE as u64 {
        let unary = ((1 << quotient) - 1) << 1;
        ((unary << k) | (z & ((1 << k) - 1)), quotient as u32 + 1 + k)
    } else {
        let len = 64 - z.leading_zeros();
        let escape = (1 << RICE_ESCAPE) - 1;
        let header = (escape << 6) | (len - 1) as u64;
        ((header << len) | z, RICE_ESCAPE + 6 + len)
    }
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

/// Rice code of parameter `k` of the zigzag `z` of `code`: the quotient `z >> k` in unary
/// (that many 1-bits, then a 0-bit), then the `k` low bits of `z`; a quotient of
/// [`RICE_ESCAPE`] or more as the escape. `small` is the row of [`SMALL_RICE_CODES`] for `k`.
#[inline(always)]
fn write_rice(bits: &mut BitWriter<'_>, small: &[u32; 128], code: i64, k: u32) {
    if let Some(&small) = small.get(code.wrapping_add(64) as usize) {
        bits.short(u64::from(small & 0xff_ffff), small >> 24);
    } else {
        let [(head, head_len), (tail, tail_len)] = wide_rice_code(zigzag(code), k);
        bits.short(head, head_len);
        bits.bits(tail, tail_len);
    }
}

/// The Rice code of `z` from 128 on, out of the way of the loop, in two fields: at most 32
/// bits, then at most 64.
#[cold]
#[inline(never)]
fn wide_rice_code(z: u64, k: u32) -> [(u64, u32); 2] {
    if z >> k < u64::from(RICE_ESCAPE) {
        // At most 7 + 1 + 7 bits.
        [rice_code(z, k), (0, 0)]
    } else {
        let len = 64 - z.leading_zeros();
        let escape = (1 << RICE_ESCAPE) - 1;
        [
            ((escape << 6) | u64::from(len - 1), RICE_ESCAPE + 6),
            (z, len),
        ]
    }
}

fn read_rice(bits: &mut BitReader<'_>, k: u32) -> Result<u64, PayloadError> {
    let quotient = bits.ones(RICE_ESCAPE)?;
    if quotient == RICE_ESCAPE {
        let len = bits.bits(6)? as u32 + 1;
        return bits.bits(len);
    }
    Ok((u64::from(quotient) << k) | bits.bits(k)?)
}

/// Per value after the first, its XOR with the previous one: `0` (same value), `10` + the
/// XOR's bits inside the current window, or `11` + 5 bits of leading zeros + 5 bits of
/// (meaningful length - 1) + the meaningful bits, which sets the window.
fn write_xor(bits: &mut BitWriter<'_>, values: &[u32]) {
    let Some((&first, rest)) = values.split_first() else {
        return;
    };
    let mut prev = first;
    let mut window: Option<XorWindow> = None;
    for &value in rest {
        let xor = value ^ prev;
        prev = value;
        match XorCode::of(xor, &mut window) {
            XorCode::Same => bits.short(0, 1),
            XorCode::InWindow(w) => bits.bits(
                (0b10 << w.len()) | u64::from(xor >> w.trailing),
                2 + w.len(),
            ),
            XorCode::NewWindow(w) => {
                let header = (0b11 << 10) | (w.leading << 5) | (w.len() - 1);
                let field = u64::from(xor >> w.trailing);
                bits.bits((u64::from(header) << w.len()) | field, 12 + w.len());
            }
        }
    }
}

/// How one XOR is coded.
pub(super) enum XorCode {
    /// `0`: the value repeats.
    Same,
    /// `10` and the bits inside the current window.
    InWindow(XorWindow),
    /// `11`, the window, and the bits inside it; this window is the current one from now on.
    NewWindow(XorWindow),
}

impl XorCode {
    /// The code of `xor`, given the current `window`, which it updates.
    #[inline]
    pub(super) fn of(xor: u32, window: &mut Option<XorWindow>) -> Self {
        if xor == 0 {
            return Self::Same;
        }
        let tight = XorWindow {
            leading: xor.leading_zeros(),
            trailing: xor.trailing_zeros(),
        };
        match *window {
            Some(w) if w.holds(tight) && w.len() <= tight.len() + XorWindow::HEADER_BITS => {
                Self::InWindow(w)
            }
            _ => {
                *window = Some(tight);
                Self::NewWindow(tight)
            }
        }
    }

    /// Bits the code takes.
    pub(super) fn bits(&self) -> u32 {
        match self {
            Self::Same => 1,
            Self::InWindow(w) => 2 + w.len(),
            Self::NewWindow(w) => 2 + XorWindow::HEADER_BITS + w.len(),
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
pub(super) struct XorWindow {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_bits_value_of_a_codec_reads_back_as_that_codec() {
        for bits in 0..0x80u8 {
            if let Some(codec) = ValueCodec::from_mode_bits(bits) {
                assert_eq!(codec.mode_bits(), bits, "{bits:#04x}");
            }
        }
        assert_eq!(ValueCodec::from_mode_bits(0x01), None);
        assert_eq!(ValueCodec::from_mode_bits(0x3f), None);
    }

    #[test]
    fn step_counts_are_found_only_where_they_give_the_value_back_to_the_bit() {
        let hundredths = Decimal {
            decimals: 2,
            delta_of_delta: false,
            rice_k: 0,
        };
        assert_eq!(hundredths.steps(21.53), Some(2153));
        assert_eq!(hundredths.steps(-0.07), Some(-7));
        assert_eq!(hundredths.steps(0.0), Some(0));
        assert_eq!(hundredths.steps(-0.0), None);
        assert_eq!(
            hundredths.steps(f32::from_bits(21.53f32.to_bits() + 1)),
            None
        );
        assert_eq!(hundredths.steps(f32::NAN), None);
        assert_eq!(hundredths.steps(f32::INFINITY), None);
        assert_eq!(hundredths.steps(f32::MAX), None);
        let units = Decimal {
            decimals: 0,
            ..hundredths
        };
        assert_eq!(units.steps((1u64 << 53) as f32), Some(1 << 53));
        assert_eq!(units.steps((1u64 << 54) as f32), None);
        assert_eq!(units.steps(0.5), None);
    }

    /// [`Decimal::steps`] as it was first written: always by the division.
    fn steps_by_division(d: Decimal, value: f32) -> Option<i64> {
        let scaled = f64::from(value) * STEPS_PER_UNIT[usize::from(d.decimals)];
        if !(-MAX_STEPS..=MAX_STEPS).contains(&scaled) {
            return None;
        }
        let steps = nearest(scaled);
        (d.value(steps).to_bits() == value.to_bits()).then_some(steps)
    }

    /// Values at and around decimal steps, powers of two and the edges of the ranges, and
    /// any bits.
    fn edge_values() -> Vec<f32> {
        let mut values: Vec<f32> = Vec::new();
        for per_unit in STEPS_PER_UNIT {
            for steps in (-3000i64..3000).chain((0..60).map(|b| 1i64 << b)) {
                let near = (steps as f64 / per_unit) as f32;
                for ulps in -3i32..=3 {
                    let bits = near.to_bits() as i32 + ulps;
                    values.push(f32::from_bits(bits as u32));
                    values.push(-f32::from_bits(bits as u32));
                }
            }
        }
        for e in -149..128 {
            let power = 2f64.powi(e) as f32;
            for ulps in -2i32..=2 {
                values.push(f32::from_bits((power.to_bits() as i32 + ulps) as u32));
            }
        }
        values.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
        ]);
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(f32::from_bits(x));
        }
        values
    }

    fn at(decimals: u8) -> Decimal {
        Decimal {
            decimals,
            delta_of_delta: false,
            rice_k: 0,
        }
    }

    #[test]
    fn step_counts_found_without_the_division_are_those_the_division_finds() {
        let values = edge_values();
        for decimals in 0..4 {
            let d = at(decimals);
            for &v in &values {
                assert_eq!(
                    d.steps(v),
                    steps_by_division(d, v),
                    "{v:e} ({:#x}) at {decimals}",
                    v.to_bits()
                );
            }
        }
    }

    #[test]
    fn no_value_has_a_step_count_at_fewer_decimals_than_its_fewest() {
        for v in edge_values() {
            let fewest = Decimal::fewest_decimals(v);
            for decimals in 0..fewest {
                assert_eq!(
                    steps_by_division(at(decimals), v),
                    None,
                    "{v:e} at {decimals}"
                );
            }
            if fewest > 0 {
                assert!(
                    steps_by_division(at(fewest), v).is_some(),
                    "{v:e} at {fewest}"
                );
            }
        }
    }

    #[test]
    fn step_counts_of_a_series_by_the_shortcut_are_those_the_division_finds() {
        let values = edge_values();
        // First values that set the shortcut's binade: a step, a power of two, zero, an edge.
        let firsts = [1.0f32, 20.01, -3.7, 2.0, -0.0, 8191.5];
        for decimals in 0..4 {
            let d = at(decimals);
            for first in firsts {
                for &v in values.iter().step_by(3) {
                    let series = [first.to_bits(), v.to_bits()];
                    let mut steps = [0i64; 2];
                    let expected = [steps_by_division(d, first), steps_by_division(d, v)];
                    let counter = StepCounter::new(d, series[0]);
                    let found = series
                        .iter()
                        .zip(&mut steps)
                        .all(|(&bits, slot)| counter.steps(bits).map(|s| *slot = s).is_some());
                    assert_eq!(
                        found,
                        expected.iter().all(Option::is_some),
                        "{first:e}, {v:e} ({:#x}) at {decimals}",
                        v.to_bits()
                    );
                    if found {
                        assert_eq!(steps.map(Some), expected, "{first:e}, {v:e} at {decimals}");
                    }
                }
            }
        }
    }

    #[test]
    fn rice_codes_read_back_for_every_parameter_and_magnitude() {
        // Every `z` of the table of small codes and past it, and the widest escapes.
        let mut zs: Vec<u64> = (0..1100).collect();
        zs.extend([1 << 20, u64::MAX - 1, u64::MAX]);
        for k in 0..=MAX_RICE_K {
            let mut out = Vec::new();
            let mut w = BitWriter::new(&mut out);
            let mut price = 0;
            for &z in &zs {
                write_rice(&mut w, &SMALL_RICE_CODES[k as usize], unzigzag(z), k);
                price += super::super::price::rice_bits(z, k);
            }
            w.finish();
            assert_eq!(out.len() as u64, price.div_ceil(8));
            let mut r = BitReader::new(&out);
            for &z in &zs {
                assert_eq!(read_rice(&mut r, k), Ok(z), "k {k}");
            }
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn a_rice_code_is_unary_quotient_then_k_bits_or_the_escape() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        // k = 2: 13 = 0b11_01 -> `1110` `01`; 40 -> quotient 10: `11111111` `000101` `101000`.
        write_rice(&mut w, &SMALL_RICE_CODES[2], unzigzag(13), 2);
        write_rice(&mut w, &SMALL_RICE_CODES[2], unzigzag(40), 2);
        w.finish();
        assert_eq!(out, [0b1110_0111, 0b1111_1100, 0b0101_1010, 0b0000_0000]);
    }
}
