//! The JSON events on `/ws/live` (documented in `docs/api.md`): plain `serde_json` writes of
//! borrowed data, done once per event by the first client that sends it.

use serde::Serialize;
use shared::payload::Point;

use crate::store::TimeSource;

/// `{"type":"readings", ...}`: new readings of one sensor of one device.
#[derive(Serialize)]
pub struct Readings<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub device: &'a str,
    pub sensor: u8,
    pub seq: u32,
    pub time_source: &'static str,
    /// `[ts_ms, value]` pairs, oldest first.
    pub points: Vec<(i64, f32)>,
}

impl<'a> Readings<'a> {
    pub fn new(
        device: &'a str,
        sensor: u8,
        seq: u32,
        time_source: TimeSource,
        points: &[Point],
    ) -> Self {
        Self {
            kind: "readings",
            device,
            sensor,
            seq,
            time_source: time_source.as_str(),
            points: points
                .iter()
                .filter(|p| p.sensor == sensor)
                .map(|p| (p.ts_ms, p.value))
                .collect(),
        }
    }
}

/// `{"type":"device", ...}`: a device came online or went offline.
#[derive(Serialize)]
pub struct DeviceStatus<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub device: &'a str,
    pub online: bool,
    pub firmware: Option<&'a str>,
    pub ts_ms: i64,
}

/// `{"type":"lagged","missed":N}`: this client was too slow and skipped N events.
#[derive(Serialize)]
pub struct Lagged {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub missed: u64,
}
