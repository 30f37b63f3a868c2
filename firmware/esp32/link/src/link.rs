//! One WebSocket connection's worth of state between the socket and the device core, reused
//! for every connection: the handshake, the outgoing queue, the incoming frames, and the
//! routing of each frame (binary to the core through `WsTransport`, pings answered, close
//! echoed). The board's async shell only moves bytes between this and its TCP socket.

use embedded_svc::ws::FrameType;
use firmware::core::DeviceCore;
use firmware::transport::{Received, WsTransport};
use shared::board_config::HubUrl;

use crate::frame::{FrameError, FrameReader, FrameSink};
use crate::handshake::{self, HandshakeError};

/// What happened to the connection after some bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Still waiting for the rest of the handshake response.
    Handshaking,
    /// The handshake completed: the core was told it is connected.
    Opened,
    /// Frames were handled (the outgoing queue may hold a pong or a close reply).
    Frames,
    /// The hub closed the WebSocket (or broke the protocol): the core was told; close the socket.
    Closed(CloseCause),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// A close frame from the hub, with its code if it gave one.
    ByHub {
        code: Option<u16>,
    },
    Handshake(HandshakeError),
    Frame(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Handshake { key: [u8; 24] },
    Open,
}

/// The per-connection state, allocated once (`TX` and `RX` are the outgoing queue and the
/// receive buffer).
pub struct Link<const TX: usize, const RX: usize> {
    phase: Phase,
    pub sink: FrameSink<TX>,
    reader: FrameReader<RX>,
    transport: WsTransport,
}

impl<const TX: usize, const RX: usize> Link<TX, RX> {
    pub const fn new(seed: u64) -> Self {
        Self {
            phase: Phase::Idle,
            sink: FrameSink::new(seed),
            reader: FrameReader::new(),
            transport: WsTransport::new(),
        }
    }

    /// A new TCP connection is up: queue the upgrade request (with `random` for the key).
    pub fn start(
        &mut self,
        url: &HubUrl,
        token: &str,
        random: [u8; 16],
    ) -> Result<(), HandshakeError> {
        self.reset();
        let key = handshake::client_key(random);
        self.sink
            .push_raw(|space| handshake::write_request(space, url, token, &key))?;
        self.phase = Phase::Handshake { key };
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Bytes to write to the socket now; call [`Link::written`] once they are written.
    pub fn outgoing(&self) -> &[u8] {
        self.sink.pending()
    }

    pub fn written(&mut self) {
        self.sink.clear();
    }

    /// Where the next socket read goes.
    pub fn read_space(&mut self) -> &mut [u8] {
        self.reader.space()
    }

    /// `n` bytes were read into `read_space()` at `now`: finish the handshake, hand frames to
    /// the core, answer pings.
    pub fn received<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
        n: usize,
    ) -> LinkEvent {
        self.reader.filled(n);
        let mut event = LinkEvent::Frames;
        if let Phase::Handshake { key } = self.phase {
            match handshake::check_response(self.reader.unread(), &key) {
                Ok(None) => return LinkEvent::Handshaking,
                Ok(Some(end)) => {
                    self.reader.skip(end);
                    self.phase = Phase::Open;
                    core.handle_connected(now);
                    event = LinkEvent::Opened;
                }
                Err(e) => return self.fail(core, now, CloseCause::Handshake(e)),
            }
        }
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return self.fail(core, now, CloseCause::Frame(e)),
            };
            let payload = self.reader.payload(&frame);
            match frame.frame_type {
                FrameType::Ping => {
                    // RFC 6455 5.5.2: answer with the same payload. A full queue will be
                    // flushed right after; a ping lost to it only delays the hub's view.
                    let _ = self.sink.push(FrameType::Pong, payload);
                }
                FrameType::Close => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let echo = [
                        payload.first().copied().unwrap_or(0x03),
                        payload.get(1).copied().unwrap_or(0xe8),
                    ];
                    let _ = self.sink.push(FrameType::Close, &echo);
                    self.transport.receive(core, now, FrameType::Close, &[]);
                    self.phase = Phase::Idle;
                    self.reader.consume();
                    return LinkEvent::Closed(CloseCause::ByHub { code });
                }
                other => {
                    if self.transport.receive(core, now, other, payload) == Received::Closed {
                        self.phase = Phase::Idle;
                    }
                }
            }
        }
        self.reader.consume();
        event
    }

    /// Queue every frame the core has ready (Hello, batches, heartbeat) through the
    /// `embedded_svc::ws::Sender` seam.
    pub fn send_pending<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
    ) -> Result<usize, FrameError> {
        if self.phase != Phase::Open {
            return Ok(0);
        }
        self.transport
            .send_pending(core, now, &mut self.sink)
            .map_err(|e| {
                self.phase = Phase::Idle;
                e.error
            })
    }

    /// Queue a close frame with `code` (the core's `Disconnect` action).
    pub fn close(&mut self, code: u16) {
        if self.phase == Phase::Open {
            let _ = self.sink.push(FrameType::Close, &code.to_be_bytes());
        }
        self.phase = Phase::Idle;
    }

    /// The socket is gone (or being replaced): tell the core if it thought it was connected.
    pub fn socket_closed<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
    ) {
        self.reset();
        core.handle_disconnected(now);
    }

    pub fn transport(&self) -> &WsTransport {
        &self.transport
    }

    fn fail<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
        cause: CloseCause,
    ) -> LinkEvent {
        self.reset();
        core.handle_disconnected(now);
        LinkEvent::Closed(cause)
    }

    fn reset(&mut self) {
        self.phase = Phase::Idle;
        self.sink.clear();
        self.reader.reset();
        self.transport.reset();
    }
}
