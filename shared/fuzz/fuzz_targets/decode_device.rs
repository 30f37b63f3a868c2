//! Any bytes into `decode_device`: it never panics, sorts frames into the right error, and a
//! frame that decodes re-encodes canonically (never longer, byte-stable, decodes to the same
//! message). Decoded messages then go through validation, whose verdict is checked against the
//! rules it promises (`shared::validate`): the first broken rule of the first bad reading.
//! The hub's decoder, `decode_device_frame`, must give the same answer for every frame, and
//! its validation (`validate_view`) the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::limits::{
    MAX_BATCH_SPAN_MS, MAX_DEVICE_FRAME_BYTES, MAX_FUTURE_SKEW_MS, MIN_PLAUSIBLE_UNIX_MS,
};
use shared::{
    Batch, Clock, DecodeError, DeviceFrame, DeviceMsg, Hello, RejectReason, SensorSet, SeqVerdict,
    check_seq, codec, decode_device, decode_device_frame, validate_batch, validate_hello,
    validate_view,
};

/// The hub's clock for every run: 2025-11-24T16:00:00Z, the golden vectors' time.
const NOW_UNIX_MS: u64 = 1_764_000_000_000;

/// The golden Hello of `docs/protocol.md` (sensors 0 and 1), received at `NOW_UNIX_MS`.
const GOLDEN_HELLO: &str = "000973696d2d302e312e30effdb6f50dd209010202000003c2b043010103255248";

fuzz_target!(|data: &[u8]| {
    check_frame_decoder(data);
    let msg = match decode_device(data) {
        Ok(msg) => msg,
        Err(e) => return check_error(data, e),
    };
    check_round_trip(data, &msg);
    match &msg {
        DeviceMsg::Hello(hello) => check_hello(hello),
        DeviceMsg::Batch(batch) => {
            let golden = golden_hello();
            let declared = validate_hello(&golden).expect("the golden Hello is valid");
            check_batch(batch, &declared, base_unix_ms(batch.clock, &golden));
            // Every id declared: the verdict then turns on values, offsets and timestamps.
            let mut all = SensorSet::default();
            (0..=u8::MAX).for_each(|id| {
                all.insert(id);
            });
            check_batch(batch, &all, base_unix_ms(batch.clock, &golden));
            check_seqs(batch.seq);
        }
        DeviceMsg::Heartbeat(_) => {}
    }
});

/// `decode_device_frame` answers as `decode_device` does, and a batch it gives is judged by
/// `validate_view` as `validate_batch` judges the same batch.
fn check_frame_decoder(data: &[u8]) {
    let mut readings = Vec::new();
    match (
        decode_device(data),
        decode_device_frame(data, &mut readings),
    ) {
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Ok(DeviceMsg::Hello(a)), Ok(DeviceFrame::Hello(b))) => assert_eq!(a, *b),
        (Ok(DeviceMsg::Heartbeat(a)), Ok(DeviceFrame::Heartbeat(b))) => assert_eq!(a, b),
        (Ok(DeviceMsg::Batch(batch)), Ok(DeviceFrame::Batch(view))) => {
            let bits = |b: &Batch| -> Vec<(u8, u32, u32)> {
                b.readings
                    .iter()
                    .map(|r| (r.sensor, r.offset_ms, r.value.to_bits()))
                    .collect()
            };
            let viewed = view.to_batch();
            assert_eq!(
                (viewed.seq, viewed.clock, viewed.dropped),
                (batch.seq, batch.clock, batch.dropped)
            );
            assert_eq!(bits(&viewed), bits(&batch));
            let golden = golden_hello();
            let declared = validate_hello(&golden).expect("the golden Hello is valid");
            let base = base_unix_ms(batch.clock, &golden);
            assert_eq!(
                validate_view(&view, &declared, base, NOW_UNIX_MS),
                validate_batch(&batch, &declared, base, NOW_UNIX_MS)
            );
        }
        (a, b) => panic!("decode_device {a:?}, decode_device_frame {b:?}"),
    }
}

fn golden_hello() -> Hello {
    let bytes: Vec<u8> = (0..GOLDEN_HELLO.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&GOLDEN_HELLO[i..i + 2], 16).unwrap())
        .collect();
    match decode_device(&bytes) {
        Ok(DeviceMsg::Hello(h)) => h,
        other => panic!("golden Hello decodes as {other:?}"),
    }
}

/// The errors say which way a frame is broken; check the ones that can be told from outside.
fn check_error(data: &[u8], e: DecodeError) {
    match data.first() {
        None => assert_eq!(e, DecodeError::Empty),
        Some(&tag) if tag >= 3 => assert_eq!(e, DecodeError::UnknownMessage { tag }),
        Some(_) if data.len() > MAX_DEVICE_FRAME_BYTES => assert_eq!(
            e,
            DecodeError::TooLarge {
                size: data.len(),
                max: MAX_DEVICE_FRAME_BYTES
            }
        ),
        Some(_) => assert!(
            !matches!(
                e,
                DecodeError::Empty
                    | DecodeError::UnknownMessage { .. }
                    | DecodeError::TooLarge { .. }
            ),
            "{e:?} for a {}-byte frame with a known tag",
            data.len()
        ),
    }
}

/// A decoded frame is one whole message: re-encoding is canonical (postcard accepts overlong
/// varints, so never longer than the input), stable, and decodes to the same message; the
/// frame minus its last byte is truncated, the frame plus one byte has one trailing byte.
fn check_round_trip(data: &[u8], msg: &DeviceMsg) {
    let bytes = codec::to_vec(msg).expect("a decoded message re-encodes");
    assert!(
        bytes.len() <= data.len(),
        "re-encoding grew {data:02x?} to {bytes:02x?}"
    );
    let back = decode_device(&bytes).expect("a re-encoded message decodes");
    assert!(same(msg, &back), "{msg:?} came back as {back:?}");
    assert_eq!(
        codec::to_vec(&back).unwrap(),
        bytes,
        "re-encoding is not stable"
    );

    let cut = &data[..data.len() - 1];
    let expected = if cut.is_empty() {
        DecodeError::Empty
    } else {
        DecodeError::Truncated
    };
    assert_eq!(decode_device(cut).map(|_| ()), Err(expected));
    if data.len() < MAX_DEVICE_FRAME_BYTES {
        let mut longer = data.to_vec();
        longer.push(0);
        assert_eq!(
            decode_device(&longer).map(|_| ()),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }
}

/// `validate_hello` refuses, in this order: an empty firmware string, no sensors, the first id
/// declared twice; otherwise its set holds exactly the declared ids.
fn check_hello(hello: &Hello) {
    let verdict = validate_hello(hello);
    let ids: Vec<u8> = hello.sensors.iter().map(|s| s.id).collect();
    let first_repeat = (1..ids.len())
        .find(|&i| ids[..i].contains(&ids[i]))
        .map(|i| ids[i]);
    match verdict {
        Err(shared::HelloError::EmptyFirmware) => assert!(hello.firmware.is_empty()),
        Err(shared::HelloError::NoSensors) => {
            assert!(!hello.firmware.is_empty() && ids.is_empty())
        }
        Err(shared::HelloError::DuplicateSensor { id }) => {
            assert!(!hello.firmware.is_empty());
            assert_eq!(first_repeat, Some(id));
        }
        Ok(set) => {
            assert!(!hello.firmware.is_empty() && !ids.is_empty() && first_repeat.is_none());
            for id in 0..=u8::MAX {
                assert_eq!(set.contains(id), ids.contains(&id), "sensor {id}");
            }
        }
    }
}

/// How the hub resolves a batch's clock: wall-clock bases as they are, an uptime base through
/// the uptime the boot reported in its Hello (received at `NOW_UNIX_MS`).
fn base_unix_ms(clock: Clock, hello: &Hello) -> u64 {
    match clock {
        Clock::Sntp { base_ms } | Clock::Hub { base_ms } => base_ms,
        Clock::Uptime { base_ms } => (NOW_UNIX_MS - hello.uptime_ms).saturating_add(base_ms),
    }
}

/// Which rule a reading breaks first, in the documented order, computed without saturation.
fn broken_rule(
    index: u16,
    r: &shared::Reading,
    sensors: &SensorSet,
    base: u64,
) -> Option<RejectReason> {
    let ts = u128::from(base) + u128::from(r.offset_ms);
    let latest = u128::from(NOW_UNIX_MS) + u128::from(MAX_FUTURE_SKEW_MS);
    if !r.value.is_finite() {
        Some(RejectReason::NonFiniteValue { index })
    } else if !sensors.contains(r.sensor) {
        Some(RejectReason::UndeclaredSensor {
            index,
            sensor: r.sensor,
        })
    } else if r.offset_ms > MAX_BATCH_SPAN_MS {
        Some(RejectReason::SpanTooLong { index })
    } else if ts < u128::from(MIN_PLAUSIBLE_UNIX_MS) || ts > latest {
        Some(RejectReason::TimestampOutOfRange { index })
    } else {
        None
    }
}

/// The verdict is the first problem of the batch: seq 0, then emptiness, then the first
/// reading that breaks a rule; a batch with none is valid.
fn check_batch(batch: &Batch, sensors: &SensorSet, base: u64) {
    let verdict = validate_batch(batch, sensors, base, NOW_UNIX_MS);
    let expected = if batch.seq == 0 {
        Err(RejectReason::InvalidSeq)
    } else if batch.readings.is_empty() {
        Err(RejectReason::Empty)
    } else {
        batch
            .readings
            .iter()
            .enumerate()
            .find_map(|(i, r)| broken_rule(i as u16, r, sensors, base))
            .map_or(Ok(()), Err)
    };
    assert_eq!(verdict, expected, "batch {batch:?} against base {base}");
}

/// `check_seq` calls a seq at or below the stored one a duplicate, and counts the gap above it.
fn check_seqs(seq: u32) {
    for stored in [
        None,
        Some(0),
        Some(1),
        Some(seq.wrapping_sub(1)),
        Some(seq),
        Some(u32::MAX),
    ] {
        match check_seq(stored, seq) {
            Err(reason) => assert!(seq == 0 && reason == RejectReason::InvalidSeq),
            Ok(SeqVerdict::Duplicate) => assert!(seq != 0 && seq <= stored.unwrap_or(0)),
            Ok(SeqVerdict::New { gap }) => {
                assert_eq!(
                    u64::from(stored.unwrap_or(0)) + u64::from(gap) + 1,
                    u64::from(seq)
                )
            }
        }
    }
}

/// NaN != NaN, so readings compare by bits.
fn same(a: &DeviceMsg, b: &DeviceMsg) -> bool {
    match (a, b) {
        (DeviceMsg::Batch(x), DeviceMsg::Batch(y)) => {
            x.seq == y.seq
                && x.clock == y.clock
                && x.dropped == y.dropped
                && x.readings.len() == y.readings.len()
                && x.readings.iter().zip(&y.readings).all(|(r, s)| {
                    r.sensor == s.sensor
                        && r.offset_ms == s.offset_ms
                        && r.value.to_bits() == s.value.to_bits()
                })
        }
        _ => a == b,
    }
}
