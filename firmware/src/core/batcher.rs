//! The open batch, and the sampling schedule that fills it.
//!
//! A batch is closed (handed to the outbox) when it holds `batch_max_readings`, when its first
//! reading is `batch_max_age_ms` old, when the clock source changes (a batch never mixes
//! clocks: its readings share one base), or when the next reading would not fit its time span
//! (before its base, or more than `MAX_BATCH_SPAN_MS` after it). The session decides when;
//! this module keeps the readings and the sequence numbers.

use heapless::Vec;
use shared::limits::{MAX_BATCH_SPAN_MS, MAX_READINGS_PER_BATCH};
use shared::{Batch, Clock, Reading};

use super::clock::ClockSource;

/// Where a reading went: its batch, the batch's clock (source and base), and its offset. The
/// reading's timestamp is exactly `base + offset_ms`, as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u32,
    pub clock: Clock,
    pub offset_ms: u32,
}

impl Stamp {
    /// `base + offset` in the clock's own terms (Unix ms, or uptime ms for `Clock::Uptime`).
    pub fn timestamp_ms(&self) -> u64 {
        let (_, base) = ClockSource::of(self.clock);
        base + u64::from(self.offset_ms)
    }

    /// The Unix ms timestamp, when the device knew the wall time.
    pub fn unix_ms(&self) -> Option<u64> {
        match self.clock {
            Clock::Uptime { .. } => None,
            Clock::Hub { .. } | Clock::Sntp { .. } => Some(self.timestamp_ms()),
        }
    }
}

/// The batch being filled, and the sequence numbers of this boot.
#[derive(Debug, Clone)]
pub struct Batcher {
    batch: Batch,
    source: ClockSource,
    base_ms: u64,
    open: bool,
    opened_at: u64,
    next_seq: u32,
}

impl Default for Batcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Batcher {
    pub const fn new() -> Self {
        Self {
            batch: Batch {
                seq: 0,
                clock: Clock::Uptime { base_ms: 0 },
                dropped: 0,
                readings: Vec::new(),
            },
            source: ClockSource::Uptime,
            base_ms: 0,
            open: false,
            opened_at: 0,
            next_seq: 1,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Readings in the open batch (0 when none is open).
    pub fn len(&self) -> usize {
        if self.open {
            self.batch.readings.len()
        } else {
            0
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of the open batch, if one is open.
    pub fn open_seq(&self) -> Option<u32> {
        self.open.then_some(self.batch.seq)
    }

    /// The seq the next batch to open will get.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    pub fn source(&self) -> Option<ClockSource> {
        self.open.then_some(self.source)
    }

    /// Whether a reading stamped `ts` by `source` may join the open batch (true when none is
    /// open).
    pub fn fits(&self, source: ClockSource, ts: u64) -> bool {
        !self.open
            || (source == self.source
                && ts >= self.base_ms
                && ts - self.base_ms <= u64::from(MAX_BATCH_SPAN_MS)
                && self.batch.readings.len() < MAX_READINGS_PER_BATCH)
    }

    /// Add a reading, opening a batch if none is open. The caller checked [`Batcher::fits`];
    /// a reading that does not fit anyway is refused (`None`), never misplaced.
    pub fn push(
        &mut self,
        now: u64,
        source: ClockSource,
        ts: u64,
        sensor: u8,
        value: f32,
    ) -> Option<Stamp> {
        if !self.fits(source, ts) {
            return None;
        }
        if !self.open {
            self.open = true;
            self.opened_at = now;
            self.source = source;
            self.base_ms = ts;
            self.batch.seq = self.next_seq;
            self.batch.clock = source.clock(ts);
            self.batch.readings.clear();
            self.next_seq = next_after(self.next_seq);
        }
        // `fits` checked the span, so the offset fits a u32.
        let offset_ms = (ts - self.base_ms) as u32;
        self.batch
            .readings
            .push(Reading {
                sensor,
                offset_ms,
                value,
            })
            .ok()?;
        Some(Stamp {
            seq: self.batch.seq,
            clock: self.batch.clock,
            offset_ms,
        })
    }

    /// When the open batch must close: `max_age_ms` after its first reading.
    pub fn deadline(&self, max_age_ms: u32) -> Option<u64> {
        self.open
            .then(|| self.opened_at.saturating_add(u64::from(max_age_ms)))
    }

    /// The open batch, for encoding, with its cumulative `dropped` count set.
    pub fn current(&mut self, dropped: u32) -> Option<&Batch> {
        if !self.open {
            return None;
        }
        self.batch.dropped = dropped;
        Some(&self.batch)
    }

    /// The open batch is closed (encoded into the outbox, or given up on).
    pub fn finish(&mut self) {
        self.open = false;
        self.batch.readings.clear();
    }

    /// The open batch and when it opened (uptime), to keep across a deep sleep.
    pub fn open_batch(&self) -> Option<(u64, &Batch)> {
        self.open.then_some((self.opened_at, &self.batch))
    }

    /// Continue from a deep sleep: the next seq to use and the batch that was open. A kept
    /// batch with no readings is not reopened.
    pub fn restore(&mut self, next_seq: u32, open: Option<(u64, Batch)>) {
        self.next_seq = next_seq.max(1);
        self.open = false;
        self.batch.readings.clear();
        if let Some((opened_at, batch)) = open.filter(|(_, b)| !b.readings.is_empty()) {
            let (source, base_ms) = ClockSource::of(batch.clock);
            self.source = source;
            self.base_ms = base_ms;
            self.opened_at = opened_at;
            self.batch = batch;
            self.open = true;
        }
    }

    /// Number the next batch past `seq` (the hub claims to have stored that far under this
    /// boot id). Call with no batch open.
    pub fn skip_past(&mut self, seq: u32) {
        if self.next_seq <= seq {
            self.next_seq = next_after(seq);
        }
    }
}

/// seq 0 is never a batch; after `u32::MAX` (136 years at one batch a second) we wrap to 1.
fn next_after(seq: u32) -> u32 {
    seq.checked_add(1).unwrap_or(1)
}

/// Which sensor is due when: every declared sensor once per `sample_interval_ms`, in
/// declaration order.
///
/// A shell that falls behind (a busy task, a long blocking send) skips the rounds it missed
/// instead of sampling them in a burst: late samples at the wrong time are worse than none,
/// and the schedule keeps its phase.
#[derive(Debug, Clone)]
pub struct SampleSchedule {
    next_due: u64,
    cursor: usize,
    sensors: usize,
}

impl SampleSchedule {
    /// The first round is due at `first_due`.
    pub const fn new(first_due: u64, sensors: usize) -> Self {
        Self {
            next_due: first_due,
            cursor: 0,
            sensors,
        }
    }

    /// When the next sample is due (in the past while a round is under way).
    pub fn next_due(&self) -> u64 {
        self.next_due
    }

    /// The index (into the declared sensors) of the next sensor to sample at `now`, if any.
    pub fn poll(&mut self, now: u64, interval_ms: u32) -> Option<usize> {
        if self.sensors == 0 || (self.cursor == 0 && now < self.next_due) {
            return None;
        }
        let index = self.cursor;
        self.cursor += 1;
        if self.cursor == self.sensors {
            self.cursor = 0;
            let interval = u64::from(interval_ms.max(1));
            self.next_due = self.next_due.saturating_add(interval);
            if self.next_due <= now {
                let missed = (now - self.next_due) / interval + 1;
                self.next_due = self.next_due.saturating_add(missed * interval);
            }
        }
        Some(index)
    }

    /// The interval changed: never wait longer than one new interval from `now`.
    pub fn reschedule(&mut self, now: u64, interval_ms: u32) {
        let latest = now.saturating_add(u64::from(interval_ms));
        if self.cursor == 0 && self.next_due > latest {
            self.next_due = latest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_opens_with_the_next_seq_and_stamps_offsets_from_its_first_reading() {
        let mut b = Batcher::new();
        let s1 = b.push(10, ClockSource::Uptime, 10, 0, 1.0).unwrap();
        let s2 = b.push(35, ClockSource::Uptime, 35, 1, 2.0).unwrap();
        assert_eq!(
            s1,
            Stamp {
                seq: 1,
                clock: Clock::Uptime { base_ms: 10 },
                offset_ms: 0
            }
        );
        assert_eq!(s2.offset_ms, 25);
        assert_eq!(s2.timestamp_ms(), 35);
        assert_eq!(b.deadline(1000), Some(1010));
        b.finish();
        let s3 = b
            .push(40, ClockSource::Hub, 1_700_000_000_000, 0, 3.0)
            .unwrap();
        assert_eq!(s3.seq, 2);
        assert_eq!(s3.unix_ms(), Some(1_700_000_000_000));
    }

    #[test]
    fn a_reading_from_another_clock_or_before_the_base_does_not_fit() {
        let mut b = Batcher::new();
        b.push(100, ClockSource::Uptime, 100, 0, 1.0).unwrap();
        assert!(!b.fits(ClockSource::Hub, 1_700_000_000_000));
        assert!(!b.fits(ClockSource::Uptime, 99));
        assert!(!b.fits(ClockSource::Uptime, 100 + u64::from(MAX_BATCH_SPAN_MS) + 1));
        assert!(b.push(0, ClockSource::Uptime, 99, 0, 1.0).is_none());
    }

    #[test]
    fn skip_past_moves_the_next_seq_forward_only() {
        let mut b = Batcher::new();
        b.skip_past(7);
        assert_eq!(b.next_seq(), 8);
        b.skip_past(3);
        assert_eq!(b.next_seq(), 8);
    }

    #[test]
    fn the_schedule_samples_every_sensor_once_per_interval_and_skips_missed_rounds() {
        let mut s = SampleSchedule::new(0, 2);
        assert_eq!(s.poll(0, 100), Some(0));
        assert_eq!(s.poll(0, 100), Some(1));
        assert_eq!(s.poll(0, 100), None);
        assert_eq!(s.next_due(), 100);
        assert_eq!(s.poll(99, 100), None);
        assert_eq!(s.poll(350, 100), Some(0));
        assert_eq!(s.poll(350, 100), Some(1));
        // Rounds 200 and 300 were missed; the phase is kept.
        assert_eq!(s.next_due(), 400);
        s.reschedule(360, 10);
        assert_eq!(s.next_due(), 370);
    }
}
