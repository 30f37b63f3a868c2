//! Bit packing for the payload's stream: most significant bit first, both within a field and
//! within a byte (the stream's first bit is bit 7 of its first byte). The writer pads the last
//! byte with zero bits; the reader checks that padding and that nothing follows it.
//!
//! The encoder writes each code through a [`BitSink`]: a [`BitCount`] to price the codecs a
//! series could use, then the [`BitWriter`] for the one it picks, so a price is always exactly
//! what the code costs.

use alloc::vec::Vec;

use super::PayloadError;

/// Where codes go: bytes, or a count of the bits they would take.
pub(super) trait BitSink {
    /// Writes the low `n` bits of `value`, most significant first. `n` is at most 64.
    fn bits(&mut self, value: u64, n: u32);

    fn bit(&mut self, bit: bool) {
        self.bits(u64::from(bit), 1);
    }
}

/// Counts the bits written to it.
#[derive(Default)]
pub(super) struct BitCount(pub(super) u64);

impl BitSink for BitCount {
    fn bits(&mut self, _value: u64, n: u32) {
        self.0 += u64::from(n);
    }
}

/// Appends bits to a byte vector.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Bits not yet pushed, right-aligned; fewer than 8 between calls.
    pending: u64,
    pending_len: u32,
}

impl<'a> BitWriter<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            pending: 0,
            pending_len: 0,
        }
    }

    /// Pads the last byte with zero bits.
    pub(super) fn finish(self) {
        if self.pending_len > 0 {
            self.out
                .push((self.pending << (8 - self.pending_len)) as u8);
        }
    }
}

impl BitSink for BitWriter<'_> {
    fn bits(&mut self, value: u64, n: u32) {
        if n > 32 {
            // Keep `pending` within 64 bits: at most 7 pending bits plus 32 new ones.
            self.bits(value >> 32, n - 32);
            self.bits(value, 32);
            return;
        }
        if n == 0 {
            return;
        }
        self.pending = (self.pending << n) | (value & (u64::MAX >> (64 - n)));
        self.pending_len += n;
        while self.pending_len >= 8 {
            self.pending_len -= 8;
            self.out.push((self.pending >> self.pending_len) as u8);
        }
        self.pending &= (1 << self.pending_len) - 1;
    }
}

/// Reads bits from a byte slice; reading past its end is `Truncated`.
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position of the next bit, counted from bit 7 of `bytes[0]`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) fn bit(&mut self) -> Result<bool, PayloadError> {
        Ok(self.bits(1)? == 1)
    }

    /// Reads `n` bits (at most 64), most significant first.
    pub(super) fn bits(&mut self, n: u32) -> Result<u64, PayloadError> {
        let mut left = n;
        let mut value = 0u64;
        while left > 0 {
            let byte = *self
                .bytes
                .get(self.pos / 8)
                .ok_or(PayloadError::Truncated)?;
            let available = 8 - (self.pos % 8) as u32;
            let take = available.min(left);
            let chunk = (u32::from(byte) >> (available - take)) & ((1 << take) - 1);
            value = (value << take) | u64::from(chunk);
            self.pos += take as usize;
            left -= take;
        }
        Ok(value)
    }

    /// Ends the stream: the rest of the current byte must be zero and no byte may follow.
    pub(super) fn finish(self) -> Result<(), PayloadError> {
        let used = self.pos.div_ceil(8);
        let padding_bits = (used * 8 - self.pos) as u32;
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
