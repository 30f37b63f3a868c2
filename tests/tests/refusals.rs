//! Bad input gets the documented answer, and the hub keeps serving everyone else.

use std::time::Duration;

use futures_util::SinkExt;
use shared::{CloseReason, HubMsg, RejectReason};
use tests::*;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// A hub with one healthy simulated device streaming and one token for the misbehaving client.
struct Scene {
    hub: TestHub,
    bad_token: String,
    good: Bystander,
    _dir: tempfile::TempDir,
}

async fn scene() -> anyhow::Result<Scene> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["good".to_string(), "bad".to_string()]).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let good = Bystander::start(hub.device_url(), tokens[0].clone(), "good");
    Ok(Scene {
        hub,
        bad_token: tokens[1].clone(),
        good,
        _dir: dir,
    })
}

impl Scene {
    async fn bad_client(&self) -> anyhow::Result<Ws> {
        Ok(greet(&self.hub.device_url(), &self.bad_token, 1, 1)
            .await?
            .0)
    }

    /// The good device was never disturbed: it stayed connected once, and all it made was acked.
    async fn good_device_unharmed(self) -> anyhow::Result<()> {
        self.good.assert_unharmed().await?;
        self.hub.stop().await
    }
}

#[tokio::test]
async fn no_token_or_a_wrong_token_gets_401_before_upgrade() -> anyhow::Result<()> {
    let s = scene().await?;
    let url = s.hub.device_url();
    assert_eq!(
        upgrade_status(&url, None, Some(shared::SUBPROTOCOL)).await,
        Some(401)
    );
    assert_eq!(
        upgrade_status(&url, Some("not-a-token"), Some(shared::SUBPROTOCOL)).await,
        Some(401)
    );
    let forged = "0".repeat(64);
    assert_eq!(
        upgrade_status(&url, Some(&forged), Some(shared::SUBPROTOCOL)).await,
        Some(401)
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn an_unknown_or_missing_subprotocol_is_refused() -> anyhow::Result<()> {
    let s = scene().await?;
    let url = s.hub.device_url();
    assert_eq!(
        upgrade_status(&url, Some(&s.bad_token), Some("telemetry.v2")).await,
        Some(400)
    );
    assert_eq!(
        upgrade_status(&url, Some(&s.bad_token), None).await,
        Some(400)
    );
    s.good_device_unharmed().await
}

/// A raw HTTP/1.1 request to the device door; the status line and body of the answer.
async fn raw_device_request(s: &Scene, extra_headers: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.hub.addr).await?;
    let request = format!(
        "GET /ws/device HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Sec-WebSocket-Protocol: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        s.hub.addr,
        s.bad_token,
        shared::SUBPROTOCOL
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut answer)).await??;
    Ok(answer)
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_gets_400_saying_what_is_missing()
-> anyhow::Result<()> {
    let s = scene().await?;
    let plain = raw_device_request(&s, "").await?;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(
        plain.contains("`Connection` does not include `upgrade`"),
        "{plain}"
    );
    // Asks to upgrade (Connection: close here is one more token of the same header), but in
    // an old WebSocket version.
    let old_version = raw_device_request(
        &s,
        "Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: Upgrade\r\n",
    )
    .await?;
    assert!(old_version.starts_with("HTTP/1.1 400"), "{old_version}");
    assert!(
        old_version.contains("`Sec-WebSocket-Version` must be 13"),
        "{old_version}"
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_text_frame_gets_1003() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    ws.send(Message::Text("hello".into())).await?;
    assert_eq!(closing(&mut ws, WAIT).await?, bad_frame(1003));
    s.good_device_unharmed().await
}

/// Goodbye `BadFrame`, then the close `code`.
fn bad_frame(code: u16) -> (Option<HubMsg>, Option<u16>) {
    (
        Some(HubMsg::Goodbye {
            reason: CloseReason::BadFrame,
        }),
        Some(code),
    )
}

#[tokio::test]
async fn bytes_that_do_not_decode_get_1007() -> anyhow::Result<()> {
    let s = scene().await?;
    assert_eq!(
        answer_to(&s, vec![1, 0xff, 0xff, 0xff]).await?,
        bad_frame(1007)
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_1009() -> anyhow::Result<()> {
    let s = scene().await?;
    let frame = vec![1u8; shared::limits::MAX_DEVICE_FRAME_BYTES + 1];
    assert_eq!(answer_to(&s, frame).await?, bad_frame(1009));
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_batch_before_hello_gets_1008() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = connect_device(
        &s.hub.device_url(),
        Some(&s.bad_token),
        Some(shared::SUBPROTOCOL),
    )
    .await?;
    send(&mut ws, &batch(1, now_ms(), &[(0, 0, 1.0)])).await?;
    assert_eq!(
        closing(&mut ws, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::PolicyViolation
            }),
            Some(1008)
        )
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn invalid_batches_are_rejected_with_their_reason_then_repeated_ones_get_1008()
-> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    let now = now_ms();
    send(&mut ws, &batch(1, now, &[(0, 0, f32::NAN)])).await?;
    assert_eq!(
        recv(&mut ws, WAIT).await?,
        HubMsg::Reject {
            seq: 1,
            reason: RejectReason::NonFiniteValue { index: 0 }
        }
    );
    send(&mut ws, &batch(2, now, &[(0, 0, 1.0), (9, 0, 1.0)])).await?;
    assert_eq!(
        recv(&mut ws, WAIT).await?,
        HubMsg::Reject {
            seq: 2,
            reason: RejectReason::UndeclaredSensor {
                index: 1,
                sensor: 9
            }
        }
    );
    send(&mut ws, &batch(3, now + 3_600_000, &[(0, 0, 1.0)])).await?;
    assert_eq!(
        recv(&mut ws, WAIT).await?,
        HubMsg::Reject {
            seq: 3,
            reason: RejectReason::TimestampOutOfRange { index: 0 }
        }
    );
    // A valid batch resets the streak and is stored.
    send(&mut ws, &batch(4, now, &[(0, 0, 1.0)])).await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 4 });
    for seq in 5..14 {
        send(&mut ws, &batch(seq, now, &[(0, 0, f32::INFINITY)])).await?;
        assert!(matches!(recv(&mut ws, WAIT).await?, HubMsg::Reject { .. }));
    }
    send(&mut ws, &batch(14, now, &[(0, 0, f32::INFINITY)])).await?;
    assert_eq!(
        closing(&mut ws, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::PolicyViolation
            }),
            Some(1008)
        )
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_second_connection_with_the_same_token_replaces_the_first_with_4000() -> anyhow::Result<()>
{
    let s = scene().await?;
    let mut first = s.bad_client().await?;
    let _second = s.bad_client().await?;
    assert_eq!(
        closing(&mut first, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::Replaced
            }),
            Some(4000)
        )
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn revoking_a_device_closes_its_socket_with_1008_and_refuses_it_afterwards()
-> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    let store = open_store(&s.hub.db)?;
    store.revoke_device("bad").await?;
    store.close().await?;
    assert_eq!(
        closing(&mut ws, Duration::from_secs(10)).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::Revoked
            }),
            Some(1008)
        )
    );
    assert_eq!(
        upgrade_status(
            &s.hub.device_url(),
            Some(&s.bad_token),
            Some(shared::SUBPROTOCOL)
        )
        .await,
        Some(401)
    );
    s.good_device_unharmed().await
}

/// A fresh connection of the bad device that sends `frame` after its Hello; how it ended.
async fn answer_to(s: &Scene, frame: Vec<u8>) -> anyhow::Result<(Option<HubMsg>, Option<u16>)> {
    let mut ws = s.bad_client().await?;
    ws.send(Message::Binary(frame.into())).await?;
    closing(&mut ws, WAIT).await
}

#[tokio::test]
async fn truncated_frames_huge_length_prefixes_overlong_varints_and_bad_utf8_get_1007()
-> anyhow::Result<()> {
    let s = scene().await?;
    let valid = shared::codec::to_vec(&batch(1, now_ms(), &[(0, 0, 1.0), (0, 10, 2.0)]))?;
    let mut bad_utf8 = shared::codec::to_vec(&hello(2, 1))?;
    bad_utf8[2] = 0xff; // the first byte of the firmware string
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated batch", valid[..valid.len() - 3].to_vec()),
        ("batch cut after its tag", valid[..1].to_vec()),
        ("empty frame", vec![]),
        // Hello whose firmware string claims 4 GiB.
        (
            "huge length prefix",
            vec![0, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x'],
        ),
        // Batch whose seq varint never ends (11 continuation bytes).
        ("overlong varint", [vec![1u8], vec![0xff; 11]].concat()),
        ("unknown message tag", vec![0x7f, 0, 0]),
        ("invalid UTF-8 in a string", bad_utf8),
        ("trailing bytes", [valid.clone(), vec![0]].concat()),
    ];
    for (what, frame) in cases {
        assert_eq!(answer_to(&s, frame).await?, bad_frame(1007), "{what}");
    }
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_sequence_regression_is_acked_as_a_duplicate_and_not_stored() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    let now = now_ms();
    send(&mut ws, &batch(5, now, &[(0, 0, 1.0)])).await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 5 });
    // Seq 3 (never sent) and 5 again: at or below the last stored seq, so acked, not stored.
    send(&mut ws, &batch(3, now + 10, &[(0, 0, 99.0)])).await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 5 });
    send(&mut ws, &batch(5, now + 20, &[(0, 0, 99.0)])).await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 5 });
    send(&mut ws, &batch(0, now + 30, &[(0, 0, 99.0)])).await?;
    assert!(matches!(
        recv(&mut ws, WAIT).await?,
        HubMsg::Ack { seq: 5 } | HubMsg::Reject { seq: 0, .. }
    ));
    let stats = s.hub.get("/api/devices/bad").await?.json()?;
    assert_eq!(stats["stats"]["stored_readings"], 1, "{stats}");
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_fragmented_batch_is_reassembled_and_stored() -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    let bytes = shared::codec::to_vec(&batch(1, now_ms(), &[(0, 0, 1.0), (0, 10, 2.0)]))?;
    let (a, rest) = bytes.split_at(3);
    let (b, c) = rest.split_at(rest.len() / 2);
    ws.send(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Binary),
        false,
    )))
    .await?;
    ws.send(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await?;
    ws.send(Message::Frame(Frame::message(
        c.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 1 });
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_ping_flood_changes_nothing_for_anyone() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    for i in 0..10_000u32 {
        ws.feed(Message::Ping(i.to_le_bytes().to_vec().into()))
            .await?;
    }
    ws.flush().await?;
    send(&mut ws, &batch(1, now_ms(), &[(0, 0, 1.0)])).await?;
    assert_eq!(
        recv(&mut ws, Duration::from_secs(20)).await?,
        HubMsg::Ack { seq: 1 }
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_flood_of_tiny_frames_is_read_at_a_bounded_pace_not_refused() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    let frames = 3_000u64;
    let started = std::time::Instant::now();
    for i in 0..frames {
        let hb = shared::DeviceMsg::Heartbeat(shared::Heartbeat { uptime_ms: i });
        ws.feed(Message::Binary(shared::codec::to_vec(&hb)?.into()))
            .await?;
    }
    ws.flush().await?;
    let mut pongs = 0;
    while pongs < frames {
        match recv(&mut ws, Duration::from_secs(20)).await? {
            HubMsg::Pong { uptime_ms, .. } => {
                assert_eq!(uptime_ms, pongs, "answered in order");
                pongs += 1;
            }
            other => panic!("expected Pong, got {other:?}"),
        }
    }
    // 1,000 frames/s with a one-second burst: 3,000 take at least two seconds.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_800), "not paced: {took:?}");
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_device_sampling_faster_than_it_declared_is_rejected_rate_limited() -> anyhow::Result<()>
{
    let s = scene().await?;
    let mut ws = s.bad_client().await?; // declares 10 readings/s
    let now = now_ms() - 60_000;
    // 200 readings in 200 ms of its own time: one batch passes as slack, the next does not.
    let burst: Vec<(u8, u32, f32)> = (0..200).map(|i| (0u8, i, i as f32)).collect();
    send(&mut ws, &batch(1, now, &burst)).await?;
    assert_eq!(recv(&mut ws, WAIT).await?, HubMsg::Ack { seq: 1 });
    send(&mut ws, &batch(2, now + 200, &burst)).await?;
    assert_eq!(
        recv(&mut ws, WAIT).await?,
        HubMsg::Reject {
            seq: 2,
            reason: RejectReason::RateLimited
        }
    );
    let metrics = s.hub.get("/metrics").await?.text();
    assert!(
        metrics.contains("batches_rate_limited_total 1"),
        "{metrics}"
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn an_honest_backlog_after_an_outage_is_never_rate_limited() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?; // declares 10 readings/s
    // An hour offline at 10 readings/s: 36,000 readings with their sampling times, sent as
    // fast as the socket takes them.
    let start = now_ms() - 3_600_000;
    let batches = 180u32;
    for seq in 1..=batches {
        let base = start + u64::from(seq - 1) * 20_000;
        let readings: Vec<(u8, u32, f32)> = (0..200).map(|i| (0u8, i * 100, i as f32)).collect();
        send(&mut ws, &batch(seq, base, &readings)).await?;
    }
    let mut acked = 0;
    while acked < batches {
        match recv(&mut ws, Duration::from_secs(20)).await? {
            HubMsg::Ack { seq } => acked = seq,
            other => panic!("backlog refused: {other:?}"),
        }
    }
    let stats = s.hub.get("/api/devices/bad").await?.json()?;
    assert_eq!(stats["stats"]["stored_readings"], 36_000, "{stats}");
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_device_following_the_hubs_faster_config_is_not_rate_limited() -> anyhow::Result<()> {
    // The hub tells devices to sample every 10 ms; this one's Hello (sent before it learns
    // that) declares 10 readings/s. What it then samples, 100 per second, is still accepted.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["follower".to_string()]).await?;
    let mut config = TestHub::config(&db);
    config.device.sample_interval_ms = 10;
    let hub = TestHub::start(config).await?;
    let (mut ws, welcome) = greet(&hub.device_url(), &tokens[0], 1, 1).await?;
    assert_eq!(welcome.config.sample_interval_ms, 10);
    let start = now_ms() - 60_000;
    for seq in 1..=20u32 {
        let base = start + u64::from(seq - 1) * 1_000;
        let readings: Vec<(u8, u32, f32)> = (0..100).map(|i| (0u8, i * 10, i as f32)).collect();
        send(&mut ws, &batch(seq, base, &readings)).await?;
    }
    let mut acked = 0;
    while acked < 20 {
        match recv(&mut ws, WAIT).await? {
            HubMsg::Ack { seq } => acked = seq,
            other => panic!("refused: {other:?}"),
        }
    }
    hub.stop().await
}
