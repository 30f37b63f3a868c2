//! Encoding device messages straight from borrowed parts.
//!
//! `shared::DeviceMsg` owns its payload, so encoding the open batch through it would copy the
//! whole batch (3 KiB at the limit) onto the stack first. `DeviceMsgRef` mirrors its variants
//! in the same order with borrowed fields; postcard encodes an enum as its variant index
//! followed by the payload, so the bytes are identical (a test holds the two to that).

use serde::Serialize;
use shared::{Batch, EncodeError, Heartbeat, Hello};

/// `shared::DeviceMsg`, borrowed. Variants must stay in `DeviceMsg`'s order.
#[derive(Serialize)]
enum DeviceMsgRef<'a> {
    Hello(&'a Hello),
    Batch(&'a Batch),
    Heartbeat(&'a Heartbeat),
}

pub fn encode_hello<'b>(hello: &Hello, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeError> {
    shared::encode(&DeviceMsgRef::Hello(hello), buf)
}

pub fn encode_batch<'b>(batch: &Batch, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeError> {
    shared::encode(&DeviceMsgRef::Batch(batch), buf)
}

pub fn encode_heartbeat<'b>(
    heartbeat: &Heartbeat,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], EncodeError> {
    shared::encode(&DeviceMsgRef::Heartbeat(heartbeat), buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::Vec;
    use shared::{Clock, DeviceMsg, Reading, ResetReason, SensorDecl, SensorKind};

    #[test]
    fn borrowed_encoding_matches_the_owned_message_byte_for_byte() {
        let mut sensors = Vec::new();
        sensors
            .push(SensorDecl {
                id: 0,
                kind: SensorKind::Temperature,
                unit: "°C".try_into().unwrap(),
            })
            .unwrap();
        let hello = Hello {
            firmware: "t-1".try_into().unwrap(),
            boot_id: 0xdead_beef,
            uptime_ms: 123_456,
            reset_reason: ResetReason::Brownout,
            declared_rate: 4,
            sensors,
        };
        let mut readings = Vec::new();
        readings
            .push(Reading {
                sensor: 0,
                offset_ms: 70_000,
                value: -3.25,
            })
            .unwrap();
        let batch = Batch {
            seq: 300,
            clock: Clock::Hub {
                base_ms: 1_780_000_000_000,
            },
            dropped: 9,
            readings,
        };
        let heartbeat = Heartbeat { uptime_ms: 1 << 40 };

        let (mut a, mut b) = ([0u8; 512], [0u8; 512]);
        assert_eq!(
            encode_hello(&hello, &mut a).unwrap(),
            shared::encode(&DeviceMsg::Hello(hello), &mut b).unwrap()
        );
        assert_eq!(
            encode_batch(&batch, &mut a).unwrap(),
            shared::encode(&DeviceMsg::Batch(batch), &mut b).unwrap()
        );
        assert_eq!(
            encode_heartbeat(&heartbeat, &mut a).unwrap(),
            shared::encode(&DeviceMsg::Heartbeat(heartbeat), &mut b).unwrap()
        );
    }
}
