//! The seam between the device core and an `embedded-svc` WebSocket client.
//!
//! The board's client, `esp-idf-svc`'s `EspWebSocketClient` and the simulator's adapter all
//! implement the blocking [`embedded_svc::ws::Sender`]; none of them offers a `Receiver` the
//! core could pull from: the ESP-IDF client hands received frames to a callback, and hands a
//! large message over in pieces with no offsets. So:
//! - sending: [`WsTransport::send_pending`] drains the core's `poll_transmit` into
//!   `Sender::send(FrameType::Binary(false), ..)`;
//! - receiving: the client's callback calls [`WsTransport::receive`] with each frame's type and
//!   bytes; binary messages (reassembled from pieces, bounded by `MAX_HUB_FRAME_BYTES`) go to
//!   the core as `handle_frame` events, a close goes as `handle_disconnected`.
//!
//! Bounded and `no_std`: one reassembly buffer of `MAX_HUB_FRAME_BYTES`.

use ::core::fmt::Debug;

use embedded_svc::ws::{FrameType, Sender};
use heapless::Vec;
use shared::DecodeError;
use shared::limits::MAX_HUB_FRAME_BYTES;

use crate::core::DeviceCore;

/// A frame the client could not send. The core has already been told the connection is gone
/// (it will reconnect and resend); the shell should close the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the WebSocket client failed to send a {len}-byte frame: {error:?}")]
pub struct SendError<E: Debug> {
    pub len: usize,
    pub error: E,
}

/// What became of one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A whole binary message went to the core.
    Delivered,
    /// A whole binary message went to the core, which could not decode it (counted there).
    Undecodable(DecodeError),
    /// A piece of a fragmented message; the rest is awaited.
    Partial,
    /// A binary message over `MAX_HUB_FRAME_BYTES`: dropped (no hub message is that large).
    Oversized { size: usize },
    /// Not for the core: text (the device socket is binary only), ping/pong (the client
    /// answers those), or a stray continuation.
    Ignored,
    /// The socket closed; the core was told.
    Closed,
}

/// Counters of the seam.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub messages_delivered: u64,
    pub oversized: u32,
    pub ignored: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    Idle,
    /// Collecting a fragmented binary message.
    Binary,
    /// Skipping the rest of a message we do not want (text, or binary past the limit; `size`
    /// counts what was seen).
    Skipping {
        binary: bool,
        size: usize,
    },
}

/// Glue between one core and one `embedded-svc` client.
#[derive(Debug, Clone)]
pub struct WsTransport {
    buf: Vec<u8, MAX_HUB_FRAME_BYTES>,
    assembly: Assembly,
    stats: TransportStats,
}

impl Default for WsTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl WsTransport {
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            assembly: Assembly::Idle,
            stats: TransportStats {
                frames_sent: 0,
                bytes_sent: 0,
                messages_delivered: 0,
                oversized: 0,
                ignored: 0,
            },
        }
    }

    pub fn stats(&self) -> TransportStats {
        self.stats
    }

    /// Send every frame the core has ready at `now`. Returns how many went out. On a send
    /// failure the core is told the connection is gone (`handle_disconnected`), so the frame
    /// is resent on the next connection.
    pub fn send_pending<S: Sender, const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
        sender: &mut S,
    ) -> Result<usize, SendError<S::Error>> {
        let mut sent = 0;
        loop {
            let Some(frame) = core.poll_transmit(now) else {
                return Ok(sent);
            };
            let len = frame.len();
            if let Err(error) = sender.send(FrameType::Binary(false), frame) {
                core.handle_disconnected(now);
                self.reset();
                return Err(SendError { len, error });
            }
            sent += 1;
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += len as u64;
        }
    }

    /// One frame (or piece of a message) from the client, as its callback saw it.
    pub fn receive<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
        frame_type: FrameType,
        data: &[u8],
    ) -> Received {
        match frame_type {
            FrameType::Binary(false) => {
                self.assembly = Assembly::Idle;
                self.deliver(core, now, data)
            }
            FrameType::Binary(true) => {
                self.buf.clear();
                self.assembly = Assembly::Binary;
                self.collect(data)
            }
            FrameType::Continue(last) => {
                let received = match self.assembly {
                    Assembly::Idle => {
                        self.stats.ignored += 1;
                        return Received::Ignored;
                    }
                    Assembly::Binary => self.collect(data),
                    Assembly::Skipping { binary, size } => {
                        self.assembly = Assembly::Skipping {
                            binary,
                            size: size.saturating_add(data.len()),
                        };
                        Received::Partial
                    }
                };
                if !last {
                    return received;
                }
                let assembly = ::core::mem::replace(&mut self.assembly, Assembly::Idle);
                match assembly {
                    Assembly::Binary => {
                        // Deliver from a copy-free view: swap the buffer out for the call.
                        let buf = ::core::mem::take(&mut self.buf);
                        let r = self.deliver(core, now, &buf);
                        self.buf = buf;
                        self.buf.clear();
                        r
                    }
                    Assembly::Skipping { binary: true, size } => self.oversized(size),
                    Assembly::Skipping { binary: false, .. } | Assembly::Idle => {
                        self.stats.ignored += 1;
                        Received::Ignored
                    }
                }
            }
            FrameType::Text(fragmented) => {
                if fragmented {
                    self.assembly = Assembly::Skipping {
                        binary: false,
                        size: data.len(),
                    };
                }
                self.stats.ignored += 1;
                Received::Ignored
            }
            FrameType::Ping | FrameType::Pong => {
                self.stats.ignored += 1;
                Received::Ignored
            }
            FrameType::Close | FrameType::SocketClose => {
                self.reset();
                core.handle_disconnected(now);
                Received::Closed
            }
        }
    }

    /// Forget any half-received message (the connection is gone).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.assembly = Assembly::Idle;
    }

    fn collect(&mut self, data: &[u8]) -> Received {
        if self.buf.extend_from_slice(data).is_err() {
            let size = self.buf.len() + data.len();
            self.buf.clear();
            self.assembly = Assembly::Skipping { binary: true, size };
        }
        Received::Partial
    }

    fn deliver<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
        data: &[u8],
    ) -> Received {
        if data.len() > MAX_HUB_FRAME_BYTES {
            return self.oversized(data.len());
        }
        self.stats.messages_delivered += 1;
        match core.handle_frame(now, data) {
            Ok(()) => Received::Delivered,
            Err(e) => Received::Undecodable(e),
        }
    }

    fn oversized(&mut self, size: usize) -> Received {
        self.stats.oversized += 1;
        Received::Oversized { size }
    }
}
