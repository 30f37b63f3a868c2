//! The storage payload of one batch: its readings, compressed.
//!
//! TEMPORARY plain layout (being replaced by the delta-of-delta / XOR codec): a varint count,
//! then per point: sensor u8, ts_ms i64 LE, value f32 LE. The public interface below is the
//! contract the hub's store uses and stays.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

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
    #[error("payload ends early")]
    Truncated,
    #[error("payload is malformed")]
    Malformed,
}

/// Append the encoding of `points` to `out`. Points may come in any order; decoding returns
/// them grouped by sensor (ascending), each sensor's points in the order given.
#[cfg(feature = "alloc")]
pub fn encode(points: &[Point], out: &mut Vec<u8>) {
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    let mut sorted: Vec<Point> = points.to_vec();
    sorted.sort_by_key(|p| p.sensor);
    for p in &sorted {
        out.push(p.sensor);
        out.extend_from_slice(&p.ts_ms.to_le_bytes());
        out.extend_from_slice(&p.value.to_le_bytes());
    }
}

/// Decode a payload, appending its points to `out`.
#[cfg(feature = "alloc")]
pub fn decode(bytes: &[u8], out: &mut Vec<Point>) -> Result<(), PayloadError> {
    let n = u32::from_le_bytes(bytes.get(..4).ok_or(PayloadError::Truncated)?.try_into().map_err(|_| PayloadError::Malformed)?) as usize;
    let body = &bytes[4..];
    if body.len() != n * 13 {
        return Err(PayloadError::Malformed);
    }
    for c in body.chunks_exact(13) {
        out.push(Point {
            sensor: c[0],
            ts_ms: i64::from_le_bytes(c[1..9].try_into().map_err(|_| PayloadError::Malformed)?),
            value: f32::from_le_bytes(c[9..13].try_into().map_err(|_| PayloadError::Malformed)?),
        });
    }
    Ok(())
}
