//! The payload codec as it was before the encoder was rewritten for speed (commit 479ff43,
//! `shared/src/payload/`, unit tests left out): bit by bit, plain and slow, and the reference
//! that the format must not drift from. `payload_format.rs` checks the shipped codec against it
//! byte for byte. Do not "fix" or speed this copy up: its job is to stay as it was.

#![allow(dead_code)]

mod bits;
mod bytes;
mod codec;
mod values;

pub use codec::{decode, encode};
pub use shared::payload::{FORMAT_VERSION, PayloadError, Point};
