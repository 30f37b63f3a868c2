//! What a device core is built with, and the bounds it holds the hub's settings to.

use heapless::{String, Vec};
use shared::limits::{MAX_BATCH_SPAN_MS, MAX_FIRMWARE_LEN, MAX_READINGS_PER_BATCH, MAX_SENSORS};
use shared::{DeviceConfig, HelloError, ResetReason, SensorDecl};

use super::backoff::BackoffConfig;

/// Shortest sample interval the core accepts (from the hub or at construction): 10 ms. A
/// Config with 0 would otherwise ask for samples in a tight loop.
pub const MIN_SAMPLE_INTERVAL_MS: u32 = 10;

/// Shortest heartbeat interval: 100 ms, for the same reason.
pub const MIN_HEARTBEAT_MS: u32 = 100;

/// Everything a device core needs at boot. Fields not given to [`CoreConfig::new`] have
/// defaults documented on each field; set them afterwards.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Firmware version sent in Hello.
    pub firmware: String<MAX_FIRMWARE_LEN>,
    /// Random per boot (from the board's RNG): the hub keys exactly-once storage on
    /// (device, boot id, seq), so a reused boot id would make new batches look like old ones.
    pub boot_id: u32,
    pub reset_reason: ResetReason,
    /// The sensors this device samples, in sampling order.
    pub sensors: Vec<SensorDecl, MAX_SENSORS>,
    /// Settings used until the hub sends its own in Welcome. Default: `DeviceConfig::default()`.
    pub device: DeviceConfig,
    /// Default: `BackoffConfig::default()` seeded with the boot id.
    pub backoff: BackoffConfig,
    /// Batch frames sent and not yet acked, at most. Default 4: enough to keep a link busy
    /// while the hub's group commit (about 1 s) holds acks back, small enough that a reconnect
    /// with a long backlog does not flood the socket.
    pub max_in_flight: u8,
    /// From `Connect` to Welcome, at most; then the attempt counts as failed. Default 10 s.
    pub handshake_timeout_ms: u32,
    /// A connection on which nothing was received for this many heartbeat intervals is
    /// declared dead (half-open) and replaced; so is one where a batch in flight waited that
    /// long for its ack. Default 3, matching the hub's own timeout.
    pub dead_after_heartbeats: u8,
    /// Apply the settings the hub sends (Welcome, Config). Default true, as the protocol
    /// intends; false keeps `device` whatever the hub says, for simulators and load tests
    /// that must produce an exact rate.
    pub follow_hub_config: bool,
    /// Outbox limits within its const capacity (see `Outbox::with_limits`). Default: all of it.
    pub outbox_max_bytes: usize,
    pub outbox_max_frames: usize,
}

/// A configuration the core refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("firmware version of {len} bytes is over the limit of {max}")]
    FirmwareTooLong { len: usize, max: usize },
    #[error("{count} sensors is over the limit of {max}")]
    TooManySensors { count: usize, max: usize },
    #[error(transparent)]
    Hello(#[from] HelloError),
}

impl CoreConfig {
    /// A configuration with defaults for everything but identity.
    pub fn new(
        firmware: &str,
        boot_id: u32,
        reset_reason: ResetReason,
        sensors: &[SensorDecl],
    ) -> Result<Self, ConfigError> {
        let firmware = String::try_from(firmware).map_err(|_| ConfigError::FirmwareTooLong {
            len: firmware.len(),
            max: MAX_FIRMWARE_LEN,
        })?;
        let sensors = Vec::from_slice(sensors).map_err(|_| ConfigError::TooManySensors {
            count: sensors.len(),
            max: MAX_SENSORS,
        })?;
        Ok(Self {
            firmware,
            boot_id,
            reset_reason,
            sensors,
            device: DeviceConfig::default(),
            backoff: BackoffConfig {
                seed: u64::from(boot_id),
                ..BackoffConfig::default()
            },
            max_in_flight: 4,
            handshake_timeout_ms: 10_000,
            dead_after_heartbeats: 3,
            follow_hub_config: true,
            outbox_max_bytes: usize::MAX,
            outbox_max_frames: usize::MAX,
        })
    }
}

/// Hold settings (from the hub or the board) to bounds the core can honour: a zero interval
/// would spin, a batch larger than the protocol allows could not be encoded, an age beyond the
/// batch span could not be stamped.
pub fn sanitize(c: DeviceConfig) -> DeviceConfig {
    DeviceConfig {
        sample_interval_ms: c.sample_interval_ms.max(MIN_SAMPLE_INTERVAL_MS),
        batch_max_readings: c.batch_max_readings.clamp(1, MAX_READINGS_PER_BATCH as u16),
        batch_max_age_ms: c.batch_max_age_ms.min(MAX_BATCH_SPAN_MS),
        heartbeat_ms: c.heartbeat_ms.max(MIN_HEARTBEAT_MS),
    }
}

/// Readings per second for Hello's `declared_rate`: every sensor once per interval, rounded
/// up so the hub's rate limit never bites a device doing what it said.
pub fn declared_rate(sensors: usize, sample_interval_ms: u32) -> u16 {
    let per_s = (sensors as u64 * 1000).div_ceil(u64::from(sample_interval_ms.max(1)));
    per_s.clamp(1, u64::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_config_from_the_hub_is_held_to_workable_bounds() {
        let c = sanitize(DeviceConfig {
            sample_interval_ms: 0,
            batch_max_readings: 0,
            batch_max_age_ms: u32::MAX,
            heartbeat_ms: 0,
        });
        assert_eq!(c.sample_interval_ms, MIN_SAMPLE_INTERVAL_MS);
        assert_eq!(c.batch_max_readings, 1);
        assert_eq!(c.batch_max_age_ms, MAX_BATCH_SPAN_MS);
        assert_eq!(c.heartbeat_ms, MIN_HEARTBEAT_MS);
    }

    #[test]
    fn declared_rate_rounds_up() {
        assert_eq!(declared_rate(4, 1000), 4);
        assert_eq!(declared_rate(4, 3000), 2);
        assert_eq!(declared_rate(1, 60_000), 1);
        assert_eq!(declared_rate(16, 10), 1600);
    }
}
