//! The device core: `no_std`, sans-IO, no allocation on the hot path.
//!
//! Modules, in the order a reading passes through them:
//! - [`config`]: what a core is built with ([`CoreConfig`]) and the bounds it holds the hub's
//!   settings to.
//! - [`batcher`]: the sampling schedule and the open batch ([`Stamp`]: where a reading went).
//! - [`clock`]: uptime to wall time; which [`ClockSource`] a batch carries.
//! - [`frame`]: encoding messages from borrowed parts (no copies of a batch).
//! - [`outbox`]: encoded batches kept until acked, bounded, oldest dropped first and counted.
//! - [`backoff`]: reconnect delays with jitter, from [`rng`].
//! - [`sleep`]: for a device that deep-sleeps between samples, the core's state kept across
//!   sleeps in a bounded image (RTC memory), and when a wake delivers.
//! - [`session`]: the state machine that ties them together ([`DeviceCore`]), and
//!   [`action`]: what goes in and out of it ([`Action`], [`SessionState`], [`CoreStats`]).
//!
//! All of it takes time as an argument (`now`: ms of device uptime) and never reads a clock,
//! opens a socket or sleeps, so the same code runs on the board, in the simulator and in
//! deterministic tests.

pub mod action;
pub mod backoff;
pub mod batcher;
pub mod clock;
pub mod config;
pub mod frame;
pub mod outbox;
pub mod resolution;
pub mod rng;
pub mod session;
pub mod sleep;

pub use action::{Action, CoreStats, DisconnectReason, ReadingError, SessionState};
pub use backoff::{Backoff, BackoffConfig, Jitter};
pub use batcher::{SampleSchedule, Stamp};
pub use clock::{ClockMap, ClockSource};
pub use config::{ConfigError, CoreConfig};
pub use outbox::{FrameTooLarge, Outbox};
pub use rng::XorShift64;
pub use session::{DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_FRAMES, DeviceCore};
pub use sleep::{
    DEFAULT_SLEEP_IMAGE_BYTES, KeptImage, SleepImageError, SleepPolicy, SleepSaveError, WakeReport,
};
