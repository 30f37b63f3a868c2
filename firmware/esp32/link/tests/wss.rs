//! The board's wss path on the host, against a real TLS 1.3 hub: a rustls server (ring, as the
//! hub uses) with a CA and a certificate made by rcgen for this run, speaking WebSocket through
//! tungstenite. The client side is the board's own code (`Channel::tls`, `Session`, `Link`,
//! the device core) over a std socket, driven by a single-poll executor as embassy would.
//!
//! Promises: the hub's certificate is checked against the CA from the config image (given as
//! PEM, decoded in place as the board does) and the URL's host name; a wrong CA, a wrong name
//! and an expired certificate are refused; and a thousand TLS reconnects (handshake, upgrade,
//! Hello, Welcome, ping, close) allocate nothing on the client once the first one is done
//! (`ws://` takes the same session code without TLS, and is checked the same way).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use embassy_futures::block_on;
use embedded_io::ErrorKind;
use embedded_tls::{NoClock, TlsClock, TlsError};
use firmware::core::{Action, CoreConfig, DeviceCore, SessionState};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use shared::board_config::HubUrl;
use shared::{DeviceConfig, DeviceMsg, HubMsg, ResetReason, SensorDecl, SensorKind, Welcome};
use telemetry_link::pem;
use telemetry_link::{Channel, CloseCause, Link, LinkEvent, Session, SessionError, TlsBuffers};
use tungstenite::Message;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Counts allocations on the threads that asked for it, each its own count (tests run in
/// parallel; the hub threads and the harness are not counted).
struct CountingAlloc;
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The board's sizes (`src/net.rs`): 3 frames of 4 KiB plus headers out, 1 KiB in.
type BoardLink = Link<{ 3 * (4096 + 14) }, 1024>;

const TOKEN: &str = "00112233445566778899aabbccddeeff";
const HOST: &str = "hub.test";

/// A std socket as the session's `Socket`. Its reads block, so every future here finishes
/// on its first poll; `readable` blocks until a byte (or the end) is there, consuming none,
/// and counts the waits that gave up (a read timeout, when the test set one).
struct HostTcp(TcpStream, usize);

impl embedded_io::ErrorType for HostTcp {
    type Error = ErrorKind;
}

impl embedded_io_async::Read for HostTcp {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        std::io::Read::read(&mut self.0, buf).map_err(|_| ErrorKind::Other)
    }
}

impl embedded_io_async::Write for HostTcp {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        std::io::Write::write(&mut self.0, buf).map_err(|_| ErrorKind::Other)
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        std::io::Write::flush(&mut self.0).map_err(|_| ErrorKind::Other)
    }
}

impl telemetry_link::Socket for HostTcp {
    fn readable(&mut self) -> impl Future<Output = ()> {
        if self.0.peek(&mut [0u8; 1]).is_err() {
            self.1 += 1;
        }
        core::future::ready(())
    }
}

/// The wall clock, for certificate dates.
struct SystemClock;

impl TlsClock for SystemClock {
    fn now() -> Option<u64> {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }
}

/// A CA, and a hub certificate for `HOST` signed by it (ECDSA P-256, rcgen's default).
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A throwaway RSA-2048 key (made with `openssl genpkey` for this test only; rcgen with ring
/// cannot make RSA keys), as a hub certificate made with a default `mkcert` would have.
const RSA_KEY: &str = include_str!("data/rsa-2048-test-key.pem");

#[derive(Clone, Copy, PartialEq)]
enum HubKey {
    EcdsaP256,
    Rsa2048,
}

fn pki(expired: bool) -> Pki {
    pki_with(expired, HubKey::EcdsaP256)
}

fn pki_with(expired: bool, hub_key: HubKey) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hub test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec![HOST.into(), "localhost".into()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "hub");
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = match hub_key {
        HubKey::EcdsaP256 => KeyPair::generate().unwrap(),
        HubKey::Rsa2048 => {
            KeyPair::from_pem_and_sign_algo(RSA_KEY, &rcgen::PKCS_RSA_SHA256).unwrap()
        }
    };
    let cert = leaf.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// The CA as the board holds it: the config image's PEM, decoded in place.
fn ca_der(pki: &Pki) -> Vec<u8> {
    let mut buf = pki.ca_pem.clone().into_bytes();
    let n = pem::decode_in_place(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A hub on 127.0.0.1 serving `connections` connections, one at a time: TLS 1.3 (rustls) with
/// `pki`'s certificate, or plain TCP without; the upgrade (checks the Bearer token, answers
/// the subprotocol), then Hello in, Welcome and a ping out, the pong in, and a close (1001).
/// Returns the address and, at the end, how many conversations completed.
fn start_hub(
    pki: Option<&Pki>,
    connections: usize,
) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let config = pki.map(|pki| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
            .unwrap();
        Arc::new(config)
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = std::thread::spawn(move || {
        let mut completed = 0;
        for _ in 0..connections {
            let (tcp, _) = listener.accept().unwrap();
            let served = match &config {
                Some(config) => {
                    let tls = rustls::ServerConnection::new(config.clone()).unwrap();
                    serve(rustls::StreamOwned::new(tls, tcp))
                }
                None => serve(tcp),
            };
            if served.is_ok() {
                completed += 1;
            }
        }
        completed
    });
    (addr, hub)
}

fn serve(stream: impl std::io::Read + std::io::Write) -> Result<(), String> {
    // tungstenite's callback type: its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        assert_eq!(bearer, Some(format!("Bearer {TOKEN}").as_str()));
        resp.headers_mut()
            .insert("sec-websocket-protocol", "telemetry.v1".parse().unwrap());
        Ok(resp)
    };
    let mut ws = tungstenite::accept_hdr(stream, check).map_err(|e| e.to_string())?;
    let hello = match ws.read().map_err(|e| e.to_string())? {
        Message::Binary(b) => b,
        other => return Err(format!("expected Hello, got {other:?}")),
    };
    assert!(matches!(
        shared::decode_device(&hello).unwrap(),
        DeviceMsg::Hello(h) if h.firmware == "esp32c3-test"
    ));
    ws.send(Message::binary(welcome_bytes()))
        .map_err(|e| e.to_string())?;
    ws.send(Message::Ping(b"p".to_vec().into()))
        .map_err(|e| e.to_string())?;
    loop {
        match ws.read().map_err(|e| e.to_string())? {
            Message::Pong(p) if &p[..] == b"p" => break,
            // A heartbeat or a batch the core sent meanwhile.
            Message::Binary(_) => {}
            other => return Err(format!("expected the pong, got {other:?}")),
        }
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    }))
    .map_err(|e| e.to_string())?;
    // Until the device echoes the close and the stream ends.
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn welcome_bytes() -> Vec<u8> {
    let mut buf = [0u8; 256];
    let w = HubMsg::Welcome(Welcome {
        hub_time_ms: 1_780_000_000_000,
        stored_seq: None,
        config: DeviceConfig {
            sample_interval_ms: 100,
            ..DeviceConfig::default()
        },
    });
    shared::encode(&w, &mut buf).unwrap().to_vec()
}

fn core(now: u64) -> Box<DeviceCore> {
    let sensors = [SensorDecl {
        id: 0,
        kind: SensorKind::Temperature,
        unit: "°C".try_into().unwrap(),
    }];
    let mut cfg = CoreConfig::new("esp32c3-test", 0x5eed, ResetReason::PowerOn, &sensors).unwrap();
    cfg.device.sample_interval_ms = 100;
    Box::new(DeviceCore::new(cfg, now).unwrap())
}

fn url() -> HubUrl {
    HubUrl::parse("wss://hub.test:8443/ws/device").unwrap()
}

/// Advance virtual time until the core asks for a connection, sampling meanwhile.
fn until_connect(core: &mut DeviceCore, link: &mut BoardLink, now: &mut u64) {
    loop {
        match core.poll_action(*now) {
            Some(Action::Connect) => return,
            Some(Action::Sample { sensor }) => {
                let _ = core.handle_reading(*now, sensor, 21.5);
            }
            Some(Action::Disconnect { .. }) => link.socket_closed(core, *now),
            None => *now = core.poll_timeout().unwrap_or(*now + 1).max(*now + 1),
        }
    }
}

/// One connection as the board makes it: TLS when `tls` gives the server name and the CA
/// (`wss://`), the upgrade, then frames until the hub closes. Returns the hub's close code.
fn connect<C: TlsClock>(
    addr: SocketAddr,
    tls: Option<(&str, &[u8])>,
    buffers: &mut TlsBuffers,
    link: &mut BoardLink,
    core: &mut DeviceCore,
    now: u64,
    key: [u8; 16],
) -> Result<Option<u16>, SessionError> {
    let socket = RefCell::new(HostTcp(TcpStream::connect(addr).unwrap(), 0));
    let url = url();
    block_on(async {
        let channel = match tls {
            Some((server_name, ca_der)) => {
                let rng = rand_core::OsRng;
                Channel::tls::<C>(&socket, buffers, server_name, ca_der, rng).await?
            }
            None => Channel::plain(&socket),
        };
        let mut session = Session::start(channel, link, &url, TOKEN, key).await?;
        loop {
            session.readable().await;
            match session.receive(core, || now).await? {
                LinkEvent::Handshaking => {}
                LinkEvent::Opened | LinkEvent::Frames => session.send_pending(core, now).await?,
                LinkEvent::Closed(CloseCause::ByHub { code }) => {
                    session.shutdown(core, now).await;
                    return Ok(code);
                }
                LinkEvent::Closed(other) => panic!("closed: {other:?}"),
            }
        }
    })
}

/// `ROUNDS` connections to a hub with `pki` (wss) or without (ws), counting the client's
/// allocations from the second connection on.
fn reconnect_loop(pki: Option<&Pki>, rounds: usize) {
    let (addr, hub) = start_hub(pki, rounds);
    // What the board has from boot: the CA (from the config image), the core, the link and
    // the TLS record buffers.
    let ca = pki.map(ca_der);
    let tls = ca.as_deref().map(|ca| (HOST, ca));
    let mut core = core(0);
    let mut link = Box::new(BoardLink::new(9));
    let mut buffers = Box::new(TlsBuffers::new());
    let mut now = 0u64;
    for round in 0..rounds {
        if round == 1 {
            // The first connection may warm up what the process does once (the OS RNG).
            COUNTING.set(true);
        }
        until_connect(&mut core, &mut link, &mut now);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(round as u64).to_le_bytes());
        let code = connect::<SystemClock>(addr, tls, &mut buffers, &mut link, &mut core, now, key);
        assert!(matches!(code, Ok(Some(1001))), "round {round}: {code:?}");
        now += 2;
    }
    let during_loop = ALLOCATIONS.get();
    // The counter itself works: one allocation here is seen.
    drop(std::hint::black_box(Box::new(0x5eed_u64)));
    COUNTING.set(false);
    assert_eq!(during_loop, 0, "reconnecting allocated");
    assert_eq!(ALLOCATIONS.get(), 1, "the allocator counts");
    assert_eq!(hub.join().unwrap(), rounds, "every conversation completed");
    assert_eq!(core.stats().connections, rounds as u32);
    assert_eq!(core.stats().welcomes, rounds as u32);
    assert!(matches!(core.state(), SessionState::Waiting { .. }));
}

#[test]
fn a_thousand_wss_reconnects_to_a_rustls_hub_allocate_nothing_after_the_first() {
    reconnect_loop(Some(&pki(false)), 1000);
}

#[test]
fn ws_without_tls_takes_the_same_session_path() {
    reconnect_loop(None, 100);
}

/// One connection attempt that the client must refuse during the TLS handshake.
fn refused<C: TlsClock>(pki: &Pki, trusted_ca: &[u8], server_name: &str) -> SessionError {
    let (addr, hub) = start_hub(Some(pki), 1);
    let mut core = core(0);
    let mut link = Box::new(BoardLink::new(1));
    let mut buffers = Box::new(TlsBuffers::new());
    let mut now = 0;
    until_connect(&mut core, &mut link, &mut now);
    let err = connect::<C>(
        addr,
        Some((server_name, trusted_ca)),
        &mut buffers,
        &mut link,
        &mut core,
        now,
        [3; 16],
    )
    .expect_err("the handshake must fail");
    assert_eq!(hub.join().unwrap(), 0, "the hub saw no WebSocket");
    assert_eq!(core.stats().welcomes, 0);
    err
}

#[test]
fn a_hub_certificate_from_another_ca_is_refused() {
    let hub = pki(false);
    let other_ca = ca_der(&pki(false));
    let err = refused::<NoClock>(&hub, &other_ca, HOST);
    assert!(
        matches!(err, SessionError::Tls(TlsError::InvalidCertificate)),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong --ca"), "{err}");
}

#[test]
fn a_hub_certificate_for_another_name_is_refused() {
    let hub = pki(false);
    let err = refused::<NoClock>(&hub, &ca_der(&hub), "hub.example");
    assert!(
        matches!(err, SessionError::Tls(TlsError::InvalidCertificate)),
        "{err:?}"
    );
    assert!(err.to_string().contains("host name"), "{err}");
}

#[test]
fn an_expired_hub_certificate_is_refused_once_the_clock_is_set() {
    let hub = pki(true);
    let err = refused::<SystemClock>(&hub, &ca_der(&hub), HOST);
    assert!(
        matches!(err, SessionError::Tls(TlsError::InvalidCertificate)),
        "{err:?}"
    );
}

/// What a client refused by a hub that answers the ClientHello with `answer` is told.
fn answered_with(answer: &'static [u8]) -> SessionError {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let _ = std::io::Read::read(&mut tcp, &mut [0u8; 512]);
        std::io::Write::write_all(&mut tcp, answer).unwrap();
    });
    let ca = ca_der(&pki(false));
    let mut core = core(0);
    let mut link = Box::new(BoardLink::new(1));
    let mut buffers = Box::new(TlsBuffers::new());
    let mut now = 0;
    until_connect(&mut core, &mut link, &mut now);
    let err = connect::<NoClock>(
        addr,
        Some((HOST, &ca)),
        &mut buffers,
        &mut link,
        &mut core,
        now,
        [4; 16],
    )
    .expect_err("refused");
    server.join().unwrap();
    err
}

#[test]
fn a_wss_url_pointing_at_a_plain_http_port_says_so() {
    // What the hub's plain port answers to a TLS ClientHello: an HTTP 400.
    let err = answered_with(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
    assert!(matches!(err, SessionError::NotTls), "{err:?}");
    assert!(err.to_string().contains("did not answer in TLS"), "{err}");
}

#[test]
fn a_hub_that_refuses_the_handshake_is_told_apart_with_its_alert() {
    // What rustls sends when it has nothing in common with the client, e.g. an RSA certificate
    // for a client that checks ECDSA only: a fatal handshake_failure alert.
    let err = answered_with(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 40]);
    assert!(
        matches!(err, SessionError::Alert { description: 40 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("RSA?"), "{err}");
}

#[test]
fn a_hub_with_an_rsa_certificate_is_refused_with_a_message_naming_rsa() {
    let hub = pki_with(false, HubKey::Rsa2048);
    let err = refused::<NoClock>(&hub, &ca_der(&hub), HOST);
    assert!(matches!(err, SessionError::Unexpected), "{err:?}");
    assert!(err.to_string().contains("RSA?"), "{err}");
}

#[test]
fn writes_larger_than_a_record_and_a_full_16k_record_read_in_small_pieces_arrive_whole() {
    // A 4 KiB batch frame is more than one write record; the hub may send a full 16 KiB
    // record, which the board reads 1 KiB at a time: what TLS decrypted and the read left
    // over must be read next without waiting on the socket (which has nothing more).
    const UP: usize = 12_000;
    const DOWN: usize = 16_000;
    let pki = pki(false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pattern = |i: usize| (i % 251) as u8;
    let hub = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let tls = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        let mut up = vec![0u8; UP];
        std::io::Read::read_exact(&mut stream, &mut up).unwrap();
        assert!(up.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        let down: Vec<u8> = (0..DOWN).map(pattern).collect();
        std::io::Write::write_all(&mut stream, &down).unwrap();
        std::io::Write::flush(&mut stream).unwrap();
        // Keep the connection open until the client has read everything.
        let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
    });
    let tcp = TcpStream::connect(addr).unwrap();
    // Waiting on the socket for bytes TLS already holds would hang: give up after 1 s, count.
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let socket = RefCell::new(HostTcp(tcp, 0));
    let ca = ca_der(&pki);
    let mut buffers = Box::new(TlsBuffers::new());
    let received = block_on(async {
        let mut channel =
            Channel::tls::<NoClock>(&socket, &mut buffers, HOST, &ca, rand_core::OsRng)
                .await
                .unwrap();
        let up: Vec<u8> = (0..UP).map(pattern).collect();
        channel.write_all(&up).await.unwrap();
        let mut received = Vec::new();
        let mut piece = [0u8; 1024];
        while received.len() < DOWN {
            channel.readable().await;
            let n = channel.read(&mut piece).await.unwrap();
            assert!(n > 0, "the stream ended after {} bytes", received.len());
            received.extend_from_slice(&piece[..n]);
        }
        channel.shutdown().await;
        received
    });
    hub.join().unwrap();
    assert_eq!(
        socket.borrow().1,
        0,
        "waited on the socket for bytes TLS held"
    );
    assert_eq!(received.len(), DOWN);
    assert!(received.iter().enumerate().all(|(i, &b)| b == pattern(i)));
}

#[test]
fn the_pem_ca_decodes_in_place_to_the_ca_der() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut text = format!("subject: hub test CA\n{}", ca.pem()).into_bytes();
    let n = pem::decode_in_place(&mut text).unwrap();
    assert_eq!(&text[..n], ca.der().as_ref());

    assert_eq!(
        pem::decode_in_place(&mut b"MIIB".to_vec()),
        Err(pem::PemError::NoCertificate)
    );
    assert_eq!(
        pem::decode_in_place(&mut b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec()),
        Err(pem::PemError::Unterminated)
    );
    assert_eq!(
        pem::decode_in_place(
            &mut b"-----BEGIN CERTIFICATE-----\nMI*B\n-----END CERTIFICATE-----\n".to_vec()
        ),
        Err(pem::PemError::BadBase64 { offset: 30 })
    );
    assert_eq!(
        pem::decode_in_place(
            &mut b"-----BEGIN CERTIFICATE-----\nMIIBx\n-----END CERTIFICATE-----\n".to_vec()
        ),
        Err(pem::PemError::Truncated)
    );
}
