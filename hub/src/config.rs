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
    /// Open TCP connections (devices, browsers, scripts) at most; a connection above it is
    /// answered HTTP 503 and closed. Default 20,000. The hub raises its own open-file limit to
    /// the hard limit and, where that is still below this plus 64, lowers this to fit.
    pub max_connections: usize,
    /// Open TCP connections from one source address at most (HTTP 503 above it): one host on
    /// the LAN cannot take every socket. Default 512 (devices behind one NAT share an address).
    pub max_connections_per_ip: usize,
    /// Time a new connection has to finish its TLS handshake and send a request's headers (and
    /// a login form its body): a slowloris cannot hold sockets. Default 10 s.
    pub handshake_timeout: Duration,
    /// Open `/ws/live` connections at most (HTTP 503 above it). Default 256.
    pub max_live_clients: usize,
    /// Failed logins within `login_window`, per source address and per user name, before
    /// further attempts get HTTP 429. Default 5 per 60 s.
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// How long a login session lasts. Default 7 days.
    pub session_ttl: Duration,
    /// Origins besides the hub's own whose pages may open `/ws/live` (and post the login
    /// form), e.g. `https://dashboards.example`. Default none.
    pub allowed_origins: Vec<String>,
    /// Serve `/metrics` without a login (for a Prometheus on the LAN). Default false.
    pub metrics_public: bool,
    /// Serve https/wss with this certificate chain and key (PEM). Default none: plain http/ws.
    pub tls: Option<TlsFiles>,
    /// Most buckets one history answer may hold. Default 5,000.
    pub max_history_points: usize,
    /// Longest range of one history query. Default 2 years (366 days each).
    pub max_history_range: Duration,
    /// How far above its declared rate (readings per second of its own timestamps, from Hello)
    /// a device may go before its batches are rejected `RateLimited`. Default 2.0 (twice the
    /// declared rate, plus one batch of slack); a backlog is never counted against it.
    pub rate_limit_factor: f64,
    /// Frames per second the hub reads from one device socket (bursts of one second's worth);
    /// above it the hub reads later, never refuses. Default 1,000 (a board sends a few).
    pub device_frames_per_s: u32,
    /// Invalid batches in a row before a device is closed with 1008. Default 10.
    pub max_invalid_batches: u32,
    /// Live events (a device's batch, or its going online or offline) buffered for the slowest
    /// dashboard before it starts missing some (and is told how many). Default 2,048.
    pub live_buffer: usize,
    /// Settings handed to every device in Welcome.
    pub device: DeviceConfig,
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
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
            max_connections_per_ip: 512,
            handshake_timeout: Duration::from_secs(10),
            max_live_clients: 256,
            login_max_failures: 5,
            login_window: Duration::from_secs(60),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            allowed_origins: Vec::new(),
            metrics_public: false,
            tls: None,
            max_history_points: 5_000,
            max_history_range: Duration::from_secs(2 * 366 * 24 * 3600),
            rate_limit_factor: 2.0,
            device_frames_per_s: 1_000,
            max_invalid_batches: 10,
            live_buffer: 2048,
            device: DeviceConfig::default(),
        }
    }
}
