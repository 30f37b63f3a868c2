//! A TCP proxy between devices and the hub that breaks things on command: cut connections
//! (cleanly or in the middle of a frame), stall them, delay bytes. Only ever on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// One proxied connection: its two pumps.
struct Link {
    pumps: [JoinHandle<()>; 2],
}

#[derive(Default)]
struct Control {
    links: Mutex<Vec<Link>>,
    stalled: AtomicBool,
    delay_ms: AtomicU64,
    /// Forward only half of the next device-to-hub chunk, then cut that connection.
    cut_mid_frame: AtomicBool,
    cuts: AtomicU64,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    control: Arc<Control>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on 127.0.0.1 and forward every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control::default());
        let ctl = control.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, ctl.clone(), true));
                let down = tokio::spawn(pump(sr, cw, ctl.clone(), false));
                let mut links = ctl.links.lock().await;
                links.retain(|l| !l.pumps.iter().all(JoinHandle::is_finished));
                links.push(Link { pumps: [up, down] });
            }
        });
        Ok(FaultProxy {
            addr,
            control,
            accept,
        })
    }

    pub fn device_url(&self) -> String {
        format!("ws://{}/ws/device", self.addr)
    }

    /// Open connections right now.
    pub async fn open_links(&self) -> usize {
        self.control
            .links
            .lock()
            .await
            .iter()
            .filter(|l| !l.pumps.iter().any(JoinHandle::is_finished))
            .count()
    }

    /// Cut the `n`-th open connection (modulo their number). Returns whether one was cut.
    pub async fn cut(&self, n: usize) -> bool {
        let mut links = self.control.links.lock().await;
        links.retain(|l| !l.pumps.iter().any(JoinHandle::is_finished));
        if links.is_empty() {
            return false;
        }
        let index = n % links.len();
        let link = links.remove(index);
        link.pumps.iter().for_each(JoinHandle::abort);
        self.control.cuts.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The next device-to-hub chunk is forwarded only in part, then its connection is cut.
    pub fn cut_mid_frame(&self) {
        self.control.cut_mid_frame.store(true, Ordering::SeqCst);
    }

    pub fn stall(&self, on: bool) {
        self.control.stalled.store(on, Ordering::SeqCst);
    }

    pub fn delay(&self, by: Duration) {
        self.control
            .delay_ms
            .store(by.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> u64 {
        self.control.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(links) = self.control.links.try_lock() {
            links
                .iter()
                .flat_map(|l| l.pumps.iter())
                .for_each(JoinHandle::abort);
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctl: Arc<Control>,
    device_to_hub: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while ctl.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delay = ctl.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if device_to_hub && n > 2 && ctl.cut_mid_frame.swap(false, Ordering::SeqCst) {
            let _ = to.write_all(&buf[..n / 2]).await;
            ctl.cuts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
