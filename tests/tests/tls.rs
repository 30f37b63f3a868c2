//! With `--tls-cert` and `--tls-key` the hub serves https and wss: devices, browsers and
//! scripts work over TLS with a certificate made at test time, clients that do not trust it
//! are refused, and the session cookie is marked `Secure`.

use std::time::Duration;

use shared::HubMsg;
use tests::tls::{TestPki, client_config, connect};
use tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const WAIT: Duration = Duration::from_secs(5);

async fn tls_hub() -> anyhow::Result<(tempfile::TempDir, TestHub, TestPki, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let pki = TestPki::create(dir.path())?;
    let tokens = add_devices(&db, &["secure".to_string()]).await?;
    ensure_test_user(&db).await?;
    let mut config = TestHub::config(&db);
    config.tls = Some(pki.files());
    let hub = TestHub::start(config).await?;
    Ok((dir, hub, pki, tokens))
}

/// One HTTP/1.0 request over TLS; the raw answer.
async fn https(hub: &TestHub, pki: &TestPki, request: &str) -> anyhow::Result<String> {
    let mut tls = connect(hub.addr, client_config(&pki.ca)?).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await??;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_browsers_and_scripts_work_over_tls() -> anyhow::Result<()> {
    let (_dir, hub, pki, tokens) = tls_hub().await?;
    let addr = hub.addr;

    // https: the login page, then a login whose cookie is Secure.
    let page = https(
        &hub,
        &pki,
        &format!("GET /login HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
    .await?;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    let form = format!(
        "name={TEST_USER}&password={}",
        TEST_PASSWORD.replace(' ', "+")
    );
    let answer = https(
        &hub,
        &pki,
        &format!(
            "POST /login HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.0 303"), "{answer}");
    let set_cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie")
        .to_owned();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let cookie = set_cookie["set-cookie:".len()..]
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    // wss for a device: Hello, a batch, its Ack.
    let tls = connect(addr, client_config(&pki.ca)?).await?;
    let mut request = format!("wss://{addr}/ws/device").into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", tokens[0]))?,
    );
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(shared::SUBPROTOCOL),
    );
    let (mut device, _) = tokio_tungstenite::client_async(request, tls).await?;
    send(&mut device, &hello(1, 1)).await?;
    assert!(matches!(recv(&mut device, WAIT).await?, HubMsg::Welcome(_)));

    // wss for a browser: cookie and the https origin.
    let tls = connect(addr, client_config(&pki.ca)?).await?;
    let mut request = format!("wss://{addr}/ws/live").into_client_request()?;
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(&cookie)?);
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_str(&format!("https://{addr}"))?);
    let (mut live, _) = tokio_tungstenite::client_async(request, tls).await?;

    send(&mut device, &batch(1, now_ms(), &[(0, 0, 21.5)])).await?;
    assert_eq!(recv(&mut device, WAIT).await?, HubMsg::Ack { seq: 1 });
    let reading = tokio::time::timeout(WAIT, async {
        use futures_util::StreamExt;
        loop {
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = live.next().await
                && t.contains("\"readings\"")
            {
                return t.to_string();
            }
        }
    })
    .await?;
    assert!(reading.contains("21.5"), "{reading}");
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_the_certificate_or_speak_plain_http_get_nothing()
-> anyhow::Result<()> {
    let (dir, hub, _pki, _) = tls_hub().await?;
    // Another CA: the client refuses the hub's certificate.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir)?;
    let other = TestPki::create(&other_dir)?;
    let refused = connect(hub.addr, client_config(&other.ca)?).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was accepted"
    );

    // Plain HTTP to the TLS port: no HTTP answer, the connection just ends.
    let mut tcp = tokio::net::TcpStream::connect(hub.addr).await?;
    tcp.write_all(format!("GET /login HTTP/1.0\r\nHost: {}\r\n\r\n", hub.addr).as_bytes())
        .await?;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw)).await?;
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1."),
        "plain HTTP answered"
    );
    hub.stop().await
}

#[tokio::test]
async fn a_wrong_certificate_or_key_file_is_a_clear_error_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::create(dir.path())?;
    let other = dir.path().join("other");
    std::fs::create_dir(&other)?;
    let other = TestPki::create(&other)?;
    let cases = [
        (
            pki.cert.clone(),
            other.key.clone(),
            "do not make a usable pair",
        ),
        (
            dir.path().join("missing.pem"),
            pki.key.clone(),
            "missing.pem",
        ),
        (pki.key.clone(), pki.key.clone(), "no PEM certificate"),
        (pki.cert.clone(), pki.cert.clone(), "no PEM private key"),
    ];
    for (cert, key, says) in cases {
        let mut config = TestHub::config(&dir.path().join("hub.db"));
        config.tls = Some(hub::config::TlsFiles { cert, key });
        let err = match TestHub::start(config).await {
            Ok(_) => panic!("started with a bad TLS pair ({says})"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(says), "{says}: {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_device_streams_over_wss_trusting_only_the_hubs_ca() -> anyhow::Result<()> {
    use firmware::sim::{SimDevice, link, run_device};
    let (dir, hub, pki, tokens) = tls_hub().await?;
    let url = format!("wss://{}/ws/device", hub.addr);

    // Without the CA the simulator refuses to connect, and says why.
    let no_ca = link::connect(url.clone(), tokens[0].clone(), WAIT).await;
    assert!(
        matches!(no_ca, Err(link::ConnectError::NoCa)),
        "{:?}",
        no_ca.err()
    );

    let mut device = SimDevice::new(url, tokens[0].clone(), "secure", 1);
    device.tls = Some(link::tls_trusting(&pki.ca).map_err(anyhow::Error::msg)?);
    device.sample_interval = Duration::from_millis(50);
    device.batch_max_age = Duration::from_millis(100);
    device.follow_hub_config = false;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_device(device, stop_rx));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.send(true)?;
    let report = task.await?;
    assert!(report.acked_all, "{report:?}");
    assert_eq!(report.connections, 1, "{report:?}");
    assert!(report.acked_readings >= 40, "{report:?}");
    hub.stop().await?;
    let store = open_store(&dir.path().join("hub.db"))?;
    let device = store.device_by_name("secure").await?.expect("registered");
    let stored = store.device_stats(device.id).await?.expect("stats");
    assert_eq!(stored.stored_readings, report.acked_readings);
    store.close().await?;
    Ok(())
}
