//! The payload codec: byte-aligned headers (one per series, with its mode, its timestamps
//! unless it shares the previous series' and its first value), then one bit stream of
//! delta-of-delta timestamp codes and value codes (layout in the parent module and
//! `docs/storage-payload.md`).

use alloc::vec::Vec;

use super::bits::{BitReader, BitWriter, ByteSink, FilledBuffer};
use super::bytes::{ByteCursor, unzigzag, write_varint, zigzag};
use super::order::{Run, Runs};
use super::values::{Start, ValueCodec};
use super::{FORMAT_VERSION, PayloadError, Point};
use crate::limits::MAX_READINGS_PER_BATCH;

/// Bit 7 of a series' mode byte: its timestamps (and so its count) are those of the series
/// before it. Devices sample all their sensors at one instant, so this is the usual case; it
/// saves the count, the first timestamp and every timestamp code.
const SHARES_TIMESTAMPS: u8 = 0x80;

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
    // The sorted points as columns: timestamps, value bits and, for decimal series, step
    // counts. A batch keeps them on the stack; only an oversized one (a caller bug) takes the
    // heap.
    let (mut ts_on_stack, mut ts_on_heap) = (heapless::Vec::new(), Vec::new());
    let (mut values_on_stack, mut values_on_heap) = (heapless::Vec::new(), Vec::new());
    let (mut steps_on_stack, mut steps_on_heap) = (heapless::Vec::new(), Vec::new());
    let n = points.len();
    let ts = column::<i64, MAX_READINGS_PER_BATCH>(&mut ts_on_stack, &mut ts_on_heap, n);
    let values =
        column::<u32, MAX_READINGS_PER_BATCH>(&mut values_on_stack, &mut values_on_heap, n);
    let steps = column::<i64, MAX_READINGS_PER_BATCH>(&mut steps_on_stack, &mut steps_on_heap, n);
    // The bit stream follows every header, so it is gathered apart while the headers go to
    // `out`, in a buffer sized for the most it can take.
    let (mut stream_on_stack, mut stream_on_heap) = (heapless::Vec::new(), Vec::new());
    let stream =
        column::<u8, STREAM_BYTES>(&mut stream_on_stack, &mut stream_on_heap, stream_bytes(n));
    encode_in(
        points,
        Columns {
            ts,
            values,
            steps,
            stream,
        },
        out,
    );
}

/// [`encode`] with working space kept from one batch to the next: for a caller that encodes
/// many batches (the hub's store), it spares each batch the zeroing of its columns (~1.2 KB
/// for 32 readings, about 4 % of the encoder's instructions). The bytes are those of
/// [`encode`].
#[derive(Debug, Default)]
pub struct Encoder {
    ts: Vec<i64>,
    values: Vec<u32>,
    steps: Vec<i64>,
    stream: Vec<u8>,
}

impl Encoder {
    /// Append the encoding of `points` to `out`, as [`encode`] does.
    pub fn encode(&mut self, points: &[Point], out: &mut Vec<u8>) {
        let n = points.len();
        // Every column is written before it is read, so what a column held may stay until it
        // is overwritten: a batch as long as the one before zeroes nothing, a longer one only
        // the difference.
        self.ts.resize(n, 0);
        self.values.resize(n, 0);
        self.steps.resize(n, 0);
        self.stream.resize(stream_bytes(n), 0);
        let columns = Columns {
            ts: &mut self.ts,
            values: &mut self.values,
            steps: &mut self.steps,
            stream: &mut self.stream,
        };
        encode_in(points, columns, out);
    }
}

/// The encoder's working space: `points.len()` timestamps, value bits and step counts, and
/// room for the bit stream (`stream_bytes`). Their contents do not matter.
struct Columns<'a> {
    ts: &'a mut [i64],
    values: &'a mut [u32],
    steps: &'a mut [i64],
    stream: &'a mut [u8],
}

fn encode_in(points: &[Point], columns: Columns<'_>, out: &mut Vec<u8>) {
    let Columns {
        ts,
        values,
        steps,
        stream,
    } = columns;
    let n = points.len();
    let mut stream = FilledBuffer {
        bytes: stream,
        len: 0,
    };
    let mut runs = Runs::new();
    super::order::group_by_sensor(points, ts, values, &mut runs);

    out.reserve(2 + runs.len() * 8 + n * 2);
    out.push(FORMAT_VERSION);
    write_varint(out, runs.len() as u64);
    let mut bits = BitWriter::new(&mut stream);
    let mut prev: Option<Run> = None;
    let mut prev_first_ts = 0i64;
    // The delta predictor runs on across series: sensors of one device share a period, so a
    // series' first delta costs as little as any other.
    let mut prev_delta = 0i64;
    for &run in &runs {
        let range = run.range();
        let same_as_prev = |ts: &[i64]| prev.is_some_and(|p| ts[p.range()] == ts[range.clone()]);
        // A run with the timestamps of the one before, which is sorted, is sorted too.
        let mut shares_timestamps = same_as_prev(ts);
        if !shares_timestamps && !ts[range.clone()].is_sorted() {
            super::order::sort_by_time(&mut ts[range.clone()], &mut values[range.clone()]);
            shares_timestamps = same_as_prev(ts);
        }
        let (values, steps) = (&values[range.clone()], &mut steps[range.clone()]);
        let codec = super::price::cheapest(values, steps);

        out.push(run.sensor);
        let shares = if shares_timestamps {
            SHARES_TIMESTAMPS
        } else {
            0
        };
        out.push(shares | codec.mode_bits());
        if !shares_timestamps {
            let own = &ts[range];
            write_varint(out, run.len as u64);
            write_varint(out, zigzag(own[0].wrapping_sub(prev_first_ts)));
            prev_first_ts = own[0];
            for pair in own.windows(2) {
                let delta = pair[1].wrapping_sub(pair[0]);
                write_dod(&mut bits, delta.wrapping_sub(prev_delta));
                prev_delta = delta;
            }
        }
        super::values::write_first(out, codec, values, steps);
        super::values::write_codes(&mut bits, codec, values, steps);
        prev = Some(run);
    }
    bits.finish();
    out.extend_from_slice(stream.filled());
}

/// The most bytes the bit stream of `points` points takes: per point, a delta-of-delta code
/// (at most 5 + 64 bits) and a value code (at most 8 + 6 + 64 bits); then the padding.
const fn stream_bytes(points: usize) -> usize {
    (points * (69 + 78)).div_ceil(8) + 1
}

const STREAM_BYTES: usize = stream_bytes(MAX_READINGS_PER_BATCH);

/// `len` zeros on the stack, or on the heap if there is no room there.
fn column<'a, T: Copy + Default, const N: usize>(
    on_stack: &'a mut heapless::Vec<T, N>,
    on_heap: &'a mut Vec<T>,
    len: usize,
) -> &'a mut [T] {
    if on_stack.resize(len, T::default()).is_ok() {
        on_stack
    } else {
        on_heap.resize(len, T::default());
        on_heap
    }
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
    shares_timestamps: bool,
    values: Start,
}

fn decode_into(bytes: &[u8], out: &mut Vec<Point>) -> Result<(), PayloadError> {
    let mut cursor = ByteCursor { rest: bytes };
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
    let mut headers: Vec<SeriesHeader> = Vec::with_capacity(series_count as usize);
    let mut total = 0u64;
    let mut prev_first_ts = 0i64;
    for _ in 0..series_count {
        let sensor = cursor.u8()?;
        if let Some(previous) = headers.last().map(|h| h.sensor).filter(|&p| p >= sensor) {
            return Err(PayloadError::SensorOutOfOrder { sensor, previous });
        }
        let mode = cursor.u8()?;
        let codec = ValueCodec::from_mode_bits(mode & !SHARES_TIMESTAMPS)
            .ok_or(PayloadError::UnknownSeriesMode { sensor, mode })?;
        let shares_timestamps = mode & SHARES_TIMESTAMPS != 0;
        let (count, first_ts_ms) = if shares_timestamps {
            let prev = headers
                .last()
                .ok_or(PayloadError::NoTimestampsToShare { sensor })?;
            (prev.count as u64, prev.first_ts_ms)
        } else {
            let count = cursor.varint()?;
            let first_ts_ms = prev_first_ts.wrapping_add(unzigzag(cursor.varint()?));
            prev_first_ts = first_ts_ms;
            (count, first_ts_ms)
        };
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
        let values = super::values::read_first(&mut cursor, codec)?;
        headers.push(SeriesHeader {
            sensor,
            count: count as usize,
            first_ts_ms,
            shares_timestamps,
            values,
        });
    }

    out.reserve(total as usize);
    let mut bits = BitReader::new(cursor.rest);
    let mut prev_delta = 0i64;
    let mut prev_series_start = out.len();
    for h in &headers {
        let series_start = out.len();
        if h.shares_timestamps {
            // The previous series has exactly `h.count` points: its header said so.
            for i in prev_series_start..series_start {
                let ts_ms = out[i].ts_ms;
                out.push(Point {
                    sensor: h.sensor,
                    ts_ms,
                    value: 0.0,
                });
            }
        } else {
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
        }
        super::values::read_codes(
            &mut bits,
            h.sensor,
            h.values,
            out.get_mut(series_start..).unwrap_or_default(),
        )?;
        prev_series_start = series_start;
    }
    bits.finish()
}

/// Delta-of-delta code: `0`, or one to four 1-bits and a 0-bit followed by a signed field of
/// `DOD_BUCKET_BITS` bits, or five 1-bits followed by 64 bits.
#[inline]
fn write_dod(bits: &mut BitWriter<'_, impl ByteSink>, dod: i64) {
    if dod == 0 {
        bits.bit(false);
        return;
    }
    // Bits of `dod` as a two's complement field: its magnitude's bits plus a sign bit.
    let signed_bits = 65 - (dod ^ (dod >> 63)).leading_zeros();
    let bucket = DOD_BUCKET_BITS
        .iter()
        .position(|&width| signed_bits <= width)
        .unwrap_or(DOD_BUCKET_BITS.len() - 1);
    let width = DOD_BUCKET_BITS[bucket];
    let ones = bucket as u32 + 1;
    if width == 64 {
        // Five 1-bits and no terminating zero: the last bucket.
        bits.bits((1 << ones) - 1, ones);
        bits.bits(dod as u64, 64);
    } else {
        // `ones` 1-bits, a 0-bit, the field: at most 5 + 24 bits, one write.
        let prefix = ((1u64 << ones) - 1) << 1;
        let field = (dod as u64) & ((1 << width) - 1);
        bits.bits((prefix << width) | field, ones + 1 + width);
    }
}

fn read_dod(bits: &mut BitReader<'_>) -> Result<i64, PayloadError> {
    let ones = bits.ones(DOD_BUCKET_BITS.len() as u32)? as usize;
    let Some(&width) = ones.checked_sub(1).and_then(|i| DOD_BUCKET_BITS.get(i)) else {
        return Ok(0);
    };
    let raw = bits.bits(width)?;
    // Sign-extend the `width`-bit two's complement field.
    let shift = 64 - width;
    Ok(((raw << shift) as i64) >> shift)
}
