//! The byte-aligned part of a payload (its header): unsigned LEB128 varints and zigzag for
//! signed numbers, written to a vector and read from a cursor that refuses to run past the end.

use alloc::vec::Vec;

use super::PayloadError;

/// Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more.
pub(super) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    // Gathered first, then stored at once, all 10 bytes (a fixed-size copy, not a call) and
    // the unused ones dropped: one test of room, not one per byte.
    let mut bytes = [0u8; 10];
    let mut len = 0;
    while v >= 0x80 && len < 9 {
        bytes[len] = v as u8 | 0x80;
        v >>= 7;
        len += 1;
    }
    bytes[len] = v as u8;
    let end = out.len() + len + 1;
    out.extend_from_slice(&bytes);
    out.truncate(end);
}

/// Bytes that [`write_varint`] takes for `v`.
pub(super) fn varint_len(v: u64) -> u32 {
    /// By the number of leading zeros: a table, not a division by 7.
    const BY_LEADING_ZEROS: [u8; 64] = {
        let mut table = [0; 64];
        let mut zeros = 0;
        while zeros < 64 {
            table[zeros] = (64 - zeros as u32).div_ceil(7) as u8;
            zeros += 1;
        }
        table
    };
    u32::from(BY_LEADING_ZEROS[((v | 1).leading_zeros() & 63) as usize])
}

/// 0, -1, 1, -2, 2, ... as 0, 1, 2, 3, 4, ...: small magnitudes of either sign stay small.
pub(super) const fn zigzag(v: i64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_is_what_write_varint_writes() {
        for v in [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(varint_len(v) as usize, out.len(), "{v:#x}");
            assert_eq!(ByteCursor { rest: &out }.varint(), Ok(v));
        }
    }

    #[test]
    fn zigzag_interleaves_signs_and_covers_every_i64() {
        let pairs = [(0, 0), (-1, 1), (1, 2), (-2, 3), (i64::MAX, u64::MAX - 1)];
        for (signed, unsigned) in pairs {
            assert_eq!(zigzag(signed), unsigned);
            assert_eq!(unzigzag(unsigned), signed);
        }
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
    }
}
