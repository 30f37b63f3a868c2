//! The board's WebSocket link against a scripted hub, on the host: the request carries the
//! token and subprotocol, a refused token is told apart, pings are answered, binary frames
//! reach the core through the `embedded_svc` seam, and a thousand reconnects allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use edge_ws::{FrameHeader, FrameType as Edge};
use firmware::core::{CoreConfig, DeviceCore, SessionState};
use shared::board_config::HubUrl;
use shared::{DeviceConfig, DeviceMsg, HubMsg, ResetReason, SensorDecl, SensorKind, Welcome};
use telemetry_link::handshake::accept_for;
use telemetry_link::{CloseCause, HandshakeError, Link, LinkEvent};

/// Counts allocations on the thread that armed it (the test harness allocates on others).
struct CountingAlloc;
static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! { static COUNT_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) && COUNT_HERE.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

type BoardLink = Link<{ 3 * (4096 + 14) }, 1024>;

fn core(now: u64) -> Box<DeviceCore> {
    let sensors = [SensorDecl {
        id: 0,
        kind: SensorKind::Temperature,
        unit: "°C".try_into().unwrap(),
    }];
    let mut cfg = CoreConfig::new("esp32c3-test", 0x5eed, ResetReason::PowerOn, &sensors).unwrap();
    cfg.device.sample_interval_ms = 100;
    Box::new(DeviceCore::new(cfg, now).unwrap())
}

fn url() -> HubUrl {
    HubUrl::parse("ws://192.168.1.10:8080/ws/device").unwrap()
}

const TOKEN: &str = "00112233445566778899aabbccddeeff";

/// What the hub would answer to the request in `request`.
fn hub_response(request: &[u8], out: &mut Vec<u8>) {
    let text = std::str::from_utf8(request).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let accept = accept_for(key.as_bytes().try_into().unwrap());
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(&accept);
    out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: telemetry.v1\r\n\r\n");
}

/// An unmasked server frame.
fn server_frame(frame_type: Edge, payload: &[u8], out: &mut Vec<u8>) {
    let h = FrameHeader {
        frame_type,
        payload_len: payload.len() as u64,
        mask_key: None,
    };
    let mut head = [0u8; 14];
    let n = h.serialize(&mut head).unwrap();
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// Decode the client's (masked) frames in `bytes`.
fn client_frames(mut bytes: &[u8]) -> Vec<(Edge, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::deserialize(bytes).unwrap();
        assert!(h.mask_key.is_some(), "a client frame must be masked");
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        h.mask(&mut payload, 0);
        frames.push((h.frame_type, payload));
        bytes = &bytes[n + len..];
    }
    frames
}

fn feed(link: &mut BoardLink, core: &mut DeviceCore, now: u64, bytes: &[u8]) -> LinkEvent {
    let space = link.read_space();
    space[..bytes.len()].copy_from_slice(bytes);
    link.received(core, now, bytes.len())
}

fn welcome_bytes(hub_time_ms: u64) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let w = HubMsg::Welcome(Welcome {
        hub_time_ms,
        stored_seq: None,
        config: DeviceConfig {
            sample_interval_ms: 100,
            ..DeviceConfig::default()
        },
    });
    shared::encode(&w, &mut buf).unwrap().to_vec()
}

#[test]
fn the_upgrade_request_carries_the_bearer_token_and_the_subprotocol() {
    let mut link = BoardLink::new(1);
    link.start(&url(), TOKEN, *b"the sample nonce").unwrap();
    let req = std::str::from_utf8(link.outgoing()).unwrap();
    assert_eq!(
        req,
        "GET /ws/device HTTP/1.1\r\nHost: 192.168.1.10:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: telemetry.v1\r\n\
         Authorization: Bearer 00112233445566778899aabbccddeeff\r\n\r\n"
    );
}

#[test]
fn a_401_is_reported_as_a_refused_token_and_the_core_backs_off() {
    let mut core = core(0);
    let mut link = BoardLink::new(1);
    assert!(core.poll_action(0).is_some());
    link.start(&url(), TOKEN, [7; 16]).unwrap();
    let ev = feed(
        &mut link,
        &mut core,
        5,
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(
        ev,
        LinkEvent::Closed(CloseCause::Handshake(HandshakeError::Unauthorized))
    );
    assert!(
        matches!(core.state(), SessionState::Waiting { .. }),
        "{:?}",
        core.state()
    );
}

#[test]
fn a_wrong_accept_or_missing_subprotocol_is_refused() {
    let mut link = BoardLink::new(1);
    let mut core = core(0);
    link.start(&url(), TOKEN, [7; 16]).unwrap();
    let ev = feed(
        &mut link,
        &mut core,
        1,
        b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\nSec-WebSocket-Protocol: telemetry.v1\r\n\r\n",
    );
    assert_eq!(
        ev,
        LinkEvent::Closed(CloseCause::Handshake(HandshakeError::BadAccept))
    );
    link.start(&url(), TOKEN, [7; 16]).unwrap();
    let mut resp = Vec::new();
    hub_response(link.outgoing(), &mut resp);
    let resp = String::from_utf8(resp)
        .unwrap()
        .replace("Sec-WebSocket-Protocol: telemetry.v1\r\n", "");
    let ev = feed(&mut link, &mut core, 2, resp.as_bytes());
    assert_eq!(
        ev,
        LinkEvent::Closed(CloseCause::Handshake(HandshakeError::WrongSubprotocol))
    );
}

#[test]
fn hello_goes_out_masked_welcome_comes_in_and_pings_are_answered() {
    let mut core = core(0);
    let mut link = BoardLink::new(42);
    assert_eq!(core.poll_action(0), Some(firmware::core::Action::Connect));
    link.start(&url(), TOKEN, [1; 16]).unwrap();
    let mut resp = Vec::new();
    hub_response(link.outgoing(), &mut resp);
    link.written();
    // The 101 and the first frame arrive in one read.
    server_frame(Edge::Ping, b"hi", &mut resp);
    assert_eq!(feed(&mut link, &mut core, 10, &resp), LinkEvent::Opened);
    assert_eq!(
        client_frames(link.outgoing()),
        vec![(Edge::Pong, b"hi".to_vec())]
    );
    link.written();

    assert_eq!(link.send_pending(&mut core, 11).unwrap(), 1);
    let frames = client_frames(link.outgoing());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, Edge::Binary(false));
    assert!(
        matches!(shared::decode_device(&frames[0].1).unwrap(), DeviceMsg::Hello(h) if h.firmware == "esp32c3-test")
    );
    link.written();

    let mut bytes = Vec::new();
    server_frame(
        Edge::Binary(false),
        &welcome_bytes(1_780_000_000_000),
        &mut bytes,
    );
    assert_eq!(feed(&mut link, &mut core, 20, &bytes), LinkEvent::Frames);
    assert_eq!(core.state(), SessionState::Streaming);
    assert_eq!(link.transport().stats().messages_delivered, 1);
}

#[test]
fn a_frame_split_across_reads_is_reassembled() {
    let mut core = core(0);
    let mut link = BoardLink::new(3);
    core.poll_action(0);
    link.start(&url(), TOKEN, [2; 16]).unwrap();
    let mut resp = Vec::new();
    hub_response(link.outgoing(), &mut resp);
    link.written();
    feed(&mut link, &mut core, 1, &resp);
    link.send_pending(&mut core, 1).unwrap();
    link.written();
    let mut bytes = Vec::new();
    server_frame(
        Edge::Binary(false),
        &welcome_bytes(1_780_000_000_000),
        &mut bytes,
    );
    let (a, b) = bytes.split_at(3);
    assert_eq!(feed(&mut link, &mut core, 2, a), LinkEvent::Frames);
    assert_eq!(core.state(), SessionState::AwaitingWelcome { since: 1 });
    feed(&mut link, &mut core, 3, b);
    assert_eq!(core.state(), SessionState::Streaming);
}

#[test]
fn a_close_from_the_hub_is_echoed_and_the_core_reconnects() {
    let mut core = core(0);
    let mut link = BoardLink::new(3);
    core.poll_action(0);
    link.start(&url(), TOKEN, [2; 16]).unwrap();
    let mut resp = Vec::new();
    hub_response(link.outgoing(), &mut resp);
    link.written();
    server_frame(Edge::Close, &1001u16.to_be_bytes(), &mut resp);
    assert_eq!(
        feed(&mut link, &mut core, 1, &resp),
        LinkEvent::Closed(CloseCause::ByHub { code: Some(1001) })
    );
    assert_eq!(
        client_frames(link.outgoing()),
        vec![(Edge::Close, 1001u16.to_be_bytes().to_vec())]
    );
    assert!(matches!(core.state(), SessionState::Waiting { .. }));
}

#[test]
fn a_thousand_reconnects_allocate_nothing() {
    // Everything the board keeps is built before counting starts, as at boot.
    let mut core = core(0);
    let mut link = Box::new(BoardLink::new(9));
    let url = url();
    let mut resp = Vec::with_capacity(4096);
    let welcome = welcome_bytes(1_780_000_000_000);
    let mut now = 0u64;
    COUNT_HERE.with(|c| c.set(true));
    ARMED.store(true, Ordering::SeqCst);
    for round in 0..1000u32 {
        // Wait for the core to ask for a connection (its backoff), sampling meanwhile.
        loop {
            match core.poll_action(now) {
                Some(firmware::core::Action::Connect) => break,
                Some(firmware::core::Action::Sample { sensor }) => {
                    let _ = core.handle_reading(now, sensor, 21.5);
                }
                Some(firmware::core::Action::Disconnect { .. }) => {
                    link.socket_closed(&mut core, now)
                }
                None => now = core.poll_timeout().unwrap_or(now + 1).max(now + 1),
            }
        }
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&round.to_le_bytes());
        link.start(&url, TOKEN, key).unwrap();
        resp.clear();
        hub_response(link.outgoing(), &mut resp);
        link.written();
        server_frame(Edge::Ping, b"p", &mut resp);
        assert_eq!(feed(&mut link, &mut core, now, &resp), LinkEvent::Opened);
        link.send_pending(&mut core, now).unwrap();
        link.written();
        resp.clear();
        server_frame(Edge::Binary(false), &welcome, &mut resp);
        feed(&mut link, &mut core, now + 1, &resp);
        assert_eq!(core.state(), SessionState::Streaming);
        link.send_pending(&mut core, now + 1).unwrap();
        link.written();
        // Then the network drops it.
        link.socket_closed(&mut core, now + 2);
        now += 2;
    }
    let during_loop = ALLOCATIONS.load(Ordering::SeqCst);
    // The counter itself works: one allocation here is seen.
    drop(std::hint::black_box(Box::new(round_trip_marker())));
    ARMED.store(false, Ordering::SeqCst);
    COUNT_HERE.with(|c| c.set(false));
    assert_eq!(during_loop, 0, "reconnecting allocated");
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        1,
        "the counting allocator counts"
    );
    assert_eq!(core.stats().connections, 1000);
    assert_eq!(core.stats().welcomes, 1000);
}

fn round_trip_marker() -> u64 {
    0x5eed
}
