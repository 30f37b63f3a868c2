//! Opening files: damaged ones are refused untouched, old ones are migrated.

use super::*;

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
        for b in &mut bytes[page * 4096..page * 4096 + 4000] {
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
