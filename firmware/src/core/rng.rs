//! A tiny deterministic PRNG (xorshift64, seeded through splitmix64).
//!
//! The core never asks the platform for randomness: the caller seeds it (from the board's RNG,
//! or from a fixed seed in tests), so every run of a test replays exactly. It is for jitter and
//! simulated noise only, never for anything secret.

/// xorshift64: one `u64` of state, a few shifts per number.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// Seed the generator. Any seed works, 0 included: splitmix64 spreads it first, so
    /// nearby seeds (device 1, device 2, ...) still give unrelated sequences.
    pub const fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // xorshift must never hold 0 (it would stay 0 forever).
        Self {
            state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z },
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..bound` (0 when `bound` is 0), by multiply-high: no modulo bias worth
    /// speaking of and no loop.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit_f32(&mut self) -> f32 {
        // 24 random bits: exactly the precision of an f32 mantissa.
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (XorShift64::new(7), XorShift64::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn between_stays_in_range_and_covers_it() {
        let mut rng = XorShift64::new(0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.between(10, 14);
            assert!((10..=14).contains(&v));
            seen[(v - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.between(5, 5), 5);
        assert_eq!(rng.between(9, 3), 9);
    }

    #[test]
    fn unit_f32_is_in_zero_one() {
        let mut rng = XorShift64::new(42);
        for _ in 0..1000 {
            let u = rng.unit_f32();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
