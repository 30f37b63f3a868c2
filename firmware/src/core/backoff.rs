//! Reconnect delays: exponential backoff with jitter, from a caller-seeded PRNG.
//!
//! Jitter matters more than the exponent here: when a gateway reboots, every device on the site
//! loses its socket at the same instant, and without jitter they would all come back in the
//! same millisecond, again and again. Two schemes (see the AWS architecture blog, "Exponential
//! Backoff and Jitter"):
//! - [`Jitter::Full`]: a delay uniform in `0..=min(max, initial * 2^attempt)`.
//! - [`Jitter::Decorrelated`]: a delay uniform in `initial..=min(max, 3 * previous delay)`.
//!
//! The session resets the backoff after a successful Welcome, not after a TCP connect: a hub
//! that accepts sockets and then drops them must still be backed off from.

use super::rng::XorShift64;

/// How the delay is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `0..=ceiling`, the ceiling doubling with every attempt.
    #[default]
    Full,
    /// Uniform in `initial..=3 * previous`, capped at `max`.
    Decorrelated,
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay. Default 500 ms: a hub restart is usually that quick.
    pub initial_ms: u32,
    /// Largest delay. Default 60 s: a device never waits longer than a minute to try again.
    pub max_ms: u32,
    /// Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// PRNG seed. Give each device a different one (the board's RNG, or the boot id);
    /// default 0.
    pub seed: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 60_000,
            jitter: Jitter::Full,
            seed: 0,
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    previous_ms: u64,
    rng: XorShift64,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        let cfg = BackoffConfig {
            initial_ms: cfg.initial_ms.max(1),
            max_ms: cfg.max_ms.max(cfg.initial_ms.max(1)),
            ..cfg
        };
        Self {
            cfg,
            attempt: 0,
            previous_ms: u64::from(cfg.initial_ms),
            rng: XorShift64::new(cfg.seed),
        }
    }

    /// Delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The largest delay the next call to [`Backoff::next_delay_ms`] can return.
    pub fn ceiling_ms(&self) -> u64 {
        let max = u64::from(self.cfg.max_ms);
        match self.cfg.jitter {
            // 2^attempt overflows past 63 doublings; the cap is reached long before.
            Jitter::Full => u64::from(self.cfg.initial_ms)
                .checked_shl(self.attempt.min(40))
                .unwrap_or(max)
                .min(max),
            Jitter::Decorrelated => self.previous_ms.saturating_mul(3).min(max),
        }
    }

    /// The next delay, in ms.
    pub fn next_delay_ms(&mut self) -> u64 {
        let ceiling = self.ceiling_ms();
        let delay = match self.cfg.jitter {
            Jitter::Full => self.rng.between(0, ceiling),
            Jitter::Decorrelated => self.rng.between(u64::from(self.cfg.initial_ms), ceiling),
        };
        self.previous_ms = delay.max(u64::from(self.cfg.initial_ms));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to the first, shortest delay (after a Welcome).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous_ms = u64::from(self.cfg.initial_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_ceiling_doubles_up_to_the_cap() {
        let mut b = Backoff::new(BackoffConfig {
            initial_ms: 100,
            max_ms: 1000,
            jitter: Jitter::Full,
            seed: 1,
        });
        let mut ceilings = [0u64; 6];
        for c in &mut ceilings {
            *c = b.ceiling_ms();
            let d = b.next_delay_ms();
            assert!(d <= *c);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn decorrelated_jitter_stays_between_initial_and_max() {
        let mut b = Backoff::new(BackoffConfig {
            initial_ms: 100,
            max_ms: 5000,
            jitter: Jitter::Decorrelated,
            seed: 3,
        });
        let mut prev = 100;
        for _ in 0..200 {
            let d = b.next_delay_ms();
            assert!((100..=5000).contains(&d));
            assert!(d <= (prev * 3).min(5000));
            prev = d;
        }
        b.reset();
        assert_eq!(b.ceiling_ms(), 300);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(BackoffConfig {
            initial_ms: u32::MAX,
            max_ms: u32::MAX,
            jitter: Jitter::Full,
            seed: 0,
        });
        for _ in 0..100 {
            assert!(b.next_delay_ms() <= u64::from(u32::MAX));
        }
    }
}
