//! One connection to the hub, over plain TCP (`ws://`) or TLS 1.3 (`wss://`, embedded-tls):
//! the same code on the board (embassy-net socket) and in the host tests (std socket, a rustls
//! hub). The board's loop only adds Wi-Fi, timers and the console.
//!
//! embedded-tls keeps its transport and borrows its record buffers for a connection's whole
//! life, so a connection is a value that lives in one async scope: [`Channel::tls`] borrows
//! the board's [`TlsBuffers`] (a `static`, made once at boot) for that scope and gives them
//! back when the scope ends. Nothing is allocated per connection.
//!
//! Waiting with a deadline: a TLS read keeps a half-read record in its future, so it must not
//! be raced against a timer. The board races [`Session::readable`], which consumes nothing,
//! against its timer, and only then calls [`Session::receive`], which reads one record.

use core::cell::{Cell, RefCell};
use core::future::Future;

use embedded_io::{Error as _, ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CryptoProvider, CryptoRngCore, FlushPolicy, TlsClock, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use firmware::core::DeviceCore;
use shared::board_config::HubUrl;

use crate::frame::FrameError;
use crate::handshake::HandshakeError;
use crate::link::{Link, LinkEvent};

/// Read record buffer: a whole TLS 1.3 record (16 KiB of data plus its overhead), the most a
/// server may send at once (rustls sends records this large; we cannot ask for less).
pub const TLS_READ_BYTES: usize = 16_640;
/// Write record buffer: larger writes go out as several records.
pub const TLS_WRITE_BYTES: usize = 4096;
/// The hub's certificate chain as sent, kept during the handshake to check its signature
/// (an ECDSA leaf and its CA are about 1 KiB).
pub const CERT_CHAIN_BYTES: usize = 4096;

/// The two record buffers of a TLS connection (and the first bytes the hub sent, to explain a
/// failed handshake), allocated once (a `static` on the board) and borrowed by each connection
/// in turn.
pub struct TlsBuffers {
    read: [u8; TLS_READ_BYTES],
    write: [u8; TLS_WRITE_BYTES],
    first: FirstBytes,
}

impl TlsBuffers {
    pub const fn new() -> Self {
        Self {
            read: [0; TLS_READ_BYTES],
            write: [0; TLS_WRITE_BYTES],
            first: FirstBytes {
                bytes: Cell::new([0; FIRST_BYTES]),
                len: Cell::new(0),
            },
        }
    }
}

impl Default for TlsBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Enough of a record to tell an alert (`15 03 0x 00 02 level description`) from a server
/// that is not speaking TLS at all.
const FIRST_BYTES: usize = 7;

/// The first bytes the hub sent on this connection: when a handshake fails on a record
/// embedded-tls did not expect, they say whether the hub refused (an alert, and why) or
/// answered in something else than TLS (plain HTTP on a `ws://` port).
struct FirstBytes {
    bytes: Cell<[u8; FIRST_BYTES]>,
    len: Cell<usize>,
}

impl FirstBytes {
    fn record(&self, read: &[u8]) {
        let (mut bytes, len) = (self.bytes.get(), self.len.get());
        let n = read.len().min(FIRST_BYTES - len);
        bytes[len..len + n].copy_from_slice(&read[..n]);
        self.bytes.set(bytes);
        self.len.set(len + n);
    }

    /// Why a handshake that ended on an unexpected record failed.
    fn explain(&self, e: TlsError) -> SessionError {
        let bytes = self.bytes.get();
        match (e, self.len.get(), bytes) {
            (TlsError::InvalidRecord | TlsError::UnknownContentType, FIRST_BYTES, b)
                // Any 3.x record version: before agreeing on one, rustls writes 3.1.
                if b[0] == 0x15 && b[1] == 0x03 && b[3..5] == [0x00, 0x02] =>
            {
                SessionError::Alert { description: b[6] }
            }
            (TlsError::InvalidRecord | TlsError::UnknownContentType, 1.., b)
                if !(0x14..=0x17).contains(&b[0]) =>
            {
                SessionError::NotTls
            }
            // A ServerHello, then a record the handshake had no place for: with rustls, its
            // encrypted alert when it cannot sign for us (an RSA certificate).
            (TlsError::InvalidRecord | TlsError::UnknownContentType, 1.., [0x16, ..]) => {
                SessionError::Unexpected
            }
            (TlsError::HandshakeAborted(_, description), ..) => SessionError::Alert {
                description: description as u8,
            },
            (e, ..) => e.into(),
        }
    }
}

/// A connected byte stream: embassy-net's TCP socket on the board, a std socket on the host.
pub trait Socket: Read + Write {
    /// Resolves when a read would not wait (bytes, the end of the stream, or an error), without
    /// consuming anything: safe to drop at any point, so it can race a timer.
    fn readable(&mut self) -> impl Future<Output = ()>;
}

impl<T: Socket + ?Sized> Socket for &mut T {
    fn readable(&mut self) -> impl Future<Output = ()> {
        T::readable(self)
    }
}

/// The socket as TLS's transport. TLS keeps its transport for the whole connection while the
/// session also waits on the socket's readiness between records; the session awaits one
/// thing at a time, so the two never hold it at once (if they did, the I/O would fail with
/// `Other`, and the connection would end, rather than panic).
struct Lent<'a, S> {
    socket: &'a RefCell<S>,
    first: &'a FirstBytes,
}

impl<S: Socket> ErrorType for Lent<'_, S> {
    type Error = ErrorKind;
}

impl<S: Socket> Read for Lent<'_, S> {
    #[allow(clippy::await_holding_refcell_ref)] // see the type's doc: one user at a time
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut socket = self.socket.try_borrow_mut().map_err(|_| ErrorKind::Other)?;
        let n = socket.read(buf).await.map_err(|e| e.kind())?;
        self.first.record(&buf[..n]);
        Ok(n)
    }
}

impl<S: Socket> Write for Lent<'_, S> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut socket = self.socket.try_borrow_mut().map_err(|_| ErrorKind::Other)?;
        socket.write(buf).await.map_err(|e| e.kind())
    }

    #[allow(clippy::await_holding_refcell_ref)]
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        let mut socket = self.socket.try_borrow_mut().map_err(|_| ErrorKind::Other)?;
        socket.flush().await.map_err(|e| e.kind())
    }
}

/// What ended (or refused) a connection.
#[derive(Debug, Clone, Copy)]
pub enum SessionError {
    /// The socket failed.
    Io(ErrorKind),
    /// The hub (or the network) closed the stream.
    Closed,
    /// TLS: the handshake failed (certificate, name, algorithms) or a record was bad.
    Tls(TlsError),
    /// TLS: the hub refused the handshake with this alert (RFC 8446 6.2; 40: handshake_failure).
    Alert { description: u8 },
    /// TLS: the hub answered in something else than TLS (plain HTTP).
    NotTls,
    /// TLS: the hub started the handshake, then sent a record it had no place for (an
    /// encrypted alert, typically).
    Unexpected,
    /// The upgrade request does not fit the send queue.
    Handshake(HandshakeError),
    /// The core's frames do not fit the send queue.
    Frame(FrameError),
}

impl From<TlsError> for SessionError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Io(kind) => Self::Io(kind),
            // IoError: the stream ended inside a record.
            TlsError::ConnectionClosed | TlsError::IoError => Self::Closed,
            e => Self::Tls(e),
        }
    }
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(kind) => write!(f, "socket error ({kind:?})"),
            Self::Closed => write!(f, "connection closed by the network or the hub"),
            Self::Tls(e) => write!(f, "TLS: {}", describe_tls(e)),
            Self::Alert { description: 40 } => write!(
                f,
                "TLS: the hub refused the handshake (alert 40, handshake_failure): its certificate's key is not ECDSA P-256 (RSA?), or it has no TLS 1.3 with AES-128-GCM and P-256"
            ),
            Self::Alert { description } => {
                write!(
                    f,
                    "TLS: the hub refused the handshake (alert {description})"
                )
            }
            Self::Unexpected => write!(
                f,
                "TLS: the hub broke off the handshake: most likely its certificate's key is not ECDSA P-256 (RSA? P-384?), which this client cannot check"
            ),
            Self::NotTls => write!(
                f,
                "TLS: the hub's port did not answer in TLS (a ws:// port? check the URL's scheme and port)"
            ),
            Self::Handshake(e) => write!(f, "WebSocket handshake: {e}"),
            Self::Frame(e) => write!(f, "frame: {e}"),
        }
    }
}

/// What a TLS failure means for the person at the serial console.
pub fn describe_tls(e: &TlsError) -> &'static str {
    match e {
        // embedded-tls reports a bad chain, a wrong name and expired dates alike.
        TlsError::InvalidCertificate => {
            "the hub's certificate was refused: it is not signed by the CA in the config image (wrong --ca?), not issued for the URL's host name, or outside its validity dates"
        }
        TlsError::InvalidSignature => {
            "the hub did not prove it holds its certificate's key (bad CertificateVerify signature)"
        }
        TlsError::InvalidSignatureScheme => {
            "the hub's certificate uses an algorithm this build cannot check (it checks ECDSA P-256)"
        }
        TlsError::DecodeError | TlsError::ParseError(_) | TlsError::InvalidCertificateEntry => {
            "a certificate (the hub's, or the CA in the config image) does not decode"
        }
        TlsError::OutOfMemory | TlsError::InsufficientSpace => {
            "the hub's certificate chain is larger than this build's buffers"
        }
        TlsError::AbortHandshake(..) => "this client aborted the handshake",
        TlsError::InvalidCipherSuite | TlsError::InvalidKeyShare => {
            "the hub chose a cipher suite or key exchange this build does not offer"
        }
        TlsError::MissingHandshake => "no TLS handshake was made",
        _ => "the TLS connection failed",
    }
}

/// The certificate checks: the hub's chain must lead to `ca` and name the URL's host;
/// `C` gives the time for the validity dates (unset: dates not checked).
struct Provider<'a, R, C: TlsClock> {
    rng: R,
    verifier: CertVerifier<'a, Aes128GcmSha256, C, CERT_CHAIN_BYTES>,
}

impl<R: CryptoRngCore, C: TlsClock> CryptoProvider for Provider<'_, R, C> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }
}

// No heap to box into: the TLS state (1.3 KB) lives in the connection's future, a static.
#[allow(clippy::large_enum_variant)]
enum Stream<'a, S: Socket> {
    Plain,
    Tls(TlsConnection<'a, Lent<'a, S>, Aes128GcmSha256>),
}

/// One connection's byte stream: the socket itself, or TLS over it.
pub struct Channel<'a, S: Socket> {
    socket: &'a RefCell<S>,
    stream: Stream<'a, S>,
    /// TLS has decrypted bytes we have not read yet: the next read will not wait.
    buffered: bool,
}

impl<'a, S: Socket> Channel<'a, S> {
    /// `ws://`: the socket as it is.
    pub fn plain(socket: &'a RefCell<S>) -> Self {
        Self {
            socket,
            stream: Stream::Plain,
            buffered: false,
        }
    }

    /// `wss://`: a TLS 1.3 handshake over `socket` (AES-128-GCM, P-256), checking that the
    /// hub's certificate chain leads to `ca_der` and names `server_name`. Borrows `buffers`
    /// until the channel is dropped.
    pub async fn tls<C: TlsClock>(
        socket: &'a RefCell<S>,
        buffers: &'a mut TlsBuffers,
        server_name: &str,
        ca_der: &[u8],
        rng: impl CryptoRngCore,
    ) -> Result<Self, SessionError> {
        let config = TlsConfig::new().with_server_name(server_name);
        let TlsBuffers { read, write, first } = buffers;
        let first: &FirstBytes = first;
        first.len.set(0);
        let lent = Lent { socket, first };
        let mut tls = TlsConnection::new(lent, read, write);
        // Like the plain socket: a record goes to the socket at once, without waiting for the
        // hub's acknowledgement.
        tls.set_flush_policy(FlushPolicy::Relaxed);
        let provider = Provider::<_, C> {
            rng,
            verifier: CertVerifier::new(Certificate::X509(ca_der)),
        };
        if let Err(e) = tls.open(TlsContext::new(&config, provider)).await {
            return Err(first.explain(e));
        }
        Ok(Self {
            socket,
            stream: Stream::Tls(tls),
            buffered: false,
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Resolves when [`Channel::read`] will get bytes (or the end) at once; consumes
    /// nothing, so it may be dropped (raced against a timer).
    #[allow(clippy::await_holding_refcell_ref)] // one user at a time: see `Lent`
    pub async fn readable(&mut self) {
        if self.buffered {
            return;
        }
        // A failed borrow cannot happen (one user at a time); the read that follows would fail.
        if let Ok(mut socket) = self.socket.try_borrow_mut() {
            socket.readable().await
        }
    }

    /// Read into `buf`: bytes already decrypted, or the next record (over TLS this may wait
    /// for the rest of a record that started arriving). `Ok(0)` is the end of the stream.
    #[allow(clippy::await_holding_refcell_ref)] // one user at a time: see `Lent`
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        match &mut self.stream {
            Stream::Plain => {
                let mut socket = self
                    .socket
                    .try_borrow_mut()
                    .map_err(|_| SessionError::Io(ErrorKind::Other))?;
                socket
                    .read(buf)
                    .await
                    .map_err(|e| SessionError::Io(e.kind()))
            }
            Stream::Tls(tls) => {
                let mut record = tls.read_buffered().await?;
                let n = record.pop_into(buf);
                self.buffered = !record.is_empty();
                Ok(n)
            }
        }
    }

    /// Write all of `bytes` and hand them to the network.
    #[allow(clippy::await_holding_refcell_ref)] // one user at a time: see `Lent`
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), SessionError> {
        match &mut self.stream {
            Stream::Plain => {
                let mut socket = self
                    .socket
                    .try_borrow_mut()
                    .map_err(|_| SessionError::Io(ErrorKind::Other))?;
                socket
                    .write_all(bytes)
                    .await
                    .map_err(|e| SessionError::Io(e.kind()))
            }
            Stream::Tls(tls) => {
                while !bytes.is_empty() {
                    let n = tls.write(bytes).await?;
                    bytes = &bytes[n..];
                }
                tls.flush().await?;
                Ok(())
            }
        }
    }

    /// End the stream politely (TLS: close_notify). The socket itself is the caller's.
    pub async fn shutdown(self) {
        if let Stream::Tls(tls) = self.stream {
            let _ = tls.close().await;
        }
    }
}

/// A WebSocket over a [`Channel`]: the [`Link`] (handshake, frames, the core's seam) plus the
/// byte moving, the one code path the board and the host tests share.
pub struct Session<'a, 'l, S: Socket, const TX: usize, const RX: usize> {
    channel: Channel<'a, S>,
    link: &'l mut Link<TX, RX>,
}

impl<'a, 'l, S: Socket, const TX: usize, const RX: usize> Session<'a, 'l, S, TX, RX> {
    /// Send the upgrade request (Bearer `token`, the subprotocol; `key` is 16 random bytes).
    /// The hub's answer arrives through [`Session::receive`] (`LinkEvent::Opened`).
    pub async fn start(
        channel: Channel<'a, S>,
        link: &'l mut Link<TX, RX>,
        url: &HubUrl,
        token: &str,
        key: [u8; 16],
    ) -> Result<Self, SessionError> {
        link.start(url, token, key)
            .map_err(SessionError::Handshake)?;
        let mut session = Self { channel, link };
        session.flush().await?;
        Ok(session)
    }

    pub fn channel(&self) -> &Channel<'a, S> {
        &self.channel
    }

    pub fn link(&self) -> &Link<TX, RX> {
        self.link
    }

    /// Write what the link has queued (the request, frames, pongs, a close).
    pub async fn flush(&mut self) -> Result<(), SessionError> {
        let bytes = self.link.outgoing();
        if !bytes.is_empty() {
            self.channel.write_all(bytes).await?;
        }
        self.link.written();
        Ok(())
    }

    /// Queue the core's ready frames (Hello, batches, heartbeats) and write them.
    pub async fn send_pending<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: u64,
    ) -> Result<(), SessionError> {
        self.link
            .send_pending(core, now)
            .map_err(SessionError::Frame)?;
        self.flush().await
    }

    /// See [`Channel::readable`]: safe to race against a timer.
    pub async fn readable(&mut self) {
        self.channel.readable().await
    }

    /// Read what arrived, hand it to the link and the core (at `now()`, taken after the read),
    /// and write the replies (pongs, a close echo). After `LinkEvent::Closed` the core has been
    /// told; end the session with [`Session::shutdown`].
    pub async fn receive<const B: usize, const F: usize>(
        &mut self,
        core: &mut DeviceCore<B, F>,
        now: impl Fn() -> u64,
    ) -> Result<LinkEvent, SessionError> {
        let n = self.channel.read(self.link.read_space()).await?;
        if n == 0 {
            return Err(SessionError::Closed);
        }
        let event = self.link.received(core, now(), n);
        self.flush().await?;
        Ok(event)
    }

    /// Close the WebSocket with `code` (the core's `Disconnect`, or a sleepy board done), then
    /// end the stream. The core is told it is disconnected.
    pub async fn close<const B: usize, const F: usize>(
        mut self,
        core: &mut DeviceCore<B, F>,
        code: u16,
        now: u64,
    ) {
        self.link.close(code);
        let _ = self.flush().await;
        self.shutdown(core, now).await;
    }

    /// End the stream (TLS close_notify) and tell the core, if it still thinks it is
    /// connected. The caller then closes or aborts the socket.
    pub async fn shutdown<const B: usize, const F: usize>(
        self,
        core: &mut DeviceCore<B, F>,
        now: u64,
    ) {
        self.link.socket_closed(core, now);
        self.channel.shutdown().await;
    }

    /// The connection is already gone (an error): tell the core, write nothing.
    pub fn abandon<const B: usize, const F: usize>(self, core: &mut DeviceCore<B, F>, now: u64) {
        self.link.socket_closed(core, now);
    }
}
