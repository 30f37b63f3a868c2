//! Bad input gets the documented answer, and the hub keeps serving everyone else.

use std::time::Duration;

use firmware::sim::{SimDevice, run_device};
use futures_util::SinkExt;
use shared::{CloseReason, HubMsg, RejectReason};
use tests::*;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// A hub with one healthy simulated device streaming and one token for the misbehaving client.
struct Scene {
    hub: TestHub,
    bad_token: String,
    stop: tokio::sync::watch::Sender<bool>,
    good: tokio::task::JoinHandle<firmware::sim::DeviceReport>,
    _dir: tempfile::TempDir,
}

async fn scene() -> anyhow::Result<Scene> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("hub.db");
    let tokens = add_devices(&db, &["good".to_string(), "bad".to_string()]).await?;
    let hub = TestHub::start(TestHub::config(&db)).await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut device = SimDevice::new(hub.device_url(), tokens[0].clone(), "good", 1);
    device.sample_interval = Duration::from_millis(50);
    device.batch_max_age = Duration::from_millis(100);
    device.follow_hub_config = false;
    let good = tokio::spawn(run_device(device, stop_rx));
    Ok(Scene {
        hub,
        bad_token: tokens[1].clone(),
        stop,
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
        self.stop.send(true)?;
        let report = self.good.await?;
        assert!(report.acked_all, "good device lost data: {report:?}");
        assert_eq!(
            report.connections, 1,
            "good device was disconnected: {report:?}"
        );
        assert!(report.acked_readings > 0);
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

#[tokio::test]
async fn a_text_frame_gets_1003() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    ws.send(Message::Text("hello".into())).await?;
    assert_eq!(
        closing(&mut ws, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::BadFrame
            }),
            Some(1003)
        )
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn bytes_that_do_not_decode_get_1007() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    ws.send(Message::Binary(vec![1, 0xff, 0xff, 0xff].into()))
        .await?;
    assert_eq!(
        closing(&mut ws, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::BadFrame
            }),
            Some(1007)
        )
    );
    s.good_device_unharmed().await
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_1009() -> anyhow::Result<()> {
    let s = scene().await?;
    let mut ws = s.bad_client().await?;
    ws.send(Message::Binary(
        vec![1u8; shared::limits::MAX_DEVICE_FRAME_BYTES + 1].into(),
    ))
    .await?;
    assert_eq!(
        closing(&mut ws, WAIT).await?,
        (
            Some(HubMsg::Goodbye {
                reason: CloseReason::BadFrame
            }),
            Some(1009)
        )
    );
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
