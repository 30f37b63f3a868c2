//! The telemetry hub: devices stream batches of readings over WebSocket; the hub checks each
//! one, stores it in SQLite, acks what is stored, and forwards live readings to dashboards.
//!
//! Modules, in the order a reading flows through them:
//! - [`config`]: every setting, with its default and why.
//! - [`server`]: the listener, the router, shutdown.
//! - [`listener`]: the accept loop: connection limits, TLS ([`tls`]), header timeouts.
//! - [`auth`]: device tokens, users, sessions, the Origin check, login throttling.
//! - [`device`]: `/ws/device`: the upgrade checks and one session per device.
//! - [`store`]: SQLite: group commit, exactly-once cursor, roll-ups, history, CSV.
//! - [`live`]: fan-out of live readings to `/ws/live` clients.
//! - [`api`]: the HTTP API (`/api/...`, `/metrics`).
//! - [`dashboard`]: the browser app, embedded, served at `/`.
//! - [`metrics`]: counters for `/metrics`.
//! - [`priority`]: CPU priorities of the threads: the store writer first, the live view last.
//! - [`admin`]: the CLI's device management and export.
//! - [`board_image`]: the per-device config image a bare-metal board reads from flash.
//! - [`demo`]: the hub plus simulated devices in one process.

pub mod admin;
pub mod api;
pub mod auth;
pub mod board_image;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod device;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod priority;
pub mod server;
pub mod store;
pub mod time;
pub mod tls;

/// Run the hub on `config.listen` until SIGINT or SIGTERM.
pub async fn serve(config: config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    server::run(config, listener, server::shutdown_signal(), |running| {
        let (http, ws) = if running.state.config.tls.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        println!(
            "hub listening on {http}://{} (devices: {ws}://{}/ws/device)",
            running.addr, running.addr
        );
    })
    .await
}
