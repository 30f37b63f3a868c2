//! Rules every message must satisfy beyond decoding. Pure functions: the caller passes the
//! hub's clock and the device's declared sensors; nothing here reads a clock or keeps state.

use crate::error::HelloError;
use crate::limits::{MAX_BATCH_SPAN_MS, MAX_FUTURE_SKEW_MS, MIN_PLAUSIBLE_UNIX_MS};
use crate::message::{Batch, Hello, Reading, RejectReason};

/// The sensor ids a device declared, as a 256-bit set (sensor ids are `u8`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SensorSet([u64; 4]);

impl SensorSet {
    pub fn insert(&mut self, id: u8) -> bool {
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    pub fn contains(&self, id: u8) -> bool {
        self.0[(id / 64) as usize] & (1u64 << (id % 64)) != 0
    }

    /// Whether every id in `other` is in this set.
    pub fn contains_all(&self, other: &SensorSet) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .all(|(mine, theirs)| theirs & !mine == 0)
    }
}

/// Check a Hello and return the set of sensors it declares.
pub fn validate_hello(hello: &Hello) -> Result<SensorSet, HelloError> {
    if hello.firmware.is_empty() {
        return Err(HelloError::EmptyFirmware);
    }
    if hello.sensors.is_empty() {
        return Err(HelloError::NoSensors);
    }
    let mut set = SensorSet::default();
    for s in &hello.sensors {
        if !set.insert(s.id) {
            return Err(HelloError::DuplicateSensor { id: s.id });
        }
    }
    Ok(set)
}

/// Check a batch whose clock base the caller has already resolved to Unix ms
/// (`base_unix_ms`), against the hub's clock `now_unix_ms`.
///
/// Reasons come back in a fixed order (seq, emptiness, then reading by reading) so a device
/// always learns about the first problem in its batch.
pub fn validate_batch(
    batch: &Batch,
    sensors: &SensorSet,
    base_unix_ms: u64,
    now_unix_ms: u64,
) -> Result<(), RejectReason> {
    validate_readings(
        batch.seq,
        batch.readings.iter().copied(),
        sensors,
        base_unix_ms,
        now_unix_ms,
    )
}

/// [`validate_batch`] for a batch given as its seq and its readings.
pub fn validate_readings(
    seq: u32,
    readings: impl IntoIterator<Item = Reading>,
    sensors: &SensorSet,
    base_unix_ms: u64,
    now_unix_ms: u64,
) -> Result<(), RejectReason> {
    if seq == 0 {
        return Err(RejectReason::InvalidSeq);
    }
    let latest = now_unix_ms.saturating_add(MAX_FUTURE_SKEW_MS);
    let mut empty = true;
    for (i, r) in readings.into_iter().enumerate() {
        empty = false;
        // The batch limit (256) keeps every index within u16.
        let index = i as u16;
        if !r.value.is_finite() {
            return Err(RejectReason::NonFiniteValue { index });
        }
        if !sensors.contains(r.sensor) {
            return Err(RejectReason::UndeclaredSensor {
                index,
                sensor: r.sensor,
            });
        }
        if r.offset_ms > MAX_BATCH_SPAN_MS {
            return Err(RejectReason::SpanTooLong { index });
        }
        let ts = base_unix_ms.saturating_add(u64::from(r.offset_ms));
        if !(MIN_PLAUSIBLE_UNIX_MS..=latest).contains(&ts) {
            return Err(RejectReason::TimestampOutOfRange { index });
        }
    }
    if empty {
        return Err(RejectReason::Empty);
    }
    Ok(())
}

/// [`validate_batch`] for a batch as [`crate::decode_device_frame`] gives it, with the same
/// answers. The rules hold for every reading when they hold for the batch's extremes, which the
/// decoder gathered on its way through the readings: the union of their sensors, the smallest
/// and largest offset (a reading's time grows with its offset, so the range check of the two
/// ends covers every reading between), whether every value is finite. Only a batch that breaks
/// a rule is walked, to name the first reading at fault.
#[cfg(feature = "alloc")]
pub fn validate_view(
    batch: &crate::frame::BatchView<'_>,
    sensors: &SensorSet,
    base_unix_ms: u64,
    now_unix_ms: u64,
) -> Result<(), RejectReason> {
    let latest = now_unix_ms.saturating_add(MAX_FUTURE_SKEW_MS);
    let plausible = |offset: u32| {
        (MIN_PLAUSIBLE_UNIX_MS..=latest).contains(&base_unix_ms.saturating_add(u64::from(offset)))
    };
    if let Some((first, last)) = batch.offset_range()
        && batch.seq != 0
        && batch.all_finite()
        && sensors.contains_all(batch.sensors())
        && last <= MAX_BATCH_SPAN_MS
        && plausible(first)
        && plausible(last)
    {
        return Ok(());
    }
    validate_readings(
        batch.seq,
        batch.readings.iter().copied(),
        sensors,
        base_unix_ms,
        now_unix_ms,
    )
}

/// What a batch's sequence number means against the highest seq already stored for the same
/// device and boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Already stored: ack again, store nothing.
    Duplicate,
    /// New. `gap` batches between the stored one and this one never arrived (the device
    /// dropped them or they were rejected): counted as lost, never waited for.
    New { gap: u32 },
}

/// Classify `seq` against `stored` (None: nothing of this boot stored yet).
pub fn check_seq(stored: Option<u32>, seq: u32) -> Result<SeqVerdict, RejectReason> {
    if seq == 0 {
        return Err(RejectReason::InvalidSeq);
    }
    let last = stored.unwrap_or(0);
    if seq <= last {
        Ok(SeqVerdict::Duplicate)
    } else {
        Ok(SeqVerdict::New {
            gap: seq - last - 1,
        })
    }
}
