//! The validation rules, one promise each.

use shared::limits::*;
use shared::*;

const NOW: u64 = 1_764_000_000_000;

fn hello(ids: &[u8]) -> Hello {
    Hello {
        firmware: heapless::String::try_from("t").unwrap(),
        boot_id: 1,
        uptime_ms: 0,
        reset_reason: ResetReason::PowerOn,
        declared_rate: 1,
        sensors: ids
            .iter()
            .map(|&id| SensorDecl {
                id,
                kind: SensorKind::Other,
                unit: heapless::String::new(),
            })
            .collect(),
    }
}

fn batch(readings: &[(u8, u32, f32)]) -> Batch {
    Batch {
        seq: 1,
        clock: Clock::Hub { base_ms: NOW },
        dropped: 0,
        readings: readings
            .iter()
            .map(|&(sensor, offset_ms, value)| Reading {
                sensor,
                offset_ms,
                value,
            })
            .collect(),
    }
}

#[test]
fn hello_must_declare_unique_sensors() {
    assert_eq!(validate_hello(&hello(&[])), Err(HelloError::NoSensors));
    assert_eq!(
        validate_hello(&hello(&[1, 2, 1])),
        Err(HelloError::DuplicateSensor { id: 1 })
    );
    let set = validate_hello(&hello(&[0, 200])).unwrap();
    assert!(set.contains(0) && set.contains(200) && !set.contains(1));
}

#[test]
fn non_finite_values_are_rejected_with_their_index() {
    let set = validate_hello(&hello(&[0])).unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(
            validate_batch(&batch(&[(0, 0, 1.0), (0, 1, bad)]), &set, NOW, NOW),
            Err(RejectReason::NonFiniteValue { index: 1 })
        );
    }
}

#[test]
fn undeclared_sensors_are_rejected() {
    let set = validate_hello(&hello(&[0])).unwrap();
    assert_eq!(
        validate_batch(&batch(&[(5, 0, 1.0)]), &set, NOW, NOW),
        Err(RejectReason::UndeclaredSensor {
            index: 0,
            sensor: 5
        })
    );
}

#[test]
fn timestamps_before_2020_or_far_in_the_future_are_rejected() {
    let set = validate_hello(&hello(&[0])).unwrap();
    let b = batch(&[(0, 0, 1.0)]);
    assert_eq!(
        validate_batch(&b, &set, MIN_PLAUSIBLE_UNIX_MS - 1, NOW),
        Err(RejectReason::TimestampOutOfRange { index: 0 })
    );
    assert_eq!(
        validate_batch(&b, &set, NOW + MAX_FUTURE_SKEW_MS + 1, NOW),
        Err(RejectReason::TimestampOutOfRange { index: 0 })
    );
    assert_eq!(
        validate_batch(&b, &set, NOW + MAX_FUTURE_SKEW_MS, NOW),
        Ok(())
    );
}

#[test]
fn offsets_beyond_the_batch_span_are_rejected() {
    let set = validate_hello(&hello(&[0])).unwrap();
    assert_eq!(
        validate_batch(
            &batch(&[(0, MAX_BATCH_SPAN_MS + 1, 1.0)]),
            &set,
            NOW - 2 * u64::from(MAX_BATCH_SPAN_MS),
            NOW
        ),
        Err(RejectReason::SpanTooLong { index: 0 })
    );
}

#[test]
fn empty_batches_and_seq_zero_are_rejected() {
    let set = validate_hello(&hello(&[0])).unwrap();
    assert_eq!(
        validate_batch(&batch(&[]), &set, NOW, NOW),
        Err(RejectReason::Empty)
    );
    let mut b = batch(&[(0, 0, 1.0)]);
    b.seq = 0;
    assert_eq!(
        validate_batch(&b, &set, NOW, NOW),
        Err(RejectReason::InvalidSeq)
    );
}

#[test]
fn seq_at_or_below_the_cursor_is_a_duplicate_and_gaps_are_counted() {
    assert_eq!(check_seq(None, 1), Ok(SeqVerdict::New { gap: 0 }));
    assert_eq!(check_seq(None, 4), Ok(SeqVerdict::New { gap: 3 }));
    assert_eq!(check_seq(Some(10), 10), Ok(SeqVerdict::Duplicate));
    assert_eq!(check_seq(Some(10), 3), Ok(SeqVerdict::Duplicate));
    assert_eq!(check_seq(Some(10), 11), Ok(SeqVerdict::New { gap: 0 }));
    assert_eq!(check_seq(Some(10), 0), Err(RejectReason::InvalidSeq));
}
