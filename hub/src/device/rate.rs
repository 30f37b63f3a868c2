//! Per-device limits that tell an honest backlog from abuse.
//!
//! - [`RateGuard`] limits what a device *produces*: readings per second of the device's own
//!   timestamps, against the rate it declared in Hello. A backlog after an outage carries the
//!   timestamps of when it was sampled, so it spreads over as many seconds as it took to
//!   sample and is never refused, however fast it arrives; a device that samples faster than
//!   it declared is rejected `RateLimited` (and closed with 1008 if it keeps on, like any
//!   invalid batch). Duplicates (batches already stored) never reach it.
//! - [`FramePacer`] limits how fast the hub *reads* one device's socket: a token bucket of
//!   frames per second. It never rejects; over the rate the hub simply reads later, and TCP
//!   flow control slows the sender. A flood of tiny frames costs the hub a bounded amount of
//!   CPU; a backlog still arrives at the pace the store can take.

use std::time::Duration;

use tokio::time::Instant;

/// Readings a device may always add on top of its rate (one full batch): a device sampling
/// exactly at its declared rate is never refused for rounding or for batching.
pub const SLACK_READINGS: f64 = shared::limits::MAX_READINGS_PER_BATCH as f64;

/// Readings per second of reading time against a declared rate, over one connection.
#[derive(Debug, Clone)]
pub struct RateGuard {
    per_s: f64,
    first_ts: Option<i64>,
    last_ts: i64,
    readings: f64,
}

impl RateGuard {
    /// `declared` readings/s from Hello, times `factor` (`--rate-limit-factor`).
    pub fn new(declared: u16, factor: f64) -> Self {
        Self {
            per_s: f64::from(declared) * factor,
            first_ts: None,
            last_ts: 0,
            readings: 0.0,
        }
    }

    /// Whether a batch of `count` readings between `t_first_ms` and `t_last_ms` keeps the
    /// device within its rate; if so it is counted.
    ///
    /// Allowed: `per_s * (span + 1 s) + SLACK_READINGS`, where span covers every reading time
    /// accepted on this connection. Clock corrections only widen the span (more lenient).
    pub fn admit(&mut self, t_first_ms: i64, t_last_ms: i64, count: usize) -> bool {
        let first = self.first_ts.map_or(t_first_ms, |f| f.min(t_first_ms));
        let last = self.last_ts.max(t_last_ms);
        let span_s = (last - first).max(0) as f64 / 1000.0;
        let allowed = self.per_s * (span_s + 1.0) + SLACK_READINGS;
        let total = self.readings + count as f64;
        if total > allowed {
            return false;
        }
        self.first_ts = Some(first);
        self.last_ts = last;
        self.readings = total;
        true
    }
}

/// A token bucket of frames: `rate` per second, bursts up to `rate` (one second's worth).
#[derive(Debug, Clone)]
pub struct FramePacer {
    interval: Duration,
    burst: Duration,
    /// The time at which the bucket would be full; a frame costs `interval`.
    full_at: Instant,
}

impl FramePacer {
    pub fn new(frames_per_s: u32, now: Instant) -> Self {
        let rate = frames_per_s.max(1);
        Self {
            interval: Duration::from_secs(1) / rate,
            burst: Duration::from_secs(1),
            full_at: now,
        }
    }

    /// When the next frame may be read (now or later).
    pub fn ready_at(&self) -> Instant {
        // The bucket holds `burst` worth of frames; a frame may be read once `full_at` is at
        // most `burst - interval` ahead of now.
        self.full_at
            .checked_sub(self.burst.saturating_sub(self.interval))
            .unwrap_or(self.full_at)
    }

    /// A frame was read at `now`.
    pub fn took(&mut self, now: Instant) {
        self.full_at = self.full_at.max(now) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_honest_backlog_is_never_refused_however_fast_it_arrives() {
        // 4 readings/s declared; an hour offline: 14,400 readings with their sampling times,
        // delivered in 32-reading batches back to back.
        let mut g = RateGuard::new(4, 2.0);
        let start = 1_764_000_000_000i64;
        for b in 0..450 {
            let t0 = start + b * 8_000;
            assert!(g.admit(t0, t0 + 7_750, 32), "batch {b} refused");
        }
    }

    #[test]
    fn a_device_producing_faster_than_declared_is_refused() {
        // Declares 4/s, samples 40/s (a 32-reading batch every 0.8 s of its own time).
        let mut g = RateGuard::new(4, 2.0);
        let start = 1_764_000_000_000i64;
        let refused = (0..100)
            .filter(|b| {
                let t0 = start + b * 800;
                !g.admit(t0, t0 + 775, 32)
            })
            .count();
        assert!(refused > 50, "only {refused} of 100 refused");
    }

    #[test]
    fn readings_all_at_one_instant_get_one_batch_of_slack() {
        let mut g = RateGuard::new(4, 2.0);
        let t = 1_764_000_000_000i64;
        assert!(g.admit(t, t, 256));
        assert!(!g.admit(t, t, 32), "the same second again, far over 4/s");
    }

    #[test]
    fn the_pacer_lets_a_burst_through_then_spaces_frames() {
        let now = Instant::now();
        let mut p = FramePacer::new(100, now);
        for _ in 0..100 {
            assert!(p.ready_at() <= now, "within the burst");
            p.took(now);
        }
        assert!(p.ready_at() > now, "burst used up");
        let wait = p.ready_at() - now;
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        let later = now + Duration::from_secs(2);
        assert!(p.ready_at() <= later, "refilled");
    }
}
