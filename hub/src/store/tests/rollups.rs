//! Roll-ups equal a recomputation from the raw readings, across a crash and beside a CLI.

use super::*;

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
