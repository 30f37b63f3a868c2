//! Every door is locked: nothing reaches readings, the API or the live socket without a valid
//! device token or login session; cookies, origins and limits get their documented answers;
//! and a device keeps streaming through all of it.

use std::net::SocketAddr;
use std::time::Duration;

use tests::browser::{HttpResponse, http_get, http_post_form, http_request};
use tests::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

/// A hub with the test user and one healthy device streaming.
struct Scene {
    hub: TestHub,
    good: Bystander,
    _dir: tempfile::TempDir,
}

async fn scene(tweak: impl FnOnce(&mut hub::config::Config)) -> anyhow::Result<Scene> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["good".to_string()]).await?;
    ensure_test_user(&db).await?;
    let mut config = TestHub::config(&db);
    tweak(&mut config);
    let hub = TestHub::start(config).await?;
    let good = Bystander::start(hub.device_url(), tokens[0].clone(), "good");
    Ok(Scene {
        hub,
        good,
        _dir: dir,
    })
}

impl Scene {
    async fn good_device_unharmed(self) -> anyhow::Result<()> {
        self.good.assert_unharmed().await?;
        self.hub.stop().await
    }
}

/// The HTTP status of a refused `/ws/live` upgrade with these headers; `None` if it opened.
async fn live_status(addr: SocketAddr, headers: &[(&str, &str)]) -> Option<u16> {
    let mut request = format!("ws://{addr}/ws/live")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn login_form(name: &str, password: &str) -> String {
    format!("name={name}&password={}", password.replace(' ', "+"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_nothing_but_the_login_page_is_served() -> anyhow::Result<()> {
    let s = scene(|_| {}).await?;
    let addr = s.hub.addr;
    for path in [
        "/api/devices",
        "/api/devices/good",
        "/api/devices/good/history?sensor=0",
        "/api/devices/good/readings.csv",
        "/api/health",
        "/metrics",
    ] {
        let r = http_get(addr, path, &[]).await?;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(
            r.json()?["error"].as_str().unwrap().contains("login"),
            "{path}"
        );
        assert!(!r.text().contains("good\""), "{path} leaked data");
    }
    for path in ["/", "/app.js", "/index.html", "/nope"] {
        let r = http_get(addr, path, &[]).await?;
        assert_eq!(r.status, 303, "{path}");
        assert!(
            r.header("location").unwrap().starts_with("/login?next="),
            "{path}"
        );
    }
    // What the login page itself needs is open.
    for path in ["/login", "/style.css", "/favicon.svg"] {
        assert_eq!(http_get(addr, path, &[]).await?.status, 200, "{path}");
    }
    let origin = format!("http://{addr}");
    assert_eq!(live_status(addr, &[("origin", &origin)]).await, Some(401));
    // A device token is not a session.
    let tokens = add_devices(&s.hub.db, &["other".to_string()]).await?;
    let bearer = format!("Bearer {}", tokens[0]);
    assert_eq!(
        http_get(addr, "/api/devices", &[("Authorization", &bearer)])
            .await?
            .status,
        401
    );

    // Logged in, the same doors open.
    let cookie = s.hub.session().await?;
    let c = ("Cookie", cookie.as_str());
    for path in ["/api/devices", "/api/health", "/metrics", "/", "/app.js"] {
        assert_eq!(http_get(addr, path, &[c]).await?.status, 200, "{path}");
    }
    assert_eq!(live_status(addr, &[c, ("origin", &origin)]).await, None);
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_gives_a_locked_down_cookie_and_logout_ends_it() -> anyhow::Result<()> {
    let s = scene(|_| {}).await?;
    let addr = s.hub.addr;
    let r = http_post_form(
        addr,
        "/login",
        &[],
        &format!(
            "{}&next=%2F%23devices%3Dgood",
            login_form(TEST_USER, TEST_PASSWORD)
        ),
    )
    .await?;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/#devices=good"));
    let set = r.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Secure"), "no TLS here, so no Secure: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(
        http_get(addr, "/api/devices", &[("Cookie", &cookie)])
            .await?
            .status,
        200
    );

    // `next` never leaves the hub.
    let r = http_post_form(
        addr,
        "/login",
        &[],
        &format!(
            "{}&next=%2F%2Fevil.example%2F",
            login_form(TEST_USER, TEST_PASSWORD)
        ),
    )
    .await?;
    assert_eq!(r.header("location"), Some("/"));

    let r = http_request(addr, "POST", "/logout", &[("Cookie", &cookie)], b"").await?;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        http_get(addr, "/api/devices", &[("Cookie", &cookie)])
            .await?
            .status,
        401,
        "the session ended on the hub, not only in the browser"
    );
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_cookies_are_refused() -> anyhow::Result<()> {
    let s = scene(|c| c.session_ttl = Duration::from_secs(2)).await?;
    let addr = s.hub.addr;
    let origin = format!("http://{addr}");
    let forged = format!("hub_session={}", "ab".repeat(32));
    let garbage = "hub_session=' OR 1=1 --".to_string();
    for cookie in [&forged, &garbage] {
        assert_eq!(
            http_get(addr, "/api/devices", &[("Cookie", cookie)])
                .await?
                .status,
            401
        );
        assert_eq!(
            live_status(addr, &[("cookie", cookie), ("origin", &origin)]).await,
            Some(401)
        );
    }
    let cookie = s.hub.session().await?;
    assert_eq!(
        http_get(addr, "/api/devices", &[("Cookie", &cookie)])
            .await?
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        http_get(addr, "/api/devices", &[("Cookie", &cookie)])
            .await?
            .status,
        401,
        "expired"
    );
    assert_eq!(
        live_status(addr, &[("cookie", &cookie), ("origin", &origin)]).await,
        Some(401)
    );
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_socket_needs_the_hubs_own_or_an_allowed_origin() -> anyhow::Result<()> {
    let s = scene(|c| c.allowed_origins = vec!["https://dash.example".into()]).await?;
    let addr = s.hub.addr;
    let cookie = s.hub.session().await?;
    let c = ("cookie", cookie.as_str());
    let own = format!("http://{addr}");
    assert_eq!(live_status(addr, &[c]).await, Some(403), "no Origin");
    assert_eq!(
        live_status(addr, &[c, ("origin", "http://evil.example")]).await,
        Some(403),
        "foreign Origin"
    );
    assert_eq!(live_status(addr, &[c, ("origin", "null")]).await, Some(403));
    assert_eq!(
        live_status(addr, &[c, ("origin", &format!("https://{addr}"))]).await,
        Some(403),
        "wrong scheme"
    );
    assert_eq!(live_status(addr, &[c, ("origin", &own)]).await, None);
    assert_eq!(
        live_status(addr, &[c, ("origin", "https://dash.example")]).await,
        None
    );
    // A form posted from another site's page is refused too (login CSRF).
    let r = http_post_form(
        addr,
        "/login",
        &[("Origin", "http://evil.example")],
        &login_form(TEST_USER, TEST_PASSWORD),
    )
    .await?;
    assert_eq!(r.status, 403);
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address_and_name() -> anyhow::Result<()> {
    let s = scene(|c| c.login_max_failures = 3).await?;
    let addr = s.hub.addr;
    for _ in 0..3 {
        let r = http_post_form(
            addr,
            "/login",
            &[],
            &login_form(TEST_USER, "wrong password"),
        )
        .await?;
        assert_eq!(r.status, 401);
        assert!(r.text().contains("Wrong name or password"));
        assert!(r.header("set-cookie").is_none());
    }
    // Now even the right password waits: no guess is checked.
    let r = http_post_form(addr, "/login", &[], &login_form(TEST_USER, TEST_PASSWORD)).await?;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse()?;
    assert!((1..=60).contains(&wait), "{wait}");
    // Unknown names fail the same way as wrong passwords (no hint which names exist).
    let r = http_post_form(
        SocketAddr::from(([127, 0, 0, 1], addr.port())),
        "/login",
        &[],
        &login_form("nobody", "whatever"),
    )
    .await?;
    assert_eq!(r.status, 429, "the address is locked for every name");
    // A malformed form is a clear 400.
    let r = http_post_form(addr, "/login", &[], "name=only").await?;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("password"), "{}", r.text());
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_limit_get_503_and_slow_headers_are_cut()
-> anyhow::Result<()> {
    // The good device holds one connection from 127.0.0.1.
    let s = scene(|c| {
        c.max_connections_per_ip = 4;
        c.handshake_timeout = Duration::from_millis(800);
    })
    .await?;
    let addr = s.hub.addr;
    // Slowloris: three sockets that send half a request and then nothing.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /api/devices HTTP/1.1\r\nHost: x\r\n")
            .await?;
        slow.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = http_get(addr, "/login", &[]).await?;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("10"));
    // The slow sockets are closed once the header timeout passes, freeing their places.
    for tcp in &mut slow {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(read.is_ok(), "a slow socket was kept open");
    }
    drop(slow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(http_get(addr, "/login", &[]).await?.status, 200);
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_clients_beyond_the_limit_get_503() -> anyhow::Result<()> {
    let s = scene(|c| c.max_live_clients = 2).await?;
    let addr = s.hub.addr;
    let cookie = s.hub.session().await?;
    let origin = format!("http://{addr}");
    let a = connect_live(addr, &cookie).await?;
    let _b = connect_live(addr, &cookie).await?;
    assert_eq!(
        live_status(addr, &[("cookie", &cookie), ("origin", &origin)]).await,
        Some(503)
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        live_status(addr, &[("cookie", &cookie), ("origin", &origin)]).await,
        None
    );
    s.good_device_unharmed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_queries_are_bounded() -> anyhow::Result<()> {
    let s = scene(|c| {
        c.max_history_points = 100;
        c.max_history_range = Duration::from_secs(3600);
    })
    .await?;
    let cookie = s.hub.session().await?;
    let get = |path: String| {
        let cookie = cookie.clone();
        let addr = s.hub.addr;
        async move { http_get(addr, &path, &[("Cookie", &cookie)]).await }
    };
    let r: HttpResponse = get("/api/devices/good/history?sensor=0&points=101".into()).await?;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("between 1 and 100"), "{}", r.text());
    let r = get("/api/devices/good/history?sensor=0&from=0&to=7200001".into()).await?;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("at most 3600000 ms"), "{}", r.text());
    let r = get("/api/devices/good/history?sensor=0&points=100".into()).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    s.good_device_unharmed().await
}
