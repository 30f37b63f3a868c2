//! `hub demo`: the hub and N simulated devices in one process, so a new user sees live data
//! the moment it starts. The devices are ordinary hub devices (`demo-01`, `demo-02`, ...) with
//! tokens made fresh at every start, talking the real protocol over a real socket.
//!
//! The dashboard needs a login here as everywhere: the demo keeps a user `demo` (with a random
//! password nobody is shown) and prints a one-time login link for it, so the first page opens
//! with one click. More people: `hub user add NAME --db demo.db`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use firmware::sim::{SimDevice, run_fleet};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth;
use crate::config::Config;
use crate::server;
use crate::store::Store;

pub async fn run(mut config: Config, devices: u32, sample_ms: u32) -> anyhow::Result<()> {
    // The simulated devices follow the hub's settings, as real ones do.
    config.device.sample_interval_ms = sample_ms;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    server::run(config, listener, shutdown, move |running| {
        let addr = running.addr;
        let scheme = if running.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        println!(
            "hub demo: dashboard on {scheme}://{addr}/  ({devices} simulated devices; Ctrl-C to stop)"
        );
        let store = running.state.store.clone();
        let tls_cert = running.state.config.tls.as_ref().map(|t| t.cert.clone());
        let logins = running.state.logins.clone();
        let link_store = store.clone();
        let shown = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        tokio::spawn(async move {
            match demo_user(&link_store).await.and_then(|id| logins.one_time_link(id)) {
                Ok(token) => println!(
                    "hub demo: log in with this one-time link: {scheme}://{shown}/login/once?token={token}"
                ),
                Err(e) => tracing::error!(error = %e, "could not make a login link"),
            }
        });
        tokio::spawn(async move {
            match fleet(&store, addr, devices, sample_ms, tls_cert.as_deref()).await {
                Ok(fleet) => {
                    let reports = run_fleet(fleet, stop_rx).await;
                    let generated: u64 = reports.iter().map(|r| r.generated).sum();
                    let acked: u64 = reports.iter().map(|r| r.acked_readings).sum();
                    tracing::info!(generated, acked, "simulated devices stopped");
                }
                Err(e) => tracing::error!(error = %e, "could not start the simulated devices"),
            }
        });
    })
    .await
}

/// The id of the user `demo`, created with a random password on first use.
async fn demo_user(store: &Store) -> anyhow::Result<i64> {
    if let Some((id, _)) = store.user_password_hash("demo").await? {
        return Ok(id);
    }
    let password = auth::generate_token()?;
    let hash = auth::password::hash(&password)?;
    Ok(store
        .add_user("demo", &hash, crate::time::unix_ms())
        .await?)
}

/// Register (or re-key) the demo devices and describe them for the simulator. Under TLS they
/// connect with wss and trust the hub's own certificate file.
async fn fleet(
    store: &Store,
    addr: SocketAddr,
    devices: u32,
    sample_ms: u32,
    tls_cert: Option<&std::path::Path>,
) -> anyhow::Result<Vec<SimDevice>> {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let tls = tls_cert
        .map(firmware::sim::link::tls_trusting)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{host}/ws/device");
    let mut fleet = Vec::with_capacity(devices as usize);
    for n in 1..=devices {
        let name = format!("demo-{n:02}");
        let token = auth::generate_token()?;
        store
            .set_device_token(&name, &auth::hash_token(&token))
            .await?;
        let mut device = SimDevice::new(url.clone(), token, name, u64::from(n));
        device.sample_interval = Duration::from_millis(u64::from(sample_ms));
        // Demo devices come up with their clocks set, as boards with SNTP do.
        device.sntp = true;
        device.tls = tls.clone();
        fleet.push(device);
    }
    Ok(fleet)
}
