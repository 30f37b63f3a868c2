//! Device frames as the hub reads them: [`decode_device_frame`] accepts and refuses exactly what
//! [`decode_device`](crate::decode_device) does, with the same errors, but builds no
//! [`DeviceMsg`](crate::DeviceMsg). A `DeviceMsg::Batch` holds room for
//! `MAX_READINGS_PER_BATCH` readings (3 KB) whatever it carries, which every decode zeroes,
//! fills and moves; here a batch's readings go into a buffer the caller keeps, 12 bytes each,
//! and what validation needs to know of them is gathered on the way, so a valid batch is judged
//! without walking them again ([`validate_view`](crate::validate_view)).
//!
//! `shared/tests/codec_props.rs` holds the two decoders to the same answers on generated,
//! mutated and arbitrary frames.

use alloc::boxed::Box;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::codec::{DEVICE_MSG_TAGS, check_frame, map_postcard, whole};
use crate::error::DecodeError;
use crate::limits::{MAX_DEVICE_FRAME_BYTES, MAX_READINGS_PER_BATCH};
use crate::message::{Batch, Clock, Heartbeat, Hello, Reading};
use crate::validate::SensorSet;

/// The messages of [`DeviceMsg`](crate::DeviceMsg), a batch as a [`BatchView`]. The rare
/// Hello (576 bytes) is boxed, so a frame's answer stays small to move.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceFrame<'r> {
    Hello(Box<Hello>),
    Batch(BatchView<'r>),
    Heartbeat(Heartbeat),
}

/// Decode a device-to-hub frame; a batch's readings replace what `readings` held.
pub fn decode_device_frame<'r>(
    frame: &[u8],
    readings: &'r mut Vec<Reading>,
) -> Result<DeviceFrame<'r>, DecodeError> {
    // A tag below DEVICE_MSG_TAGS is a one-byte varint, so the body starts at byte 1.
    let tag = check_frame(frame, MAX_DEVICE_FRAME_BYTES, DEVICE_MSG_TAGS)?;
    let body = &frame[1..];
    match tag {
        0 => whole(body).map(|hello| DeviceFrame::Hello(Box::new(hello))),
        1 => BatchView::parse(body, readings).map(DeviceFrame::Batch),
        _ => whole(body).map(DeviceFrame::Heartbeat),
    }
}

/// A decoded batch, its readings in the caller's buffer, with what validation needs to know of
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchView<'r> {
    pub seq: u32,
    pub clock: Clock,
    pub dropped: u32,
    pub readings: &'r [Reading],
    /// Every sensor a reading names.
    sensors: SensorSet,
    /// The smallest and largest `offset_ms` (`u32::MAX` and 0 when there are no readings).
    min_offset: u32,
    max_offset: u32,
    /// Whether every value is finite.
    finite: bool,
}

/// The fields of [`Batch`] before its readings, in the same order.
#[derive(Deserialize)]
struct BatchHead {
    seq: u32,
    clock: Clock,
    dropped: u32,
}

impl<'r> BatchView<'r> {
    /// Decode a batch body (the frame after its tag) the way postcard decodes a `Batch`: the
    /// header, the reading count, then each reading in turn; a count over the limit fails
    /// with `InvalidValue` once the reading past the limit has decoded (as heapless refuses
    /// the push), and any earlier reading's error comes first.
    fn parse(body: &[u8], out: &'r mut Vec<Reading>) -> Result<Self, DecodeError> {
        let (head, rest) = postcard::take_from_bytes::<BatchHead>(body).map_err(map_postcard)?;
        let (count, mut left) = take_varint(rest, usize::BITS)?;
        // Sized first and filled in place rather than pushed, so the buffer's length stays out
        // of the loop; what it held is overwritten, so a buffer reused for batches of one size
        // is not even zeroed.
        out.resize(
            count.min(MAX_READINGS_PER_BATCH as u64) as usize,
            Reading::default(),
        );
        let mut sensors = SensorSet::default();
        let (mut min_offset, mut max_offset, mut finite) = (u32::MAX, 0, true);
        for slot in out.iter_mut() {
            let (reading, after) = take_reading(left)?;
            left = after;
            sensors.insert(reading.sensor);
            min_offset = min_offset.min(reading.offset_ms);
            max_offset = max_offset.max(reading.offset_ms);
            finite &= reading.value.is_finite();
            // Field by field: a whole-struct copy would also copy its padding.
            (slot.sensor, slot.offset_ms, slot.value) =
                (reading.sensor, reading.offset_ms, reading.value);
        }
        if count > MAX_READINGS_PER_BATCH as u64 {
            // The reading past the limit is decoded before the limit speaks, as postcard does.
            take_reading(left)?;
            return Err(DecodeError::InvalidValue);
        }
        if !left.is_empty() {
            return Err(DecodeError::TrailingBytes { extra: left.len() });
        }
        Ok(Self {
            seq: head.seq,
            clock: head.clock,
            dropped: head.dropped,
            readings: out,
            sensors,
            min_offset,
            max_offset,
            finite,
        })
    }

    /// Every sensor the readings name.
    pub fn sensors(&self) -> &SensorSet {
        &self.sensors
    }

    /// The smallest and largest `offset_ms` of the readings; `None` for an empty batch.
    pub fn offset_range(&self) -> Option<(u32, u32)> {
        (!self.readings.is_empty()).then_some((self.min_offset, self.max_offset))
    }

    /// Whether every reading's value is finite.
    pub fn all_finite(&self) -> bool {
        self.finite
    }

    /// The batch as [`decode_device`](crate::decode_device) returns it.
    pub fn to_batch(&self) -> Batch {
        Batch {
            seq: self.seq,
            clock: self.clock,
            dropped: self.dropped,
            // At most MAX_READINGS_PER_BATCH readings: `parse` refuses more.
            readings: self.readings.iter().copied().collect(),
        }
    }
}

/// One `Reading` as postcard lays it out: the sensor byte, the offset as a varint, the value's
/// four bytes little-endian.
#[inline(always)]
fn take_reading(bytes: &[u8]) -> Result<(Reading, &[u8]), DecodeError> {
    // Most readings (offsets under 16.4 s, whose varint takes one or two bytes) are read
    // whole from one little-endian word; the others, and a frame's last readings, field by
    // field.
    if let Some(word) = bytes.first_chunk::<8>().map(|w| u64::from_le_bytes(*w)) {
        // Whether the offset's varint takes a second byte, and whether that one ends it.
        let long = (word >> 15) & 1;
        if long == 0 || word & 0x80_0000 == 0 {
            let offset_ms = (word >> 8) & 0x7f | ((word >> 16) & 0x7f & long.wrapping_neg()) << 7;
            let len = 2 + long as usize;
            let reading = Reading {
                sensor: word as u8,
                offset_ms: offset_ms as u32,
                value: f32::from_bits((word >> (16 + 8 * long)) as u32),
            };
            return Ok((reading, &bytes[len + 4..]));
        }
    }
    take_reading_by_fields(bytes)
}

/// [`take_reading`] field by field, with every check.
#[inline(never)]
fn take_reading_by_fields(bytes: &[u8]) -> Result<(Reading, &[u8]), DecodeError> {
    let (&sensor, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    let (offset_ms, rest) = take_varint(rest, u32::BITS)?;
    let (value, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(DecodeError::Truncated)?;
    let reading = Reading {
        sensor,
        // take_varint with 32 bits returns at most u32::MAX.
        offset_ms: offset_ms as u32,
        value: f32::from_le_bytes(*value),
    };
    Ok((reading, rest))
}

/// An unsigned varint of a `bits`-wide integer, with postcard's rules: at most
/// ceil(bits / 7) bytes, and in the longest form a last byte that fits the bits left.
#[inline]
fn take_varint(bytes: &[u8], bits: u32) -> Result<(u64, &[u8]), DecodeError> {
    let max_len = bits.div_ceil(7) as usize;
    let max_last = (1u8 << (bits % 7)) - 1;
    let mut out = 0u64;
    for i in 0..max_len {
        let &b = bytes.get(i).ok_or(DecodeError::Truncated)?;
        out |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i == max_len - 1 && b > max_last {
                return Err(DecodeError::Malformed);
            }
            return Ok((out, &bytes[i + 1..]));
        }
    }
    Err(DecodeError::Malformed)
}
