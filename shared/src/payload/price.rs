//! Choosing a series' value codec: the one that takes the fewest bits, header bytes included;
//! among equals, the first of XOR, decimal deltas with k = 0..=7, decimal delta-of-deltas with
//! k = 0..=7. Payloads are stored for good, so this choice is part of the format: it must stay
//! exactly this rule.
//!
//! One pass over the series finds the step counts of the coarsest decimal step that gives
//! every value back ([`StepCounter`]), the next prices all 16 decimal codecs at once: a table
//! gives a code's price under all eight Rice parameters as eight 16-bit lanes of two words
//! ([`Lanes`]), so a value costs two table lookups and four additions, and a few word-wide
//! operations find the cheapest.
//! XOR is priced only when a decimal codec might lose to it, after cheaper lower bounds: a
//! repeat takes 1 XOR bit, a change at least 3.

use super::bytes::{varint_len, zigzag};
use super::steps::StepCounter;
use super::values::{Decimal, MAX_RICE_K, RICE_ESCAPE, ValueCodec, XorCode, XorWindow};

/// The cheapest codec for a series whose values have the `f32` bits `values` (at least one).
/// `steps` (as long as `values`) is left holding the step counts of the values if the codec
/// is decimal.
pub(super) fn cheapest(values: &[u32], steps: &mut [i64]) -> ValueCodec {
    let Some(&first) = values.first() else {
        return ValueCodec::Xor;
    };
    // The coarsest step that gives every value back; finer ones only make bigger numbers.
    // Steps coarser than a value allows are not tried: the first value's fewest decimals, then
    // those of each value found without a step count.
    let mut decimals = Decimal::fewest_decimals(f32::from_bits(first));
    let (bits, decimal) = loop {
        if decimals > 3 {
            return ValueCodec::Xor;
        }
        let step = Decimal {
            decimals,
            delta_of_delta: false,
            rice_k: 0,
        };
        match decimal_price(values, steps, step) {
            Ok(found) => break found,
            Err(without) => {
                decimals = (decimals + 1).max(Decimal::fewest_decimals(f32::from_bits(without)));
            }
        }
    };
    // Lower bounds of the XOR codec's bits first, cheapest first: 32 bits for the first value,
    // then 1 for a repeat and at least 3 for a change.
    let repeats_only = 32 + values.len() as u64 - 1;
    if bits < repeats_only || bits < xor_floor(values) || bits < xor_bits(values) {
        ValueCodec::Decimal(decimal)
    } else {
        ValueCodec::Xor
    }
}

/// No XOR coding of `values` takes fewer bits.
fn xor_floor(values: &[u32]) -> u64 {
    let changes = values.windows(2).filter(|pair| pair[0] != pair[1]).count();
    32 + values.len() as u64 - 1 + 2 * changes as u64
}

/// Bits of the XOR codec: the first value's 4 header bytes, then a code per value.
fn xor_bits(values: &[u32]) -> u64 {
    let Some((&first, rest)) = values.split_first() else {
        return 32;
    };
    let mut prev = first;
    let mut window: Option<XorWindow> = None;
    let mut bits = 32;
    for &value in rest {
        bits += u64::from(XorCode::of(value ^ prev, &mut window).bits());
        prev = value;
    }
    bits
}

/// If every one of `values` (at least one) is a whole number of `step`s, the cheapest of the 16
/// codecs of `step`'s decimals, the first among equals, and its bits, header included; `steps`
/// (as long as `values`) is left holding the step counts. Else the bits of the first value
/// that is not. One pass finds the step counts, the next prices them: apart, each loop keeps
/// what it works on in registers.
fn decimal_price(values: &[u32], steps: &mut [i64], step: Decimal) -> Result<(u64, Decimal), u32> {
    let counter = StepCounter::new(step, values.first().copied().unwrap_or_default());
    for (&bits, slot) in values.iter().zip(steps.iter_mut()) {
        *slot = counter.steps(bits).ok_or(bits)?;
    }
    // No values: no codes (and no series has none).
    let Some((&first, rest)) = steps.split_first() else {
        return Ok((0, step));
    };
    let (bits, index) = if rest.len() <= LANE_CODES {
        first_least_lane(lane_prices(first, rest))
    } else {
        long_series_cheapest(first, rest)
    };
    let decimal = Decimal {
        delta_of_delta: index >= LANES as u32,
        rice_k: index % LANES as u32,
        ..step
    };
    Ok((8 * u64::from(varint_len(zigzag(first))) + bits, decimal))
}

/// The bits of the codes of the step counts `first, rest...` under every Rice parameter, as
/// the lanes of four words: deltas with k = 0..=3, 4..=7, then delta-of-deltas likewise.
/// Wrapping: past [`LANE_CODES`] codes the lanes are not used.
fn lane_prices(first: i64, rest: &[i64]) -> [u64; 4] {
    let (mut prev, mut prev_delta) = (first, 0i64);
    let (mut deltas, mut delta_of_deltas) = (Lanes::ZERO, Lanes::ZERO);
    for &steps in rest {
        let delta = steps.wrapping_sub(prev);
        deltas.add(lanes_of(delta));
        delta_of_deltas.add(lanes_of(delta.wrapping_sub(prev_delta)));
        (prev, prev_delta) = (steps, delta);
    }
    let (Lanes([d0, d1]), Lanes([o0, o1])) = (deltas, delta_of_deltas);
    [d0, d1, o0, o1]
}

/// The least of the 16-bit lanes of `words` (each below 2^15), and the index of the first lane
/// that holds it, lane 0 of `words[0]` first: a few operations on whole words, not 16
/// comparisons.
fn first_least_lane(words: [u64; 4]) -> (u64, u32) {
    const HIGH: u64 = 0x8000_8000_8000_8000;
    const LOW: u64 = 0x7fff_7fff_7fff_7fff;
    // Lane by lane: `(a | HIGH) - b` keeps a lane's high bit where a >= b, and borrows
    // nothing from the next lane; that bit widened to the lane (a 1 times 0xffff, which
    // carries nowhere) picks b.
    let least = |a: u64, b: u64| {
        let ge = ((a | HIGH) - b) & HIGH;
        let pick_b = (ge >> 15) * 0xffff;
        a ^ ((a ^ b) & pick_b)
    };
    let least_of_all = |w: [u64; 4]| {
        let m = least(least(w[0], w[1]), least(w[2], w[3]));
        let m = least(m, m >> 32);
        least(m, m >> 16) & 0xffff
    };
    // Lanes below 2^11 (the usual short series) have room for their index in 4 low bits: the
    // least of those keys is the first least lane.
    if (words[0] | words[1] | words[2] | words[3]) & 0xf800_f800_f800_f800 == 0 {
        let key = least_of_all([
            (words[0] << 4) | 0x0003_0002_0001_0000,
            (words[1] << 4) | 0x0007_0006_0005_0004,
            (words[2] << 4) | 0x000b_000a_0009_0008,
            (words[3] << 4) | 0x000f_000e_000d_000c,
        ]);
        return (key >> 4, (key & 15) as u32);
    }
    let m = least_of_all(words);
    let everywhere = m * 0x0001_0001_0001_0001;
    for (i, word) in (0..).zip(words) {
        let x = word ^ everywhere;
        // The high bit of each lane of `x` that is zero.
        let zero = !(((x & LOW) + LOW) | x) & HIGH;
        if zero != 0 {
            return (m, 4 * i + zero.trailing_zeros() / 16);
        }
    }
    debug_assert!(false, "the least lane is one of the lanes");
    (m, 0)
}

/// [`decimal_price`]'s bits and index for a series too long for its lanes, which only
/// a batch over the limit has: code by code.
fn long_series_cheapest(first: i64, rest: &[i64]) -> (u64, u32) {
    let mut totals = [0u64; 2 * LANES];
    let (mut prev, mut prev_delta) = (first, 0i64);
    for &steps in rest {
        let delta = steps.wrapping_sub(prev);
        let delta_of_delta = zigzag(delta.wrapping_sub(prev_delta));
        for k in 0..LANES {
            totals[k] += rice_bits(zigzag(delta), k as u32);
            totals[LANES + k] += rice_bits(delta_of_delta, k as u32);
        }
        (prev, prev_delta) = (steps, delta);
    }
    // Bits above, index below: the smallest key is the first cheapest.
    let key = (0..).zip(totals).map(|(i, bits)| (bits << 5) | i).min();
    let key = key.unwrap_or_default();
    (key >> 5, (key & 31) as u32)
}

/// Bits of the Rice code of `z` with parameter `k` (what `values::write_rice` writes).
pub(super) const fn rice_bits(z: u64, k: u32) -> u64 {
    let quotient = z >> k;
    if quotient < RICE_ESCAPE as u64 {
        quotient + 1 + k as u64
    } else {
        (RICE_ESCAPE + 6 + (64 - z.leading_zeros())) as u64
    }
}

const LANES: usize = MAX_RICE_K as usize + 1;

/// A price under each Rice parameter, as 16-bit lanes of two words: k = 0..=3 in the first,
/// lane k in bits 16k..16k+16, then k = 4..=7. Of one code, or summed over a series: the sums
/// never carry from one lane into the next while the series has at most [`LANE_CODES`] codes.
#[derive(Clone, Copy)]
struct Lanes([u64; 2]);

impl Lanes {
    const ZERO: Self = Self([0; 2]);

    #[inline(always)]
    fn add(&mut self, other: &Self) {
        self.0[0] = self.0[0].wrapping_add(other.0[0]);
        self.0[1] = self.0[1].wrapping_add(other.0[1]);
    }

    /// The same price in every lane.
    const fn splat(price: u16) -> Self {
        let word = price as u64 * 0x0001_0001_0001_0001;
        Self([word, word])
    }

    /// The Rice prices of `z`.
    const fn of_zigzag(z: u64) -> Self {
        let mut words = [0; 2];
        let mut k = 0;
        while k < LANES {
            words[k / 4] |= rice_bits(z, k as u32) << (16 * (k % 4));
            k += 1;
        }
        Self(words)
    }

    #[cfg(test)]
    fn lane(&self, k: usize) -> u64 {
        (self.0[k / 4] >> (16 * (k % 4))) & 0xffff
    }
}

/// [`Lanes`] of the zigzag of every code from -64 to 63 (zigzags below 128), each at its code
/// plus 64: indexed by the code itself, with no zigzag.
static SMALL: [Lanes; 128] = {
    let mut table = [Lanes::ZERO; 128];
    let mut i = 0;
    while i < 128 {
        table[i] = Lanes::of_zigzag(zigzag(i as i64 - 64));
        i += 1;
    }
    table
};

/// [`Lanes`] of `z` in 128..1024, by `z >> 5`: for k < 5 the quotient is 8 or more and the
/// escape's length depends on `z >> 5` alone, and for k >= 5 so does the quotient.
static MID: [Lanes; 32] = {
    let mut table = [Lanes::ZERO; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = Lanes::of_zigzag((i as u64) << 5);
        i += 1;
    }
    table
};

/// [`Lanes`] of the zigzag of `code`.
#[inline(always)]
fn lanes_of(code: i64) -> &'static Lanes {
    match SMALL.get(code.wrapping_add(64) as usize) {
        Some(lanes) => lanes,
        None => wide_lanes_of(zigzag(code)),
    }
}

/// [`Lanes`] of a zigzag `z` from 128 on, out of the way of the loops (sensor noise makes
/// small codes). From 1024 on, every k escapes: `z >> 7` is 8 or more, and the price is the
/// escape's, by the length of `z`.
#[cold]
#[inline(never)]
fn wide_lanes_of(z: u64) -> &'static Lanes {
    if z < 1024 {
        &MID[(z >> 5) as usize]
    } else {
        &ESCAPES[z.leading_zeros() as usize]
    }
}

/// [`Lanes`] of an escape for every `leading_zeros` of its `z`.
static ESCAPES: [Lanes; 65] = {
    let mut table = [Lanes::ZERO; 65];
    let mut zeros = 0;
    while zeros < 65 {
        table[zeros] = Lanes::splat((RICE_ESCAPE + 6 + (64 - zeros as u32)) as u16);
        zeros += 1;
    }
    table
};

/// Codes whose prices [`Lanes`] sum to below 2^15, as [`first_least_lane`]
/// needs: a code costs at most 8 + 6 + 64 bits. A series of a batch within the limit has
/// fewer.
const LANE_CODES: usize = 0x7fff / 78;
const _: () = assert!(LANE_CODES >= crate::limits::MAX_READINGS_PER_BATCH);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_tables_give_every_rice_price() {
        let mut zs: alloc::vec::Vec<u64> = (0..70_000).collect();
        zs.extend((10..64).flat_map(|b| [(1u64 << b) - 1, 1 << b, (1 << b) + 1]));
        zs.push(u64::MAX);
        for z in zs {
            let lanes = lanes_of(super::super::bytes::unzigzag(z));
            for k in 0..LANES as u32 {
                let lane = lanes.lane(k as usize);
                assert_eq!(lane, rice_bits(z, k), "z {z} k {k}");
            }
        }
    }

    #[test]
    fn lanes_hold_the_dearest_codes_of_a_series_below_2_to_15() {
        let words = lane_prices(0, &[i64::MIN, 0].repeat(LANE_CODES / 2));
        for k in 0..LANES {
            assert!(((words[k / 4] >> (16 * (k % 4))) as u16) < 0x8000);
        }
        assert_eq!(
            words[0] as u16,
            rice_bits(u64::MAX, 0) as u16 * LANE_CODES as u16
        );
    }

    #[test]
    fn the_least_lane_and_the_first_that_holds_it_are_those_of_a_plain_search() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Any below 2^15, or below 2^11 (with room for an index), or few distinct values,
            // so that ties are common.
            let spread = [0x7fff, 0x7ff, 0x800, 3][round % 4];
            let lanes: [u64; 16] =
                core::array::from_fn(|i| (x.rotate_left(4 * i as u32) & 0xffff) % (spread + 1));
            let words: [u64; 4] =
                core::array::from_fn(|w| (0..4).map(|l| lanes[4 * w + l] << (16 * l)).sum());
            let least = *lanes.iter().min().unwrap();
            let first = lanes.iter().position(|&l| l == least).unwrap() as u32;
            assert_eq!(first_least_lane(words), (least, first), "{lanes:?}");
        }
    }

    #[test]
    fn long_series_are_priced_as_short_ones() {
        let mut steps: alloc::vec::Vec<i64> =
            (0..LANE_CODES as i64).map(|i| (i * i) % 37 - 18).collect();
        steps.extend([1 << 40, -5, i64::MAX, i64::MIN, 3]);
        for len in [1, 2, 9, 300, LANE_CODES + 1] {
            let (first, rest) = steps[..len].split_first().unwrap();
            let words = lane_prices(*first, rest);
            assert_eq!(
                long_series_cheapest(*first, rest),
                first_least_lane(words),
                "{len}"
            );
        }
    }

    #[test]
    fn a_series_is_priced_by_its_step_counts() {
        let values: alloc::vec::Vec<u32> = [20.01f32, 20.05, 20.04, 20.08, 20.08, 19.5]
            .map(f32::to_bits)
            .to_vec();
        let mut steps = [0i64; 6];
        let at = |decimals| Decimal {
            decimals,
            delta_of_delta: false,
            rice_k: 0,
        };
        assert_eq!(
            decimal_price(&values, &mut steps, at(1)),
            Err(20.01f32.to_bits())
        );
        let (bits, decimal) = decimal_price(&values, &mut steps, at(2)).unwrap();
        assert_eq!(steps, [2001, 2005, 2004, 2008, 2008, 1950]);
        let words = lane_prices(2001, &steps[1..]);
        let (code_bits, index) = first_least_lane(words);
        assert_eq!(bits, 16 + code_bits);
        assert_eq!(
            (decimal.delta_of_delta, decimal.rice_k, decimal.decimals),
            (index >= 8, index % 8, 2)
        );
    }
}
