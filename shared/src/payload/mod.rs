//! The storage payload of one batch: its readings, compressed one series per sensor, with
//! delta-of-delta timestamps (or, as devices usually send them, the timestamps of the previous
//! series) and values as integer deltas in decimal steps, or XOR'd floats when they are not.
//!
//! The hub's store keeps one row per device batch with this payload as a blob, so its size is
//! what the SD card pays per reading. Points come back grouped by sensor (ascending) and, within
//! a sensor, sorted by timestamp: the sort is what makes timestamp deltas small and regular.
//!
//! Layout (described byte by byte, with a golden vector, in `docs/storage-payload.md`):
//! ```text
//! header      version u8 = 1 | series count: varint
//! per series  sensor u8 | mode u8 | unless mode bit 7 (same timestamps as the previous
//!             series): point count: varint (>= 1), first ts_ms minus the previous series'
//!             first ts_ms (minus 0 for the first series): zigzag varint | first value: XOR:
//!             4 bytes of f32 bits, big-endian; decimal: its step count, zigzag varint
//! bit stream  per series: unless it shares timestamps, (count - 1) delta-of-delta codes;
//!             (count - 1) value codes (XOR, or Rice codes of step deltas or
//!             delta-of-deltas); then zero bits up to a whole byte
//! mode        bit 7: shares timestamps | bits 6..0: 0 = XOR, or 1 o dd kkk = decimal:
//!             o = delta-of-deltas, dd = decimals (steps of 10^-dd), kkk = Rice parameter
//! ```
//! The encoder picks, per series, the value codec that takes the fewest bits (`values`).
//! The delta that timestamp delta-of-deltas refer to runs on from one series into the next (it
//! starts at 0), because the sensors of one device share a sampling period. Timestamps use
//! wrapping `i64` arithmetic, so every `i64` round-trips; a value is coded as decimal only if
//! it decodes to the very same bits, and as raw `f32` bits otherwise, so every bit pattern
//! (-0.0, NaN payloads, infinities, subnormals) round-trips.
//!
//! Decoding never panics, and reserves room for the points only once the series headers have
//! shown there are at most [`MAX_READINGS_PER_BATCH`](crate::limits::MAX_READINGS_PER_BATCH).
//!
//! Modules: `codec` (encode and decode: series headers and timestamps) uses `order` (the
//! encoder's sort by sensor, then time), `price` (which value codec a series takes), `steps`
//! (whether and how a value is a whole number of decimal steps), `values` (the value codecs),
//! `bytes` (the header's varints) and `bits` (the bit stream's packing).

#[cfg(feature = "alloc")]
mod bits;
#[cfg(feature = "alloc")]
mod bytes;
#[cfg(feature = "alloc")]
mod codec;
#[cfg(feature = "alloc")]
mod order;
#[cfg(feature = "alloc")]
mod price;
#[cfg(feature = "alloc")]
mod steps;
#[cfg(feature = "alloc")]
mod values;

#[cfg(feature = "alloc")]
pub use codec::{Encoder, decode, encode};

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
        "the series of sensor {sensor} shares the timestamps of the series before it, but it is the first"
    )]
    NoTimestampsToShare { sensor: u8 },
    #[error("the series of sensor {sensor} has mode byte {mode:#04x}, which names no value codec")]
    UnknownSeriesMode { sensor: u8, mode: u8 },
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
