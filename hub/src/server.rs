//! The listener, the router and shutdown.
//!
//! Shutdown follows mini-redis: a `watch` flag tells every connection task to finish (devices
//! get Goodbye + 1001), each task holds a clone of an `mpsc::Sender` and the server waits
//! until every clone is dropped, bounded by a deadline; then the store flushes its last group
//! and checkpoints the WAL.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::auth::web::Logins;
use crate::config::Config;
use crate::device::registry::ConnectedDevices;
use crate::listener::{self, Connections, Limits};
use crate::live::LiveFanout;
use crate::metrics::Metrics;
use crate::store::{Store, StoreConfig};
use crate::{api, auth, dashboard, device, live};

/// How long shutdown waits for connections to close before it flushes the store anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// How often the hub looks for devices revoked from the CLI (another process) and closes
/// their sockets.
const REVOCATION_POLL: Duration = Duration::from_secs(2);

/// Everything a handler needs: one pointer, because every device connection keeps a clone
/// for its whole life (the idle-connection bench counts its bytes).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub live: LiveFanout,
    pub devices: Arc<ConnectedDevices>,
    pub metrics: Arc<Metrics>,
    /// Open TCP connections, in total and per source address (counted by the listener).
    pub connections: Arc<Connections>,
    /// Room for `/ws/live` clients (`max_live_clients`).
    pub live_clients: Arc<Semaphore>,
    /// Login throttle and one-time login links.
    pub logins: Arc<Logins>,
    pub shutdown: watch::Receiver<bool>,
    /// Never sent on: dropped with the last clone of the state (the router's, each connection
    /// task's), which shutdown waits for.
    _tasks: mpsc::Sender<()>,
}

/// A running hub: its address and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
}

/// Open the store and serve on `listener` until `shutdown` resolves; then close every socket,
/// flush and checkpoint. `on_ready` sees the state once the hub accepts connections (the demo
/// uses it to start its simulated devices).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Running),
) -> anyhow::Result<()> {
    let store_config = StoreConfig {
        path: config.db.clone(),
        commit_interval: config.commit_interval,
        queue_batches: config.store_queue,
        ..StoreConfig::default()
    };
    // A bad certificate is an error before anything else happens.
    let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let store = Store::open(store_config)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", config.db.display()))?;
    let config = fit_connections_to_open_files(config, listener::raise_fd_limit());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tasks_tx, mut tasks_rx) = mpsc::channel::<()>(1);
    let state = AppState(Arc::new(Shared {
        live: LiveFanout::new(config.live_buffer)
            .map_err(|e| anyhow::anyhow!("starting the live-clients thread: {e}"))?,
        connections: Arc::new(Connections::default()),
        live_clients: Arc::new(Semaphore::new(config.max_live_clients)),
        logins: Arc::new(Logins::new(&config)),
        config: Arc::new(config),
        store: store.clone(),
        devices: Arc::new(ConnectedDevices::default()),
        metrics: Arc::new(Metrics::default()),
        shutdown: stop_rx,
        _tasks: tasks_tx,
    }));
    let addr = listener.local_addr()?;
    let router = router(state.clone());
    on_ready(&Running {
        addr,
        state: state.clone(),
    });
    tracing::info!(%addr, "hub listening");

    tokio::spawn(close_revoked_devices(state.clone()));
    tokio::spawn(ping_devices(state.clone()));
    let server = tokio::spawn(listener::serve(
        listener::Listener {
            listener,
            router,
            tls,
            limits: Limits {
                max_total: state.config.max_connections,
                max_per_ip: state.config.max_connections_per_ip,
                handshake_timeout: state.config.handshake_timeout,
            },
            connections: state.connections.clone(),
            metrics: state.metrics.clone(),
        },
        state.shutdown.clone(),
    ));
    shutdown.await;
    tracing::info!("shutting down: closing connections");
    let _ = stop_tx.send(true);
    // After the flag: a device session registering from now on sees it instead.
    state.devices.kick_all(shared::CloseReason::Shutdown);
    drop(state);
    // Every connection task holds a sender; recv() returns None once all are gone.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tasks_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {SHUTDOWN_DEADLINE:?}; closing the store anyway"
        );
    }
    let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, server).await;
    tracing::info!("flushing and checkpointing the store");
    store
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
    tracing::info!("hub stopped");
    Ok(())
}

/// Every route. Behind [`auth::web::require_session`]: the dashboard, `/api/`, `/ws/live` and
/// `/metrics` (unless `metrics_public`). Open: `/ws/device` (it checks device tokens), the
/// login page and form, logout, one-time links, and the two files the login page loads.
pub fn router(state: AppState) -> Router {
    let mut gated = Router::new()
        .route("/ws/live", get(live_upgrade))
        .merge(api::routes())
        .merge(dashboard::routes());
    let mut open = Router::new()
        .route("/ws/device", get(device::upgrade))
        .merge(auth::web::public_routes(&state))
        .merge(dashboard::public_routes());
    if state.config.metrics_public {
        open = open.merge(api::metrics_routes());
    } else {
        gated = gated.merge(api::metrics_routes());
    }
    let gated = gated.route_layer(from_fn_with_state(
        state.clone(),
        auth::web::require_session,
    ));
    open.merge(gated).with_state(state)
}

/// `GET /ws/live` (the session was checked by the layer): the `Origin` must be the hub's own
/// or allowed, and there must be room.
async fn live_upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ws: axum::extract::WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Err(refusal) = auth::origin::check(
        origin,
        host,
        app.config.tls.is_some(),
        &app.config.allowed_origins,
    ) {
        return (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response();
    }
    let Ok(permit) = app.live_clients.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many live clients, retry later\n",
        )
            .into_response();
    };
    Metrics::inc(&app.metrics.live_connections_total, 1);
    let events = app.live.subscribe();
    ws.read_buffer_size(live::client::MAX_CLIENT_MESSAGE_BYTES)
        .max_message_size(live::client::MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(live::client::MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let live = app.live.clone();
            live.spawn_client(async move {
                live::client::serve(
                    socket,
                    events,
                    app.shutdown.clone(),
                    app.config.ping_interval,
                )
                .await;
                drop((app, permit));
            });
        })
}

/// Close the open connection of every revoked device (Goodbye `Revoked`, close 1008). The
/// upgrade refuses revoked tokens already; this reaches the sockets that were open before.
async fn close_revoked_devices(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match state.store.revoked_device_ids().await {
            Ok(ids) => {
                for id in ids {
                    if state.devices.kick(id, shared::CloseReason::Revoked) {
                        tracing::info!(
                            device_id = id,
                            "closing the connection of a revoked device"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read revoked devices"),
        }
    }
}

/// The ping round of every device connection, from one timer: each session checks that its
/// device was heard from within the heartbeat timeout and pings it (`device::session`).
async fn ping_devices(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    let period = state.config.ping_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => state.devices.ping_all(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Descriptors kept for the database, its WAL and the listeners, beside the connections.
const RESERVED_FILES: u64 = 64;

/// The connection cap lowered, if need be, to what the open-file limit (`limit`, already raised
/// to the hard limit) allows: a connection over the cap gets a clean 503, where one over the
/// limit would fail to be accepted at all. Said at start: as information when the cap was the
/// default, as a warning when someone asked for more.
fn fit_connections_to_open_files(mut config: Config, limit: Option<u64>) -> Config {
    let Some(limit) = limit else {
        return config;
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FILES))
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < config.max_connections {
        let asked = config.max_connections;
        config.max_connections = fits;
        let why = "connections are capped at the open-file limit minus 64 (the database and listeners); raise `ulimit -n` (LimitNOFILE= in a systemd unit) for more";
        if asked == Config::default().max_connections {
            tracing::info!(open_file_limit = limit, max_connections = fits, "{why}");
        } else {
            tracing::warn!(
                open_file_limit = limit,
                asked,
                max_connections = fits,
                "--max-connections lowered: {why}"
            );
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(asked: usize, limit: Option<u64>) -> usize {
        let config = Config {
            max_connections: asked,
            ..Config::default()
        };
        fit_connections_to_open_files(config, limit).max_connections
    }

    #[test]
    fn the_connection_cap_fits_the_open_file_limit_less_what_the_hub_keeps() {
        let default = Config::default().max_connections;
        assert_eq!(cap(default, Some(20_000)), 20_000 - 64);
        assert_eq!(cap(default, Some(1 << 20)), default);
        assert_eq!(cap(default, None), default);
        assert_eq!(cap(5_000, Some(2_000)), 1_936);
        assert_eq!(cap(100, Some(2_000)), 100);
        // Nothing left after the reserve: one connection, not none.
        assert_eq!(cap(default, Some(10)), 1);
    }
}
