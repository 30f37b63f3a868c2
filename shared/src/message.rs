//! Every message on the device socket. One binary WebSocket frame carries exactly one message,
//! postcard-encoded (see `codec` and `docs/protocol.md` for the byte layout).
//!
//! Enum variants are encoded by their position (a varint tag), so **new variants go at the
//! end** and existing ones never move: that is what keeps `telemetry.v1` stable.

use heapless::{String, Vec};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_FIRMWARE_LEN, MAX_READINGS_PER_BATCH, MAX_SENSORS, MAX_UNIT_LEN};

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) that names this wire version.
/// The major version lives here; a hub refuses subprotocols it does not speak.
pub const SUBPROTOCOL: &str = "telemetry.v1";

/// Device to hub.
// A Batch is large (its readings live inline: a device has no heap to box them into) and the
// other variants small; messages are built and decoded one at a time, so the size is paid once.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub enum DeviceMsg {
    /// First message on every connection; nothing else is accepted before it.
    Hello(Hello),
    /// Readings, kept by the device until acknowledged.
    Batch(Batch),
    /// Sent when the device has had nothing else to send for a heartbeat interval; the hub
    /// answers with `Pong`, so both ends see traffic on a live connection.
    Heartbeat(Heartbeat),
}

/// Hub to device. Every variant encodes to well under `MAX_HUB_FRAME_BYTES`.
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub enum HubMsg {
    /// Answer to `Hello`.
    Welcome(Welcome),
    /// Cumulative: every batch of this boot with a sequence number up to and including `seq`
    /// is committed to storage. Resends of such batches are acked again, never stored twice.
    Ack { seq: u32 },
    /// The batch `seq` will never be accepted; the device drops it from its outbox.
    Reject { seq: u32, reason: RejectReason },
    /// New settings for the device, applied at once.
    Config(DeviceConfig),
    /// Answer to `Heartbeat`: the hub's wall clock now, and the device uptime it echoes, so the
    /// device can correct its clock mapping and measure the round trip.
    Pong { hub_time_ms: u64, uptime_ms: u64 },
    /// Sent just before the hub closes the socket, so that clients which do not report close
    /// codes still learn why.
    Goodbye { reason: CloseReason },
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub struct Hello {
    /// Firmware version string, e.g. "sim-0.1.0" or "esp32c3-1.2.0".
    pub firmware: String<MAX_FIRMWARE_LEN>,
    /// Random per boot. Sequence numbers restart at 1 with every new boot id.
    pub boot_id: u32,
    /// Milliseconds since this boot, at the moment Hello was sent. The hub maps `Clock::Uptime`
    /// batches of this boot to wall time with it.
    pub uptime_ms: u64,
    /// Why the device last restarted (brown-out, panic, watchdog...).
    pub reset_reason: ResetReason,
    /// Readings per second the device means to produce (all sensors together), for the hub's
    /// rate limit: a device above this is limited, a device catching up on a backlog is not.
    pub declared_rate: u16,
    /// Sensors this device has. Batch readings may only name these ids.
    pub sensors: Vec<SensorDecl, MAX_SENSORS>,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub struct SensorDecl {
    pub id: u8,
    pub kind: SensorKind,
    /// Unit as shown to people: "°C", "%RH", "hPa", "V".
    pub unit: String<MAX_UNIT_LEN>,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    Temperature,
    Humidity,
    Pressure,
    Battery,
    Voltage,
    Current,
    Light,
    Co2,
    Other,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    Unknown,
    PowerOn,
    Software,
    Panic,
    Brownout,
    Watchdog,
    DeepSleepWake,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub struct Batch {
    /// 1, 2, 3... per boot. 0 is never a valid batch.
    pub seq: u32,
    /// Where the timestamps of this batch come from, and their base.
    pub clock: Clock,
    /// Readings this boot has dropped so far (outbox full, oldest dropped first): cumulative,
    /// so a lost batch never loses the count.
    pub dropped: u32,
    pub readings: Vec<Reading, MAX_READINGS_PER_BATCH>,
}

/// The time base of a batch. A reading's time is `base + offset_ms`.
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Unix milliseconds from a device clock that SNTP set.
    Sntp { base_ms: u64 },
    /// Unix milliseconds from a device clock mapped from its uptime with the hub's time
    /// (Welcome/Pong).
    Hub { base_ms: u64 },
    /// Milliseconds since boot: the device never learnt the time. The hub maps it with the
    /// uptime the device reported in Hello for the same boot.
    Uptime { base_ms: u64 },
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub sensor: u8,
    /// Milliseconds after the batch's clock base, at most `MAX_BATCH_SPAN_MS`.
    pub offset_ms: u32,
    /// Must be finite.
    pub value: f32,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub uptime_ms: u64,
}

#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, PartialEq)]
pub struct Welcome {
    /// The hub's wall clock (Unix ms) when it sent Welcome.
    pub hub_time_ms: u64,
    /// The highest seq of this boot already stored, if any: the device may drop those batches
    /// from its outbox without resending them.
    pub stored_seq: Option<u32>,
    pub config: DeviceConfig,
}

/// Settings the hub hands to a device.
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Milliseconds between samples of each sensor.
    pub sample_interval_ms: u32,
    /// Close a batch when it holds this many readings...
    pub batch_max_readings: u16,
    /// ...or when its first reading is this old.
    pub batch_max_age_ms: u32,
    /// Send a Heartbeat after this long without sending anything; the hub closes a device it
    /// has not heard from in three intervals.
    pub heartbeat_ms: u32,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            sample_interval_ms: 1000,
            batch_max_readings: 32,
            batch_max_age_ms: 1000,
            heartbeat_ms: 10_000,
        }
    }
}

/// Why a batch was refused for good.
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// seq 0 is not a batch.
    InvalidSeq,
    /// A batch with no readings.
    Empty,
    /// The reading at `index` is NaN or infinite.
    NonFiniteValue { index: u16 },
    /// The reading at `index` names a sensor that Hello did not declare.
    UndeclaredSensor { index: u16, sensor: u8 },
    /// The reading at `index` lies before 2020 or too far in the hub's future.
    TimestampOutOfRange { index: u16 },
    /// The reading at `index` has an offset beyond `MAX_BATCH_SPAN_MS`.
    SpanTooLong { index: u16 },
    /// The device sends more readings than it declared; the batch is dropped.
    RateLimited,
}

/// Why the hub closes a device socket (sent as `Goodbye` just before the close frame).
#[derive(Serialize, Deserialize, MaxSize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The hub is shutting down (close 1001); reconnect later.
    Shutdown,
    /// A newer connection with the same token took over (close 4000).
    Replaced,
    /// The device's token was revoked (close 1008); do not reconnect.
    Revoked,
    /// The hub is at capacity (close 1013); reconnect later.
    Overloaded,
    /// Repeated invalid batches or a broken protocol rule (close 1008).
    PolicyViolation,
    /// Nothing heard from the device within three heartbeat intervals (close 4001).
    Timeout,
    /// A hub-side failure (close 1011); reconnect later.
    Internal,
    /// A frame the hub cannot use: a text frame (close 1003), bytes that do not decode
    /// (1007), or a frame over the size limit (1009). Fix the client.
    BadFrame,
}
