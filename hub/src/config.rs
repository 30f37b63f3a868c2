//! The hub's settings: one struct, filled by the CLI (and by tests directly). Every field says
//! its default and why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::DeviceConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen. Default `0.0.0.0:8080`: a gateway serves its LAN; `hub demo` uses
    /// `127.0.0.1:8080` instead.
    pub listen: SocketAddr,
    /// The SQLite database file. Default `hub.db` in the current directory.
    pub db: PathBuf,
    /// How long the store gathers batches before one commit. Default 1 s: bytes written per
    /// reading fall with longer intervals (an SD card lives longer); acks wait for it, live
    /// readings do not.
    pub commit_interval: Duration,
    /// Batches the store's writer queue holds before device sockets stop being read
    /// (backpressure). Default 4,096.
    pub store_queue: usize,
    /// Batches one device connection may have waiting for their commit before the hub stops
    /// reading its socket. Default 64: a device resending a backlog is paced, never refused.
    pub device_inflight: usize,
    /// Time a device has, after the upgrade, to send its Hello. Default 10 s.
    pub hello_timeout: Duration,
    /// How often the hub pings each device and live client. A peer that sends nothing (not even
    /// a pong) for three of these is closed. Default 10 s.
    pub ping_interval: Duration,
    /// Open WebSocket connections (devices and browsers) at most; above it the upgrade gets
    /// HTTP 503. Default 20,000.
    pub max_connections: usize,
    /// Invalid batches in a row before a device is closed with 1008. Default 10.
    pub max_invalid_batches: u32,
    /// Live events buffered for the slowest dashboard before it starts missing some (and is
    /// told how many). Default 8,192.
    pub live_buffer: usize,
    /// Settings handed to every device in Welcome.
    pub device: DeviceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            db: PathBuf::from("hub.db"),
            commit_interval: Duration::from_secs(1),
            store_queue: 4096,
            device_inflight: 64,
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            max_connections: 20_000,
            max_invalid_batches: 10,
            live_buffer: 8192,
            device: DeviceConfig::default(),
        }
    }
}
