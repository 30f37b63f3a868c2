//! The board's WebSocket link: `no_std`, no allocation, tested on the host.
//!
//! The board app (`../src/main.rs`) owns the Wi-Fi, the TCP socket and the clock; everything
//! it says on the socket is decided here, over fixed buffers reused for every connection:
//! - [`pem`]: the config image's CA, PEM to DER in place, once at boot.
//! - [`handshake`]: the upgrade request (`Authorization: Bearer`, `Sec-WebSocket-Protocol:
//!   telemetry.v1`) and the checks on the hub's answer (101, accept value, subprotocol; 401 is
//!   a refused token).
//! - [`frame`]: RFC 6455 frames (edge-ws headers): a masked outgoing queue that is the core's
//!   `embedded_svc::ws::Sender`, and a reader that cuts received bytes into frames.
//! - [`link`]: one connection's state machine: routes binary frames to the device core through
//!   the workspace's `WsTransport` seam, answers pings, echoes closes.
//! - [`session`]: one connection, plain TCP or TLS 1.3 (embedded-tls, the hub's CA), moving
//!   bytes between the socket and the link; generic over the socket, so the host tests run it
//!   against a rustls hub.
//! - [`sntp`]: the SNTP request and the checks on its answer, for the board's wall clock.
#![no_std]
#![forbid(unsafe_code)]

pub mod frame;
pub mod handshake;
pub mod link;
pub mod pem;
pub mod session;
pub mod sntp;

pub use frame::{FrameError, FrameReader, FrameSink};
pub use handshake::HandshakeError;
pub use link::{CloseCause, Link, LinkEvent};
pub use session::{Channel, Session, SessionError, Socket, TlsBuffers};
