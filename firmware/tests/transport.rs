//! The embedded-svc seam, with a fake `Sender` that records frames: what the core sends goes
//! out as binary frames, what arrives (whole or in pieces) reaches the core, and a failed send
//! or a close puts the core back to reconnecting.

mod support;

use embedded_svc::ws::{ErrorType, FrameType, Sender};
use firmware::core::{DeviceCore, SessionState};
use firmware::transport::{Received, WsTransport};
use shared::{DeviceMsg, HubMsg, Welcome};
use support::{HUB_EPOCH_MS, config, device_config};

#[derive(Debug, Default)]
struct RecordingSender {
    frames: Vec<(FrameType, Vec<u8>)>,
    fail: bool,
}

#[derive(Debug, PartialEq)]
struct Broken;

impl ErrorType for RecordingSender {
    type Error = Broken;
}

impl Sender for RecordingSender {
    fn send(&mut self, frame_type: FrameType, frame_data: &[u8]) -> Result<(), Broken> {
        if self.fail {
            return Err(Broken);
        }
        self.frames.push((frame_type, frame_data.to_vec()));
        Ok(())
    }
}

fn encode(msg: &HubMsg) -> Vec<u8> {
    let mut buf = [0u8; 256];
    shared::encode(msg, &mut buf).unwrap().to_vec()
}

fn welcome() -> Vec<u8> {
    encode(&HubMsg::Welcome(Welcome {
        hub_time_ms: HUB_EPOCH_MS,
        stored_seq: None,
        config: device_config(),
    }))
}

/// A core that was told to connect and did.
fn connected() -> DeviceCore {
    let mut core: DeviceCore = DeviceCore::new(config(), 0).unwrap();
    while core.poll_action(0).is_some() {}
    core.handle_connected(0);
    core
}

#[test]
fn the_cores_frames_go_out_as_unfragmented_binary_frames() {
    let mut core = connected();
    let (mut t, mut tx) = (WsTransport::new(), RecordingSender::default());
    assert_eq!(t.send_pending(&mut core, 0, &mut tx), Ok(1));
    assert_eq!(tx.frames.len(), 1);
    let (frame_type, bytes) = &tx.frames[0];
    assert_eq!(*frame_type, FrameType::Binary(false));
    assert!(matches!(
        shared::decode_device(bytes),
        Ok(DeviceMsg::Hello(_))
    ));
    assert_eq!(t.stats().frames_sent, 1);
    assert_eq!(t.stats().bytes_sent, bytes.len() as u64);
}

#[test]
fn a_message_in_pieces_is_reassembled_before_it_reaches_the_core() {
    let mut core = connected();
    let (mut t, mut tx) = (WsTransport::new(), RecordingSender::default());
    t.send_pending(&mut core, 0, &mut tx).unwrap();
    let w = welcome();
    let (a, rest) = w.split_at(3);
    let (b, c) = rest.split_at(4);
    assert_eq!(
        t.receive(&mut core, 5, FrameType::Binary(true), a),
        Received::Partial
    );
    assert_eq!(
        t.receive(&mut core, 5, FrameType::Continue(false), b),
        Received::Partial
    );
    assert_eq!(core.state(), SessionState::AwaitingWelcome { since: 0 });
    assert_eq!(
        t.receive(&mut core, 5, FrameType::Continue(true), c),
        Received::Delivered
    );
    assert_eq!(core.state(), SessionState::Streaming);
}

#[test]
fn whole_frames_are_delivered_and_garbage_is_reported_not_fatal() {
    let mut core = connected();
    let (mut t, mut tx) = (WsTransport::new(), RecordingSender::default());
    t.send_pending(&mut core, 0, &mut tx).unwrap();
    assert_eq!(
        t.receive(&mut core, 1, FrameType::Binary(false), &welcome()),
        Received::Delivered
    );
    assert!(matches!(
        t.receive(&mut core, 2, FrameType::Binary(false), &[0xff, 0xff]),
        Received::Undecodable(_)
    ));
    assert_eq!(
        t.receive(&mut core, 3, FrameType::Text(false), b"hello"),
        Received::Ignored
    );
    assert_eq!(
        t.receive(&mut core, 3, FrameType::Ping, b""),
        Received::Ignored
    );
    assert_eq!(
        t.receive(&mut core, 3, FrameType::Continue(true), b"stray"),
        Received::Ignored
    );
    assert_eq!(core.state(), SessionState::Streaming);
    assert_eq!(core.stats().bad_frames, 1);
}

#[test]
fn a_message_over_the_hub_frame_limit_is_dropped_whole() {
    let mut core = connected();
    let mut t = WsTransport::new();
    let piece = [0u8; 200];
    assert_eq!(
        t.receive(&mut core, 1, FrameType::Binary(true), &piece),
        Received::Partial
    );
    assert_eq!(
        t.receive(&mut core, 1, FrameType::Continue(false), &piece),
        Received::Partial
    );
    assert_eq!(
        t.receive(&mut core, 1, FrameType::Continue(true), &piece),
        Received::Oversized { size: 600 }
    );
    assert_eq!(
        t.receive(&mut core, 1, FrameType::Binary(false), &[0u8; 300]),
        Received::Oversized { size: 300 }
    );
    assert_eq!(t.stats().oversized, 2);
    assert_eq!(core.stats().bad_frames, 0, "never reached the core");
    // The next message is read normally.
    assert_eq!(
        t.receive(&mut core, 2, FrameType::Binary(false), &welcome()),
        Received::Delivered
    );
}

#[test]
fn a_failed_send_or_a_close_sends_the_core_back_to_reconnecting() {
    let mut core = connected();
    let (mut t, mut tx) = (
        WsTransport::new(),
        RecordingSender {
            fail: true,
            ..Default::default()
        },
    );
    let err = t.send_pending(&mut core, 7, &mut tx).unwrap_err();
    assert_eq!(err.error, Broken);
    assert!(matches!(core.state(), SessionState::Waiting { .. }));

    let mut core = connected();
    assert_eq!(
        t.receive(&mut core, 9, FrameType::SocketClose, &[]),
        Received::Closed
    );
    assert!(matches!(core.state(), SessionState::Waiting { .. }));
}
