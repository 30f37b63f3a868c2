//! The wire protocol between sensor devices and the hub, used by both ends.
//!
//! `no_std`, no I/O, no clock: pure types and functions over bytes and values.
//!
//! Modules, in the order a frame passes through them:
//! - [`limits`]: every bound (frame size, readings per batch, sensors per device).
//! - [`message`]: the messages ([`DeviceMsg`], [`HubMsg`]) and their parts.
//! - [`codec`]: frame bytes <-> messages (postcard), never panicking on any input.
//! - [`frame`]: the hub's decoder of device frames, the same answers as [`codec`] without
//!   building a whole `DeviceMsg` (a batch's readings go to a buffer the caller keeps).
//! - [`validate`]: the rules a decoded message must satisfy (finite values, declared sensors,
//!   plausible timestamps, sequence numbers).
//! - [`payload`]: the compressed storage payload of one batch (shared or delta-of-delta
//!   timestamps; decimal deltas or XOR'd floats per series), used by the hub's store.
//! - [`error`]: the errors of all of the above.
//! - [`board_config`]: the per-device config image a board reads from flash (postcard + CRC).
//!
//! The byte layout, with golden vectors, is in `docs/protocol.md`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod board_config;
pub mod codec;
pub mod error;
#[cfg(feature = "alloc")]
pub mod frame;
pub mod limits;
pub mod message;
pub mod payload;
pub mod validate;

pub use codec::{decode_device, decode_hub, encode};
pub use error::{DecodeError, EncodeError, HelloError};
#[cfg(feature = "alloc")]
pub use frame::{BatchView, DeviceFrame, decode_device_frame};
pub use message::*;
#[cfg(feature = "alloc")]
pub use validate::validate_view;
pub use validate::{
    SensorSet, SeqVerdict, check_seq, validate_batch, validate_hello, validate_readings,
};
