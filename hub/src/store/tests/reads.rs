//! Queries: history resolutions and limits, CSV export, late batches, time formats.

use super::*;

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
