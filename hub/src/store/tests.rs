//! The store's promises, each a test. Real SQLite files in temp dirs; commit intervals are
//! either tiny or an hour with explicit `flush()`, so nothing depends on timing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use shared::payload::Point;
use tempfile::TempDir;

use super::rollup::{Agg, HOUR_MS, MINUTE_MS, floor_to};
use super::*;

/// 2026-01-01T00:00:00Z, a whole hour.
const T0: i64 = 1_767_225_600_000;

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        path: dir.path().join("hub.db"),
        commit_interval: Duration::from_millis(5),
        ..StoreConfig::default()
    }
}

/// A config whose commits happen only on `flush()`.
fn manual_config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        commit_interval: Duration::from_secs(3600),
        ..config(dir)
    }
}

async fn device(store: &Store, name: &str) -> DeviceId {
    store
        .add_device(name, &format!("hash-of-{name}"))
        .await
        .unwrap()
}

/// `n` points per sensor, `step_ms` apart from `start`, values exact in binary (sums stay exact).
fn points(start: i64, n: usize, step_ms: i64, sensors: &[u8]) -> Vec<Point> {
    let mut out = Vec::new();
    for &sensor in sensors {
        for k in 0..n {
            let ts = start + k as i64 * step_ms;
            out.push(Point {
                sensor,
                ts_ms: ts,
                value: ((ts / 1000 + i64::from(sensor) * 7) % 64) as f32 * 0.25,
            });
        }
    }
    out
}

fn batch(
    device_id: DeviceId,
    boot_id: u32,
    seq: u32,
    received_ms: i64,
    points: Vec<Point>,
) -> IncomingBatch {
    IncomingBatch {
        device_id,
        boot_id,
        seq,
        time_source: TimeSource::Sntp,
        dropped: 0,
        points,
        received_ms,
    }
}

fn raw_db(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn batch_already_stored_is_acked_again_not_stored_twice() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    let b1 = batch(dev, 7, 1, T0 + 1000, points(T0, 4, 250, &[0]));
    let b2 = batch(dev, 7, 2, T0 + 2000, points(T0 + 1000, 4, 250, &[0]));
    assert_eq!(
        store.submit(b1.clone()).await.unwrap(),
        Committed::Stored { gap: 0 }
    );
    assert_eq!(
        store.submit(b2.clone()).await.unwrap(),
        Committed::Stored { gap: 0 }
    );
    // A resend after the ack, and a resend inside the same group as the original.
    assert_eq!(store.submit(b1).await.unwrap(), Committed::Duplicate);
    let b3 = batch(dev, 7, 3, T0 + 3000, points(T0 + 2000, 4, 250, &[0]));
    let first = store.enqueue(b3.clone()).await.unwrap();
    let again = store.enqueue(b3).await.unwrap();
    assert_eq!(first.await.unwrap(), Committed::Stored { gap: 0 });
    assert_eq!(again.await.unwrap(), Committed::Duplicate);

    let stats = store.device_stats(dev).await.unwrap().unwrap();
    assert_eq!(
        (
            stats.stored_batches,
            stats.stored_readings,
            stats.lost_batches,
            stats.last_seq
        ),
        (3, 12, 0, 3)
    );
    assert_eq!(
        store
            .raw_points(dev, None, T0, T0 + 10_000, 100)
            .await
            .unwrap()
            .len(),
        12
    );
    store.close().await.unwrap();
    assert_eq!(
        count(
            &raw_db(&dir.path().join("hub.db")),
            "SELECT count(*) FROM batches"
        ),
        3
    );
}

#[tokio::test]
async fn new_boot_id_starts_a_new_cursor() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    let at = |seq: u32| T0 + i64::from(seq) * 1000;
    for seq in 1..=3 {
        let mut b = batch(dev, 100, seq, at(seq), points(at(seq) - 500, 2, 100, &[0]));
        b.dropped = 5;
        store.submit(b).await.unwrap();
    }
    assert_eq!(store.cursor(dev, 100).await.unwrap(), Some(3));
    assert_eq!(store.cursor(dev, 200).await.unwrap(), None);

    // The device reboots: seq starts again at 1 and is stored, not taken for a resend.
    let mut b = batch(dev, 200, 1, at(10), points(at(10) - 500, 2, 100, &[0]));
    b.dropped = 2;
    assert_eq!(store.submit(b).await.unwrap(), Committed::Stored { gap: 0 });
    assert_eq!(store.cursor(dev, 200).await.unwrap(), Some(1));
    assert_eq!(
        store.cursor(dev, 100).await.unwrap(),
        Some(3),
        "the old boot's cursor is kept"
    );

    // A stale frame of the old boot is still answered against the old boot's cursor.
    assert_eq!(
        store
            .submit(batch(
                dev,
                100,
                3,
                at(11),
                points(at(11) - 500, 2, 100, &[0])
            ))
            .await
            .unwrap(),
        Committed::Duplicate
    );
    // A gap in the new boot counts one lost batch.
    assert_eq!(
        store
            .submit(batch(
                dev,
                200,
                3,
                at(12),
                points(at(12) - 500, 2, 100, &[0])
            ))
            .await
            .unwrap(),
        Committed::Stored { gap: 1 }
    );

    let stats = store.device_stats(dev).await.unwrap().unwrap();
    assert_eq!(stats.boot_id, Some(200));
    assert_eq!(
        (
            stats.stored_batches,
            stats.lost_batches,
            stats.dropped_readings
        ),
        (5, 1, 7)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn nothing_is_acked_before_its_commit() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(manual_config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    let mut ticket = store
        .enqueue(batch(dev, 1, 1, T0 + 1000, points(T0, 4, 250, &[0])))
        .await
        .unwrap();
    // The commit interval is an hour: nothing can answer the ticket but a commit.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut ticket)
            .await
            .is_err(),
        "acked before any commit"
    );
    let db = raw_db(&config(&dir).path);
    assert_eq!(count(&db, "SELECT count(*) FROM batches"), 0);
    store.flush().await.unwrap();
    assert_eq!(ticket.await.unwrap(), Committed::Stored { gap: 0 });
    assert_eq!(count(&db, "SELECT count(*) FROM batches"), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn group_commit_puts_many_batches_in_one_transaction() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(manual_config(&dir)).unwrap();
    let mut devices = Vec::new();
    for i in 0..10 {
        devices.push(device(&store, &format!("d{i}")).await);
    }
    let commits_before = store.health().commits;
    let mut tickets = Vec::new();
    for seq in 1..=10u32 {
        for &dev in &devices {
            let t = T0 + i64::from(seq) * 1000;
            tickets.push(
                store
                    .enqueue(batch(dev, 1, seq, t, points(t - 1000, 8, 125, &[0, 1])))
                    .await
                    .unwrap(),
            );
        }
    }
    assert_eq!(store.health().queued_batches, 100);
    store.flush().await.unwrap();
    for ticket in tickets {
        assert_eq!(ticket.await.unwrap(), Committed::Stored { gap: 0 });
    }
    assert_eq!(
        store.health().commits,
        commits_before + 1,
        "100 batches, one transaction"
    );
    assert_eq!(store.health().queued_batches, 0);
    assert_eq!(
        count(&raw_db(&config(&dir).path), "SELECT count(*) FROM batches"),
        100
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn full_queue_makes_enqueue_wait() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(StoreConfig {
        queue_batches: 2,
        ..manual_config(&dir)
    })
    .unwrap();
    let dev = device(&store, "a").await;
    let b = |seq: u32| {
        batch(
            dev,
            1,
            seq,
            T0 + i64::from(seq) * 1000,
            points(T0 + i64::from(seq) * 1000 - 500, 2, 100, &[0]),
        )
    };
    let t1 = store.enqueue(b(1)).await.unwrap();
    let t2 = store.enqueue(b(2)).await.unwrap();
    let third = store.enqueue(b(3));
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut third)
            .await
            .is_err(),
        "a third batch got in past a queue of 2"
    );
    store.flush().await.unwrap();
    assert!(t1.await.is_ok() && t2.await.is_ok());
    let t3 = third.await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(t3.await.unwrap(), Committed::Stored { gap: 0 });
    store.clone().close().await.unwrap();
}

#[tokio::test]
async fn locked_database_delays_acks_but_loses_nothing() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(StoreConfig {
        busy_timeout: Duration::from_millis(10),
        ..config(&dir)
    })
    .unwrap();
    let dev = device(&store, "a").await;
    let blocker = raw_db(&config(&dir).path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut ticket = store
        .enqueue(batch(dev, 1, 1, T0 + 1000, points(T0, 4, 250, &[0])))
        .await
        .unwrap();
    while store.health().writable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut ticket)
            .await
            .is_err(),
        "acked while the database was locked"
    );
    assert!(store.health().last_error.unwrap().contains("locked"));
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(ticket.await.unwrap(), Committed::Stored { gap: 0 });
    assert!(store.health().writable);
    store.close().await.unwrap();
}

#[tokio::test]
async fn batches_of_unknown_devices_and_broken_batches_are_refused() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    assert!(matches!(
        store
            .submit(batch(99, 1, 1, T0, points(T0 - 100, 1, 1, &[0])))
            .await,
        Err(StoreError::UnknownDevice(99))
    ));
    let dev = device(&store, "a").await;
    assert!(matches!(
        store.enqueue(batch(dev, 1, 1, T0, Vec::new())).await,
        Err(StoreError::InvalidBatch(_))
    ));
    assert!(matches!(
        store
            .enqueue(batch(dev, 1, 0, T0, points(T0, 1, 1, &[0])))
            .await,
        Err(StoreError::InvalidBatch(_))
    ));
    let mut nan = points(T0 - 100, 1, 1, &[0]);
    nan[0].value = f32::NAN;
    assert!(matches!(
        store.enqueue(batch(dev, 1, 1, T0, nan)).await,
        Err(StoreError::InvalidBatch(_))
    ));
    assert!(matches!(
        store
            .enqueue(batch(dev, 1, 1, T0, points(T0 + 3_600_000, 1, 1, &[0])))
            .await,
        Err(StoreError::InvalidBatch(_))
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn devices_are_registered_looked_up_and_revoked() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    let id = store.add_device("greenhouse-1", "aa11").await.unwrap();
    assert!(
        matches!(store.add_device("greenhouse-1", "bb22").await, Err(StoreError::DuplicateName(n)) if n == "greenhouse-1")
    );
    assert!(matches!(
        store.add_device("other", "aa11").await,
        Err(StoreError::DuplicateToken)
    ));
    assert!(matches!(
        store.add_device(" ", "cc33").await,
        Err(StoreError::InvalidName { .. })
    ));

    let mut hello = shared::Hello {
        firmware: "sim-0.1.0".try_into().unwrap(),
        boot_id: 42,
        uptime_ms: 1000,
        reset_reason: shared::ResetReason::PowerOn,
        declared_rate: 4,
        sensors: Default::default(),
    };
    hello
        .sensors
        .push(shared::SensorDecl {
            id: 0,
            kind: shared::SensorKind::Temperature,
            unit: "°C".try_into().unwrap(),
        })
        .unwrap();
    store.record_hello(id, &hello, T0).await.unwrap();

    let found = store.device_by_token_hash("aa11").await.unwrap().unwrap();
    assert_eq!(
        (found.id, found.name.as_str(), found.revoked),
        (id, "greenhouse-1", false)
    );
    assert_eq!(
        (
            found.firmware.as_deref(),
            found.boot_id,
            found.reset_reason.as_deref()
        ),
        (Some("sim-0.1.0"), Some(42), Some("power_on"))
    );
    assert_eq!(
        found.sensors,
        vec![SensorInfo {
            id: 0,
            kind: "temperature".into(),
            unit: "°C".into()
        }]
    );
    assert_eq!(found.last_seen_ms, Some(T0));
    assert!(store.device_by_token_hash("nope").await.unwrap().is_none());

    store.revoke_device("greenhouse-1").await.unwrap();
    assert!(
        store
            .device_by_token_hash("aa11")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(matches!(
        store.revoke_device("ghost").await,
        Err(StoreError::DeviceNotFound(_))
    ));
    assert_eq!(store.list_devices().await.unwrap().len(), 1);
    store.close().await.unwrap();
}

/// Minute aggregates recomputed from every stored reading.
fn recompute_minutes(conn: &Connection) -> BTreeMap<(i64, i64, u8), Agg> {
    let mut out: BTreeMap<(i64, i64, u8), Agg> = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT device_id, payload FROM batches")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let mut points = Vec::new();
        shared::payload::decode(&row.get::<_, Vec<u8>>(1).unwrap(), &mut points).unwrap();
        for p in points {
            let a = Agg::of(f64::from(p.value));
            out.entry((floor_to(p.ts_ms, MINUTE_MS), row.get(0).unwrap(), p.sensor))
                .and_modify(|e| e.merge(&a))
                .or_insert(a);
        }
    }
    out
}

fn table(conn: &Connection, sql: &str) -> BTreeMap<(i64, i64, u8), Agg> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?),
                Agg {
                    min: r.get(3)?,
                    max: r.get(4)?,
                    sum: r.get(5)?,
                    count: r.get::<_, i64>(6)? as u64,
                },
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test]
async fn rollups_match_raw_points_after_restart() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(manual_config(&dir)).unwrap();
    let devs = [device(&store, "a").await, device(&store, "b").await];
    let backlog_device = device(&store, "c").await;
    // Each device sends a batch every 10 s: 2 sensors x 5 readings, 2 s apart.
    let send = |store: Store, i: u32| async move {
        let t = T0 + i64::from(i) * 10_000;
        let mut tickets = Vec::new();
        for dev in devs {
            tickets.push(
                store
                    .enqueue(batch(
                        dev,
                        1,
                        i + 1,
                        t + 10_000,
                        points(t, 5, 2000, &[0, 3]),
                    ))
                    .await
                    .unwrap(),
            );
        }
        tickets
    };
    for i in 0..=500u32 {
        let tickets = send(store.clone(), i).await;
        if i % 7 == 0 || i == 500 {
            store.flush().await.unwrap();
        }
        if i == 300 {
            // A backlog batch for long-closed minutes (written straight to their rows).
            store.flush().await.unwrap();
            for t in tickets {
                t.await.unwrap();
            }
            let late = batch(
                backlog_device,
                1,
                1,
                T0 + 301 * 10_000,
                points(T0 + 5 * MINUTE_MS + 1000, 3, 1000, &[0]),
            );
            let ticket = store.enqueue(late).await.unwrap();
            store.flush().await.unwrap();
            assert_eq!(ticket.await.unwrap(), Committed::Stored { gap: 0 });
        }
    }
    // The "kill -9": a copy of the database and its WAL right after a commit, mid-minute
    // (the last batch covers 83:20-83:28), with open minutes only in the writer's memory.
    let crashed = TempDir::new().unwrap();
    let path = config(&dir).path;
    std::fs::copy(&path, crashed.path().join("hub.db")).unwrap();
    std::fs::copy(
        path.with_extension("db-wal"),
        crashed.path().join("hub.db-wal"),
    )
    .unwrap();
    drop(store);
    {
        let image = raw_db(&crashed.path().join("hub.db"));
        let written: i64 = count(&image, "SELECT max(minute_ms) FROM rollup_minute");
        assert!(
            written < T0 + 83 * MINUTE_MS,
            "the last minutes must be open at the crash for this test to mean anything"
        );
    }

    let store = Store::open(manual_config(&crashed)).unwrap();
    for i in 501..540u32 {
        let _ = send(store.clone(), i).await;
        store.flush().await.unwrap();
    }
    store.close().await.unwrap();

    let db = raw_db(&crashed.path().join("hub.db"));
    let expected = recompute_minutes(&db);
    let minutes = table(
        &db,
        "SELECT minute_ms, device_id, sensor, min_value, max_value, sum_value, count FROM rollup_minute",
    );
    assert_eq!(minutes, expected);
    let hour_mark = count(&db, "SELECT hour_watermark_ms FROM rollup_state");
    assert_eq!(hour_mark, T0 + HOUR_MS);
    let mut expected_hours: BTreeMap<(i64, i64, u8), Agg> = BTreeMap::new();
    for ((m, d, s), a) in expected.into_iter().filter(|((m, _, _), _)| *m < hour_mark) {
        expected_hours
            .entry((floor_to(m, HOUR_MS), d, s))
            .and_modify(|e| e.merge(&a))
            .or_insert(a);
    }
    let hours = table(
        &db,
        "SELECT hour_ms, device_id, sensor, min_value, max_value, sum_value, count FROM rollup_hour",
    );
    assert_eq!(hours, expected_hours);
}

#[tokio::test]
async fn corrupt_database_is_refused_not_wiped() {
    // Not a database at all.
    let dir = TempDir::new().unwrap();
    let path = config(&dir).path;
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(config(&dir))
        .err()
        .expect("garbage opened as a database");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("move the file aside"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was changed"
    );

    // A real database with a damaged page.
    let dir = TempDir::new().unwrap();
    let path = config(&dir).path;
    let store = Store::open(config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    for seq in 1..=400u32 {
        let t = T0 + i64::from(seq) * 1000;
        drop(
            store
                .enqueue(batch(dev, 1, seq, t, points(t - 1000, 8, 125, &[0, 1, 2])))
                .await
                .unwrap(),
        );
    }
    store.close().await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 10);
    for page in [pages / 2, pages / 2 + 1] {
        for b in &mut bytes[page * 4096 + 8..page * 4096 + 4000] {
            *b = 0xA5;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(config(&dir))
        .err()
        .expect("a damaged database opened");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
    assert!(
        !path.with_extension("db-wal").exists()
            || std::fs::metadata(path.with_extension("db-wal"))
                .unwrap()
                .len()
                == 0
    );
}

#[tokio::test]
async fn migrations_bring_an_old_file_up_to_date() {
    // v0: an empty SQLite file.
    let dir = TempDir::new().unwrap();
    let path = config(&dir).path;
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 0; VACUUM;")
        .unwrap();
    Store::open(config(&dir)).unwrap().close().await.unwrap();
    assert_eq!(
        schema::user_version(&raw_db(&path)).unwrap(),
        schema::MIGRATIONS.len() as i64
    );

    // v1: devices and batches from before roll-ups existed.
    let dir = TempDir::new().unwrap();
    let path = config(&dir).path;
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO devices (name, token_hash, created_at_ms) VALUES ('old', 'h', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO cursors (device_id, boot_id, last_seq) VALUES (1, 9, 1)",
            [],
        )
        .unwrap();
        let mut payload = Vec::new();
        shared::payload::encode(&points(T0, 4, 1000, &[0]), &mut payload);
        conn.execute(
            "INSERT INTO batches (bucket, device_id, boot_id, seq, time_source, late, t_first_ms, t_last_ms, count, payload) \
             VALUES (?1, 1, 9, 1, 0, 0, ?2, ?3, 4, ?4)",
            rusqlite::params![(T0 + 4000) / 1000, T0, T0 + 3000, payload],
        )
        .unwrap();
    }
    let store = Store::open(config(&dir)).unwrap();
    assert_eq!(store.cursor(1, 9).await.unwrap(), Some(1));
    assert_eq!(
        store
            .raw_points(1, Some(0), T0, T0 + 10_000, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        store
            .history(1, 0, T0, T0 + MINUTE_MS, 10)
            .await
            .unwrap()
            .buckets
            .iter()
            .map(|b| b.count)
            .sum::<u64>(),
        4
    );
    // The hub ingests again: the roll-ups now cover the rows older than them too.
    store
        .submit(batch(1, 9, 2, T0 + 9000, points(T0 + 5000, 4, 1000, &[0])))
        .await
        .unwrap();
    store.close().await.unwrap();
    let db = raw_db(&path);
    assert_eq!(
        schema::user_version(&db).unwrap(),
        schema::MIGRATIONS.len() as i64
    );
    assert_eq!(
        count(&db, "SELECT sum(count) FROM rollup_minute"),
        8,
        "roll-ups rebuilt for rows older than them"
    );

    // Up to date: opens unchanged; from a newer hub: refused.
    Store::open(config(&dir)).unwrap().close().await.unwrap();
    raw_db(&path)
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(matches!(
        Store::open(config(&dir)).err(),
        Some(StoreError::TooNew { found: 99, .. })
    ));

    // Someone else's database: refused, not migrated.
    let dir = TempDir::new().unwrap();
    Connection::open(config(&dir).path)
        .unwrap()
        .execute_batch("CREATE TABLE recipes (name TEXT)")
        .unwrap();
    assert!(matches!(
        Store::open(config(&dir)).err(),
        Some(StoreError::Foreign { .. })
    ));
}

#[tokio::test]
async fn history_of_a_week_uses_rollups_and_returns_at_most_max_points() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(manual_config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    // One batch a minute for a week: 4 readings of sensor 0, 15 s apart.
    let minutes = 7 * 24 * 60;
    let mut tickets = Vec::new();
    for i in 0..minutes {
        let t = T0 + i as i64 * MINUTE_MS;
        tickets.push(
            store
                .enqueue(batch(
                    dev,
                    1,
                    i as u32 + 1,
                    t + MINUTE_MS,
                    points(t, 4, 15_000, &[0]),
                ))
                .await
                .unwrap(),
        );
        if tickets.len() == 1000 {
            store.flush().await.unwrap();
            for t in tickets.drain(..) {
                t.await.unwrap();
            }
        }
    }
    store.flush().await.unwrap();
    for t in tickets {
        t.await.unwrap();
    }
    let end = T0 + minutes as i64 * MINUTE_MS;
    let total: u64 = 4 * minutes as u64;

    let week = store.history(dev, 0, T0, end, 100).await.unwrap();
    assert_eq!(week.resolution, Resolution::Hour);
    assert!(week.buckets.len() <= 100, "{} buckets", week.buckets.len());
    assert_eq!(
        week.buckets.iter().map(|b| b.count).sum::<u64>(),
        total,
        "every reading counted once (hours, minutes, raw tail)"
    );

    let finer = store.history(dev, 0, T0, end, 1000).await.unwrap();
    assert_eq!(finer.resolution, Resolution::Minute);
    assert!(finer.buckets.len() <= 1000);
    assert_eq!(finer.buckets.iter().map(|b| b.count).sum::<u64>(), total);

    let day = store
        .history(dev, 0, end - 24 * HOUR_MS, end, 10_000)
        .await
        .unwrap();
    assert_eq!(day.resolution, Resolution::Minute);
    let last_minute = day.buckets.last().unwrap();
    let expected: Vec<Point> = points(end - MINUTE_MS, 4, 15_000, &[0]);
    assert_eq!(last_minute.t_ms, end - MINUTE_MS);
    assert_eq!(last_minute.count, 4);
    assert_eq!(
        last_minute.max,
        expected
            .iter()
            .map(|p| f64::from(p.value))
            .fold(f64::MIN, f64::max)
    );

    let recent = store
        .history(dev, 0, end - 30 * MINUTE_MS, end, 1000)
        .await
        .unwrap();
    assert_eq!(recent.resolution, Resolution::Raw);
    assert_eq!(recent.buckets.len(), 120);
    assert!(recent.buckets.iter().all(|b| b.count == 1));

    assert!(matches!(
        store
            .history(dev, 0, T0, T0 + 3 * 366 * 24 * HOUR_MS, 100)
            .await,
        Err(StoreError::QueryTooLarge { .. })
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn csv_export_streams_every_reading_once() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    let a = device(&store, "a").await;
    let b = device(&store, "b,with comma").await;
    let mut expected = Vec::new();
    for seq in 1..=30u32 {
        let t = T0 + i64::from(seq) * 1000;
        for dev in [a, b] {
            let pts = points(t - 1000, 4, 250, &[0, 1]);
            expected.extend(pts.iter().map(|p| (dev, p.sensor, p.ts_ms)));
            store.submit(batch(dev, 1, seq, t, pts)).await.unwrap();
        }
    }
    // A late batch (a backlog, ten minutes old on arrival), stamped by the hub.
    let mut late = batch(
        a,
        1,
        31,
        T0 + 40 * MINUTE_MS,
        points(T0 + 30 * MINUTE_MS, 3, 1000, &[0]),
    );
    late.time_source = TimeSource::Arrival;
    expected.extend(late.points.iter().map(|p| (a, p.sensor, p.ts_ms)));
    store.submit(late).await.unwrap();

    let mut csv = Vec::new();
    let rows = store.export_csv(T0, T0 + HOUR_MS, None, &mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("device,sensor,ts_ms,iso_time,value,time_source")
    );
    let mut seen: Vec<(i64, u8, i64)> = lines
        .map(|line| {
            let (device, rest) = if let Some(rest) = line.strip_prefix("\"b,with comma\",") {
                (b, rest)
            } else {
                (a, line.strip_prefix("a,").unwrap())
            };
            let f: Vec<&str> = rest.split(',').collect();
            (device, f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(rows as usize, seen.len());
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "every reading exactly once");
    assert!(text.contains(&format!(
        "a,0,{},2026-01-01T00:30:00.000Z,",
        T0 + 30 * MINUTE_MS
    )));
    assert!(text.lines().last().unwrap().ends_with(",arrival") || text.contains(",arrival\n"));

    // One device, and a range that cuts batches in half.
    let mut csv = Vec::new();
    let rows = store
        .export_csv(T0 + 5000, T0 + 10_000, Some(a), &mut csv)
        .unwrap();
    assert_eq!(
        rows as usize,
        expected
            .iter()
            .filter(|(d, _, ts)| *d == a && (T0 + 5000..T0 + 10_000).contains(ts))
            .count()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn late_batches_are_found_by_reading_time() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    // Readings from the first minute arrive a day later.
    let late = batch(dev, 1, 1, T0 + 24 * HOUR_MS, points(T0, 6, 10_000, &[0]));
    store.submit(late).await.unwrap();
    assert_eq!(
        store
            .raw_points(dev, Some(0), T0, T0 + MINUTE_MS, 100)
            .await
            .unwrap()
            .len(),
        6
    );
    let h = store
        .history(dev, 0, T0, T0 + 10 * MINUTE_MS, 100)
        .await
        .unwrap();
    assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), 6);
    store.close().await.unwrap();
}

#[test]
fn iso_time_is_rfc3339_utc() {
    assert_eq!(export::iso_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        export::iso_time(951_782_400_000),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(
        export::iso_time(T0 + 330 * 86_400_000 + 23 * HOUR_MS + 44 * MINUTE_MS + 123),
        "2026-11-27T23:44:00.123Z"
    );
    assert_eq!(export::iso_time(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn time_source_codes_are_stable() {
    for (code, source, name) in [
        (0, TimeSource::Sntp, "sntp"),
        (1, TimeSource::HubSynced, "hub"),
        (2, TimeSource::UptimeMapped, "uptime"),
        (3, TimeSource::Arrival, "arrival"),
    ] {
        assert_eq!(
            (
                source.code(),
                source.as_str(),
                TimeSource::from_code(i64::from(code))
            ),
            (code, name, Some(source))
        );
    }
    assert_eq!(TimeSource::from_code(4), None);
}

#[tokio::test]
async fn a_cli_beside_the_running_hub_leaves_its_roll_ups_alone() {
    let dir = TempDir::new().unwrap();
    let hub = Store::open(manual_config(&dir)).unwrap();
    let dev = device(&hub, "a").await;
    for seq in 1..=120u32 {
        let t = T0 + i64::from(seq) * 5000;
        let ticket = hub
            .enqueue(batch(dev, 1, seq, t, points(t - 5000, 5, 1000, &[0])))
            .await
            .unwrap();
        hub.flush().await.unwrap();
        ticket.await.unwrap();
    }
    // `hub device add` in another process: its own Store on the same file, opened and closed.
    let cli = Store::open(config(&dir)).unwrap();
    cli.add_device("b", "hash-b").await.unwrap();
    cli.close().await.unwrap();
    hub.close().await.unwrap();

    let db = raw_db(&config(&dir).path);
    let minutes = table(
        &db,
        "SELECT minute_ms, device_id, sensor, min_value, max_value, sum_value, count FROM rollup_minute",
    );
    assert_eq!(minutes, recompute_minutes(&db));
}
