//! Errors of the protocol crate. Each says what went wrong and, where a bound was crossed,
//! by how much.

use thiserror::Error;

/// A frame that is not one well-formed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {size} bytes is over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("frame ends early (truncated message)")]
    Truncated,
    #[error("unknown message type {tag}")]
    UnknownMessage { tag: u8 },
    #[error("a string is not valid UTF-8")]
    InvalidUtf8,
    #[error(
        "a value out of its range: an unknown enum variant, or a list or string over its limit"
    )]
    InvalidValue,
    #[error("malformed frame")]
    Malformed,
    #[error("{extra} bytes after the end of the message")]
    TrailingBytes { extra: usize },
}

/// A message that does not fit the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("message does not fit a buffer of {capacity} bytes")]
    BufferFull { capacity: usize },
    #[error("message could not be serialized")]
    Serialize,
}

/// A Hello the hub refuses (the connection is closed with 1008 after a Goodbye).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("a device must declare at least one sensor")]
    NoSensors,
    #[error("sensor id {id} is declared twice")]
    DuplicateSensor { id: u8 },
    #[error("firmware version is empty")]
    EmptyFirmware,
}
