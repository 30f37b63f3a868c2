//! Simulated devices on the host: the demo, the load generator and the test device.
//!
//! Each device is one tokio task driving the same [`DeviceCore`](crate::core::DeviceCore) the
//! board runs, with simulated sensors and a tokio-tungstenite socket behind the same transport
//! seam. No per-device threads and small socket buffers, so thousands fit in one process.
//!
//! Modules, in the order data flows:
//! - [`sensors`]: plausible sensor values, deterministic from a seed.
//! - [`device`]: one device's event loop ([`run_device`]) and its settings and report.
//! - [`link`]: connecting (token, subprotocol, small buffers) and the `Sender` adapter.
//! - [`fleet`]: many devices at once, and a summary.
//! - [`load`]: the load generator: lean devices that send whole batches at a set rate and
//!   measure ack latency, ten thousand to a process.
//!
//! ```no_run
//! # async fn demo() {
//! use firmware::sim::{SimDevice, run_device};
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let device = SimDevice::new("ws://127.0.0.1:8080/ws/device", "token", "dev-1", 1);
//! let task = tokio::spawn(run_device(device, stop_rx));
//! // ... later: stop sampling, deliver what is left, close with 1000.
//! stop_tx.send(true).ok();
//! let report = task.await.unwrap();
//! assert!(report.acked_all);
//! # }
//! ```

pub mod device;
pub mod fleet;
pub mod link;
pub mod load;
pub mod sensors;

pub use device::{DeviceReport, RecordedReading, SimCore, SimDevice, run_device};
pub use fleet::{FleetSummary, run_fleet};
pub use load::{LoadConfig, LoadReport, run_load};
pub use sensors::SimSensors;
