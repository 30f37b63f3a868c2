//! Acks, the exactly-once cursor, group commit, backpressure, failing commits, devices.

use super::*;

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
        busy_timeout: Duration::from_millis(10),
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
    // A disk that does not keep up: the writer cannot commit while another connection holds
    // the write lock.
    let blocker = raw_db(&config(&dir).path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
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
    blocker.execute_batch("COMMIT").unwrap();
    assert!(t1.await.is_ok() && t2.await.is_ok());
    let t3 = third.await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(t3.await.unwrap(), Committed::Stored { gap: 0 });
    store.clone().close().await.unwrap();
}

/// Batch `seq` of boot 1: four readings of sensor 0 over the second before `T0 + seq` s.
fn one_second_batch(dev: DeviceId, seq: u32) -> IncomingBatch {
    let t = T0 + i64::from(seq) * 1000;
    batch(dev, 1, seq, t, points(t - 1000, 4, 250, &[0]))
}

/// Every ticket answers `Stored` within 10 s (`late` says what it means if one does not).
async fn all_stored(tickets: Vec<CommitTicket>, late: &str) {
    for ticket in tickets {
        let answer = tokio::time::timeout(Duration::from_secs(10), ticket)
            .await
            .expect(late);
        assert_eq!(answer.unwrap(), Committed::Stored { gap: 0 });
    }
}

#[tokio::test]
async fn every_batch_queued_before_the_deadline_joins_its_group() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(StoreConfig {
        commit_interval: Duration::from_millis(1000),
        ..config(&dir)
    })
    .unwrap();
    let dev = device(&store, "a").await;
    let commits_before = store.health().commits;
    // The first batch opens a group; the others arrive while the writer sleeps until its
    // deadline, without waking it.
    let mut tickets = Vec::new();
    for seq in 1..=3u32 {
        tickets.push(store.enqueue(one_second_batch(dev, seq)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all_stored(tickets, "answered").await;
    assert_eq!(
        store.health().commits,
        commits_before + 1,
        "3 batches within one interval, one commit"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_group_of_half_the_queue_commits_without_waiting_for_the_interval() {
    let dir = TempDir::new().unwrap();
    // The interval is an hour: only the group size can start this commit.
    let store = Store::open(StoreConfig {
        queue_batches: 8,
        ..manual_config(&dir)
    })
    .unwrap();
    let dev = device(&store, "a").await;
    let commits_before = store.health().commits;
    let mut tickets = Vec::new();
    for seq in 1..=4u32 {
        tickets.push(store.enqueue(one_second_batch(dev, seq)).await.unwrap());
    }
    all_stored(tickets, "a group of half the queue waited for the interval").await;
    assert_eq!(
        store.health().commits,
        commits_before + 1,
        "4 batches, one commit"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn dropping_every_handle_without_close_commits_what_was_queued_at_once() {
    let dir = TempDir::new().unwrap();
    // The interval is an hour: the writer sleeps while the group gathers.
    let store = Store::open(manual_config(&dir)).unwrap();
    let dev = device(&store, "a").await;
    let mut ticket = store.enqueue(one_second_batch(dev, 1)).await.unwrap();
    // The writer is asleep on its group's deadline by now.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut ticket)
            .await
            .is_err(),
        "acked before any commit"
    );
    drop(store);
    all_stored(
        vec![ticket],
        "the writer slept on after the last handle went",
    )
    .await;
    let db = raw_db(&config(&dir).path);
    assert_eq!(count(&db, "SELECT count(*) FROM batches"), 1);
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
