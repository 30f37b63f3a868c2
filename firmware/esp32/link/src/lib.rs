//! The board's WebSocket link: sans-IO, `no_std`, no allocation, tested on the host.
//!
//! The board app (`../src/main.rs`) owns the Wi-Fi, the TCP socket and the clock; everything
//! it says on the socket is decided here, over fixed buffers reused for every connection:
//! - [`handshake`]: the upgrade request (`Authorization: Bearer`, `Sec-WebSocket-Protocol:
//!   telemetry.v1`) and the checks on the hub's answer (101, accept value, subprotocol; 401 is
//!   a refused token).
//! - [`frame`]: RFC 6455 frames (edge-ws headers): a masked outgoing queue that is the core's
//!   `embedded_svc::ws::Sender`, and a reader that cuts received bytes into frames.
//! - [`link`]: one connection's state machine: routes binary frames to the device core through
//!   the workspace's `WsTransport` seam, answers pings, echoes closes.
//! - [`sntp`]: the SNTP request and the checks on its answer, for the board's wall clock.
#![no_std]
#![forbid(unsafe_code)]

pub mod frame;
pub mod handshake;
pub mod link;
pub mod sntp;

pub use frame::{FrameError, FrameReader, FrameSink};
pub use handshake::HandshakeError;
pub use link::{CloseCause, Link, LinkEvent};
