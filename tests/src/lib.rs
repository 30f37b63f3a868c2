//! What the end-to-end tests share: a real hub on an ephemeral port with a temporary
//! database, device tokens, and small WebSocket clients that speak the protocol by hand.
//!
//! The hub runs in the test process through `hub::server::run` — the same code path as the
//! binary, minus argument parsing — so tests can stop it, restart it on the same database and
//! open the database afterwards.

pub mod process;
pub mod proxy;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hub::config::Config;
use hub::store::{Store, StoreConfig};
use shared::{DeviceMsg, HubMsg};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod browser;

/// A simulated device streaming beside a test (a reading every 50 ms, a batch every 100 ms), to
/// show that whatever the test does to the hub, this device is never disturbed.
pub struct Bystander {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<firmware::sim::DeviceReport>,
}

impl Bystander {
    pub fn start(url: String, token: String, name: &str) -> Bystander {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut device = firmware::sim::SimDevice::new(url, token, name, 1);
        device.sample_interval = Duration::from_millis(50);
        device.batch_max_age = Duration::from_millis(100);
        device.follow_hub_config = false;
        let task = tokio::spawn(firmware::sim::run_device(device, stop_rx));
        Bystander { stop, task }
    }

    /// Stop it and check it was never disturbed: connected once, everything it made acked.
    pub async fn assert_unharmed(self) -> anyhow::Result<firmware::sim::DeviceReport> {
        self.stop.send(true)?;
        let report = self.task.await?;
        anyhow::ensure!(report.acked_all, "the bystander lost data: {report:?}");
        anyhow::ensure!(
            report.connections == 1,
            "the bystander was disconnected: {report:?}"
        );
        anyhow::ensure!(report.acked_readings > 0, "the bystander stored nothing");
        Ok(report)
    }
}

/// The user the tests log in as (created on first use in each database).
pub const TEST_USER: &str = "tester";
pub const TEST_PASSWORD: &str = "correct horse battery";

/// Make sure the test user exists in `db` (the hub may be running).
pub async fn ensure_test_user(db: &Path) -> anyhow::Result<()> {
    match hub::admin::add_user(db, TEST_USER, TEST_PASSWORD).await {
        Ok(()) => Ok(()),
        Err(e)
            if e.downcast_ref::<hub::store::StoreError>()
                .is_some_and(|e| matches!(e, hub::store::StoreError::UserExists(_))) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Log in to the hub at `addr` (database `db`) as the test user, the way a script does:
/// `POST /login`, keep the cookie. Returns the `Cookie` header value (`hub_session=...`).
pub async fn login(addr: SocketAddr, db: &Path) -> anyhow::Result<String> {
    ensure_test_user(db).await?;
    let form = format!(
        "name={TEST_USER}&password={}",
        TEST_PASSWORD.replace(' ', "+")
    );
    let r = browser::http_post_form(addr, "/login", &[], &form).await?;
    anyhow::ensure!(r.status == 303, "login answered {}: {}", r.status, r.text());
    let set = r.header("set-cookie").context("login set no cookie")?;
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

/// Open `/ws/live` with a session cookie and the hub's own `Origin`, as a browser does.
pub async fn connect_live(addr: SocketAddr, cookie: &str) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws/live").into_client_request()?;
    let h = request.headers_mut();
    h.insert("cookie", HeaderValue::from_str(cookie).expect("ASCII"));
    h.insert(
        "origin",
        HeaderValue::from_str(&format!("http://{addr}")).expect("ASCII"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hub running inside the test, on 127.0.0.1 and a fresh port.
pub struct TestHub {
    pub addr: SocketAddr,
    pub db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestHub {
    /// Config for tests: short commit interval so acks come quickly.
    pub fn config(db: &Path) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: db.to_path_buf(),
            commit_interval: Duration::from_millis(50),
            ..Config::default()
        }
    }

    pub async fn start(config: Config) -> anyhow::Result<TestHub> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let db = config.db.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(hub::server::run(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            move |_| {
                let _ = ready_tx.send(());
            },
        ));
        if ready_rx.await.is_err() {
            // The hub ended before it was ready: report why.
            return match task.await {
                Ok(Err(e)) => Err(e),
                other => bail!("hub did not start: {other:?}"),
            };
        }
        Ok(TestHub {
            addr,
            db,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn device_url(&self) -> String {
        format!("ws://{}/ws/device", self.addr)
    }

    pub fn live_url(&self) -> String {
        format!("ws://{}/ws/live", self.addr)
    }

    /// A session cookie of the test user (`hub_session=...`).
    pub async fn session(&self) -> anyhow::Result<String> {
        login(self.addr, &self.db).await
    }

    /// `/ws/live`, logged in.
    pub async fn connect_live(&self) -> anyhow::Result<Ws> {
        let cookie = self.session().await?;
        Ok(connect_live(self.addr, &cookie).await?)
    }

    /// `GET path`, logged in.
    pub async fn get(&self, path: &str) -> anyhow::Result<browser::HttpResponse> {
        let cookie = self.session().await?;
        browser::http_get(self.addr, path, &[("Cookie", &cookie)]).await
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown (what SIGTERM does); returns the hub's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("hub did not stop within 30 s")??,
            None => Ok(()),
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Register devices in the database (the hub may be running); returns their tokens.
pub async fn add_devices(db: &Path, names: &[String]) -> anyhow::Result<Vec<String>> {
    let store = open_store(db)?;
    let mut tokens = Vec::new();
    for name in names {
        let token = hub::auth::generate_token()?;
        store
            .add_device(name, &hub::auth::hash_token(&token))
            .await?;
        tokens.push(token);
    }
    store.close().await?;
    Ok(tokens)
}

pub fn open_store(db: &Path) -> anyhow::Result<Store> {
    Ok(Store::open(StoreConfig {
        path: db.to_path_buf(),
        ..StoreConfig::default()
    })?)
}

/// Connect to `/ws/device` with a token and the protocol's subprotocol.
pub async fn connect_device(
    url: &str,
    token: Option<&str>,
    subprotocol: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("token is ASCII"),
        );
    }
    if let Some(p) = subprotocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(p).expect("ASCII"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// The HTTP status of a refused upgrade, or `None` if the upgrade succeeded.
pub async fn upgrade_status(
    url: &str,
    token: Option<&str>,
    subprotocol: Option<&str>,
) -> Option<u16> {
    match connect_device(url, token, subprotocol).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    msg: &DeviceMsg,
) -> anyhow::Result<()> {
    ws.send(Message::Binary(shared::codec::to_vec(msg)?.into()))
        .await?;
    Ok(())
}

/// The next hub message, skipping pings; an error on close or after `wait`.
pub async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    wait: Duration,
) -> anyhow::Result<HubMsg> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no message in time")?;
        match next {
            Some(Ok(Message::Binary(b))) => return Ok(shared::decode_hub(&b)?),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("expected a binary frame, got {other:?}"),
        }
    }
}

/// How the hub ended the connection: the Goodbye it sent (if any) and the close code.
pub async fn closing<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    wait: Duration,
) -> anyhow::Result<(Option<HubMsg>, Option<u16>)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut goodbye = None;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("connection not closed in time")?;
        match next {
            Some(Ok(Message::Binary(b))) => {
                let msg = shared::decode_hub(&b)?;
                if matches!(msg, HubMsg::Goodbye { .. }) {
                    goodbye = Some(msg);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok((goodbye, frame.map(|f: CloseFrame| u16::from(f.code))));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ok((goodbye, None)),
        }
    }
}

/// A minimal valid Hello declaring sensors 0..n.
pub fn hello(boot_id: u32, sensors: u8) -> DeviceMsg {
    use shared::{Hello, ResetReason, SensorDecl, SensorKind};
    DeviceMsg::Hello(Hello {
        firmware: heapless::String::try_from("test-1").expect("short"),
        boot_id,
        uptime_ms: 10_000,
        reset_reason: ResetReason::PowerOn,
        declared_rate: 10,
        sensors: (0..sensors)
            .map(|id| SensorDecl {
                id,
                kind: SensorKind::Temperature,
                unit: heapless::String::try_from("°C").expect("short"),
            })
            .collect(),
    })
}

/// A batch with wall-clock timestamps (`Clock::Hub`) starting at `base_ms`.
pub fn batch(seq: u32, base_ms: u64, readings: &[(u8, u32, f32)]) -> DeviceMsg {
    use shared::{Batch, Clock, Reading};
    DeviceMsg::Batch(Batch {
        seq,
        clock: Clock::Hub { base_ms },
        dropped: 0,
        readings: readings
            .iter()
            .map(|&(sensor, offset_ms, value)| Reading {
                sensor,
                offset_ms,
                value,
            })
            .collect(),
    })
}

pub fn now_ms() -> u64 {
    hub::time::unix_ms() as u64
}

/// Connect as a device with `token`, send Hello (`boot_id`, sensors `0..sensors`) and return
/// the socket with the hub's Welcome.
pub async fn greet(
    url: &str,
    token: &str,
    boot_id: u32,
    sensors: u8,
) -> anyhow::Result<(Ws, shared::Welcome)> {
    let mut ws = connect_device(url, Some(token), Some(shared::SUBPROTOCOL)).await?;
    send(&mut ws, &hello(boot_id, sensors)).await?;
    match recv(&mut ws, Duration::from_secs(5)).await? {
        HubMsg::Welcome(welcome) => Ok((ws, welcome)),
        other => bail!("expected Welcome, got {other:?}"),
    }
}
