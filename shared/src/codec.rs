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
    decode(frame, MAX_DEVICE_FRAME_BYTES)
}

/// Decode a hub-to-device frame.
pub fn decode_hub(frame: &[u8]) -> Result<HubMsg, DecodeError> {
    decode(frame, MAX_HUB_FRAME_BYTES)
}

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

fn decode<'a, M: Deserialize<'a>>(frame: &'a [u8], max: usize) -> Result<M, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    if frame.len() > max {
        return Err(DecodeError::TooLarge { size: frame.len(), max });
    }
    let (msg, rest) = postcard::take_from_bytes(frame).map_err(map_postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

fn map_postcard(e: postcard::Error) -> DecodeError {
    use postcard::Error as P;
    match e {
        P::DeserializeUnexpectedEnd => DecodeError::Truncated,
        P::DeserializeBadEnum => DecodeError::UnknownVariant,
        P::DeserializeBadUtf8 | P::DeserializeBadChar => DecodeError::InvalidUtf8,
        // heapless reports a list or string over its capacity as a custom serde error.
        P::SerdeDeCustom => DecodeError::TooLong,
        _ => DecodeError::Malformed,
    }
}
