//! The simulator's WebSocket link: connecting with the device's credentials, and the adapter
//! that lets the async socket sit behind the blocking `embedded-svc` `Sender` the transport
//! seam is written against.

use std::convert::Infallible;
use std::time::Duration;

use embedded_svc::ws::{ErrorType, FrameType, Sender};
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One device's socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid hub URL {url:?}: {source}")]
    BadUrl {
        url: String,
        source: tungstenite::Error,
    },
    #[error("the token cannot travel in an HTTP header")]
    BadToken,
    #[error("the hub refused the token (HTTP 401)")]
    Unauthorized,
    #[error("the hub refused the upgrade with HTTP {status}")]
    Refused { status: u16 },
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(tungstenite::Error),
    #[error("a wss:// URL needs the hub's CA certificate (simulator --ca FILE)")]
    NoCa,
}

/// What a device trusts for `wss://`: a rustls client config, usually from [`tls_trusting`].
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;

/// A TLS client config that trusts exactly the certificates in the PEM file `ca` (the hub's
/// CA, or its self-signed certificate), as a board does with the CA in its config image.
pub fn tls_trusting(ca: &std::path::Path) -> Result<TlsConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: bad PEM certificate: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no PEM certificate found", ca.display()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// Small buffers: a simulator runs thousands of devices in one process, and tungstenite's
/// defaults (a 128 KiB read buffer allocated per socket, 128 KiB of write buffering) would cost
/// a quarter of a gigabyte per thousand idle sockets. Hub frames are under 256 bytes.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        // Write each frame through at once: the core already batches.
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(4 * 1024))
        .max_frame_size(Some(4 * 1024))
}

/// Open a device socket: `Authorization: Bearer <token>`, subprotocol `telemetry.v1`.
pub async fn connect(url: String, token: String, timeout: Duration) -> Result<Ws, ConnectError> {
    connect_with(url, token, timeout, None).await
}

/// [`connect`], over TLS for a `wss://` URL, trusting what `tls` trusts.
pub async fn connect_with(
    url: String,
    token: String,
    timeout: Duration,
    tls: Option<TlsConfig>,
) -> Result<Ws, ConnectError> {
    if url.starts_with("wss://") && tls.is_none() {
        return Err(ConnectError::NoCa);
    }
    let mut request =
        url.as_str()
            .into_client_request()
            .map_err(|source| ConnectError::BadUrl {
                url: url.clone(),
                source,
            })?;
    let bearer =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ConnectError::BadToken)?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(shared::SUBPROTOCOL),
    );
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let attempt = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config()),
        true,
        connector,
    );
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response)))
            if response.status() == StatusCode::UNAUTHORIZED =>
        {
            Err(ConnectError::Unauthorized)
        }
        Ok(Err(tungstenite::Error::Http(response))) => Err(ConnectError::Refused {
            status: response.status().as_u16(),
        }),
        Ok(Err(e)) => Err(ConnectError::Handshake(e)),
    }
}

/// A blocking `embedded-svc` `Sender` that queues messages for the async socket: the core's
/// frames go through the same seam (`WsTransport::send_pending`) as on the board, and the event
/// loop then writes the queue out. Bounded by the core: one pump yields at most Hello,
/// `max_in_flight` batches and a heartbeat.
#[derive(Debug, Default)]
pub struct FrameQueue {
    messages: Vec<Message>,
}

impl FrameQueue {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Write every queued message to `ws`, within `timeout` (a stalled peer must not stall
    /// the device's sampling forever).
    pub async fn write_to(&mut self, ws: &mut Ws, timeout: Duration) -> Result<(), String> {
        let messages = std::mem::take(&mut self.messages);
        let write = async {
            for m in messages {
                ws.feed(m).await?;
            }
            ws.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("write stalled for {timeout:?}")),
        }
    }
}

impl ErrorType for FrameQueue {
    type Error = Infallible;
}

impl Sender for FrameQueue {
    fn send(&mut self, frame_type: FrameType, frame_data: &[u8]) -> Result<(), Infallible> {
        let data = Bytes::copy_from_slice(frame_data);
        let message = match frame_type {
            FrameType::Text(_) => {
                Message::Text(String::from_utf8_lossy(frame_data).into_owned().into())
            }
            FrameType::Ping => Message::Ping(data),
            FrameType::Pong => Message::Pong(data),
            FrameType::Close | FrameType::SocketClose => Message::Close(None),
            FrameType::Binary(_) | FrameType::Continue(_) => Message::Binary(data),
        };
        self.messages.push(message);
        Ok(())
    }
}
