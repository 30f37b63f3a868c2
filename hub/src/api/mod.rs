//! The HTTP API for dashboards and scripts (documented in `docs/api.md`): devices with their
//! status and completeness, history (downsampled), CSV, health, and Prometheus metrics.
//!
//! Every query is bounded (range, points); bad parameters get 400 with a JSON error that says
//! what was wrong.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::server::AppState;
use crate::store::{DeviceRecord, DeviceStats, StoreError};
use crate::time::unix_ms;

/// Default buckets of a history answer: about one per horizontal pixel of a chart.
pub const DEFAULT_HISTORY_POINTS: usize = 1_000;
/// Longest range of one CSV download through the API (31 days); `hub export` has no limit.
pub const MAX_CSV_RANGE_MS: i64 = 31 * 24 * 3600 * 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/devices", get(devices))
        .route("/api/devices/{name}", get(device))
        .route("/api/devices/{name}/history", get(history))
        .route("/api/devices/{name}/readings.csv", get(csv))
}

/// `/metrics`, behind the login unless `--public-metrics`.
pub fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// An API error: status plus `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueryTooLarge { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            e => {
                tracing::error!(error = %e, "store query failed");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
            }
        }
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

#[derive(Serialize)]
struct HealthView {
    status: &'static str,
    store_writable: bool,
    store_last_error: Option<String>,
    store_queued_batches: usize,
    commits: u64,
    devices_online: usize,
    live_clients: usize,
}

async fn health(State(app): State<AppState>) -> Response {
    let h = app.store.health();
    let view = HealthView {
        status: if h.writable { "ok" } else { "degraded" },
        store_writable: h.writable,
        store_last_error: h.last_error,
        store_queued_batches: h.queued_batches,
        commits: h.commits,
        devices_online: app.devices.count(),
        live_clients: app.live.clients(),
    };
    let status = if view.store_writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(view)).into_response()
}

/// A device as the API shows it.
#[derive(Serialize)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: DeviceRecord,
    pub online: bool,
    pub stats: Option<DeviceStats>,
    /// stored / (stored + dropped or lost): 1.0 means nothing was lost.
    pub completeness: Option<f64>,
}

async fn view(app: &AppState, device: DeviceRecord) -> Result<DeviceView, ApiError> {
    let stats = app.store.device_stats(device.id).await?;
    Ok(DeviceView {
        online: app.devices.is_online(device.id),
        completeness: stats.as_ref().map(DeviceStats::completeness),
        stats,
        device,
    })
}

async fn devices(State(app): State<AppState>) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let mut out = Vec::new();
    for device in app.store.list_devices().await? {
        out.push(view(&app, device).await?);
    }
    Ok(Json(out))
}

async fn find(app: &AppState, name: &str) -> Result<DeviceRecord, ApiError> {
    app.store
        .device_by_name(name)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device named {name:?}")))
}

async fn device(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = find(&app, &name).await?;
    Ok(Json(view(&app, device).await?))
}

#[derive(Deserialize)]
struct RangeQuery {
    sensor: Option<u8>,
    /// Unix ms; default: `to` minus one hour.
    from: Option<i64>,
    /// Unix ms, exclusive; default: now.
    to: Option<i64>,
    /// Buckets at most; default 1,000.
    points: Option<usize>,
}

impl RangeQuery {
    fn range(&self) -> Result<(i64, i64), ApiError> {
        let to = self.to.unwrap_or_else(|| unix_ms() + 1);
        let from = self.from.unwrap_or(to - 3_600_000);
        if from >= to {
            return Err(bad_request("from must be before to"));
        }
        Ok((from, to))
    }
}

async fn history(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let device = find(&app, &name).await?;
    let sensor = q
        .sensor
        .ok_or_else(|| bad_request("sensor is required (a sensor id from the device's list)"))?;
    let (from, to) = q.range()?;
    let max_points = app.config.max_history_points;
    let points = q.points.unwrap_or(DEFAULT_HISTORY_POINTS.min(max_points));
    if points == 0 || points > max_points {
        return Err(bad_request(format!(
            "points must be between 1 and {max_points}"
        )));
    }
    let max_range = app
        .config
        .max_history_range
        .as_millis()
        .min(i64::MAX as u128) as i64;
    if to - from > max_range {
        return Err(bad_request(format!(
            "a history query covers at most {max_range} ms (--max-history-range); ask for a shorter range"
        )));
    }
    let history = app
        .store
        .history(device.id, sensor, from, to, points)
        .await?;
    Ok(Json(history).into_response())
}

async fn csv(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let device = find(&app, &name).await?;
    let (from, to) = q.range()?;
    if to - from > MAX_CSV_RANGE_MS {
        return Err(bad_request(format!(
            "a CSV download covers at most 31 days ({MAX_CSV_RANGE_MS} ms); use `hub export` for more"
        )));
    }
    let store = app.store.clone();
    let sensor = q.sensor;
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        store.export_csv(from, to, Some(device.id), &mut out)?;
        Ok(out)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let body = match sensor {
        // The store exports whole devices; keep the header and this sensor's rows.
        Some(s) => filter_sensor(&body, &name, s),
        None => body,
    };
    let filename = format!("attachment; filename=\"{name}-{from}-{to}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}

/// Keep the header and the rows of one sensor. Every row is of device `name`, so a row of
/// `sensor` starts with exactly the device field (quoted as the export quotes it) and the id;
/// device names hold no line breaks (the store refuses control characters).
fn filter_sensor(csv: &[u8], name: &str, sensor: u8) -> Vec<u8> {
    let prefix = format!("{},{},", crate::store::export::csv_field(name), sensor);
    let text = String::from_utf8_lossy(csv);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.starts_with(&prefix) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let h = app.store.health();
    let body = app.metrics.render(&[
        (
            "devices_online",
            "Devices connected now.",
            app.devices.count() as u64,
        ),
        (
            "live_clients",
            "Live dashboard connections now.",
            app.live.clients() as u64,
        ),
        (
            "store_queued_batches",
            "Batches waiting for their commit.",
            h.queued_batches as u64,
        ),
        (
            "store_commits",
            "Transactions committed since start.",
            h.commits,
        ),
        (
            "store_failed_commits",
            "Commit attempts that failed (each is retried).",
            h.failed_commits,
        ),
        (
            "store_writable",
            "1 while commits succeed.",
            u64::from(h.writable),
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_sensor_filter_copes_with_quoted_device_names() {
        let csv = b"device,sensor,ts_ms,iso_time,value,time_source\n\"a,b\",0,1,x,1.5,sntp\n\"a,b\",1,1,x,2.5,sntp\n";
        let out = String::from_utf8(filter_sensor(csv, "a,b", 1)).unwrap();
        assert_eq!(
            out,
            "device,sensor,ts_ms,iso_time,value,time_source\n\"a,b\",1,1,x,2.5,sntp\n"
        );
    }
}
