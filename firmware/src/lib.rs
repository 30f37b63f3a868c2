//! The device side of the telemetry hub.
//!
//! Data flows through these modules in this order:
//! - [`core`]: the sans-IO device core (`no_std`, no allocation on the hot path). It samples on a
//!   schedule, batches readings, keeps encoded batches in a bounded outbox until the hub acks
//!   them, reconnects with backoff, sends heartbeats and maps uptime to wall time. Events go in
//!   (`handle_*(now, ..)`), actions come out (`poll_action`, `poll_transmit`, `poll_timeout`);
//!   it never touches a socket or a clock.
//! - [`transport`]: the seam between the core and any `embedded-svc` WebSocket client (the
//!   board's, `esp-idf-svc`'s, or the simulator's): sends the core's frames as binary frames
//!   and feeds received frames back to it.
//! - [`sim`] (feature `sim`, host only): simulated devices with plausible sensors over
//!   tokio-tungstenite, driving the same core; used by the `simulator` binary, the hub's demo
//!   and the end-to-end tests.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub mod core;
pub mod transport;

#[cfg(feature = "sim")]
pub mod sim;
