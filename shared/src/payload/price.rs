//! Choosing a series' value codec: the one that takes the fewest bits, header bytes included;
//! among equals, the first of XOR, decimal deltas with k = 0..=7, decimal delta-of-deltas with
//! k = 0..=7. Payloads are stored for good, so this choice is part of the format: it must stay
//! exactly this rule.
//!
//! One pass over the series finds whether it is decimal and prices all 16 decimal codecs at
//! once: a table gives a code's price under all eight Rice parameters as eight 16-bit lanes of
//! a `u128`, so a value costs two table loads and two additions. XOR is priced only when a
//! decimal codec might lose to it: a changed value takes at least 3 XOR bits.

use super::Point;
use super::bytes::{varint_len, zigzag};
use super::values::{Decimal, MAX_RICE_K, RICE_ESCAPE, ValueCodec, XorCode, XorWindow};

/// The cheapest codec for `series` (at least one point).
pub(super) fn cheapest(series: &[Point]) -> ValueCodec {
    // The coarsest step that gives every value back; finer ones only make bigger numbers.
    let Some(prices) = (0..4).find_map(|decimals| DecimalPrices::of(series, decimals)) else {
        return ValueCodec::Xor;
    };
    let (bits, decimal) = prices.cheapest();
    if bits < prices.xor_floor || bits < xor_bits(series) {
        ValueCodec::Decimal(decimal)
    } else {
        ValueCodec::Xor
    }
}

/// Bits of the XOR codec: the first value's 4 header bytes, then a code per value.
fn xor_bits(series: &[Point]) -> u64 {
    let Some((first, rest)) = series.split_first() else {
        return 32;
    };
    let mut prev = first.value.to_bits();
    let mut window: Option<XorWindow> = None;
    let mut bits = 32;
    for p in rest {
        let value = p.value.to_bits();
        bits += u64::from(XorCode::of(value ^ prev, &mut window).bits());
        prev = value;
    }
    bits
}

/// What the decimal codecs of one step size cost a series.
struct DecimalPrices {
    step: Decimal,
    /// Bits per Rice parameter, header included: codes of deltas, then of delta-of-deltas.
    deltas: [u64; 8],
    delta_of_deltas: [u64; 8],
    /// No XOR coding of the series takes fewer bits.
    xor_floor: u64,
}

impl DecimalPrices {
    /// `None` if some value of `series` is no whole number of steps of 10^-decimals.
    fn of(series: &[Point], decimals: u8) -> Option<Self> {
        let step = Decimal {
            decimals,
            delta_of_delta: false,
            rice_k: 0,
        };
        let (first, rest) = series.split_first()?;
        let first_steps = step.steps(first.value)?;
        let mut prev_steps = first_steps;
        let mut prev_bits = first.value.to_bits();
        let mut prev_delta = 0i64;
        let (mut deltas, mut delta_of_deltas) = (RicePrices::default(), RicePrices::default());
        let mut changed = 0;
        for p in rest {
            let steps = step.steps(p.value)?;
            let delta = steps.wrapping_sub(prev_steps);
            deltas.add(zigzag(delta));
            delta_of_deltas.add(zigzag(delta.wrapping_sub(prev_delta)));
            changed += u64::from(p.value.to_bits() != prev_bits);
            (prev_steps, prev_delta, prev_bits) = (steps, delta, p.value.to_bits());
        }
        let first_bits = 8 * u64::from(varint_len(zigzag(first_steps)));
        let same = rest.len() as u64 - changed;
        Some(Self {
            step,
            deltas: deltas.totals().map(|bits| first_bits + bits),
            delta_of_deltas: delta_of_deltas.totals().map(|bits| first_bits + bits),
            xor_floor: 32 + same + 3 * changed,
        })
    }

    /// The cheapest of the 16, the first among equals, and its bits.
    fn cheapest(&self) -> (u64, Decimal) {
        let mut best = (u64::MAX, self.step);
        for (delta_of_delta, prices) in [(false, &self.deltas), (true, &self.delta_of_deltas)] {
            for (rice_k, &bits) in (0..).zip(prices) {
                if bits < best.0 {
                    let d = Decimal {
                        delta_of_delta,
                        rice_k,
                        ..self.step
                    };
                    best = (bits, d);
                }
            }
        }
        best
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

/// Sums of Rice prices for every k, in 16-bit lanes moved to `u64`s before they can overflow.
#[derive(Default)]
struct RicePrices {
    lanes: u128,
    in_lanes: u32,
    totals: [u64; LANES],
}

impl RicePrices {
    /// Codes the lanes hold before they are moved: a code costs at most 8 + 6 + 64 bits.
    const FLUSH_EVERY: u32 = u16::MAX as u32 / 78;

    #[inline(always)]
    fn add(&mut self, z: u64) {
        self.lanes += lanes_of(z);
        self.in_lanes += 1;
        if self.in_lanes == Self::FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (k, total) in self.totals.iter_mut().enumerate() {
            *total += u64::from((self.lanes >> (16 * k)) as u16);
        }
        (self.lanes, self.in_lanes) = (0, 0);
    }

    fn totals(mut self) -> [u64; LANES] {
        self.flush();
        self.totals
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
    fn prices_add_up_past_what_a_lane_holds() {
        let mut prices = RicePrices::default();
        for _ in 0..3 * RicePrices::FLUSH_EVERY + 5 {
            prices.add(u64::MAX);
        }
        let codes = u64::from(3 * RicePrices::FLUSH_EVERY + 5);
        assert_eq!(prices.totals(), [codes * 78; LANES]);
    }
}
