//! Rules every message must satisfy beyond decoding. Pure functions: the caller passes the
//! hub's clock and the device's declared sensors; nothing here reads a clock or keeps state.

use crate::error::HelloError;
use crate::limits::{MAX_BATCH_SPAN_MS, MAX_FUTURE_SKEW_MS, MIN_PLAUSIBLE_UNIX_MS};
use crate::message::{Batch, Hello, RejectReason};

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
    if batch.seq == 0 {
        return Err(RejectReason::InvalidSeq);
    }
    if batch.readings.is_empty() {
        return Err(RejectReason::Empty);
    }
    let latest = now_unix_ms.saturating_add(MAX_FUTURE_SKEW_MS);
    for (i, r) in batch.readings.iter().enumerate() {
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
    Ok(())
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
