//! `GET /ws/device`: the door for devices.
//!
//! Everything that can be refused is refused before the upgrade, with a plain HTTP status a
//! device's log can show: no or unknown token (401), a subprotocol this hub does not speak
//! (400). Connection limits (503) are the listener's. After the upgrade, [`session`] runs the protocol.
//!
//! - [`registry`]: which devices are connected (one connection per device).
//! - [`session`]: one device connection, Hello to close.
//! - [`rate`]: the declared-rate limit (rejects) and the frame pacer (reads slower).

pub mod rate;
pub mod registry;
pub mod session;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

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

pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
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
    let speaks_ours = ws.requested_protocols().any(|p| {
        p.to_str()
            .is_ok_and(|list| list.split(',').any(|p| p.trim() == shared::SUBPROTOCOL))
    });
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
    ws.protocols([shared::SUBPROTOCOL])
        .read_buffer_size(DEVICE_SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(DEVICE_READ_LIMIT)
        .max_frame_size(DEVICE_READ_LIMIT)
        .on_upgrade(move |socket| session::run(socket, app, device.id, device.name.into()))
}
