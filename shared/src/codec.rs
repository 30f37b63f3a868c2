//! Bytes <-> messages. One frame is one postcard message, nothing before or after it.
//!
//! Decoding checks the size first, never panics on any input, refuses trailing bytes, and
//! says which way a frame is broken (`DecodeError`), so the hub can answer with the right close
//! code and a client author can tell truncation from garbage.

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, EncodeError};
use crate::limits::{MAX_DEVICE_FRAME_BYTES, MAX_HUB_FRAME_BYTES};
use crate::message::{DeviceMsg, HubMsg};

/// Decode a device-to-hub frame.
pub fn decode_device(frame: &[u8]) -> Result<DeviceMsg, DecodeError> {
    decode(frame, MAX_DEVICE_FRAME_BYTES, DEVICE_MSG_TAGS)
}

/// Decode a hub-to-device frame.
pub fn decode_hub(frame: &[u8]) -> Result<HubMsg, DecodeError> {
    decode(frame, MAX_HUB_FRAME_BYTES, HUB_MSG_TAGS)
}

/// Variants of `DeviceMsg` and `HubMsg`: the first byte of a frame is below these.
pub(crate) const DEVICE_MSG_TAGS: u8 = 3;
const HUB_MSG_TAGS: u8 = 6;

/// Encode a message into `buf`, returning the bytes written.
pub fn encode<'b, M: Serialize>(msg: &M, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeError> {
    let capacity = buf.len();
    postcard::to_slice(msg, buf).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => EncodeError::BufferFull { capacity },
        _ => EncodeError::Serialize,
    })
}

/// Encode a message into a new `Vec`.
#[cfg(feature = "alloc")]
pub fn to_vec<M: Serialize>(msg: &M) -> Result<alloc::vec::Vec<u8>, EncodeError> {
    postcard::to_allocvec(msg).map_err(|_| EncodeError::Serialize)
}

fn decode<'a, M: Deserialize<'a>>(frame: &'a [u8], max: usize, tags: u8) -> Result<M, DecodeError> {
    check_frame(frame, max, tags)?;
    whole(frame)
}

/// What is checked before any decoding: a frame that is not empty, a known message tag (its
/// first byte), a size within `max`. Returns the tag.
pub(crate) fn check_frame(frame: &[u8], max: usize, tags: u8) -> Result<u8, DecodeError> {
    let Some(&tag) = frame.first() else {
        return Err(DecodeError::Empty);
    };
    // The message tag is a one-byte varint while there are fewer than 128 message types;
    // checking it first tells "a newer message I do not know" apart from garbage.
    if tag >= tags {
        return Err(DecodeError::UnknownMessage { tag });
    }
    if frame.len() > max {
        return Err(DecodeError::TooLarge {
            size: frame.len(),
            max,
        });
    }
    Ok(tag)
}

/// One value that takes up all of `bytes`.
pub(crate) fn whole<'a, M: Deserialize<'a>>(bytes: &'a [u8]) -> Result<M, DecodeError> {
    let (msg, rest) = postcard::take_from_bytes(bytes).map_err(map_postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

pub(crate) fn map_postcard(e: postcard::Error) -> DecodeError {
    use postcard::Error as P;
    match e {
        P::DeserializeUnexpectedEnd => DecodeError::Truncated,
        P::DeserializeBadUtf8 | P::DeserializeBadChar => DecodeError::InvalidUtf8,
        // Unknown enum variants and heapless lists or strings over their capacity both reach
        // us as serde's custom errors.
        P::DeserializeBadEnum | P::SerdeDeCustom => DecodeError::InvalidValue,
        _ => DecodeError::Malformed,
    }
}
