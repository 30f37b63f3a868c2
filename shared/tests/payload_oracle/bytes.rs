//! The byte-aligned part of a payload (its header): unsigned LEB128 varints and zigzag for
//! signed numbers, written to a vector and read from a cursor that refuses to run past the end.

use alloc::vec::Vec;

use super::PayloadError;

/// Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more.
pub(super) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes that [`write_varint`] takes for `v`.
pub(super) fn varint_len(v: u64) -> u32 {
    (64 - (v | 1).leading_zeros()).div_ceil(7)
}

/// 0, -1, 1, -2, 2, ... as 0, 1, 2, 3, 4, ...: small magnitudes of either sign stay small.
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Reads the header; what is left when it is done is the bit stream.
pub(super) struct ByteCursor<'a> {
    pub(super) rest: &'a [u8],
}

impl ByteCursor<'_> {
    pub(super) fn u8(&mut self) -> Result<u8, PayloadError> {
        let (&b, rest) = self.rest.split_first().ok_or(PayloadError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    pub(super) fn u32_be(&mut self) -> Result<u32, PayloadError> {
        let mut v = 0u32;
        for _ in 0..4 {
            v = (v << 8) | u32::from(self.u8()?);
        }
        Ok(v)
    }

    pub(super) fn varint(&mut self) -> Result<u64, PayloadError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let group = u64::from(b & 0x7f);
            if shift == 63 && group > 1 {
                return Err(PayloadError::Malformed);
            }
            v |= group << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PayloadError::Malformed)
    }
}
