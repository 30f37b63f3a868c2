//! The payload codec: byte-aligned headers, then one bit stream of delta-of-delta timestamp
//! codes and XOR value codes (layout in the parent module and `docs/storage-payload.md`).

use alloc::vec::Vec;

use super::bits::{BitReader, BitWriter};
use super::{FORMAT_VERSION, PayloadError, Point};
use crate::limits::MAX_READINGS_PER_BATCH;

/// Payload bits of the delta-of-delta buckets whose prefix is 1, 2, 3, 4 or 5 one-bits
/// (`10`, `110`, `1110`, `11110`, `11111`); the prefix `0` alone means a delta-of-delta of 0.
/// Sized for millisecond clocks: a few ms of jitter fits the first bucket, a skipped sample of
/// a 1 Hz series the third, an hour's gap the fourth; the last takes any `i64`.
const DOD_BUCKET_BITS: [u32; 5] = [4, 7, 12, 24, 64];

/// Append the encoding of `points` to `out`.
///
/// Points may come in any order; decoding returns them grouped by sensor (ascending), each
/// sensor's points sorted by `ts_ms` (stable: points with the same sensor and timestamp keep
/// their order). A stored batch holds at most [`MAX_READINGS_PER_BATCH`] points, and decode
/// refuses more, so passing more is a caller bug.
pub fn encode(points: &[Point], out: &mut Vec<u8>) {
    debug_assert!(
        points.len() <= MAX_READINGS_PER_BATCH,
        "a payload holds at most {MAX_READINGS_PER_BATCH} points, got {}",
        points.len()
    );
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| (p.sensor, p.ts_ms));
    let series: Vec<&[Point]> = sorted.chunk_by(|a, b| a.sensor == b.sensor).collect();

    out.push(FORMAT_VERSION);
    write_varint(out, series.len() as u64);
    let mut prev_first_ts = 0i64;
    for s in &series {
        let Some(first) = s.first() else { continue };
        out.push(first.sensor);
        write_varint(out, s.len() as u64);
        write_varint(out, zigzag(first.ts_ms.wrapping_sub(prev_first_ts)));
        prev_first_ts = first.ts_ms;
    }

    let mut bits = BitWriter::new(out);
    // The delta predictor runs on across series: sensors of one device share a period, so a
    // series' first delta costs as little as any other.
    let mut prev_delta = 0i64;
    for s in &series {
        for pair in s.windows(2) {
            let delta = pair[1].ts_ms.wrapping_sub(pair[0].ts_ms);
            write_dod(&mut bits, delta.wrapping_sub(prev_delta));
            prev_delta = delta;
        }
        write_values(&mut bits, s);
    }
    bits.finish();
}

/// Decode a payload, appending its points to `out`. On error `out` is left as it was.
pub fn decode(bytes: &[u8], out: &mut Vec<Point>) -> Result<(), PayloadError> {
    let start = out.len();
    let result = decode_into(bytes, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The byte-aligned header of one series.
struct SeriesHeader {
    sensor: u8,
    count: usize,
    first_ts_ms: i64,
}

fn decode_into(bytes: &[u8], out: &mut Vec<Point>) -> Result<(), PayloadError> {
    let mut cursor = ByteCursor { bytes };
    let version = cursor.u8()?;
    if version != FORMAT_VERSION {
        return Err(PayloadError::UnsupportedVersion {
            version,
            supported: FORMAT_VERSION,
        });
    }
    // Every series has a point, so the point limit bounds the series count too.
    let series_count = cursor.varint()?;
    if series_count > MAX_READINGS_PER_BATCH as u64 {
        return Err(PayloadError::TooManySeries {
            count: series_count,
            max: MAX_READINGS_PER_BATCH,
        });
    }
    let mut headers = Vec::with_capacity(series_count as usize);
    let mut total = 0u64;
    let mut prev_sensor: Option<u8> = None;
    let mut prev_first_ts = 0i64;
    for _ in 0..series_count {
        let sensor = cursor.u8()?;
        let count = cursor.varint()?;
        let first_ts_ms = prev_first_ts.wrapping_add(unzigzag(cursor.varint()?));
        if let Some(previous) = prev_sensor.filter(|&p| p >= sensor) {
            return Err(PayloadError::SensorOutOfOrder { sensor, previous });
        }
        if count == 0 {
            return Err(PayloadError::EmptySeries { sensor });
        }
        total = total.saturating_add(count);
        if total > MAX_READINGS_PER_BATCH as u64 {
            return Err(PayloadError::TooManyPoints {
                count: total,
                max: MAX_READINGS_PER_BATCH,
            });
        }
        headers.push(SeriesHeader {
            sensor,
            count: count as usize,
            first_ts_ms,
        });
        prev_sensor = Some(sensor);
        prev_first_ts = first_ts_ms;
    }

    out.reserve(total as usize);
    let mut bits = BitReader::new(cursor.bytes);
    let mut prev_delta = 0i64;
    for h in &headers {
        let series_start = out.len();
        let mut ts_ms = h.first_ts_ms;
        out.push(Point {
            sensor: h.sensor,
            ts_ms,
            value: 0.0,
        });
        for _ in 1..h.count {
            prev_delta = prev_delta.wrapping_add(read_dod(&mut bits)?);
            ts_ms = ts_ms.wrapping_add(prev_delta);
            out.push(Point {
                sensor: h.sensor,
                ts_ms,
                value: 0.0,
            });
        }
        read_values(
            &mut bits,
            h.sensor,
            out.get_mut(series_start..).unwrap_or_default(),
        )?;
    }
    bits.finish()
}

/// Delta-of-delta code: `0`, or one to four 1-bits and a 0-bit followed by a signed field of
/// `DOD_BUCKET_BITS` bits, or five 1-bits followed by 64 bits.
fn write_dod(bits: &mut BitWriter<'_>, dod: i64) {
    if dod == 0 {
        bits.bit(false);
        return;
    }
    for (i, &width) in DOD_BUCKET_BITS.iter().enumerate() {
        let ones = i as u32 + 1;
        if width == 64 || (-(1i64 << (width - 1))..(1i64 << (width - 1))).contains(&dod) {
            let is_last = ones as usize == DOD_BUCKET_BITS.len();
            // `ones` one-bits, then a terminating zero unless this is the last bucket.
            let prefix_len = if is_last { ones } else { ones + 1 };
            let prefix = if is_last {
                (1 << ones) - 1
            } else {
                ((1 << ones) - 1) << 1
            };
            bits.bits(prefix, prefix_len);
            bits.bits(dod as u64, width);
            return;
        }
    }
}

fn read_dod(bits: &mut BitReader<'_>) -> Result<i64, PayloadError> {
    let mut ones = 0;
    while ones < DOD_BUCKET_BITS.len() && bits.bit()? {
        ones += 1;
    }
    let Some(&width) = ones.checked_sub(1).and_then(|i| DOD_BUCKET_BITS.get(i)) else {
        return Ok(0);
    };
    let raw = bits.bits(width)?;
    // Sign-extend the `width`-bit two's complement field.
    let shift = 64 - width;
    Ok(((raw << shift) as i64) >> shift)
}

/// The first value as 32 raw bits, then per value its XOR with the previous one: `0` (same
/// value), `10` + the XOR's bits inside the current window, or `11` + 5 bits of leading zeros +
/// 5 bits of (meaningful length - 1) + the meaningful bits, which sets the window.
fn write_values(bits: &mut BitWriter<'_>, series: &[Point]) {
    let Some((first, rest)) = series.split_first() else {
        return;
    };
    let mut prev = first.value.to_bits();
    bits.bits(u64::from(prev), 32);
    let mut window: Option<XorWindow> = None;
    for p in rest {
        let value = p.value.to_bits();
        let xor = value ^ prev;
        prev = value;
        if xor == 0 {
            bits.bit(false);
            continue;
        }
        let tight = XorWindow {
            leading: xor.leading_zeros(),
            trailing: xor.trailing_zeros(),
        };
        match window {
            Some(w) if w.holds(tight) && w.len() <= tight.len() + XorWindow::HEADER_BITS => {
                bits.bits(0b10, 2);
                bits.bits(u64::from(xor >> w.trailing), w.len());
            }
            _ => {
                bits.bits(0b11, 2);
                bits.bits(u64::from(tight.leading), 5);
                bits.bits(u64::from(tight.len() - 1), 5);
                bits.bits(u64::from(xor >> tight.trailing), tight.len());
                window = Some(tight);
            }
        }
    }
}

fn read_values(
    bits: &mut BitReader<'_>,
    sensor: u8,
    series: &mut [Point],
) -> Result<(), PayloadError> {
    let mut prev = bits.bits(32)? as u32;
    let mut window: Option<XorWindow> = None;
    let mut points = series.iter_mut();
    if let Some(first) = points.next() {
        first.value = f32::from_bits(prev);
    }
    for p in points {
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
struct XorWindow {
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

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Reads the byte-aligned header; what is left is the bit stream.
struct ByteCursor<'a> {
    bytes: &'a [u8],
}

impl ByteCursor<'_> {
    fn u8(&mut self) -> Result<u8, PayloadError> {
        let (&b, rest) = self.bytes.split_first().ok_or(PayloadError::Truncated)?;
        self.bytes = rest;
        Ok(b)
    }

    /// Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more.
    fn varint(&mut self) -> Result<u64, PayloadError> {
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
