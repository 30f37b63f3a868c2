//! The socket ceiling: a bare tokio-tungstenite server that takes the load generator's frames
//! and throws them away. It decodes nothing: the first frame gets a fixed Welcome, and after
//! each read it acks cumulatively by counting frames (the generator numbers batches 1, 2, 3...
//! per connection), so the generator's window never limits it. Same socket buffers as the hub.

use futures_util::{FutureExt, SinkExt, StreamExt};
use shared::{DeviceConfig, HubMsg, Welcome};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

fn encode(msg: &HubMsg) -> Bytes {
    let mut buf = [0u8; shared::limits::MAX_HUB_FRAME_BYTES];
    let n = shared::encode(msg, &mut buf).map(|b| b.len()).unwrap_or(0);
    Bytes::copy_from_slice(&buf[..n])
}

pub async fn run(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let welcome = encode(&HubMsg::Welcome(Welcome {
        hub_time_ms: 0,
        stored_seq: None,
        config: DeviceConfig::default(),
    }));
    loop {
        let (tcp, _) = listener.accept().await?;
        let welcome = welcome.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let config = WebSocketConfig::default()
                .read_buffer_size(hub::device::DEVICE_SOCKET_BUFFER)
                .write_buffer_size(0)
                .max_message_size(Some(shared::limits::MAX_DEVICE_FRAME_BYTES))
                .max_frame_size(Some(shared::limits::MAX_DEVICE_FRAME_BYTES));
            // The callback's error type is tungstenite's, an HTTP response.
            #[allow(clippy::result_large_err)]
            let choose = |_: &Request, mut response: Response| {
                response.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(shared::SUBPROTOCOL),
                );
                Ok(response)
            };
            let Ok(mut ws) =
                tokio_tungstenite::accept_hdr_async_with_config(tcp, choose, Some(config)).await
            else {
                return;
            };
            let mut frames: u64 = 0;
            while let Some(Ok(m)) = ws.next().await {
                let count = |m: &Message| u64::from(matches!(m, Message::Binary(_)));
                let mut got = count(&m);
                // Whatever else is already buffered: one ack per read, as the hub acks per commit.
                while let Some(Some(Ok(m))) = ws.next().now_or_never() {
                    got += count(&m);
                }
                if got == 0 {
                    continue;
                }
                // Frame 1 is Hello; batch seq k is frame k + 1.
                let first = frames == 0;
                frames += got;
                if first && ws.feed(Message::Binary(welcome.clone())).await.is_err() {
                    return;
                }
                if frames > 1 {
                    let ack = encode(&HubMsg::Ack {
                        seq: (frames - 1) as u32,
                    });
                    if ws.feed(Message::Binary(ack)).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}
