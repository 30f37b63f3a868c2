//! Many simulated devices at once, and what they did together.

use std::fmt;

use tokio::sync::watch;

use super::device::{DeviceReport, SimDevice, run_device};

/// Run every device as its own task until `stop` turns true (each then drains its outbox,
/// bounded by its `drain_timeout`). Reports come back in the order given.
pub async fn run_fleet(devices: Vec<SimDevice>, stop: watch::Receiver<bool>) -> Vec<DeviceReport> {
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let name = d.name.clone();
            (name, tokio::spawn(run_device(d, stop.clone())))
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for (name, task) in tasks {
        reports.push(task.await.unwrap_or_else(|e| DeviceReport {
            name,
            error: Some(format!("device task failed: {e}")),
            ..DeviceReport::default()
        }));
    }
    reports
}

/// Totals over a fleet's reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub devices: usize,
    pub generated: u64,
    pub acked: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub reconnects: u64,
    pub auth_failures: u64,
    pub connect_failures: u64,
    pub revoked: usize,
    /// Devices whose outbox was not empty when they stopped.
    pub undelivered: usize,
    pub errors: usize,
}

impl FleetSummary {
    pub fn of(reports: &[DeviceReport]) -> Self {
        let mut s = Self {
            devices: reports.len(),
            ..Self::default()
        };
        for r in reports {
            s.generated += r.generated;
            s.acked += r.acked_readings;
            s.dropped += r.dropped;
            s.rejected += r.rejected;
            s.reconnects += u64::from(r.reconnects);
            s.auth_failures += u64::from(r.auth_failures);
            s.connect_failures += u64::from(r.connect_failures);
            s.revoked += usize::from(r.revoked);
            s.undelivered += usize::from(!r.acked_all);
            s.errors += usize::from(r.error.is_some());
        }
        s
    }
}

impl fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} devices: {} readings generated, {} acked, {} dropped, {} rejected; {} reconnects, {} auth failures, \
             {} failed connects, {} revoked, {} stopped with unacked batches, {} errors",
            self.devices,
            self.generated,
            self.acked,
            self.dropped,
            self.rejected,
            self.reconnects,
            self.auth_failures,
            self.connect_failures,
            self.revoked,
            self.undelivered,
            self.errors
        )
    }
}
