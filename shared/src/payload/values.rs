//! The values of one series, in whichever of two codecs codes them in fewer bits:
//! - **decimal**: when every value is the `f32` nearest to a whole number of steps of 1, 0.1,
//!   0.01 or 0.001 (what devices report: sensors have a resolution, firmware rounds to it), the
//!   series is coded as those integers: the first in the header, then a Rice code per value of
//!   its delta, or delta-of-delta, in steps. Sensor noise of a few steps costs 2 to 5 bits.
//! - **XOR** (Gorilla): any `f32` bit pattern; each value as its XOR with the previous one.
//!   Steps of 0.01 have no short binary form, so their XORs spread over the mantissa: 8 to 30
//!   bits per changed value.
//!
//! The encoder finds the step counts (`steps`), prices every codec the series allows and keeps
//! the cheapest (`price`).

use alloc::vec::Vec;

use super::bits::{BitReader, BitWriter, ByteSink};
use super::bytes::{ByteCursor, unzigzag, write_varint, zigzag};
use super::{PayloadError, Point};

/// Bits 6..0 of a series' mode byte: `0` for XOR, else `1 o dd kkk`: decimal, `o` = 1 for
/// delta-of-deltas, `dd` decimals, `kkk` the Rice parameter.
const DECIMAL: u8 = 0x40;
const DELTA_OF_DELTA: u8 = 0x20;
const DECIMALS_SHIFT: u8 = 3;

/// Largest Rice parameter: 3 bits of the mode byte.
pub(super) const MAX_RICE_K: u32 = 7;

/// A Rice quotient this large is not written in unary: the code is this many 1-bits, 6 bits of
/// `len - 1`, then the `len` bits of the zigzag'd number.
pub(super) const RICE_ESCAPE: u32 = 8;

/// A decimal series' parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Decimal {
    /// Values are multiples of 10^-decimals: 0..=3.
    pub(super) decimals: u8,
    /// Codes are delta-of-deltas of the step counts, else their deltas.
    pub(super) delta_of_delta: bool,
    /// How many low bits of a zigzag'd code are written as they are: 0..=7.
    pub(super) rice_k: u32,
}

/// How a series' values are coded, as its mode byte names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ValueCodec {
    Xor,
    Decimal(Decimal),
}

impl ValueCodec {
    pub(super) fn mode_bits(self) -> u8 {
        match self {
            Self::Xor => 0,
            Self::Decimal(d) => {
                DECIMAL
                    | if d.delta_of_delta { DELTA_OF_DELTA } else { 0 }
                    | (d.decimals << DECIMALS_SHIFT)
                    | d.rice_k as u8
            }
        }
    }

    /// The codec of mode bits 6..0 (bit 7 must be clear); `None` if no codec has them.
    pub(super) fn from_mode_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::Xor),
            _ if bits & 0xc0 == DECIMAL => Some(Self::Decimal(Decimal {
                decimals: (bits >> DECIMALS_SHIFT) & 3,
                delta_of_delta: bits & DELTA_OF_DELTA != 0,
                rice_k: u32::from(bits) & MAX_RICE_K,
            })),
            _ => None,
        }
    }
}

/// The first value, in the series header: 4 bytes (big-endian `f32` bits) for XOR, the
/// zigzag varint of its step count for decimal. `values` are the `f32` bits of a series'
/// values, and `steps` their step counts under a decimal `codec` (unused for XOR).
pub(super) fn write_first(out: &mut Vec<u8>, codec: ValueCodec, values: &[u32], steps: &[i64]) {
    match codec {
        ValueCodec::Xor => {
            if let Some(first) = values.first() {
                out.extend_from_slice(&first.to_be_bytes());
            }
        }
        ValueCodec::Decimal(_) => {
            if let Some(&first) = steps.first() {
                write_varint(out, zigzag(first));
            }
        }
    }
}

/// One code per value after the first, in the bit stream; `values` and `steps` as for
/// [`write_first`].
pub(super) fn write_codes(
    bits: &mut BitWriter<'_, impl ByteSink>,
    codec: ValueCodec,
    values: &[u32],
    steps: &[i64],
) {
    let ValueCodec::Decimal(d) = codec else {
        write_xor(bits, values);
        return;
    };
    let Some((&first, rest)) = steps.split_first() else {
        return;
    };
    let k = d.rice_k & MAX_RICE_K;
    let small = &SMALL_RICE_CODES[k as usize];
    let (mut prev, mut prev_delta) = (first, 0i64);
    // Two loops, so that neither asks which code it writes.
    if d.delta_of_delta {
        for &steps in rest {
            let delta = steps.wrapping_sub(prev);
            write_rice(bits, small, delta.wrapping_sub(prev_delta), k);
            (prev, prev_delta) = (steps, delta);
        }
    } else {
        for &steps in rest {
            write_rice(bits, small, steps.wrapping_sub(prev), k);
            prev = steps;
        }
    }
}

/// The Rice codes of the zigzags of every code from -64 to 63 (zigzags below 128), each at
/// its code plus 64, for each parameter: the code's bits above its length in the low 8 bits
/// (at most 8 + 6 + 7 bits, for the escape).
const SMALL_RICE_CODES: [[u32; 128]; 8] = {
    let mut table = [[0; 128]; 8];
    let mut k = 0;
    while k < 8 {
        let mut i = 0;
        while i < 128 {
            let (code, len) = rice_code(zigzag(i as i64 - 64), k as u32);
            table[k][i] = ((code as u32) << 8) | len;
            i += 1;
        }
        k += 1;
    }
    table
};

/// The Rice code of `z` with parameter `k` and its length, for `z` below 2^50 (so that the
/// code fits 64 bits).
const fn rice_code(z: u64, k: u32) -> (u64, u32) {
    let quotient = z >> k;
    if quotient < RICE_ESCAPE as u64 {
        let unary = ((1 << quotient) - 1) << 1;
        ((unary << k) | (z & ((1 << k) - 1)), quotient as u32 + 1 + k)
    } else {
        let len = 64 - z.leading_zeros();
        let escape = (1 << RICE_ESCAPE) - 1;
        let header = (escape << 6) | (len - 1) as u64;
        ((header << len) | z, RICE_ESCAPE + 6 + len)
    }
}

/// A series' first value as its header gives it, with the codec of the rest.
#[derive(Clone, Copy)]
pub(super) enum Start {
    Xor(u32),
    Decimal(Decimal, i64),
}

pub(super) fn read_first(
    cursor: &mut ByteCursor<'_>,
    codec: ValueCodec,
) -> Result<Start, PayloadError> {
    Ok(match codec {
        ValueCodec::Xor => Start::Xor(cursor.u32_be()?),
        ValueCodec::Decimal(d) => Start::Decimal(d, unzigzag(cursor.varint()?)),
    })
}

/// Sets the values of `series` (the points of one series, timestamps already set) from
/// `start` and the codes that follow in `bits`.
pub(super) fn read_codes(
    bits: &mut BitReader<'_>,
    sensor: u8,
    start: Start,
    series: &mut [Point],
) -> Result<(), PayloadError> {
    let Some((first, rest)) = series.split_first_mut() else {
        return Ok(());
    };
    match start {
        Start::Xor(first_bits) => {
            first.value = f32::from_bits(first_bits);
            read_xor(bits, sensor, first_bits, rest)
        }
        Start::Decimal(d, mut steps) => {
            first.value = d.value(steps);
            let mut delta = 0i64;
            for p in rest {
                let code = unzigzag(read_rice(bits, d.rice_k)?);
                delta = if d.delta_of_delta {
                    delta.wrapping_add(code)
                } else {
                    code
                };
                steps = steps.wrapping_add(delta);
                p.value = d.value(steps);
            }
            Ok(())
        }
    }
}

/// Rice code of parameter `k` of the zigzag `z` of `code`: the quotient `z >> k` in unary
/// (that many 1-bits, then a 0-bit), then the `k` low bits of `z`; a quotient of
/// [`RICE_ESCAPE`] or more as the escape. `small` is the row of [`SMALL_RICE_CODES`] for `k`.
#[inline(always)]
fn write_rice(bits: &mut BitWriter<'_, impl ByteSink>, small: &[u32; 128], code: i64, k: u32) {
    if let Some(&small) = small.get(code.wrapping_add(64) as usize) {
        bits.short(u64::from(small >> 8), small & 0xff);
    } else {
        let [(head, head_len), (tail, tail_len)] = wide_rice_code(zigzag(code), k);
        bits.short(head, head_len);
        bits.bits(tail, tail_len);
    }
}

/// The Rice code of `z` from 128 on, out of the way of the loop, in two fields: at most 32
/// bits, then at most 64.
#[cold]
#[inline(never)]
fn wide_rice_code(z: u64, k: u32) -> [(u64, u32); 2] {
    if z >> k < u64::from(RICE_ESCAPE) {
        // At most 7 + 1 + 7 bits.
        [rice_code(z, k), (0, 0)]
    } else {
        let len = 64 - z.leading_zeros();
        let escape = (1 << RICE_ESCAPE) - 1;
        [
            ((escape << 6) | u64::from(len - 1), RICE_ESCAPE + 6),
            (z, len),
        ]
    }
}

fn read_rice(bits: &mut BitReader<'_>, k: u32) -> Result<u64, PayloadError> {
    let quotient = bits.ones(RICE_ESCAPE)?;
    if quotient == RICE_ESCAPE {
        let len = bits.bits(6)? as u32 + 1;
        return bits.bits(len);
    }
    Ok((u64::from(quotient) << k) | bits.bits(k)?)
}

/// Per value after the first, its XOR with the previous one: `0` (same value), `10` + the
/// XOR's bits inside the current window, or `11` + 5 bits of leading zeros + 5 bits of
/// (meaningful length - 1) + the meaningful bits, which sets the window.
fn write_xor(bits: &mut BitWriter<'_, impl ByteSink>, values: &[u32]) {
    let Some((&first, rest)) = values.split_first() else {
        return;
    };
    let mut prev = first;
    let mut window: Option<XorWindow> = None;
    for &value in rest {
        let xor = value ^ prev;
        prev = value;
        match XorCode::of(xor, &mut window) {
            XorCode::Same => bits.short(0, 1),
            XorCode::InWindow(w) => bits.bits(
                (0b10 << w.len()) | u64::from(xor >> w.trailing),
                2 + w.len(),
            ),
            XorCode::NewWindow(w) => {
                let header = (0b11 << 10) | (w.leading << 5) | (w.len() - 1);
                let field = u64::from(xor >> w.trailing);
                bits.bits((u64::from(header) << w.len()) | field, 12 + w.len());
            }
        }
    }
}

/// How one XOR is coded.
pub(super) enum XorCode {
    /// `0`: the value repeats.
    Same,
    /// `10` and the bits inside the current window.
    InWindow(XorWindow),
    /// `11`, the window, and the bits inside it; this window is the current one from now on.
    NewWindow(XorWindow),
}

impl XorCode {
    /// The code of `xor`, given the current `window`, which it updates.
    #[inline]
    pub(super) fn of(xor: u32, window: &mut Option<XorWindow>) -> Self {
        if xor == 0 {
            return Self::Same;
        }
        let tight = XorWindow {
            leading: xor.leading_zeros(),
            trailing: xor.trailing_zeros(),
        };
        match *window {
            Some(w) if w.holds(tight) && w.len() <= tight.len() + XorWindow::HEADER_BITS => {
                Self::InWindow(w)
            }
            _ => {
                *window = Some(tight);
                Self::NewWindow(tight)
            }
        }
    }

    /// Bits the code takes.
    pub(super) fn bits(&self) -> u32 {
        match self {
            Self::Same => 1,
            Self::InWindow(w) => 2 + w.len(),
            Self::NewWindow(w) => 2 + XorWindow::HEADER_BITS + w.len(),
        }
    }
}

fn read_xor(
    bits: &mut BitReader<'_>,
    sensor: u8,
    first_bits: u32,
    rest: &mut [Point],
) -> Result<(), PayloadError> {
    let mut prev = first_bits;
    let mut window: Option<XorWindow> = None;
    for p in rest {
        if bits.bit()? {
            let w = if bits.bit()? {
                let leading = bits.bits(5)? as u32;
                let len = bits.bits(5)? as u32 + 1;
                let trailing =
                    32u32
                        .checked_sub(leading + len)
                        .ok_or(PayloadError::XorWindowTooWide {
                            sensor,
                            leading: leading as u8,
                            len: len as u8,
                        })?;
                let w = XorWindow { leading, trailing };
                window = Some(w);
                w
            } else {
                window.ok_or(PayloadError::NoXorWindow { sensor })?
            };
            prev ^= (bits.bits(w.len())? as u32) << w.trailing;
        }
        p.value = f32::from_bits(prev);
    }
    Ok(())
}

/// Where an XOR's meaningful bits lie: `leading` zeros above them, `trailing` zeros below.
/// Never empty: `leading + trailing < 32`.
#[derive(Clone, Copy)]
pub(super) struct XorWindow {
    leading: u32,
    trailing: u32,
}

impl XorWindow {
    /// What a new window costs over reusing one: 5 bits of leading zeros, 5 of length.
    const HEADER_BITS: u32 = 10;

    fn len(self) -> u32 {
        32 - self.leading - self.trailing
    }

    fn holds(self, inner: XorWindow) -> bool {
        inner.leading >= self.leading && inner.trailing >= self.trailing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_bits_value_of_a_codec_reads_back_as_that_codec() {
        for bits in 0..0x80u8 {
            if let Some(codec) = ValueCodec::from_mode_bits(bits) {
                assert_eq!(codec.mode_bits(), bits, "{bits:#04x}");
            }
        }
        assert_eq!(ValueCodec::from_mode_bits(0x01), None);
        assert_eq!(ValueCodec::from_mode_bits(0x3f), None);
    }

    #[test]
    fn rice_codes_read_back_for_every_parameter_and_magnitude() {
        // Every `z` of the table of small codes and past it, and the widest escapes.
        let mut zs: Vec<u64> = (0..1100).collect();
        zs.extend([1 << 20, u64::MAX - 1, u64::MAX]);
        for k in 0..=MAX_RICE_K {
            let mut out = Vec::new();
            let mut w = BitWriter::new(&mut out);
            let mut price = 0;
            for &z in &zs {
                write_rice(&mut w, &SMALL_RICE_CODES[k as usize], unzigzag(z), k);
                price += super::super::price::rice_bits(z, k);
            }
            w.finish();
            assert_eq!(out.len() as u64, price.div_ceil(8));
            let mut r = BitReader::new(&out);
            for &z in &zs {
                assert_eq!(read_rice(&mut r, k), Ok(z), "k {k}");
            }
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn a_rice_code_is_unary_quotient_then_k_bits_or_the_escape() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        // k = 2: 13 = 0b11_01 -> `1110` `01`; 40 -> quotient 10: `11111111` `000101` `101000`.
        write_rice(&mut w, &SMALL_RICE_CODES[2], unzigzag(13), 2);
        write_rice(&mut w, &SMALL_RICE_CODES[2], unzigzag(40), 2);
        w.finish();
        assert_eq!(out, [0b1110_0111, 0b1111_1100, 0b0101_1010, 0b0000_0000]);
    }
}
