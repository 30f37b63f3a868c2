//! Which decimal step a value is a whole number of, and how many: a value is coded as `n`
//! steps of 10^-decimals only if `n` divided by 10^decimals, rounded to an `f32`, gives the
//! value back to the bit (so -0.0, NaN and values an ulp off a step are not). The division
//! that settles it is left for values right at the edge of what rounds to them: most are
//! settled by how far they lie from a whole number of steps, and the values of a series
//! mostly by one comparison each ([`StepCounter`]).

use super::values::Decimal;

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

impl Decimal {
    /// The value of `steps` steps: the `f32` nearest to the `f64` quotient.
    pub(super) fn value(self, steps: i64) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

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
}
