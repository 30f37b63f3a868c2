//! Choosing a series' value codec: the one that takes the fewest bits, header bytes included;
//! among equals, the first of XOR, decimal deltas with k = 0..=7, decimal delta-of-deltas with
//! k = 0..=7. Payloads are stored for good, so this choice is part of the format: it must stay
//! exactly this rule.
//!
//! A pass over the series finds the coarsest decimal step that gives every value back and its
//! step counts ([`Decimal::all_steps`]); a second prices all 16 decimal codecs at once: a table
//! gives a code's price under all eight Rice parameters as eight 16-bit lanes of a `u128`, so
//! a value costs two table loads and two additions. XOR is priced only when a decimal codec
//! might lose to it, after cheaper lower bounds: a repeat takes 1 XOR bit, a change at least 3.

use super::bytes::{varint_len, zigzag};
use super::values::{Decimal, MAX_RICE_K, RICE_ESCAPE, ValueCodec, XorCode, XorWindow};

/// The cheapest codec for a series whose values have the `f32` bits `values` (at least one).
/// `steps` (as long as `values`) is left holding the step counts of the values if the codec
/// is decimal.
pub(super) fn cheapest(values: &[u32], steps: &mut [i64]) -> ValueCodec {
    // The coarsest step that gives every value back; finer ones only make bigger numbers.
    let step = (0..4).map(|decimals| Decimal {
        decimals,
        delta_of_delta: false,
        rice_k: 0,
    });
    let Some(step) = step.into_iter().find(|step| step.all_steps(values, steps)) else {
        return ValueCodec::Xor;
    };
    let (bits, decimal) = DecimalPrices::of(steps).cheapest(step);
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

/// What the decimal codecs of one step size cost a series, but for its first value's bits.
struct DecimalPrices {
    /// Bits per Rice parameter: codes of deltas, then of delta-of-deltas.
    deltas: [u64; LANES],
    delta_of_deltas: [u64; LANES],
    /// Bits of the first value's step count, in the header.
    first: u64,
}

impl DecimalPrices {
    /// The prices of a series of step counts `steps` (at least one).
    fn of(steps: &[i64]) -> Self {
        let (&first, rest) = steps.split_first().unwrap_or((&0, &[]));
        let mut prices = Self {
            deltas: [0; LANES],
            delta_of_deltas: [0; LANES],
            first: 8 * u64::from(varint_len(zigzag(first))),
        };
        let (mut prev, mut prev_delta) = (first, 0i64);
        for chunk in rest.chunks(LANE_CODES) {
            let (mut deltas, mut delta_of_deltas) = (0u128, 0u128);
            for &steps in chunk {
                let delta = steps.wrapping_sub(prev);
                deltas += lanes_of(zigzag(delta));
                delta_of_deltas += lanes_of(zigzag(delta.wrapping_sub(prev_delta)));
                (prev, prev_delta) = (steps, delta);
            }
            add_lanes(&mut prices.deltas, deltas);
            add_lanes(&mut prices.delta_of_deltas, delta_of_deltas);
        }
        prices
    }

    /// The cheapest of the 16 codecs of `step`'s decimals, the first among equals, and its
    /// bits, header included.
    fn cheapest(&self, step: Decimal) -> (u64, Decimal) {
        // Bits above, position among the 16 below: the smallest key is the first cheapest.
        let all = self.deltas.iter().chain(&self.delta_of_deltas);
        let key = (0..).zip(all).map(|(i, &bits)| (bits << 4) | i).min();
        let key = key.unwrap_or_default();
        let decimal = Decimal {
            delta_of_delta: key & 8 != 0,
            rice_k: (key & 7) as u32,
            ..step
        };
        (self.first + (key >> 4), decimal)
    }
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

/// A 1 in each 16-bit lane.
const LANE_ONES: u128 = 0x0001_0001_0001_0001_0001_0001_0001_0001;

/// The Rice prices of `z` for k = 0..=7, lane k in bits 16k..16k+16.
const fn lanes(z: u64) -> u128 {
    let mut packed = 0;
    let mut k = 0;
    while k < LANES as u32 {
        packed |= (rice_bits(z, k) as u128) << (16 * k);
        k += 1;
    }
    packed
}

/// [`lanes`] of every `z` below 128.
const SMALL: [u128; 128] = {
    let mut table = [0; 128];
    let mut z = 0;
    while z < 128 {
        table[z] = lanes(z as u64);
        z += 1;
    }
    table
};

/// [`lanes`] of `z` in 128..1024, by `z >> 5`: for k < 5 the quotient is 8 or more and the
/// escape's length depends on `z >> 5` alone, and for k >= 5 so does the quotient.
const MID: [u128; 32] = {
    let mut table = [0; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = lanes((i as u64) << 5);
        i += 1;
    }
    table
};

/// [`lanes`] of `z`. From 1024 on, every k escapes: `z >> 7` is 8 or more.
#[inline(always)]
fn lanes_of(z: u64) -> u128 {
    if z < 128 {
        SMALL[z as usize]
    } else if z < 1024 {
        MID[(z >> 5) as usize]
    } else {
        u128::from(RICE_ESCAPE + 6 + (64 - z.leading_zeros())) * LANE_ONES
    }
}

/// Codes whose prices a `u128` of 16-bit lanes sums without overflow: a code costs at most
/// 8 + 6 + 64 bits.
const LANE_CODES: usize = u16::MAX as usize / 78;

/// Adds each lane of `lanes` to its total.
fn add_lanes(totals: &mut [u64; LANES], lanes: u128) {
    for (k, total) in totals.iter_mut().enumerate() {
        *total += u64::from((lanes >> (16 * k)) as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_tables_give_every_rice_price() {
        let mut zs: alloc::vec::Vec<u64> = (0..70_000).collect();
        zs.extend((10..64).flat_map(|b| [(1u64 << b) - 1, 1 << b, (1 << b) + 1]));
        zs.push(u64::MAX);
        for z in zs {
            let packed = lanes_of(z);
            for k in 0..LANES as u32 {
                let lane = u64::from((packed >> (16 * k)) as u16);
                assert_eq!(lane, rice_bits(z, k), "z {z} k {k}");
            }
        }
    }

    #[test]
    fn lanes_hold_a_chunk_of_the_dearest_codes() {
        let mut totals = [1; LANES];
        add_lanes(&mut totals, lanes_of(u64::MAX) * LANE_CODES as u128);
        assert_eq!(totals, [1 + 78 * LANE_CODES as u64; LANES]);
    }
}
