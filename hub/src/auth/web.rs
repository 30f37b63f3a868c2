//! The doors for people: the login page, `POST /login`, `POST /logout`, one-time login links
//! (`hub demo`), and [`require_session`], the layer in front of the dashboard, `/api/`,
//! `/ws/live` and (unless `--public-metrics`) `/metrics`.
//!
//! Answers without a valid session: `401` with a JSON error for `/api/`, `/ws/` and
//! `/metrics`; a `303` to `/login?next=<path>` for pages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::throttle::LoginThrottle;
use super::{generate_token, hash_token, origin, password, session};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::AppState;
use crate::time::unix_ms;

/// Largest login form body.
const MAX_LOGIN_BODY: usize = 2048;
/// How long a one-time login link works if nobody opens it.
pub const ONE_TIME_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// The logged-in user, for handlers behind [`require_session`].
#[derive(Debug, Clone)]
pub struct User(pub String);

/// Login state that lives in memory: the throttle and unused one-time links.
pub struct Logins {
    pub throttle: LoginThrottle,
    one_time: Mutex<HashMap<String, (i64, Instant)>>,
}

impl Logins {
    pub fn new(config: &Config) -> Self {
        Self {
            throttle: LoginThrottle::new(config.login_max_failures, config.login_window),
            one_time: Mutex::new(HashMap::new()),
        }
    }

    /// A link token that logs its opener in as `user_id`, once, within
    /// [`ONE_TIME_LINK_TTL`]. Only its hash is kept.
    pub fn one_time_link(&self, user_id: i64) -> anyhow::Result<String> {
        let token = generate_token()?;
        let mut links = self.one_time.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        links.retain(|_, (_, expires)| *expires > now);
        links.insert(hash_token(&token), (user_id, now + ONE_TIME_LINK_TTL));
        Ok(token)
    }

    fn redeem(&self, token: &str) -> Option<i64> {
        let mut links = self.one_time.lock().unwrap_or_else(|e| e.into_inner());
        let (user, expires) = links.remove(&hash_token(token))?;
        (expires > Instant::now()).then_some(user)
    }
}

/// The routes anyone may reach: the login page and form, logout, one-time links, and what the
/// login page itself loads.
pub fn public_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/login",
            get(login_page)
                .post(login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_deadline,
        ))
        .route("/logout", axum::routing::post(logout))
        .route("/login/once", get(one_time_login))
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OneTimeQuery {
    token: String,
}

/// Where to go after logging in: a path on this hub, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() < 512 =>
        {
            n
        }
        _ => "/",
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The login page, with a message (fixed text, never user input) and the page to return to.
fn page(status: StatusCode, message: &str, next: &str) -> Response {
    let template = crate::dashboard::find("login.html")
        .map(|a| String::from_utf8_lossy(a.body).into_owned())
        .unwrap_or_default();
    let html = template
        .replace("{{message}}", &escape_html(message))
        .replace(
            "{{message_hidden}}",
            if message.is_empty() { "hidden" } else { "" },
        )
        .replace("{{next}}", &escape_html(next));
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                crate::dashboard::CONTENT_SECURITY_POLICY,
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    page(StatusCode::OK, "", safe_next(q.next.as_deref()))
}

/// The refusal of a form posted from a foreign page, if it was: a browser sends `Origin`; a
/// script may not, and cannot be made to post from another site's page.
fn foreign_form(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    let o = headers.get(header::ORIGIN)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    origin::check(
        o.to_str().ok(),
        host,
        app.config.tls.is_some(),
        &app.config.allowed_origins,
    )
    .err()
    .map(|r| (StatusCode::FORBIDDEN, format!("{r}\n")).into_response())
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if let Some(refused) = foreign_form(&app, &headers) {
        return refused;
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("login form: {e} (send name and password as application/x-www-form-urlencoded)\n"),
            )
                .into_response();
        }
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let now = Instant::now();
    if let Err(wait) = app.logins.throttle.check(peer.ip(), &form.name, now) {
        Metrics::inc(&app.metrics.login_failures_total, 1);
        let secs = wait.as_secs().max(1);
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins. Try again in {secs} s."),
            &next,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let stored = match app.store.user_password_hash(&form.name).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable, retry later\n",
            )
                .into_response();
        }
    };
    let (user_id, phc) = match stored {
        Some((id, phc)) => (Some(id), Some(phc)),
        None => (None, None),
    };
    let ok = password::verify(form.password, phc).await;
    let Some(user_id) = user_id.filter(|_| ok) else {
        app.logins
            .throttle
            .failed(peer.ip(), &form.name, Instant::now());
        Metrics::inc(&app.metrics.login_failures_total, 1);
        tracing::info!(%peer, "failed login");
        return page(StatusCode::UNAUTHORIZED, "Wrong name or password.", &next);
    };
    app.logins.throttle.succeeded(&form.name);
    start_session(&app, user_id, &next).await
}

/// Create a session for `user_id` and send the browser to `next` with its cookie.
async fn start_session(app: &AppState, user_id: i64, next: &str) -> Response {
    let token = match generate_token() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a session");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let now = unix_ms();
    let ttl = app.config.session_ttl;
    let expires = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
    if let Err(e) = app
        .store
        .create_session(&hash_token(&token), user_id, now, expires)
        .await
    {
        tracing::error!(error = %e, "could not store a session");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable, retry later\n",
        )
            .into_response();
    }
    Metrics::inc(&app.metrics.logins_total, 1);
    let cookie = session::set_cookie(&token, ttl.as_secs(), app.config.tls.is_some());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, next.to_owned()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = foreign_form(&app, &headers) {
        return refused;
    }
    if let Some(value) = session::from_headers(&headers)
        && let Err(e) = app.store.delete_session(&hash_token(value)).await
    {
        tracing::error!(error = %e, "could not end a session");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable, retry later\n",
        )
            .into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_owned()),
            (
                header::SET_COOKIE,
                session::clear_cookie(app.config.tls.is_some()),
            ),
        ],
    )
        .into_response()
}

async fn one_time_login(
    State(app): State<AppState>,
    q: Result<Query<OneTimeQuery>, QueryRejection>,
) -> Response {
    let user = q.ok().and_then(|Query(q)| app.logins.redeem(&q.token));
    match user {
        Some(user_id) => start_session(&app, user_id, "/").await,
        None => page(
            StatusCode::UNAUTHORIZED,
            "This login link was used already or has expired. Log in with a name and password (hub user add NAME creates one).",
            "/",
        ),
    }
}

/// Whether a path is for programs (answered 401) rather than a page (sent to the login page).
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/ws/") || path == "/metrics"
}

/// The layer in front of everything that needs a login: looks the session cookie up and puts
/// the [`User`] in the request's extensions, or answers 401 / a redirect to the login page.
pub async fn require_session(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let user = match session::from_headers(req.headers()) {
        Some(value) => match app.store.session_user(&hash_token(value), unix_ms()).await {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unavailable, retry later\n",
                )
                    .into_response();
            }
        },
        None => None,
    };
    match user {
        Some(name) => {
            req.extensions_mut().insert(User(name));
            next.run(req).await
        }
        None if is_api_path(req.uri().path()) => (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({
                "error": "login required: POST /login (name, password) and send the hub_session cookie"
            })),
        )
            .into_response(),
        None => {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let target = format!("/login?next={}", percent_encode(path));
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, target), (header::CACHE_CONTROL, "no-store".to_owned())],
            )
                .into_response()
        }
    }
}

/// Percent-encode everything but unreserved characters and `/` (for `next=`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bound the time a request (headers done) may take to deliver its body: the login form.
pub async fn body_deadline(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(app.config.handshake_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_hub() {
        assert_eq!(safe_next(Some("/#devices=a")), "/#devices=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn html_is_escaped_and_paths_encoded() {
        assert_eq!(
            escape_html("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(percent_encode("/api/x?a=b c"), "/api/x%3Fa%3Db%20c");
    }
}
