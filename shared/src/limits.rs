//! Every bound of the protocol, in one place. Both ends size their buffers from these, and
//! validation refuses anything beyond them with an error that names the number.

/// Largest device-to-hub frame the hub accepts; larger frames are closed with 1009.
/// A full batch (`MAX_READINGS_PER_BATCH` readings at their largest encoding, 10 bytes each)
/// plus its header fits with room to spare.
pub const MAX_DEVICE_FRAME_BYTES: usize = 4096;

/// Largest hub-to-device frame. Embedded WebSocket clients have small receive buffers (the
/// ESP-IDF one hands larger messages over in pieces), so every hub message stays far below 1 KiB.
pub const MAX_HUB_FRAME_BYTES: usize = 256;

/// Readings in one batch. 256 readings of 4 sensors is a minute of 1 Hz data per batch.
pub const MAX_READINGS_PER_BATCH: usize = 256;

/// Sensors one device may declare in its Hello.
pub const MAX_SENSORS: usize = 16;

/// Bytes of the firmware version string in Hello.
pub const MAX_FIRMWARE_LEN: usize = 32;

/// Bytes of a sensor's unit string ("°C", "%RH", "hPa", "V").
pub const MAX_UNIT_LEN: usize = 12;

/// How far one batch may span: the largest `offset_ms` of a reading (24 h, so a sleepy device
/// that wakes once a day still fits a day of samples into one batch).
pub const MAX_BATCH_SPAN_MS: u32 = 24 * 60 * 60 * 1000;

/// Earliest plausible wall-clock timestamp, 2020-01-01T00:00:00Z. A device whose clock reads
/// earlier was never set and must send `Clock::Uptime` instead.
pub const MIN_PLAUSIBLE_UNIX_MS: u64 = 1_577_836_800_000;

/// How far into the hub's future a reading may lie (clock skew allowance): 5 minutes.
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
