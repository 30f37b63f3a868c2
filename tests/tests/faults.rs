//! Delivery under faults: connections cut (also mid-frame), the hub killed with SIGKILL and
//! restarted, a dashboard that stops reading, a device that stops answering, a locked
//! database. Each time: every reading a device generated is stored exactly once, or counted
//! as dropped by the device. And the thread priorities that keep storing first when the CPU
//! is short.
//!
//! `FAULT_SCALE=N` multiplies the cuts and kill cycles for long runs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use firmware::core::BackoffConfig;
use firmware::sim::{DeviceReport, SimDevice, run_device};
use futures_util::StreamExt;
use hub::store::Store;
use shared::{CloseReason, HubMsg};
use tests::process::{ChildConfig, HubProcess};
use tests::proxy::FaultProxy;
use tests::*;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

tests::hub_process_entry!();

fn scale() -> u32 {
    std::env::var("FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn device(url: String, token: &str, name: &str, seed: u64) -> SimDevice {
    let mut d = SimDevice::new(url, token.to_owned(), name.to_owned(), seed);
    d.sample_interval = Duration::from_millis(50);
    d.batch_max_readings = 16;
    d.batch_max_age = Duration::from_millis(200);
    d.follow_hub_config = false;
    d.record = true;
    d.sntp = true;
    // Reconnect fast: these tests break connections on purpose, many times.
    d.backoff = BackoffConfig {
        initial_ms: 50,
        max_ms: 1_000,
        ..d.backoff
    };
    d.drain_timeout = Duration::from_secs(20);
    d
}

async fn start_devices(
    url: &str,
    names: &[String],
    tokens: &[String],
) -> (
    watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<DeviceReport>>,
) {
    let (stop, stop_rx) = watch::channel(false);
    let tasks = names
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (n, t))| {
            tokio::spawn(run_device(
                device(url.to_owned(), t, n, i as u64 + 1),
                stop_rx.clone(),
            ))
        })
        .collect();
    (stop, tasks)
}

async fn stop_devices(
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<DeviceReport>>,
) -> anyhow::Result<Vec<DeviceReport>> {
    stop.send(true)?;
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await?);
    }
    Ok(reports)
}

/// The database holds what each device generated, each reading once, and every reading that
/// is missing the device counted as dropped. Returns (generated, stored, dropped).
async fn assert_exactly_once(
    store: &Store,
    reports: &[DeviceReport],
) -> anyhow::Result<(u64, u64, u64)> {
    let devices = store.list_devices().await?;
    let (mut generated, mut stored_total, mut dropped) = (0, 0, 0);
    for report in reports {
        assert!(
            report.acked_all,
            "{}: outbox not drained: {report:?}",
            report.name
        );
        let id = devices
            .iter()
            .find(|d| d.name == report.name)
            .expect("registered")
            .id;
        let mut expected: HashMap<(u8, i64), u32> = HashMap::new();
        for r in &report.generated_readings {
            expected.insert(
                (r.sensor, r.unix_ms().expect("sntp time") as i64),
                r.value.to_bits(),
            );
        }
        let first = expected.keys().map(|k| k.1).min().unwrap_or(0);
        let last = expected.keys().map(|k| k.1).max().unwrap_or(0);
        let stored = store
            .raw_points(id, None, first, last + 1, usize::MAX)
            .await?;
        let mut seen: HashMap<(u8, i64), u32> = HashMap::new();
        for p in &stored {
            let prev = seen.insert((p.sensor, p.ts_ms), p.value.to_bits());
            assert!(
                prev.is_none(),
                "{}: reading {:?} stored twice",
                report.name,
                (p.sensor, p.ts_ms)
            );
            assert_eq!(
                expected.get(&(p.sensor, p.ts_ms)),
                Some(&p.value.to_bits()),
                "{}: stored a reading never generated",
                report.name
            );
        }
        let missing = expected.len() as u64 - seen.len() as u64;
        // A batch the device dropped from its outbox may have reached the hub before its ack
        // was lost, so the device's count is an upper bound; with no drops it is exact.
        assert!(
            missing <= report.dropped,
            "{}: {missing} readings missing but the device counted only {} dropped",
            report.name,
            report.dropped
        );
        generated += report.generated;
        stored_total += seen.len() as u64;
        dropped += report.dropped;
    }
    Ok((generated, stored_total, dropped))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_connection_cuts_lose_nothing_and_store_nothing_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = (0..20).map(|i| format!("dev-{i:02}")).collect();
    let tokens = add_devices(&db, &names).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let proxy = FaultProxy::start(hub.addr).await?;
    let (stop, tasks) = start_devices(&proxy.device_url(), &names, &tokens).await;

    let cuts = 200 * scale() as u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    while proxy.cuts() < cuts {
        tokio::time::sleep(Duration::from_millis(20)).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if rng.is_multiple_of(4) {
            proxy.cut_mid_frame();
        } else {
            proxy.cut(rng as usize).await;
        }
    }
    let reports = stop_devices(stop, tasks).await?;
    hub.stop().await?;
    let store = open_store(&db)?;
    let (generated, stored, dropped) = assert_exactly_once(&store, &reports).await?;
    let reconnects: u32 = reports.iter().map(|r| r.reconnects).sum();
    println!(
        "cuts {} reconnects {reconnects} generated {generated} stored {stored} dropped {dropped} duplicates 0",
        proxy.cuts()
    );
    assert!(
        reconnects as u64 >= cuts / 2,
        "the cuts did not reach the devices: {reconnects} reconnects"
    );
    store.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_hub_under_load_loses_no_acked_reading() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = (0..10).map(|i| format!("dev-{i:02}")).collect();
    let tokens = add_devices(&db, &names).await?;
    let mut cfg = ChildConfig::new(&db);
    let first = HubProcess::spawn(&cfg)?;
    cfg.listen = first.addr; // restart on the same port
    let url = first.device_url();
    let (stop, tasks) = start_devices(&url, &names, &tokens).await;

    let mut hub = first;
    let cycles = 10 * scale();
    for cycle in 0..cycles {
        // Kill at a different moment of the commit cycle each time.
        tokio::time::sleep(Duration::from_millis(700 + u64::from(cycle) * 37 % 300)).await;
        hub.kill9()?;
        hub = HubProcess::spawn(&cfg)?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports = stop_devices(stop, tasks).await?;
    let status = hub.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "hub exit after SIGTERM: {status}");

    let store = open_store(&db)?;
    let (generated, stored, dropped) = assert_exactly_once(&store, &reports).await?;
    println!(
        "kills {cycles} generated {generated} stored {stored} dropped {dropped} duplicates 0 lost 0"
    );
    assert!(
        reports.iter().all(|r| r.reconnects >= cycles / 2),
        "devices did not see the restarts"
    );
    store.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_flushes_and_exits_0() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let hub = HubProcess::spawn(&ChildConfig {
        commit_ms: 2_000,
        ..ChildConfig::new(&db)
    })?;
    let wait = Duration::from_secs(5);
    let (mut ws, _) = greet(&hub.device_url(), &tokens[0], 1, 1).await?;
    let mut live = hub.connect_live().await?;
    // A batch waiting for its (2 s) commit when SIGTERM arrives is committed and acked.
    send(&mut ws, &batch(1, now_ms(), &[(0, 0, 1.0)])).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let term = tokio::task::spawn_blocking(move || hub.terminate(Duration::from_secs(20)));
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    assert_eq!(
        closing(&mut ws, wait).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::Shutdown
            }),
            Some(1001)
        )
    );
    let live_close = loop {
        match tokio::time::timeout(wait, live.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("live socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(live_close, Some(1001));
    let status = term.await??;
    assert!(status.success(), "exit status {status}");
    // Checkpointed: the WAL was folded into the database file.
    let wal = db.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL not checkpointed"
    );
    Ok(())
}

#[tokio::test]
async fn a_device_that_stops_answering_is_closed_within_the_heartbeat_timeout() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let mut config = TestHub::config(&db);
    config.ping_interval = Duration::from_millis(200);
    config.device.heartbeat_ms = 200;
    let hub = TestHub::start(config).await?;
    let mut ws = connect_device(
        &hub.device_url(),
        Some(&tokens[0]),
        Some(shared::SUBPROTOCOL),
    )
    .await?;
    send(&mut ws, &hello(1, 1)).await?;
    let HubMsg::Welcome(_) = recv(&mut ws, Duration::from_secs(5)).await? else {
        panic!("no Welcome")
    };
    // Not reading the socket: pings go unanswered and nothing is sent.
    let silent = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (goodbye, code) = closing(&mut ws, Duration::from_secs(5)).await?;
    assert_eq!(
        (goodbye, code),
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::Timeout
            }),
            Some(4001)
        )
    );
    assert!(silent.elapsed() < Duration::from_secs(5));
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_that_stops_reading_is_told_what_it_missed_and_slows_no_device()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = (0..20).map(|i| format!("dev-{i:02}")).collect();
    let tokens = add_devices(&db, &names).await?;
    let mut config = TestHub::config(&db);
    config.live_buffer = 64;
    let hub = TestHub::start(config).await?;
    // Connects with a tiny receive buffer, then never reads: the hub's writes to it block
    // within a few events instead of filling megabytes of loopback buffers first.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(hub.addr).await?;
    let cookie = hub.session().await?;
    let mut request = hub.live_url().into_client_request()?;
    request.headers_mut().insert("cookie", cookie.parse()?);
    request
        .headers_mut()
        .insert("origin", format!("http://{}", hub.addr).parse()?);
    let (mut stalled, _) = tokio_tungstenite::client_async(request, stream).await?;
    // Fast sensors (100 Hz): about a megabyte of live events in the 3 s, far more than any
    // socket buffers between the hub and the stalled client can absorb.
    let (stop, stop_rx) = watch::channel(false);
    let tasks = names
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(i, (n, t))| {
            let mut d = device(hub.device_url(), t, n, i as u64 + 1);
            d.sample_interval = Duration::from_millis(10);
            tokio::spawn(run_device(d, stop_rx.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reports = stop_devices(stop, tasks).await?;
    // Every device was served at full speed: everything acked, nothing dropped.
    let store = open_store(&db)?;
    let (generated, stored, _) = assert_exactly_once(&store, &reports).await?;
    assert_eq!(generated, stored);
    store.close().await?;
    // The stalled client, reading at last, gets every event or is told how many it missed.
    // (Whether the hub had to skip any depends on how much the kernel's socket buffers
    // absorbed; nothing may be lost silently either way.)
    let published: std::collections::HashSet<(String, u32, u8)> = reports
        .iter()
        .flat_map(|r| {
            r.generated_readings
                .iter()
                .map(|g| (r.name.clone(), g.seq, g.sensor))
        })
        .collect();
    let (mut received, mut missed) = (0u64, 0u64);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), stalled.next()).await
    {
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            match v["type"].as_str() {
                Some("lagged") => missed += v["missed"].as_u64().unwrap_or(0),
                Some("readings") => received += 1,
                _ => {}
            }
        }
    }
    let total = published.len() as u64;
    println!(
        "stalled client: {received} of {total} readings events received, told of {missed} missed events"
    );
    assert!(received <= total);
    assert!(
        received + missed >= total,
        "{} readings events lost without a lagged notice",
        total - received - missed
    );
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_pauses_acks_and_everything_arrives_after() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = (0..5).map(|i| format!("dev-{i:02}")).collect();
    let tokens = add_devices(&db, &names).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    // Logged in before the lock: a login writes its session.
    let cookie = hub.session().await?;
    let (stop, tasks) = start_devices(&hub.device_url(), &names, &tokens).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another process holds the write lock for 5 s: commits cannot land.
    let lock_db = db.clone();
    let locker = std::thread::spawn(move || -> rusqlite::Result<()> {
        let conn = rusqlite::Connection::open(lock_db)?;
        conn.execute_batch("BEGIN EXCLUSIVE")?;
        std::thread::sleep(Duration::from_secs(5));
        conn.execute_batch("COMMIT")
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let health = tests::browser::http_get(hub.addr, "/api/health", &[("Cookie", &cookie)])
        .await?
        .json()?;
    locker.join().expect("locker thread")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports = stop_devices(stop, tasks).await?;
    hub.stop().await?;

    assert!(
        health["store_queued_batches"].as_u64().unwrap_or(0) > 0,
        "nothing was waiting during the lock: {health}"
    );
    let store = open_store(&db)?;
    let (generated, stored, dropped) = assert_exactly_once(&store, &reports).await?;
    assert_eq!((generated, dropped), (stored, 0));
    store.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_a_device_drops_in_an_outage_are_counted_and_shown_by_the_hub()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let proxy = FaultProxy::start(hub.addr).await?;
    let (stop, stop_rx) = watch::channel(false);
    let mut d = device(proxy.device_url(), &tokens[0], "d", 1);
    // A small outbox: four batches of at most 16 readings.
    d.outbox_frames = 4;
    let task = tokio::spawn(run_device(d, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // An outage: the link stalls (no bytes either way) and then is cut.
    proxy.stall(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    while proxy.cut(0).await {}
    proxy.stall(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = stop_devices(stop, vec![task]).await?;
    let store = open_store(&db)?;
    let id = store.device_by_name("d").await?.expect("device").id;
    let stats = store.device_stats(id).await?.expect("stats");
    hub.stop().await?;

    let report = &reports[0];
    assert!(
        report.dropped > 0,
        "the outage was too short to overflow the outbox: {report:?}"
    );
    let (generated, stored, dropped) = assert_exactly_once(&store, &reports).await?;
    assert!(
        generated > stored && generated <= stored + dropped,
        "generated {generated} stored {stored} dropped {dropped}"
    );
    assert_eq!(
        stats.dropped_readings, report.dropped,
        "the hub shows what the device dropped"
    );
    assert!(stats.completeness() < 1.0);
    store.close().await?;
    Ok(())
}

/// The name and nice value of each of a process's threads (`/proc/PID/task/*/stat`), the main
/// thread (whose id is the process id) first.
#[cfg(target_os = "linux")]
fn thread_nices(pid: u32) -> anyhow::Result<Vec<(String, i32)>> {
    let mut out = Vec::new();
    let mut tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .map(|t| t.map(|t| t.path()))
        .collect::<Result<_, _>>()?;
    tasks.sort_by_key(|t| !t.ends_with(pid.to_string()));
    for task in tasks {
        let stat = std::fs::read_to_string(task.join("stat"))?;
        // "tid (name) state ppid ...": the name may hold spaces; nice is field 19, the 17th
        // after the closing parenthesis.
        let (head, rest) = stat.rsplit_once(')').context("stat without a name")?;
        let name = head.split_once('(').context("stat without a name")?.1;
        let nice = rest.split_whitespace().nth(16).context("short stat")?;
        out.push((name.to_owned(), nice.parse()?));
    }
    Ok(out)
}

/// When the CPU is short, committing what was read comes first, reading more second, the live
/// view last (hub::priority): checked on the threads of a running hub process.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_store_writer_runs_ahead_of_the_sessions_and_the_live_view_last() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let hub = HubProcess::spawn(&ChildConfig::new(&db))?;
    // A session and a live client, so every kind of thread has had work.
    let (mut ws, _) = greet(&hub.device_url(), &tokens[0], 1, 1).await?;
    let _live = hub.connect_live().await?;
    send(&mut ws, &batch(1, now_ms(), &[(0, 0, 1.0)])).await?;
    assert_eq!(
        recv(&mut ws, Duration::from_secs(5)).await?,
        HubMsg::Ack { seq: 1 }
    );

    let threads = thread_nices(hub.pid())?;
    let nice_of = |name: &str| -> Vec<i32> {
        threads
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, nice)| *nice)
            .collect()
    };
    // The hub's own nice, which its main thread keeps.
    let main = threads[0].1;
    let expected_workers = (main + hub::priority::NETWORK_OFFSET).min(19);
    assert_eq!(nice_of("store-writer"), [main], "threads: {threads:?}");
    let workers = nice_of("tokio-rt-worker");
    assert!(!workers.is_empty(), "threads: {threads:?}");
    assert!(
        workers.iter().all(|&n| n == expected_workers),
        "threads: {threads:?}"
    );
    assert_eq!(nice_of("live-clients"), [19], "threads: {threads:?}");
    Ok(())
}

/// On a machine whose open-file limit is below `--max-connections` plus what the hub keeps for
/// itself, the hub lowers its connection cap to fit: a connection over it gets a clean 503 (and
/// a place again once another closes), where it would otherwise fail to be accepted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_to_what_the_open_file_limit_allows() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let hub = HubProcess::spawn(&ChildConfig {
        open_files: Some(160),
        ..ChildConfig::new(&db)
    })?;
    // 160 descriptors, 64 kept for the database and the listeners: 96 connections. Each of
    // these sends half a request and holds its place (for the 10 s header timeout).
    let mut held = Vec::new();
    for _ in 0..96 {
        let mut tcp = tokio::net::TcpStream::connect(hub.addr).await?;
        tcp.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n").await?;
        held.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let over = browser::http_get(hub.addr, "/login", &[]).await?;
    assert_eq!(over.status, 503, "{}", over.text());
    held.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        browser::http_get(hub.addr, "/login", &[]).await?.status,
        200
    );
    drop(held);
    hub.terminate(Duration::from_secs(10))?;
    Ok(())
}
