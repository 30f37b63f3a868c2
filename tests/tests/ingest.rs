//! The foundation promise: readings travel from simulated devices over real WebSockets into
//! SQLite exactly once, are acked only after that, and reach a live socket on the way.

use std::collections::HashMap;
use std::time::Duration;

use firmware::sim::{SimDevice, run_device};
use futures_util::StreamExt;
use shared::HubMsg;
use tests::*;
use tokio_tungstenite::tungstenite::Message;

const DEVICES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_every_reading_stored_exactly_once_and_seen_live() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let names: Vec<String> = (0..DEVICES).map(|i| format!("dev-{i:02}")).collect();
    let tokens = add_devices(&db, &names).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;

    // A dashboard listening to everything, counting readings per device.
    let mut live = hub.connect_live().await?;
    let live_task = tokio::spawn(async move {
        let mut seen: HashMap<String, usize> = HashMap::new();
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_secs(3), live.next()).await
        {
            if let Message::Text(text) = msg {
                let v: serde_json::Value =
                    serde_json::from_str(text.as_str()).expect("live frames are JSON");
                if v["type"] == "readings" {
                    *seen
                        .entry(v["device"].as_str().unwrap_or_default().to_owned())
                        .or_default() += v["points"].as_array().map_or(0, Vec::len);
                }
            }
        }
        seen
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (i, (name, token)) in names.iter().zip(&tokens).enumerate() {
        let mut device =
            SimDevice::new(hub.device_url(), token.clone(), name.clone(), i as u64 + 1);
        device.sample_interval = Duration::from_millis(50);
        device.batch_max_readings = 16;
        device.batch_max_age = Duration::from_millis(200);
        device.follow_hub_config = false;
        device.record = true;
        // Exact host times on every reading, so stored times must equal generated ones.
        device.sntp = true;
        tasks.push(tokio::spawn(run_device(device, stop_rx.clone())));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true)?;
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await?);
    }
    let seen_live = live_task.await?;
    let metrics = hub.get("/metrics").await?.text();
    hub.stop().await?;
    let stored_metric: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hub_readings_stored_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("/metrics has hub_readings_stored_total");
    assert_eq!(
        stored_metric,
        reports.iter().map(|r| r.generated).sum::<u64>(),
        "/metrics disagrees with what was stored"
    );

    let store = open_store(&db)?;
    let devices = store.list_devices().await?;
    for report in &reports {
        assert!(
            report.acked_all,
            "{}: outbox not fully acked at stop: {report:?}",
            report.name
        );
        assert_eq!(report.dropped, 0, "{}: dropped readings", report.name);
        assert!(
            report.generated > 20,
            "{}: generated only {}",
            report.name,
            report.generated
        );
        let id = devices
            .iter()
            .find(|d| d.name == report.name)
            .expect("registered")
            .id;

        let mut expected: Vec<(u8, i64, u32)> = report
            .generated_readings
            .iter()
            .map(|r| {
                (
                    r.sensor,
                    r.unix_ms().expect("mapped to wall time") as i64,
                    r.value.to_bits(),
                )
            })
            .collect();
        let first = expected.iter().map(|e| e.1).min().expect("readings");
        let stored = store
            .raw_points(id, None, first - 60_000, first + 3_000_000, usize::MAX)
            .await?;
        let mut got: Vec<(u8, i64, u32)> = stored
            .iter()
            .map(|p| (p.sensor, p.ts_ms, p.value.to_bits()))
            .collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(
            got.len(),
            expected.len(),
            "{}: stored {} readings, generated {}",
            report.name,
            got.len(),
            expected.len()
        );
        assert_eq!(
            got, expected,
            "{}: stored readings differ from generated ones",
            report.name
        );
        let stats = store.device_stats(id).await?.expect("stats");
        assert_eq!(
            stats.stored_readings, report.generated,
            "{}: stats disagree",
            report.name
        );
        assert_eq!(stats.lost_batches, 0);
        assert_eq!(
            seen_live.get(&report.name).copied().unwrap_or(0) as u64,
            report.generated,
            "{}: live client missed readings",
            report.name
        );
    }
    store.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_batch_already_stored_is_acked_again_not_stored_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let wait = Duration::from_secs(5);
    let base = now_ms() - 1_000;

    let (mut ws, welcome) = greet(&hub.device_url(), &tokens[0], 7, 2).await?;
    assert_eq!(welcome.stored_seq, None);
    send(&mut ws, &batch(1, base, &[(0, 0, 1.5), (1, 0, 2.5)])).await?;
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    send(&mut ws, &batch(1, base, &[(0, 0, 1.5), (1, 0, 2.5)])).await?;
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    drop(ws);

    // Reconnect in the same boot: the hub says what it has, and a resend is acked, not stored.
    let (mut ws, welcome) = greet(&hub.device_url(), &tokens[0], 7, 2).await?;
    assert_eq!(welcome.stored_seq, Some(1));
    send(&mut ws, &batch(1, base, &[(0, 0, 1.5), (1, 0, 2.5)])).await?;
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    // A new boot starts its own sequence.
    drop(ws);
    let (mut ws, welcome) = greet(&hub.device_url(), &tokens[0], 8, 2).await?;
    assert_eq!(welcome.stored_seq, None);
    send(&mut ws, &batch(1, base + 10, &[(0, 0, 3.5)])).await?;
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    drop(ws);
    hub.stop().await?;

    let store = open_store(&db)?;
    let id = store.device_by_name("d").await?.expect("device").id;
    let base = base as i64;
    let points = store
        .raw_points(id, None, base - 1, base + 60_000, 100)
        .await?;
    let got: Vec<(u8, i64, f32)> = points
        .iter()
        .map(|p| (p.sensor, p.ts_ms, p.value))
        .collect();
    assert_eq!(
        got,
        vec![(0, base, 1.5), (1, base, 2.5), (0, base + 10, 3.5)]
    );
    store.close().await?;
    Ok(())
}

#[tokio::test]
async fn uptime_clock_batches_are_stored_at_hub_wall_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["d".to_string()]).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let wait = Duration::from_secs(5);

    let mut ws = connect_device(
        &hub.device_url(),
        Some(&tokens[0]),
        Some(shared::SUBPROTOCOL),
    )
    .await?;
    let before = now_ms() as i64;
    // Hello says uptime 10,000 ms; a reading sampled at uptime 4,000 happened 6 s before Hello.
    send(&mut ws, &hello(1, 1)).await?;
    let HubMsg::Welcome(_) = recv(&mut ws, wait).await? else {
        panic!("no Welcome")
    };
    let after = now_ms() as i64;
    let uptime_batch = shared::DeviceMsg::Batch(shared::Batch {
        seq: 1,
        clock: shared::Clock::Uptime { base_ms: 4_000 },
        dropped: 0,
        readings: [shared::Reading {
            sensor: 0,
            offset_ms: 0,
            value: 20.0,
        }]
        .into_iter()
        .collect(),
    });
    send(&mut ws, &uptime_batch).await?;
    assert_eq!(recv(&mut ws, wait).await?, HubMsg::Ack { seq: 1 });
    drop(ws);
    hub.stop().await?;

    let store = open_store(&db)?;
    let id = store.device_by_name("d").await?.expect("device").id;
    let points = store
        .raw_points(id, None, before - 60_000, after + 60_000, 10)
        .await?;
    assert_eq!(points.len(), 1);
    assert!(
        (before - 6_000..=after - 6_000).contains(&points[0].ts_ms),
        "mapped to {} not within [{}, {}]",
        points[0].ts_ms,
        before - 6_000,
        after - 6_000
    );
    assert_eq!(points[0].time_source, hub::store::TimeSource::UptimeMapped);
    store.close().await?;
    Ok(())
}
