//! Bit packing for the payload's stream: most significant bit first, both within a field and
//! within a byte (the stream's first bit is bit 7 of its first byte). The writer pads the last
//! byte with zero bits; the reader checks that padding and that nothing follows it.
//!
//! Both sides move whole fields, not bits: the writer gathers fields in a 64-bit accumulator and
//! stores 32 bits at a time; the reader loads the 8 bytes under its position and takes a field
//! (or counts a run of 1-bits, for the unary codes) with one shift.

use alloc::vec::Vec;

use super::PayloadError;

/// Where a [`BitWriter`] stores its bytes.
pub(super) trait ByteSink {
    fn extend(&mut self, bytes: &[u8]);
}

impl ByteSink for Vec<u8> {
    #[inline(always)]
    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Bytes written into a buffer sized beforehand for all of them.
pub(super) struct FilledBuffer<'a> {
    pub(super) bytes: &'a mut [u8],
    pub(super) len: usize,
}

impl FilledBuffer<'_> {
    pub(super) fn filled(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl ByteSink for FilledBuffer<'_> {
    #[inline(always)]
    fn extend(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }
}

/// Appends bits to a byte sink.
pub(super) struct BitWriter<'a, S: ByteSink = Vec<u8>> {
    out: &'a mut S,
    /// Bits not yet stored, right-aligned; the bits above the lowest `len` are stale.
    acc: u64,
    /// Fewer than 32 between calls, so a field of up to 32 bits always fits in `acc`.
    len: u32,
}

impl<'a, S: ByteSink> BitWriter<'a, S> {
    pub(super) fn new(out: &'a mut S) -> Self {
        Self {
            out,
            acc: 0,
            len: 0,
        }
    }

    /// Writes `value`, which has at most `n` bits, most significant first. `n` is at most 64.
    #[inline]
    pub(super) fn bits(&mut self, value: u64, n: u32) {
        debug_assert!(
            n == 64 || value >> n == 0,
            "{value:#x} has more than {n} bits"
        );
        if n > 32 {
            self.short(value >> 32, n - 32);
            self.short(value & u64::from(u32::MAX), 32);
        } else {
            self.short(value, n);
        }
    }

    pub(super) fn bit(&mut self, bit: bool) {
        self.short(u64::from(bit), 1);
    }

    /// Writes `value`, of at most `n` bits; `n` is at most 32 (most codes: no test for wider).
    #[inline(always)]
    pub(super) fn short(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 32);
        self.acc = (self.acc << n) | value;
        self.len += n;
        if self.len >= 32 {
            self.len -= 32;
            let word = (self.acc >> self.len) as u32;
            self.out.extend(&word.to_be_bytes());
        }
    }

    /// Stores what is left, the last byte padded with zero bits.
    pub(super) fn finish(self) {
        if self.len > 0 {
            let word = ((self.acc << (32 - self.len)) as u32).to_be_bytes();
            self.out.extend(&word[..self.len.div_ceil(8) as usize]);
        }
    }
}

/// Reads bits from a byte slice; reading past its end is `Truncated`.
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// The first byte not yet loaded into `buf`.
    next: usize,
    /// The next bits to read, left-aligned: `have` of them, then (once every byte is loaded)
    /// zeros or else the bits of the bytes from `next` on.
    buf: u64,
    have: u32,
}

/// The widest field a refilled [`BitReader`] holds whole, unless the bytes end first.
const REFILLED_BITS: u32 = 56;

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            buf: 0,
            have: 0,
        }
    }

    /// Loads bytes until `buf` holds at least [`REFILLED_BITS`] bits or every byte.
    #[inline(always)]
    fn refill(&mut self) {
        if self.have >= REFILLED_BITS {
            return;
        }
        if let Some(eight) = self.bytes.get(self.next..self.next + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            // Whole bytes only; the bits past them are the same bytes' bits, so they agree
            // with what the next refill loads there.
            self.buf |= u64::from_be_bytes(word) >> self.have;
            let loaded = (63 - self.have) / 8;
            self.next += loaded as usize;
            self.have += 8 * loaded;
        } else {
            while self.have <= 56 {
                let Some(&byte) = self.bytes.get(self.next) else {
                    return;
                };
                self.buf |= u64::from(byte) << (56 - self.have);
                self.next += 1;
                self.have += 8;
            }
        }
    }

    /// Moves past `n` bits (at most [`REFILLED_BITS`], after a refill), if there are that many.
    #[inline(always)]
    fn consume(&mut self, n: u32) -> Result<(), PayloadError> {
        if n > self.have {
            return Err(PayloadError::Truncated);
        }
        self.buf <<= n;
        self.have -= n;
        Ok(())
    }

    pub(super) fn bit(&mut self) -> Result<bool, PayloadError> {
        Ok(self.bits(1)? == 1)
    }

    /// Reads `n` bits (at most 64), most significant first.
    #[inline]
    pub(super) fn bits(&mut self, n: u32) -> Result<u64, PayloadError> {
        if n > REFILLED_BITS {
            return self.wide_field(n);
        }
        self.field(n)
    }

    /// A field of more than [`REFILLED_BITS`] bits, in two.
    #[cold]
    fn wide_field(&mut self, n: u32) -> Result<u64, PayloadError> {
        let high = self.field(n - 32)?;
        Ok((high << 32) | self.field(32)?)
    }

    /// A field of at most [`REFILLED_BITS`] bits.
    #[inline(always)]
    fn field(&mut self, n: u32) -> Result<u64, PayloadError> {
        self.refill();
        // Two shifts, so that a 0-bit field shifts by 64 in all and reads 0.
        let value = (self.buf >> 1) >> (63 - n);
        self.consume(n)?;
        Ok(value)
    }

    /// Reads a run of 1-bits ended by a 0-bit, or `max` 1-bits with no 0-bit after them (`max`
    /// is at most 32): the unary codes. Returns the number of 1-bits.
    #[inline]
    pub(super) fn ones(&mut self, max: u32) -> Result<u32, PayloadError> {
        self.refill();
        let ones = self.buf.leading_ones().min(max);
        self.consume(if ones < max { ones + 1 } else { ones })?;
        Ok(ones)
    }

    /// Ends the stream: the rest of the current byte must be zero and no byte may follow.
    pub(super) fn finish(self) -> Result<(), PayloadError> {
        let pos = self.next * 8 - self.have as usize;
        let used = pos.div_ceil(8);
        let padding_bits = (used * 8 - pos) as u32;
        if padding_bits > 0 {
            let last = self.bytes.get(used - 1).copied().unwrap_or(0);
            if u32::from(last) & ((1 << padding_bits) - 1) != 0 {
                return Err(PayloadError::NonZeroPadding);
            }
        }
        match self.bytes.len().saturating_sub(used) {
            0 => Ok(()),
            extra => Err(PayloadError::TrailingBytes { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_packed_most_significant_bit_first_and_padded_with_zeros() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.bits(0b101, 3);
        w.bits(0x1ff, 9);
        w.bit(true);
        w.finish();
        assert_eq!(out, [0b1011_1111, 0b1111_1000]);
    }

    #[test]
    fn what_is_written_reads_back_for_every_width() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        let fields: Vec<(u64, u32)> = (0..=64)
            .map(|n| {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                (0xdead_beef_cafe_f00d_u64.rotate_left(n) & mask, n)
            })
            .collect();
        for &(v, n) in &fields {
            w.bits(v, n);
        }
        w.finish();
        let mut r = BitReader::new(&out);
        for &(v, n) in &fields {
            assert_eq!(r.bits(n), Ok(v), "width {n}");
        }
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn unary_runs_stop_at_a_zero_bit_or_at_their_longest() {
        // `110` `11111` (max 5, no 0-bit) `0` `10`, then padding.
        let mut r = BitReader::new(&[0b1101_1111, 0b0100_0000]);
        assert_eq!(r.ones(5), Ok(2));
        assert_eq!(r.ones(5), Ok(5));
        assert_eq!(r.ones(5), Ok(0));
        assert_eq!(r.ones(5), Ok(1));
        assert_eq!(r.finish(), Ok(()));
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.ones(5), Ok(5));
        assert_eq!(r.ones(5), Err(PayloadError::Truncated));
    }

    #[test]
    fn reading_past_the_end_is_truncated() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(6), Ok(0x3f));
        assert_eq!(r.bits(3), Err(PayloadError::Truncated));
    }

    #[test]
    fn set_padding_bits_and_extra_bytes_are_refused() {
        let mut r = BitReader::new(&[0b1010_0001]);
        r.bits(3).unwrap();
        assert_eq!(r.finish(), Err(PayloadError::NonZeroPadding));
        let mut r = BitReader::new(&[0b1010_0000, 0, 0]);
        r.bits(3).unwrap();
        assert_eq!(r.finish(), Err(PayloadError::TrailingBytes { extra: 2 }));
    }
}
