//! `GET /ws/device`: the door for devices.
//!
//! Everything that can be refused is refused before the upgrade, with a plain HTTP status a
//! device's log can show: a request that is not a WebSocket upgrade (400), no or unknown token
//! (401), a subprotocol this hub does not speak (400). Connection limits (503) are the
//! listener's. After the upgrade, [`session`] runs the protocol.
//!
//! - [`registry`]: which devices are connected (one connection per device).
//! - [`session`]: one device connection, Hello to close.
//! - [`rate`]: the declared-rate limit (rejects) and the frame pacer (reads slower).

pub mod rate;
pub mod registry;
pub mod session;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;

use crate::auth;
use crate::metrics::Metrics;
use crate::server::AppState;

/// Bytes tungstenite reads at most per system call from a device socket, and the buffer it
/// keeps for it: the main cost of an idle connection. Its default (128 KiB, zero-filled on
/// first read) would cost 134 KiB of RAM per idle device. A larger frame (up to
/// `MAX_DEVICE_FRAME_BYTES`, 4 KiB) still arrives whole: tungstenite grows the buffer to the
/// frame's length, in more reads. A 32-reading batch is about 240 bytes on the wire, so a
/// device that is catching up still gets two batches per read; 512 rather than 1,024 took
/// 0.5 KiB off every idle connection and no throughput off ingest at 1,000 or 5,000 devices
/// (`perf_bench ingest`, the two sizes in one sitting).
pub const DEVICE_SOCKET_BUFFER: usize = 512;

/// Largest message tungstenite reads whole from a device. Frames between
/// `MAX_DEVICE_FRAME_BYTES` and this are read and then refused by the decoder, so the device
/// gets a clean Goodbye and close 1009; larger ones are cut off at the header (the socket may
/// then be reset before the device reads the close frame).
pub const DEVICE_READ_LIMIT: usize = 4 * shared::limits::MAX_DEVICE_FRAME_BYTES;

/// The upgrade is done here rather than by axum's `WebSocketUpgrade`, whose task keeps its
/// captured request state (about 150 bytes) for the connection's whole life: the session's
/// task is spawned directly and builds its socket itself (`session::run`).
pub async fn upgrade(State(app): State<AppState>, mut request: Request) -> Response {
    let key = match websocket_key(request.headers()) {
        Ok(key) => key.clone(),
        Err(refusal) => return (StatusCode::BAD_REQUEST, format!("{refusal}\n")).into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded to a WebSocket\n",
        )
            .into_response();
    };
    let headers = request.headers();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    let Some(token) = token else {
        Metrics::inc(&app.metrics.device_auth_failures_total, 1);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "device token required: Authorization: Bearer <token>\n",
        )
            .into_response();
    };
    let device = match app
        .store
        .device_by_token_hash(&auth::hash_token(token))
        .await
    {
        Ok(Some(device)) if !device.revoked => device,
        Ok(_) => {
            Metrics::inc(&app.metrics.device_auth_failures_total, 1);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "unknown or revoked device token\n",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable, retry later\n",
            )
                .into_response();
        }
    };
    let speaks_ours =
        header_tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).any(|p| p == shared::SUBPROTOCOL);
    if !speaks_ours {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported WebSocket subprotocol: this hub speaks {}\n",
                shared::SUBPROTOCOL
            ),
        )
            .into_response();
    }
    Metrics::inc(&app.metrics.device_connections_total, 1);
    // The session starts once hyper hands over the connection, after this response is sent.
    tokio::spawn(session::run(on_upgrade, app, device.id, device.name.into()));
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, shared::SUBPROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The socket settings of a device connection (see the constants above).
fn socket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(DEVICE_SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(DEVICE_READ_LIMIT))
        .max_frame_size(Some(DEVICE_READ_LIMIT))
}

/// The request's `Sec-WebSocket-Key`, once its headers ask for a WebSocket (RFC 6455,
/// section 4.2.1), or what is missing.
fn websocket_key(headers: &HeaderMap) -> Result<&HeaderValue, &'static str> {
    if !header_tokens(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return Err("not a WebSocket request: `Connection` does not include `upgrade`");
    }
    if !header_tokens(headers, header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket")) {
        return Err("not a WebSocket request: `Upgrade` does not include `websocket`");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("unsupported WebSocket version: `Sec-WebSocket-Version` must be 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("not a WebSocket request: no `Sec-WebSocket-Key`")
}

/// The comma-separated values of every `name` header, trimmed.
fn header_tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}
