//! Counters for `/metrics` (Prometheus text format) and the health endpoint. Plain atomics:
//! counting never takes a lock on the ingest path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        #[derive(Default, Debug)]
        pub struct Metrics { $(pub $name: AtomicU64,)* }

        impl Metrics {
            /// Prometheus text exposition format.
            pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP hub_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE hub_{} counter", stringify!($name));
                    let _ = writeln!(out, "hub_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
                for (name, help, value) in gauges {
                    let _ = writeln!(out, "# HELP hub_{name} {help}");
                    let _ = writeln!(out, "# TYPE hub_{name} gauge");
                    let _ = writeln!(out, "hub_{name} {value}");
                }
                out
            }
        }
    };
}

counters! {
    device_connections_total: "Device WebSocket connections accepted.",
    device_auth_failures_total: "Device upgrades refused for a missing, unknown or revoked token.",
    frames_received_total: "Binary frames received from devices.",
    batches_stored_total: "Batches committed to storage.",
    readings_stored_total: "Readings committed to storage.",
    batches_duplicate_total: "Batches received again after they were stored (acked, not stored).",
    batches_rejected_total: "Batches rejected as invalid.",
    frames_malformed_total: "Frames that did not decode or were not binary.",
    live_connections_total: "Live dashboard connections accepted.",
    connections_refused_total: "TCP connections answered 503 for the total or per-address limit.",
    logins_total: "Successful logins (password or one-time link).",
    login_failures_total: "Failed logins (wrong name or password, or throttled).",
    batches_rate_limited_total: "Batches rejected for exceeding the device's declared rate.",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Relaxed);
    }
}
