//! The accept loop: every TCP connection passes here before any HTTP is parsed.
//!
//! In order: count it (total and per source address; over either limit it gets a plain HTTP
//! 503 and is closed), the TLS handshake when the hub serves https (bounded by
//! `handshake_timeout`), then HTTP/1.1 through hyper with the same bound on reading each
//! request's headers, so a client that opens sockets and trickles bytes (slowloris) loses them.
//! A connection's slot is held by its socket: an upgraded WebSocket keeps it until it closes.
//!
//! axum's own `serve` offers none of these hooks; this is its loop plus them.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_total: usize,
    pub max_per_ip: usize,
    pub handshake_timeout: Duration,
}

/// Open connections, in total and per source address.
#[derive(Debug, Default)]
pub struct Connections {
    counts: Mutex<Counts>,
}

/// The total is kept beside the map, so accepting a connection costs O(1), not a sum over
/// every address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Connections {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, or `None` when a limit is reached.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut counts = self.counts();
        let mine = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= limits.max_total || mine >= limits.max_per_ip {
            return None;
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

/// One connection's place in [`Connections`], given back when dropped.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.connections.counts();
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
            counts.total -= 1;
        }
    }
}

/// A socket that holds its connection's [`Slot`] for as long as it lives.
struct Counted<S> {
    io: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Everything the loop needs.
pub struct Listener {
    pub listener: TcpListener,
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    pub connections: Arc<Connections>,
    pub metrics: Arc<Metrics>,
}

/// Accept until `shutdown` turns true; then stop accepting and ask every open HTTP connection
/// to finish its request and close (upgraded WebSockets close through their own tasks).
pub async fn serve(l: Listener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = l.listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let slot = l.connections.try_open(peer.ip(), &l.limits);
        if slot.is_none() {
            Metrics::inc(&l.metrics.connections_refused_total, 1);
        }
        let (router, tls, limits, stop) =
            (l.router.clone(), l.tls.clone(), l.limits, shutdown.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(tcp, peer, slot, router, limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            connection(stream, peer, slot, router, limits, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<S>(
    io: S,
    peer: SocketAddr,
    slot: Option<Slot>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(slot) = slot else {
        refuse(io, limits.handshake_timeout).await;
        return;
    };
    let io = Counted { io, _slot: slot };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { router.oneshot(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the flag is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The answer to a connection over a limit: a plain 503, then close. Whatever the client sent
/// is read and dropped first (briefly), so the close does not turn into a reset that eats the
/// answer.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, within: Duration) {
    const BODY: &str = "too many connections (in total or from this address); retry later\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 10\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 2048];
        // The request head, if it comes quickly.
        let _ = tokio::time::timeout(Duration::from_millis(200), io.read(&mut buf)).await;
        io.write_all(answer.as_bytes()).await?;
        io.shutdown().await?;
        while io.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Raise the soft open-file limit to the hard one (each connection is a descriptor); returns
/// the limit in force.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return Some(want.rlim_cur);
            }
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_address_and_in_total_and_come_back_when_dropped() {
        let c = Arc::new(Connections::default());
        let limits = Limits {
            max_total: 3,
            max_per_ip: 2,
            handshake_timeout: Duration::from_secs(1),
        };
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let a1 = c.try_open(a, &limits).unwrap();
        let _a2 = c.try_open(a, &limits).unwrap();
        assert!(c.try_open(a, &limits).is_none(), "per address");
        let _b1 = c.try_open(b, &limits).unwrap();
        assert!(c.try_open(b, &limits).is_none(), "in total");
        drop(a1);
        assert_eq!(c.open(), 2);
        assert!(c.try_open(b, &limits).is_some());
    }
}
