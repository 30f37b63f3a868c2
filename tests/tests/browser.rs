//! The dashboard promise, checked in a real headless Chromium: the page loads clean, shows
//! live readings within 2 s, shows devices going offline, survives a hub restart without a
//! reload, fills a reconnect's gap from history, renders history ranges from the database,
//! and the live socket sends a subscriber only what it subscribed to.
//!
//! Every browser test saves screenshots under `target/screenshots/` (see
//! `tests::browser::screenshot_dir`). Chromium must be installed (`apt-get install chromium`);
//! without it these tests fail and say so.

use std::time::{Duration, Instant};

use firmware::sim::{DeviceReport, SimDevice, run_device};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::browser::{Browser, CutProxy, http_get};
use tests::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A simulated device that samples every 100 ms and sends a batch at least every 200 ms, so
/// readings reach the hub within a fifth of a second of being taken.
fn fast_device(hub: &TestHub, token: &str, name: &str, seed: u64) -> SimDevice {
    let mut device = SimDevice::new(hub.device_url(), token, name, seed);
    device.sample_interval = Duration::from_millis(100);
    device.batch_max_readings = 16;
    device.batch_max_age = Duration::from_millis(200);
    device.follow_hub_config = false;
    device
}

/// Simulated devices running until `stop` is sent.
struct Fleet {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<DeviceReport>>,
}

impl Fleet {
    fn start(devices: Vec<SimDevice>) -> Fleet {
        let (stop, stop_rx) = watch::channel(false);
        let tasks = devices
            .into_iter()
            .map(|d| tokio::spawn(run_device(d, stop_rx.clone())))
            .collect();
        Fleet { stop, tasks }
    }

    async fn stop(self) -> anyhow::Result<Vec<DeviceReport>> {
        self.stop.send(true)?;
        let mut reports = Vec::new();
        for task in self.tasks {
            reports.push(task.await?);
        }
        Ok(reports)
    }
}

async fn hub_with(names: &[&str]) -> anyhow::Result<(tempfile::TempDir, TestHub, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let tokens = add_devices(&db, &names).await?;
    tests::ensure_test_user(&db).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    Ok((dir, hub, tokens))
}

/// JS: the chart card of a device's sensor.
fn card(device: &str, sensor: u8) -> String {
    format!(
        "document.querySelector('.chart-card[data-device=\"{device}\"][data-sensor=\"{sensor}\"]')"
    )
}

/// JS: the page's live socket is open and the hub confirmed a subscription naming `device`.
fn subscribed_to(device: &str) -> String {
    format!(
        "(() => {{ const s = telemetry.state(); return s.connection === 'OPEN' && !!s.subscription && s.subscription.devices.some(d => d.device === '{device}'); }})()"
    )
}

fn assert_no_console_errors(page: &Browser) {
    let errors = page.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_through_the_form_and_out_with_the_button() -> anyhow::Result<()> {
    let (_dir, hub, _) = hub_with(&["dev"]).await?;
    let page = Browser::launch("login_logout").await?;
    // Not logged in: the dashboard sends the browser to the login page, keeping the view.
    page.open(&hub.http("/#devices=dev")).await?;
    page.wait_for("location.pathname === '/login'", Duration::from_secs(5))
        .await?;
    // A wrong password is refused on the page, with no cookie.
    page.eval("document.querySelector('#name').value = 'tester'; document.querySelector('#password').value = 'nope nope nope'; document.querySelector('#login').click(); true").await?;
    page.wait_for(
        "document.readyState === 'complete' && document.querySelector('.login-message')?.textContent.includes('Wrong name or password')",
        Duration::from_secs(5),
    )
    .await?;
    page.screenshot("login-refused").await?;
    page.log_in(&hub.http("")).await?;
    page.open(&hub.http("/")).await?;
    page.wait_for(
        "telemetry.state().connection === 'OPEN'",
        Duration::from_secs(10),
    )
    .await?;
    page.screenshot("logged-in").await?;
    page.eval("document.querySelector('#logout').click(); true")
        .await?;
    page.wait_for(
        "location.pathname === '/login' && document.readyState === 'complete'",
        Duration::from_secs(5),
    )
    .await?;
    // The session is over: the dashboard is out of reach again.
    page.open(&hub.http("/")).await?;
    page.wait_for("location.pathname === '/login'", Duration::from_secs(5))
        .await?;
    // The refused login's 401 is the one error the browser reports.
    let errors = page.console_errors();
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "console errors: {errors:#?}"
    );
    page.close().await;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_files_are_embedded_with_content_types_etags_and_404s() -> anyhow::Result<()> {
    let (_dir, hub, _) = hub_with(&[]).await?;
    let cookie = hub.session().await?;
    let c = ("Cookie", cookie.as_str());
    let index = http_get(hub.addr, "/", &[c]).await?;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let etag = index.header("etag").expect("an ETag").to_owned();
    assert!(
        index
            .text()
            .contains("<script type=\"module\" src=\"app.js\">")
    );

    let again = http_get(hub.addr, "/", &[c, ("If-None-Match", &etag)]).await?;
    assert_eq!(
        again.status, 304,
        "an unchanged file is revalidated, not resent"
    );
    assert!(again.body.is_empty());

    let dashboard = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard");
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
        ("connection.js", "text/javascript; charset=utf-8"),
        ("devices.js", "text/javascript; charset=utf-8"),
        ("history.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = http_get(hub.addr, &format!("/{file}"), &[c]).await?;
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-type"), Some(content_type), "{file}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{file}");
        assert_eq!(
            r.body,
            std::fs::read(dashboard.join(file))?,
            "{file}: the hub serves what is in dashboard/"
        );
        assert_ne!(
            r.header("etag"),
            Some(etag.as_str()),
            "{file}: each file has its own ETag"
        );
    }
    for missing in [
        "/nope.js",
        "/index.htm",
        "/..%2FCargo.toml",
        "/dashboard/app.js",
    ] {
        assert_eq!(
            http_get(hub.addr, missing, &[c]).await?.status,
            404,
            "{missing}"
        );
    }
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_loads_with_no_console_errors_and_lists_the_device() -> anyhow::Result<()> {
    let (_dir, hub, tokens) = hub_with(&["kitchen"]).await?;
    let fleet = Fleet::start(vec![fast_device(&hub, &tokens[0], "kitchen", 1)]);
    let page = Browser::launch("page_loads").await?;
    page.open_logged_in(&hub.http(""), &hub.http("/")).await?;

    let row = "document.querySelector('li.device[data-device=\"kitchen\"]')";
    page.wait_for(
        &format!("{row} && {row}.dataset.online === 'true'"),
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        "document.getElementById('connection').dataset.state === 'OPEN'",
        Duration::from_secs(10),
    )
    .await?;
    // The only device is selected by default: a chart per declared sensor, drawing.
    page.wait_for("[...document.querySelectorAll('.chart-card')].filter(c => Number(c.dataset.points) > 5).length === 4", Duration::from_secs(10)).await?;
    // Readings per second come from the stored-readings counter between two polls.
    let rate = page.wait_for(&format!("(() => {{ const r = parseFloat({row}.querySelector('.device-rate').textContent); return r > 0 ? r : 0; }})()"), Duration::from_secs(12)).await?;
    let rate = rate.as_f64().unwrap_or(0.0);
    assert!(
        (10.0..=80.0).contains(&rate),
        "4 sensors at 10 Hz read as {rate}/s"
    );

    let text = |sel: &str| format!("{row}.querySelector('{sel}').textContent");
    assert_eq!(page.eval(&text(".device-state")).await?, json!("online"));
    assert!(
        page.eval(&text(".device-firmware"))
            .await?
            .as_str()
            .unwrap_or("")
            .starts_with("fw sim-")
    );
    assert_eq!(page.eval(&text(".device-seen")).await?, json!("just now"));
    assert_eq!(page.eval(&text(".completeness-pct")).await?, json!("100 %"));
    let chips = page
        .eval(&format!(
            "[...{row}.querySelectorAll('.chip')].map(c => c.textContent)"
        ))
        .await?;
    assert_eq!(
        chips,
        json!([
            "temperature · °C",
            "humidity · %RH",
            "pressure · hPa",
            "battery · V"
        ])
    );
    // Axis units, and min/max/last on every card.
    let units = page
        .eval("[...document.querySelectorAll('.chart-card .stat-unit')].map(e => e.textContent)")
        .await?;
    assert_eq!(units, json!(["°C", "%RH", "hPa", "V"]));
    let stats = page.eval("[...document.querySelectorAll('.chart-card')].every(c => ['.stat-value', '.stat-num'].every(s => c.querySelector(s).textContent !== '—'))").await?;
    assert_eq!(stats, json!(true));

    // Reconnect delays grow exponentially, with jitter, and are capped.
    let delays = page
        .eval("import('./connection.js').then(m => [0, 1, 2, 3, 8].map(a => [m.backoffDelay(a, () => 0), m.backoffDelay(a, () => 0.999999)]))")
        .await?;
    let delays: Vec<(f64, f64)> = serde_json::from_value(delays)?;
    let rounded: Vec<(u64, u64)> = delays
        .iter()
        .map(|(lo, hi)| (lo.round() as u64, hi.round() as u64))
        .collect();
    assert_eq!(
        rounded,
        vec![
            (250, 500),
            (500, 1000),
            (1000, 2000),
            (2000, 4000),
            (5000, 10000)
        ]
    );

    let shot = page.screenshot("live").await?;
    assert_no_console_errors(&page);
    println!("screenshot: {}", shot.display());
    page.close().await;
    fleet.stop().await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_sent_by_a_device_shows_up_in_the_page_within_two_seconds() -> anyhow::Result<()>
{
    let (_dir, hub, tokens) = hub_with(&["probe"]).await?;
    let wait = Duration::from_secs(5);
    let mut device = connect_device(
        &hub.device_url(),
        Some(&tokens[0]),
        Some(shared::SUBPROTOCOL),
    )
    .await?;
    send(&mut device, &hello(1, 1)).await?;
    let shared::HubMsg::Welcome(_) = recv(&mut device, wait).await? else {
        panic!("no Welcome")
    };

    let page = Browser::launch("reading_within_2s").await?;
    page.open_logged_in(&hub.http(""), &hub.http("/#devices=probe"))
        .await?;
    page.wait_for(&card("probe", 0), Duration::from_secs(10))
        .await?;
    page.wait_for(&subscribed_to("probe"), Duration::from_secs(10))
        .await?;

    let sent = Instant::now();
    send(&mut device, &batch(1, now_ms(), &[(0, 0, 42.5)])).await?;
    page.wait_for(
        &format!("{}.dataset.last === '42.5'", card("probe", 0)),
        Duration::from_secs(2),
    )
    .await?;
    let elapsed = sent.elapsed();
    assert!(elapsed < Duration::from_secs(2), "shown after {elapsed:?}");
    assert_eq!(
        page.eval(&format!(
            "{}.querySelector('.stat-value').textContent",
            card("probe", 0)
        ))
        .await?,
        json!("42.50")
    );
    assert_eq!(
        recv(&mut device, wait).await?,
        shared::HubMsg::Ack { seq: 1 }
    );
    println!("reading shown {elapsed:?} after it was sent");
    page.screenshot("shown").await?;
    assert_no_console_errors(&page);
    page.close().await;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_simulator_stops_turns_offline() -> anyhow::Result<()> {
    let (_dir, hub, tokens) = hub_with(&["shown", "listed"]).await?;
    let fleet = Fleet::start(vec![
        fast_device(&hub, &tokens[0], "shown", 1),
        fast_device(&hub, &tokens[1], "listed", 2),
    ]);
    let page = Browser::launch("device_offline").await?;
    // "shown" is charted (its status comes over the live socket); "listed" is only in the list
    // (its status comes from polling the API).
    page.open_logged_in(&hub.http(""), &hub.http("/#devices=shown"))
        .await?;
    let online = |name: &str, state: bool| {
        format!(
            "document.querySelector('li.device[data-device=\"{name}\"]')?.dataset.online === '{state}'"
        )
    };
    page.wait_for(
        &format!("{} && {}", online("shown", true), online("listed", true)),
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        &format!("Number({}.dataset.points) > 5", card("shown", 0)),
        Duration::from_secs(10),
    )
    .await?;
    page.screenshot("online").await?;

    let stopped = Instant::now();
    fleet.stop().await?;
    page.wait_for(
        &format!("{} && {}", online("shown", false), online("listed", false)),
        Duration::from_secs(5),
    )
    .await?;
    println!(
        "both offline {:?} after the simulators were told to stop",
        stopped.elapsed()
    );
    let head = page
        .eval("document.querySelector('section[data-device=\"shown\"] .section-meta').textContent")
        .await?;
    assert!(
        head.as_str().unwrap_or("").starts_with("offline"),
        "section head says {head}"
    );
    assert_eq!(
        page.eval(
            "document.querySelector('li.device[data-device=\"listed\"] .device-state').textContent"
        )
        .await?,
        json!("offline")
    );
    page.screenshot("offline").await?;
    assert_no_console_errors(&page);
    page.close().await;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_hub_restart_the_page_reconnects_by_itself_and_shows_new_readings()
-> anyhow::Result<()> {
    let (dir, hub, tokens) = hub_with(&["dev"]).await?;
    let db = dir.path().join("hub.db");
    let addr = hub.addr;
    let fleet = Fleet::start(vec![fast_device(&hub, &tokens[0], "dev", 1)]);
    let page = Browser::launch("hub_restart").await?;
    page.open_logged_in(&hub.http(""), &hub.http("/#devices=dev"))
        .await?;
    page.wait_for(&subscribed_to("dev"), Duration::from_secs(10))
        .await?;
    page.wait_for(
        &format!("Number({}.dataset.points) > 10", card("dev", 0)),
        Duration::from_secs(10),
    )
    .await?;
    page.eval("window.loadedOnce = 'yes'").await?;

    hub.stop().await?;
    // The state shown is the socket's: not OPEN while the hub is gone.
    let down = page.wait_for("(() => { const s = document.getElementById('connection').dataset.state; return s !== 'OPEN' && s; })()", Duration::from_secs(5)).await?;
    assert!(
        matches!(down.as_str(), Some("CLOSED" | "CONNECTING" | "CLOSING")),
        "state while down: {down}"
    );
    let pill = page
        .eval("document.querySelector('#connection .conn-state').textContent")
        .await?;
    assert!(
        matches!(pill.as_str(), Some("CLOSED" | "CONNECTING" | "CLOSING")),
        "pill while down: {pill}"
    );
    page.screenshot("down").await?;
    let last_before = page
        .eval("telemetry.series('dev', 0).at(-1)[0]")
        .await?
        .as_f64()
        .unwrap_or(0.0);

    let hub = TestHub::start(hub::config::Config {
        listen: addr,
        ..TestHub::config(&db)
    })
    .await?;
    let restarted = Instant::now();
    page.wait_for(&subscribed_to("dev"), Duration::from_secs(20))
        .await?;
    let reopened = restarted.elapsed();
    // New readings, taken after the restart, drawn on the same page.
    page.wait_for(
        &format!("telemetry.series('dev', 0).at(-1)[0] > {last_before} + 2000"),
        Duration::from_secs(20),
    )
    .await?;
    assert_eq!(
        page.eval("window.loadedOnce").await?,
        json!("yes"),
        "the page was reloaded"
    );
    println!("live socket open again {reopened:?} after the hub restarted");
    page.screenshot("reconnected").await?;
    page.close().await;
    fleet.stop().await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_the_gap_is_filled_from_history() -> anyhow::Result<()> {
    let (_dir, hub, tokens) = hub_with(&["dev"]).await?;
    let fleet = Fleet::start(vec![fast_device(&hub, &tokens[0], "dev", 1)]);
    // The page reaches the hub through a proxy the test can cut; the device writes directly.
    let proxy = CutProxy::start(hub.addr).await?;
    let page = Browser::launch("gap_filled").await?;
    page.open_logged_in(
        &format!("http://{}", proxy.addr),
        &format!("http://{}/#devices=dev&window=60000", proxy.addr),
    )
    .await?;
    page.wait_for(&subscribed_to("dev"), Duration::from_secs(10))
        .await?;
    page.wait_for(
        &format!("Number({}.dataset.points) > 10", card("dev", 0)),
        Duration::from_secs(10),
    )
    .await?;

    let cut_at = now_ms();
    proxy.cut();
    page.wait_for(
        "telemetry.state().connection !== 'OPEN'",
        Duration::from_secs(5),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restored_at = now_ms();
    proxy.restore();
    page.wait_for(&subscribed_to("dev"), Duration::from_secs(20))
        .await?;

    // The 4 s the page did not hear about are drawn from the store: no hole in the line.
    let (from, to) = (cut_at - 1000, restored_at + 1000);
    let covered = format!(
        "(() => {{ const a = telemetry.series('dev', 0).filter(p => p[0] >= {from} && p[0] <= {to}); \
         if (a.length < 2 || a[0][0] > {from} + 500 || a.at(-1)[0] < {to} - 500) return false; \
         let gap = 0; for (let i = 1; i < a.length; i++) gap = Math.max(gap, a[i][0] - a[i - 1][0]); \
         return gap <= 500 ? {{ points: a.length, gap }} : false; }})()"
    );
    let filled = page.wait_for(&covered, Duration::from_secs(10)).await?;
    println!("gap filled: {filled}");
    page.screenshot("filled").await?;
    page.close().await;
    drop(proxy);
    fleet.stop().await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_range_renders_points_from_the_database() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    // 300 readings, one every 10 s over the last 50 minutes, values cycling 1..=9, written
    // straight into the database before the hub starts.
    let now = now_ms() as i64;
    let base = now / 10_000 * 10_000 - 50 * 60_000;
    let times: Vec<i64> = (0..300).map(|i| base + i * 10_000).collect();
    {
        let store = open_store(&db)?;
        let id = store
            .add_device("archive", &hub::auth::hash_token("archive-token"))
            .await?;
        let shared::DeviceMsg::Hello(hello) = hello(1, 1) else {
            unreachable!()
        };
        store.record_hello(id, &hello, now).await?;
        for (seq, chunk) in times.chunks(30).enumerate() {
            let points = chunk
                .iter()
                .map(|&ts| shared::payload::Point {
                    sensor: 0,
                    ts_ms: ts,
                    value: 1.0 + ((ts - base) / 10_000 % 9) as f32,
                })
                .collect();
            let batch = hub::store::IncomingBatch {
                device_id: id,
                boot_id: 1,
                seq: seq as u32 + 1,
                time_source: hub::store::TimeSource::Sntp,
                dropped: 0,
                points,
                received_ms: now,
            };
            store.submit(batch).await?;
        }
        store.close().await?;
    }
    tests::ensure_test_user(&db).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let page = Browser::launch("history_range").await?;
    page.open_logged_in(&hub.http(""), &hub.http("/#devices=archive&range=1h"))
        .await?;
    let chart = card("archive", 0);

    // 1 h: raw buckets narrower than 10 s, so one per reading.
    page.wait_for(
        &format!("{chart}?.dataset.mode === 'history' && {chart}.dataset.points === '300'"),
        Duration::from_secs(10),
    )
    .await?;
    let shown = |sel: &str| format!("{chart}.querySelector('{sel}').textContent");
    let mins_maxes = page
        .eval(&format!(
            "[...{chart}.querySelectorAll('.stat-num')].map(e => e.textContent)"
        ))
        .await?;
    assert_eq!(mins_maxes, json!(["1.00", "9.00"]));
    assert!(
        page.eval(&shown(".chart-info"))
            .await?
            .as_str()
            .unwrap_or("")
            .contains("raw")
    );
    page.screenshot("1h").await?;

    // 24 h: minute roll-ups, still every reading counted.
    page.eval("document.querySelector('#ranges button[data-range=\"24h\"]').click()")
        .await?;
    page.wait_for(
        &format!(
            "{chart}.dataset.mode === 'history' && /minute/.test({})",
            shown(".chart-info")
        ),
        Duration::from_secs(10),
    )
    .await?;
    let points = page
        .eval(&format!("Number({chart}.dataset.points)"))
        .await?
        .as_u64()
        .unwrap_or(0);
    assert!(
        (10..=60).contains(&points),
        "24 h of this data in {points} buckets"
    );
    assert_eq!(
        page.eval(&format!(
            "[...{chart}.querySelectorAll('.stat-num')].map(e => e.textContent)"
        ))
        .await?,
        json!(["1.00", "9.00"])
    );
    page.screenshot("24h").await?;

    // The CSV link downloads the same range: every reading.
    let href = page
        .eval(
            "document.querySelector('section[data-device=\"archive\"] a.csv').getAttribute('href')",
        )
        .await?;
    let href = href.as_str().expect("a CSV link").to_owned();
    let csv = hub.get(&format!("/{href}")).await?;
    assert_eq!(csv.status, 200, "{href}: {}", csv.text());
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.text().lines().count(), 301, "header + 300 readings");

    // A custom range: exactly the readings inside it.
    page.eval(
        "(() => { document.querySelector('#ranges button[data-range=\"custom\"]').click(); \
         const f = (t) => { const d = new Date(t); d.setSeconds(0, 0); return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0') + 'T' + String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0'); }; \
         document.getElementById('from').value = f(Date.now() - 40 * 60000); document.getElementById('to').value = f(Date.now() - 20 * 60000); \
         document.getElementById('custom').requestSubmit(); return true; })()",
    )
    .await?;
    let range = page
        .wait_for(
            "telemetry.state().range === 'custom' && telemetry.state().custom",
            Duration::from_secs(5),
        )
        .await?;
    let (from, to) = (
        range["from"].as_i64().unwrap_or(0),
        range["to"].as_i64().unwrap_or(0),
    );
    let expected = times.iter().filter(|&&t| t >= from && t < to).count();
    page.wait_for(
        &format!("{chart}.dataset.mode === 'history' && {chart}.dataset.points === '{expected}'"),
        Duration::from_secs(10),
    )
    .await?;
    page.screenshot("custom").await?;
    assert_no_console_errors(&page);
    page.close().await;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_subscribed_to_one_device_receives_no_other_devices_readings() -> anyhow::Result<()>
{
    let (_dir, hub, tokens) = hub_with(&["alpha", "beta"]).await?;
    let mut live = hub.connect_live().await?;
    live.send(Message::Text(
        json!({ "type": "subscribe", "device": "alpha" })
            .to_string()
            .into(),
    ))
    .await?;
    let answer = next_json(&mut live).await?;
    assert_eq!(
        answer,
        json!({ "type": "subscription", "all": false, "devices": [{ "device": "alpha", "sensors": null }] })
    );

    let fleet = Fleet::start(vec![
        fast_device(&hub, &tokens[0], "alpha", 1),
        fast_device(&hub, &tokens[1], "beta", 2),
    ]);
    let seen = readings_for(&mut live, Duration::from_secs(3)).await?;
    assert!(
        seen.iter().any(|(d, _)| d == "alpha"),
        "no readings of alpha at all"
    );
    assert!(
        seen.iter().all(|(d, _)| d == "alpha"),
        "readings of another device: {seen:?}"
    );

    // Switch to one sensor of the other device.
    live.send(Message::Text(
        json!({ "type": "unsubscribe", "device": "alpha" })
            .to_string()
            .into(),
    ))
    .await?;
    live.send(Message::Text(
        json!({ "type": "subscribe", "device": "beta", "sensors": [1] })
            .to_string()
            .into(),
    ))
    .await?;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let v = next_json(&mut live).await?;
        if v["type"] == "subscription" {
            answers.push(v);
        }
    }
    assert_eq!(
        answers[1],
        json!({ "type": "subscription", "all": false, "devices": [{ "device": "beta", "sensors": [1] }] })
    );
    let seen = readings_for(&mut live, Duration::from_secs(2)).await?;
    assert!(!seen.is_empty(), "no readings of beta sensor 1");
    assert!(
        seen.iter().all(|s| s == &("beta".to_owned(), 1)),
        "other readings: {seen:?}"
    );
    fleet.stop().await?;
    hub.stop().await
}

async fn next_json(live: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), live.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(_)) => continue,
            other => anyhow::bail!("live socket ended: {other:?}"),
        }
    }
}

/// (device, sensor) of every readings event for `period`.
async fn readings_for(live: &mut Ws, period: Duration) -> anyhow::Result<Vec<(String, u64)>> {
    let deadline = tokio::time::Instant::now() + period;
    let mut seen = Vec::new();
    while let Ok(next) = tokio::time::timeout_at(deadline, live.next()).await {
        let t = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            other => anyhow::bail!("live socket ended: {other:?}"),
        };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] == "readings" {
            seen.push((
                v["device"].as_str().unwrap_or("").to_owned(),
                v["sensor"].as_u64().unwrap_or(999),
            ));
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_api_answers_a_week_of_1hz_data_in_under_200_ms() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    // 7 days of one 1 Hz sensor (604,800 readings) in batches of 240, written into the store.
    let now = now_ms() as i64;
    let start = now / 1000 * 1000 - 7 * 86_400_000;
    let total: i64 = 7 * 86_400;
    {
        let store = open_store(&db)?;
        let id = store
            .add_device("week", &hub::auth::hash_token("week-token"))
            .await?;
        let shared::DeviceMsg::Hello(hello) = hello(1, 1) else {
            unreachable!()
        };
        store.record_hello(id, &hello, now).await?;
        let mut tickets = Vec::new();
        for (seq, first) in (0..total).step_by(240).enumerate() {
            let points = (first..(first + 240).min(total))
                .map(|i| shared::payload::Point {
                    sensor: 0,
                    ts_ms: start + i * 1000,
                    value: 20.0 + (i % 600) as f32 / 100.0,
                })
                .collect();
            let batch = hub::store::IncomingBatch {
                device_id: id,
                boot_id: 1,
                seq: seq as u32 + 1,
                time_source: hub::store::TimeSource::Sntp,
                dropped: 0,
                points,
                received_ms: now,
            };
            tickets.push(store.enqueue(batch).await?);
        }
        for t in tickets {
            t.await?;
        }
        store.close().await?;
    }
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let cookie = hub.session().await?;
    let path = format!(
        "/api/devices/week/history?sensor=0&from={start}&to={}&points=1000",
        start + total * 1000
    );
    let mut times = Vec::new();
    let mut answer = Value::Null;
    for _ in 0..5 {
        let asked = Instant::now();
        let r = http_get(hub.addr, &path, &[("Cookie", &cookie)]).await?;
        times.push(asked.elapsed());
        assert_eq!(r.status, 200, "{}", r.text());
        answer = r.json()?;
    }
    times.sort();
    let median = times[times.len() / 2];
    let buckets = answer["buckets"].as_array().expect("buckets");
    let counted: u64 = buckets
        .iter()
        .map(|b| b["count"].as_u64().unwrap_or(0))
        .sum();
    println!(
        "7 days of 1 Hz: {} buckets at {} resolution, median {median:?} (all: {times:?})",
        buckets.len(),
        answer["resolution"]
    );
    assert_eq!(counted, total as u64, "every reading is in some bucket");
    assert!(buckets.len() <= 1000);
    assert!(
        median < Duration::from_millis(200),
        "median answer took {median:?}"
    );
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn like_the_demo_five_devices_show_live_charts_moving_within_3_s() -> anyhow::Result<()> {
    let names = ["demo-01", "demo-02", "demo-03", "demo-04", "demo-05"];
    let (_dir, hub, tokens) = hub_with(&names).await?;
    // The demo's devices: the simulator's defaults (1 s samples, 1 s batches).
    let fleet = Fleet::start(
        names
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(i, (n, t))| SimDevice::new(hub.device_url(), t, *n, i as u64 + 1))
            .collect(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = Browser::launch("demo").await?;
    let opened = Instant::now();
    page.open_logged_in(&hub.http(""), &hub.http("/")).await?;
    let loaded = opened.elapsed();
    let newest = "(() => { const s = telemetry.series('demo-01', 0); return s && s.length ? s.at(-1)[0] : 0; })()";
    let first = page
        .wait_for(newest, Duration::from_secs(3))
        .await?
        .as_f64()
        .unwrap_or(0.0);
    let drawn = opened.elapsed();
    page.wait_for(&format!("{newest} > {first}"), Duration::from_secs(3))
        .await?;
    let moving = opened.elapsed();
    page.wait_for(
        "document.querySelectorAll('li.device[data-online=\"true\"]').length === 5",
        Duration::from_secs(5),
    )
    .await?;
    println!(
        "page loaded after {loaded:?}, first readings drawn after {drawn:?}, a newer one after {moving:?}"
    );
    // Live charts scroll with time from their first point on; new readings keep arriving.
    assert!(
        drawn < Duration::from_secs(3),
        "first readings drawn after {drawn:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    page.screenshot("live").await?;
    // Compare two devices side by side: tick the second one.
    page.eval("document.querySelector('li.device[data-device=\"demo-02\"] .device-check').click()")
        .await?;
    page.wait_for(
        &format!(
            "{} && Number({}.dataset.points) > 0",
            card("demo-02", 0),
            card("demo-02", 0)
        ),
        Duration::from_secs(5),
    )
    .await?;
    page.wait_for(&subscribed_to("demo-02"), Duration::from_secs(5))
        .await?;
    page.screenshot("two-devices").await?;
    assert_no_console_errors(&page);
    page.close().await;
    fleet.stop().await?;
    hub.stop().await
}
