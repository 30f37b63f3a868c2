//! The dashboard: the files under `dashboard/` embedded into the binary at compile time and
//! served at `/` (no build step, nothing to install beside the hub).
//!
//! Every file is answered with its content type, `Cache-Control: no-cache` and a strong ETag
//! hashed from its bytes at compile time: a browser revalidates each file on every load and
//! gets `304 Not Modified` (no body) until a new hub binary ships a changed file, so an
//! upgrade is never hidden behind a stale cache and an unchanged file costs one round trip.
//! Anything not in [`ASSETS`] is 404.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::AppState;

/// One embedded file.
pub struct Asset {
    /// The file's name under `dashboard/`, which is also its URL path after `/`.
    pub name: &'static str,
    pub body: &'static [u8],
    /// FNV-1a of `body`, computed by the compiler.
    pub hash: u64,
}

impl Asset {
    pub fn content_type(&self) -> &'static str {
        match self.name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("json") => "application/json",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        }
    }

    /// The strong validator sent as `ETag` and compared with `If-None-Match`.
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

/// FNV-1a, 64 bits: small enough to run in a `const` context over every embedded file.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(Asset {
            name: $name,
            body: include_bytes!(concat!("../../dashboard/", $name)),
            hash: fnv1a(include_bytes!(concat!("../../dashboard/", $name))),
        }),*]
    };
}

/// Every dashboard file. A test checks that this list and the `dashboard/` folder agree.
pub static ASSETS: &[Asset] = assets![
    "index.html",
    "login.html",
    "style.css",
    "favicon.svg",
    "app.js",
    "api.js",
    "connection.js",
    "devices.js",
    "chart.js",
    "history.js",
    "format.js",
];

/// The dashboard's policy: everything from this origin, nothing inline, no framing. The live
/// socket is same-origin, which `'self'` covers for `ws:`/`wss:` in CSP level 3.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard: behind a login (the layer is added by the server).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/{file}", get(file))
}

/// What the login page loads: served to anyone.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/style.css",
            get(|h: HeaderMap| async move { serve(find("style.css"), &h) }),
        )
        .route(
            "/favicon.svg",
            get(|h: HeaderMap| async move { serve(find("favicon.svg"), &h) }),
        )
}

/// The embedded file served at `/name`, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

async fn index(headers: HeaderMap) -> Response {
    serve(find("index.html"), &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(find(&name), &headers)
}

fn serve(asset: Option<&'static Asset>, request: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response();
    };
    let etag = asset.etag();
    let common = [
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
    ];
    if if_none_match(request, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type())],
        asset.body,
    )
        .into_response()
}

/// `If-None-Match` holds this ETag (or `*`); weak comparison, as RFC 9110 asks for GET.
fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_dashboard_folder_is_embedded_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("dashboard folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        on_disk.sort();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "dashboard/ and ASSETS in hub/src/dashboard.rs must list the same files"
        );
    }

    #[test]
    fn every_embedded_file_has_a_known_content_type() {
        for asset in ASSETS {
            assert_ne!(
                asset.content_type(),
                "application/octet-stream",
                "{}",
                asset.name
            );
        }
    }

    #[test]
    fn etags_follow_the_bytes() {
        let a = find("app.js").expect("app.js");
        assert_eq!(a.hash, fnv1a(a.body));
        assert_ne!(find("index.html").map(Asset::etag), Some(a.etag()));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&h, "\"abc\""));
        assert!(!if_none_match(&h, "\"abd\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"anything\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"abc\""));
    }
}
