//! Golden vectors: the exact bytes of each message, checked both ways. The same hex strings
//! are in `docs/protocol.md`, so an outside client can test its encoder and decoder against
//! them. Changing any of these bytes is a wire-format break (a new subprotocol version).

use postcard::experimental::max_size::MaxSize;
use shared::*;

fn hello() -> DeviceMsg {
    let mut sensors = heapless::Vec::new();
    sensors
        .push(SensorDecl {
            id: 0,
            kind: SensorKind::Temperature,
            unit: heapless::String::try_from("°C").unwrap(),
        })
        .unwrap();
    sensors
        .push(SensorDecl {
            id: 1,
            kind: SensorKind::Humidity,
            unit: heapless::String::try_from("%RH").unwrap(),
        })
        .unwrap();
    DeviceMsg::Hello(Hello {
        firmware: heapless::String::try_from("sim-0.1.0").unwrap(),
        boot_id: 0xDEAD_BEEF,
        uptime_ms: 1234,
        reset_reason: ResetReason::PowerOn,
        declared_rate: 2,
        sensors,
    })
}

fn batch() -> DeviceMsg {
    let mut readings = heapless::Vec::new();
    for (sensor, offset_ms, value) in [(0, 0, 21.5f32), (1, 0, 45.25), (0, 1000, 21.625)] {
        readings
            .push(Reading {
                sensor,
                offset_ms,
                value,
            })
            .unwrap();
    }
    DeviceMsg::Batch(Batch {
        seq: 1,
        clock: Clock::Hub {
            base_ms: 1_764_000_000_000,
        },
        dropped: 0,
        readings,
    })
}

fn uptime_batch() -> DeviceMsg {
    let mut readings = heapless::Vec::new();
    readings
        .push(Reading {
            sensor: 1,
            offset_ms: 250,
            value: -3.5,
        })
        .unwrap();
    DeviceMsg::Batch(Batch {
        seq: 300,
        clock: Clock::Uptime { base_ms: 5000 },
        dropped: 17,
        readings,
    })
}

/// (name, message, hex) for device-to-hub messages.
fn device_vectors() -> Vec<(&'static str, DeviceMsg, &'static str)> {
    vec![
        (
            "hello",
            hello(),
            "000973696d2d302e312e30effdb6f50dd209010202000003c2b043010103255248",
        ),
        (
            "batch",
            batch(),
            "01010180d0dfb4ab33000300000000ac4101000000354200e8070000ad41",
        ),
        (
            "uptime batch",
            uptime_batch(),
            "01ac02028827110101fa01000060c0",
        ),
        (
            "heartbeat",
            DeviceMsg::Heartbeat(Heartbeat { uptime_ms: 60_000 }),
            "02e0d403",
        ),
    ]
}

fn hub_vectors() -> Vec<(&'static str, HubMsg, &'static str)> {
    vec![
        (
            "welcome",
            HubMsg::Welcome(Welcome {
                hub_time_ms: 1_764_000_000_000,
                stored_seq: Some(41),
                config: DeviceConfig::default(),
            }),
            "0080d0dfb4ab330129e80720e807904e",
        ),
        ("ack", HubMsg::Ack { seq: 42 }, "012a"),
        (
            "reject",
            HubMsg::Reject {
                seq: 7,
                reason: RejectReason::NonFiniteValue { index: 3 },
            },
            "02070203",
        ),
        (
            "config",
            HubMsg::Config(DeviceConfig {
                sample_interval_ms: 500,
                batch_max_readings: 64,
                batch_max_age_ms: 5000,
                heartbeat_ms: 15_000,
            }),
            "03f4034088279875",
        ),
        (
            "pong",
            HubMsg::Pong {
                hub_time_ms: 1_764_000_000_000,
                uptime_ms: 60_000,
            },
            "0480d0dfb4ab33e0d403",
        ),
        (
            "goodbye",
            HubMsg::Goodbye {
                reason: CloseReason::Replaced,
            },
            "0501",
        ),
    ]
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

#[test]
fn device_messages_encode_to_their_golden_bytes_and_back() {
    for (name, msg, hex) in device_vectors() {
        let bytes = codec::to_vec(&msg).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            hex.replace(' ', ""),
            "{name} encodes differently"
        );
        assert_eq!(
            decode_device(&unhex(hex)).unwrap(),
            msg,
            "{name} decodes differently"
        );
    }
}

#[test]
fn hub_messages_encode_to_their_golden_bytes_and_back() {
    for (name, msg, hex) in hub_vectors() {
        let bytes = codec::to_vec(&msg).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            hex.replace(' ', ""),
            "{name} encodes differently"
        );
        assert_eq!(
            decode_hub(&unhex(hex)).unwrap(),
            msg,
            "{name} decodes differently"
        );
    }
}

#[test]
#[ignore = "prints the vectors for docs/protocol.md"]
fn print_vectors() {
    for (name, msg, _) in device_vectors() {
        println!("{name}: {}", hex::encode(codec::to_vec(&msg).unwrap()));
    }
    for (name, msg, _) in hub_vectors() {
        println!("{name}: {}", hex::encode(codec::to_vec(&msg).unwrap()));
    }
}

// Checked at compile time: the largest possible encoding of every message fits its limit.
const _: () = assert!(
    HubMsg::POSTCARD_MAX_SIZE <= limits::MAX_HUB_FRAME_BYTES,
    "a hub message can exceed MAX_HUB_FRAME_BYTES"
);
const _: () = assert!(
    DeviceMsg::POSTCARD_MAX_SIZE <= limits::MAX_DEVICE_FRAME_BYTES,
    "a device message can exceed MAX_DEVICE_FRAME_BYTES"
);
