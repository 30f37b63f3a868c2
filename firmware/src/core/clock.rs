//! Maps device uptime to wall time, and says where each timestamp comes from.
//!
//! A device boots with no idea of the date. It learns it from one of two places:
//! - the hub: Welcome and Pong carry the hub's Unix ms. Stamped by the hub somewhere between
//!   our request leaving (`sent_at`) and the answer arriving (`now`), so the best estimate of
//!   the hub's clock *now* is `hub_time + rtt / 2`. The mapping is an offset
//!   `wall = uptime + offset`, refreshed by every Pong.
//! - SNTP, when the board sets its own clock (`DeviceCore::handle_wall_clock`).
//!
//! SNTP outranks the hub (a clock the device set itself, independent of the hub), and either
//! outranks raw uptime. Before either is known readings carry [`Clock::Uptime`], which the hub
//! maps with the `uptime_ms` of a Hello from the same boot, so such readings are correct
//! whenever they are finally sent.

use shared::Clock;
use shared::limits::MIN_PLAUSIBLE_UNIX_MS;

/// Where a timestamp comes from, in rising order of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClockSource {
    /// Milliseconds since boot.
    Uptime,
    /// Unix ms, uptime mapped with the hub's clock.
    Hub,
    /// Unix ms from a clock SNTP set.
    Sntp,
}

impl ClockSource {
    /// The wire form of a batch clock with this source and base.
    pub fn clock(self, base_ms: u64) -> Clock {
        match self {
            ClockSource::Uptime => Clock::Uptime { base_ms },
            ClockSource::Hub => Clock::Hub { base_ms },
            ClockSource::Sntp => Clock::Sntp { base_ms },
        }
    }

    /// The source of a wire clock, and its base.
    pub fn of(clock: Clock) -> (Self, u64) {
        match clock {
            Clock::Uptime { base_ms } => (ClockSource::Uptime, base_ms),
            Clock::Hub { base_ms } => (ClockSource::Hub, base_ms),
            Clock::Sntp { base_ms } => (ClockSource::Sntp, base_ms),
        }
    }
}

/// Offsets from uptime to wall time, as far as they are known.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClockMap {
    hub_offset_ms: Option<i64>,
    sntp_offset_ms: Option<i64>,
    last_rtt_ms: Option<u64>,
}

impl ClockMap {
    pub const fn new() -> Self {
        Self {
            hub_offset_ms: None,
            sntp_offset_ms: None,
            last_rtt_ms: None,
        }
    }

    /// Learn the hub's clock: `hub_time_ms` was stamped by the hub after `sent_at` and before
    /// `now` (both uptime). Implausible times (before 2020, or an answer from the future) are
    /// ignored, so a hub with an unset clock cannot make readings worse than uptime.
    pub fn sync_hub(&mut self, now: u64, sent_at: u64, hub_time_ms: u64) -> bool {
        if hub_time_ms < MIN_PLAUSIBLE_UNIX_MS || sent_at > now {
            return false;
        }
        let rtt = now - sent_at;
        let estimate = hub_time_ms.saturating_add(rtt / 2);
        self.hub_offset_ms = Some(offset(estimate, now));
        self.last_rtt_ms = Some(rtt);
        true
    }

    /// The board's clock was set (by SNTP) to `unix_ms` at uptime `now`.
    pub fn set_wall_clock(&mut self, now: u64, unix_ms: u64) -> bool {
        if unix_ms < MIN_PLAUSIBLE_UNIX_MS {
            return false;
        }
        self.sntp_offset_ms = Some(offset(unix_ms, now));
        true
    }

    /// The most trusted source known.
    pub fn source(&self) -> ClockSource {
        if self.sntp_offset_ms.is_some() {
            ClockSource::Sntp
        } else if self.hub_offset_ms.is_some() {
            ClockSource::Hub
        } else {
            ClockSource::Uptime
        }
    }

    /// The time `now` (uptime) in the most trusted source's terms.
    pub fn stamp(&self, now: u64) -> (ClockSource, u64) {
        let source = self.source();
        let off = match source {
            ClockSource::Sntp => self.sntp_offset_ms,
            ClockSource::Hub => self.hub_offset_ms,
            ClockSource::Uptime => None,
        };
        let ts = match off {
            Some(off) => (now as i64).saturating_add(off).max(0) as u64,
            None => now,
        };
        (source, ts)
    }

    /// `wall - uptime` as learnt from the hub, if it was.
    pub fn hub_offset_ms(&self) -> Option<i64> {
        self.hub_offset_ms
    }

    /// The offsets learnt so far, `(hub, sntp)`, to keep across a deep sleep.
    pub fn offsets(&self) -> (Option<i64>, Option<i64>) {
        (self.hub_offset_ms, self.sntp_offset_ms)
    }

    /// Offsets kept across a deep sleep (see [`ClockMap::offsets`]). Valid only with the same
    /// uptime timeline (same boot id), which the sleep image guarantees.
    pub fn restore_offsets(&mut self, hub_offset_ms: Option<i64>, sntp_offset_ms: Option<i64>) {
        self.hub_offset_ms = hub_offset_ms;
        self.sntp_offset_ms = sntp_offset_ms;
    }

    /// The round trip of the last hub sync.
    pub fn last_rtt_ms(&self) -> Option<u64> {
        self.last_rtt_ms
    }
}

/// `wall - uptime`. Both are far below `i64::MAX` (Unix ms reach it in the year 292 million).
fn offset(wall_ms: u64, uptime_ms: u64) -> i64 {
    wall_ms as i64 - uptime_ms as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T2026: u64 = 1_780_000_000_000;

    #[test]
    fn uptime_until_synced_then_hub_time_corrected_by_half_the_round_trip() {
        let mut c = ClockMap::new();
        assert_eq!(c.stamp(5_000), (ClockSource::Uptime, 5_000));
        assert!(c.sync_hub(1_100, 1_000, T2026));
        assert_eq!(c.stamp(1_100), (ClockSource::Hub, T2026 + 50));
        assert_eq!(c.stamp(2_100), (ClockSource::Hub, T2026 + 1_050));
    }

    #[test]
    fn sntp_outranks_the_hub_and_implausible_times_are_ignored() {
        let mut c = ClockMap::new();
        assert!(!c.sync_hub(10, 0, 1_000));
        assert!(!c.set_wall_clock(10, 0));
        assert_eq!(c.source(), ClockSource::Uptime);
        assert!(c.sync_hub(10, 10, T2026));
        assert!(c.set_wall_clock(20, T2026 + 500));
        assert_eq!(c.stamp(30), (ClockSource::Sntp, T2026 + 510));
    }
}
