//! The storage payload of one batch: its readings, compressed Gorilla-style (delta-of-delta
//! timestamps, XOR'd floats), one series per sensor.
//!
//! The hub's store keeps one row per device batch with this payload as a blob, so its size is
//! what the SD card pays per reading. Points come back grouped by sensor (ascending) and, within
//! a sensor, sorted by timestamp: the sort is what makes timestamp deltas small and regular.
//!
//! Layout (described byte by byte, with a golden vector, in `docs/storage-payload.md`):
//! ```text
//! header      version u8 = 1 | series count: varint
//! per series  sensor u8 | point count: varint (>= 1) | first ts_ms minus the previous
//!             series' first ts_ms (minus 0 for the first series): zigzag varint
//! bit stream  per series: (count - 1) delta-of-delta codes, first value as 32 raw bits,
//!             (count - 1) XOR codes; then zero bits up to a whole byte
//! ```
//! The delta that delta-of-deltas refer to runs on from one series into the next (it starts
//! at 0), because the sensors of one device share a sampling period. Timestamps use wrapping
//! `i64` arithmetic, so every `i64` round-trips; values travel as raw `f32` bits, so every bit
//! pattern (-0.0, NaN payloads, infinities) round-trips.
//!
//! Decoding never panics, and reserves room for the points only once the series headers have
//! shown there are at most [`MAX_READINGS_PER_BATCH`](crate::limits::MAX_READINGS_PER_BATCH).

#[cfg(feature = "alloc")]
mod bits;
#[cfg(feature = "alloc")]
mod codec;

#[cfg(feature = "alloc")]
pub use codec::{decode, encode};

/// The first byte of every payload. A new layout gets a new number; old rows keep theirs.
pub const FORMAT_VERSION: u8 = 1;

/// One stored reading: absolute Unix-ms timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub sensor: u8,
    pub ts_ms: i64,
    pub value: f32,
}

/// A payload that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload ends early (truncated)")]
    Truncated,
    #[error("payload is malformed: a varint is longer than 64 bits")]
    Malformed,
    #[error("payload format version {version} is not supported (this build reads {supported})")]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("payload has {count} series, over the limit of {max}")]
    TooManySeries { count: u64, max: usize },
    #[error("payload has at least {count} points, over the limit of {max}")]
    TooManyPoints { count: u64, max: usize },
    #[error("the series of sensor {sensor} has no points")]
    EmptySeries { sensor: u8 },
    #[error(
        "the series of sensor {sensor} follows sensor {previous}: series must be in strictly ascending sensor order"
    )]
    SensorOutOfOrder { sensor: u8, previous: u8 },
    #[error("sensor {sensor}: a value reuses the XOR window before any window was set")]
    NoXorWindow { sensor: u8 },
    #[error(
        "sensor {sensor}: an XOR window of {leading} leading zeros and {len} meaningful bits is wider than 32 bits"
    )]
    XorWindowTooWide { sensor: u8, leading: u8, len: u8 },
    #[error("the padding bits after the last field are not zero")]
    NonZeroPadding,
    #[error("{extra} bytes after the end of the payload")]
    TrailingBytes { extra: usize },
}
