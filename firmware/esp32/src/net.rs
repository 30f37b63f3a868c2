//! Wi-Fi station, DHCP, DNS and one TCP socket, carrying the [`telemetry_link::Session`] that
//! speaks WebSocket (over TLS 1.3 for `wss://`) for the device core. [`NetLink::run`] is the
//! board's event loop: it samples when the core says so and, on each `Action::Connect`, makes
//! one connect attempt (Wi-Fi up if it is down, an address, SNTP when due, DNS, TCP, TLS,
//! the upgrade) and then carries that connection until it ends, all in one async scope: a
//! TLS connection borrows its record buffers for its whole life. A failure anywhere is
//! reported to the core, whose backoff (with jitter) times the next try, so a dead access
//! point or hub is retried at the same humane pace as a dead socket.
//!
//! The socket, its buffers, the TLS record buffers and the link are `static`s created once;
//! each connection borrows them and a reconnect reuses all of it.

use core::cell::RefCell;
use core::future::Future;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Instant, Timer, with_timeout};
use esp_hal::peripherals::WIFI;
use esp_hal::rng::Rng;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, Interface, WifiController,
};
use firmware::core::{Action, DeviceCore};
use shared::board_config::{BoardConfig, Scheme};
use shared::limits::MAX_DEVICE_FRAME_BYTES;
use static_cell::{ConstStaticCell, StaticCell};
use telemetry_link::frame::MAX_HEADER_BYTES;
use telemetry_link::sntp::{self, NTP_PORT, PACKET_BYTES as NTP_BYTES};
use telemetry_link::{
    Channel, CloseCause, HandshakeError, Link, LinkEvent, Session, Socket, TlsBuffers,
};

use crate::Board;

/// The send queue: every batch in flight plus one more frame, all at the protocol's limit.
pub const TX_QUEUE_BYTES: usize =
    (crate::MAX_IN_FLIGHT as usize + 1) * (MAX_DEVICE_FRAME_BYTES + MAX_HEADER_BYTES);
/// The receive buffer: the handshake response, or a few hub frames (each under 256 bytes).
pub const RX_BYTES: usize = telemetry_link::handshake::MAX_RESPONSE_BYTES;
const SOCKET_RX_BYTES: usize = 1024;
const SOCKET_TX_BYTES: usize = 4096;

/// Steps of one connect attempt, at most (together under the watchdog's 30 s).
const WIFI_TIMEOUT: Duration = Duration::from_secs(10);
const DHCP_TIMEOUT: Duration = Duration::from_secs(8);
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// The TLS handshake: two round trips, one ECDH and two ECDSA checks (not yet timed on a
/// chip; generous).
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Once bytes of a record have arrived, the rest must follow within this; otherwise the link
/// is dead and is dropped (a TLS read cannot be interrupted and resumed).
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

type BoardLink = Link<TX_QUEUE_BYTES, RX_BYTES>;

static LINK: StaticCell<BoardLink> = StaticCell::new();
/// The TLS record buffers (`wss://`): one set, lent to each connection in turn.
static TLS: ConstStaticCell<TlsBuffers> = ConstStaticCell::new(TlsBuffers::new());
/// DHCP, DNS, the hub's TCP socket and the SNTP socket.
static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
static NTP_RX_META: ConstStaticCell<[PacketMetadata; 1]> =
    ConstStaticCell::new([PacketMetadata::EMPTY; 1]);
static NTP_TX_META: ConstStaticCell<[PacketMetadata; 1]> =
    ConstStaticCell::new([PacketMetadata::EMPTY; 1]);
static NTP_RX: ConstStaticCell<[u8; 2 * NTP_BYTES]> = ConstStaticCell::new([0; 2 * NTP_BYTES]);
static NTP_TX: ConstStaticCell<[u8; 2 * NTP_BYTES]> = ConstStaticCell::new([0; 2 * NTP_BYTES]);

/// Where the board asks the time: the public NTP pool (DNS name), on each connect attempt until
/// one answer is accepted, then every [`SNTP_REFRESH_MS`].
pub const NTP_SERVER: &str = "pool.ntp.org";
const SNTP_TIMEOUT: Duration = Duration::from_secs(2);
const SNTP_REFRESH_MS: u64 = 6 * 60 * 60 * 1000;
static SOCKET_RX: ConstStaticCell<[u8; SOCKET_RX_BYTES]> =
    ConstStaticCell::new([0; SOCKET_RX_BYTES]);
static SOCKET_TX: ConstStaticCell<[u8; SOCKET_TX_BYTES]> =
    ConstStaticCell::new([0; SOCKET_TX_BYTES]);

/// Added to this boot's clock: 0 for an always-on board; for a sleepy one, the RTC timer's
/// reading at boot, so uptime continues through deep sleeps (see `sleepy`).
static mut UPTIME_BASE_MS: u64 = 0;

fn uptime_base_ms() -> u64 {
    // SAFETY: written once by `set_uptime_base` before any task runs, read-only afterwards.
    unsafe { core::ptr::read_volatile(&raw const UPTIME_BASE_MS) }
}

/// Milliseconds on the device core's timeline.
pub fn uptime_ms() -> u64 {
    uptime_base_ms().saturating_add(Instant::now().as_millis())
}

/// The embassy instant of a time on the core's timeline (which a sleepy board offsets).
fn instant_at(uptime: u64) -> Instant {
    Instant::from_millis(uptime.saturating_sub(uptime_base_ms()))
}

/// Unix seconds at uptime 0, from the last accepted SNTP answer; 0 while unset.
static UNIX_AT_UPTIME_ZERO_S: AtomicU32 = AtomicU32::new(0);

/// The time TLS checks certificate dates against: SNTP's, or none (dates unchecked) before
/// the first answer.
struct SntpClock;

impl embedded_tls::TlsClock for SntpClock {
    fn now() -> Option<u64> {
        let base = UNIX_AT_UPTIME_ZERO_S.load(Ordering::Relaxed);
        (base != 0).then(|| u64::from(base) + uptime_ms() / 1000)
    }
}

/// esp-hal's RNG for TLS keys: true random while the radio runs (TLS only runs with Wi-Fi up).
struct RadioRng(Rng);

impl rand_core::RngCore for RadioRng {
    fn next_u32(&mut self) -> u32 {
        self.0.random()
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.0.random()) << 32 | u64::from(self.0.random())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.read(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.read(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for RadioRng {}

/// The hub's TCP socket as the session's [`Socket`].
struct Tcp<'s>(&'s mut TcpSocket<'static>);

impl embedded_io_async::ErrorType for Tcp<'_> {
    type Error = embassy_net::tcp::Error;
}

impl embedded_io_async::Read for Tcp<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).await
    }
}

impl embedded_io_async::Write for Tcp<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().await
    }
}

impl Socket for Tcp<'_> {
    fn readable(&mut self) -> impl Future<Output = ()> {
        let socket: &TcpSocket<'static> = self.0;
        core::future::poll_fn(move |cx| {
            // `wait_read_ready` waits for bytes only; a closed receive half (the hub's FIN, a
            // reset, the socket's timeout) must wake the loop too: the read then says so. Each
            // state change wakes the receive waker registered below.
            if !socket.may_recv() {
                return core::task::Poll::Ready(());
            }
            core::pin::pin!(socket.wait_read_ready()).poll(cx)
        })
    }
}

/// Continue the uptime of an earlier wake: call at boot, before any task is spawned.
#[cfg(feature = "deep-sleep")]
pub fn set_uptime_base(base_ms: u64) {
    // SAFETY: single-threaded at boot (see `uptime_ms`).
    unsafe { core::ptr::write_volatile(&raw mut UPTIME_BASE_MS, base_ms) };
}

pub struct NetLink {
    controller: WifiController<'static>,
    stack: Stack<'static>,
    socket: TcpSocket<'static>,
    ntp: UdpSocket<'static>,
    /// Uptime of the last accepted SNTP answer.
    clock_set_at: Option<u64>,
    link: &'static mut BoardLink,
    tls: &'static mut TlsBuffers,
    config: &'static BoardConfig,
}

/// How a connection attempt or a connection ended, for the console.
type Ended = Result<(), &'static str>;

impl NetLink {
    pub fn start(
        spawner: Spawner,
        wifi: WIFI<'static>,
        config: &'static BoardConfig,
        rng: &Rng,
    ) -> Self {
        let mut controller = match WifiController::new(wifi, Default::default()) {
            Ok(c) => c,
            Err(e) => panic!("Wi-Fi driver: {e:?}"),
        };
        let auth = if config.wifi_password.is_empty() {
            AuthenticationMethodConfig::Open
        } else {
            match config.wifi_password.as_str().try_into() {
                Ok(p) => AuthenticationMethodConfig::Wpa2Personal(p),
                Err(e) => panic!("Wi-Fi password: {e:?}"),
            }
        };
        let ssid = match config.wifi_ssid.as_str().try_into() {
            Ok(s) => s,
            Err(e) => panic!("Wi-Fi SSID: {e:?}"),
        };
        if let Err(e) = controller.set_config(&WifiConfig::Station(
            StationConfig::default()
                .with_ssid(ssid)
                .with_authentication(auth),
        )) {
            panic!("Wi-Fi config: {e:?}");
        }
        let seed = u64::from(rng.random()) << 32 | u64::from(rng.random());
        let (stack, runner) = embassy_net::new(
            Interface::station(),
            embassy_net::Config::dhcpv4(Default::default()),
            RESOURCES.init(StackResources::new()),
            seed,
        );
        spawner.spawn(net_task(runner).expect("net task spawned once"));
        let mut socket = TcpSocket::new(stack, SOCKET_RX.take(), SOCKET_TX.take());
        socket.set_timeout(Some(Duration::from_secs(60)));
        let ntp = UdpSocket::new(
            stack,
            NTP_RX_META.take(),
            NTP_RX.take(),
            NTP_TX_META.take(),
            NTP_TX.take(),
        );
        let link = LINK.init(Link::new(
            u64::from(rng.random()) << 32 | u64::from(rng.random()),
        ));
        Self {
            controller,
            stack,
            socket,
            ntp,
            clock_set_at: None,
            link,
            tls: TLS.take(),
            config,
        }
    }

    /// The board's event loop, until `done(core)`: sample when the core says so, sleep until
    /// its next timer, and on `Action::Connect` make one connection and carry it until it
    /// ends (or until `done`, which closes it with 1000).
    pub async fn run(
        &mut self,
        core: &mut DeviceCore,
        board: &mut Board,
        done: impl Fn(&mut DeviceCore) -> bool,
    ) {
        loop {
            if done(core) {
                return;
            }
            board.wdt.feed();
            let now = uptime_ms();
            let mut connect = false;
            while let Some(action) = core.poll_action(now) {
                match action {
                    Action::Connect => {
                        connect = true;
                        break;
                    }
                    Action::Sample { sensor } => board.sample(core, now, sensor),
                    // Nothing is open: confirm it to the core.
                    Action::Disconnect { .. } => self.link.socket_closed(core, now),
                }
            }
            if connect {
                self.connection(core, board, &done).await;
                continue;
            }
            if core.is_revoked() {
                println!(
                    "hub: this device's token was REVOKED. Re-provision it (hub device add, new config image)."
                );
            }
            Timer::at(instant_at(next_wake(core, now))).await;
        }
    }

    /// One connect attempt and, if it opens, the whole connection. Whatever happens, the core
    /// is told when it ends and the socket is released for the next attempt.
    async fn connection(
        &mut self,
        core: &mut DeviceCore,
        board: &mut Board,
        done: &impl Fn(&mut DeviceCore) -> bool,
    ) {
        self.socket.abort();
        let mut ended = self.open_tcp(core, board).await;
        if ended.is_ok() {
            // The steps so far may take 30 s at worst (Wi-Fi, DHCP, SNTP, DNS, TCP).
            board.wdt.feed();
            ended = self.carry(core, board, done).await;
        }
        self.socket.close();
        let _ = with_timeout(Duration::from_millis(500), self.socket.flush()).await;
        self.socket.abort();
        self.link.socket_closed(core, uptime_ms());
        if let Err(step) = ended {
            let retry_in = core
                .next_connect_at()
                .unwrap_or(0)
                .saturating_sub(uptime_ms());
            println!(
                "hub link: {step}; attempt {} failed, retry in {retry_in} ms",
                core.backoff_attempt()
            );
        }
    }

    /// TLS (for `wss://`) and the WebSocket over the connected socket, then the connection's
    /// life. The TLS connection, and its borrow of the record buffers, ends with this scope.
    async fn carry(
        &mut self,
        core: &mut DeviceCore,
        board: &mut Board,
        done: &impl Fn(&mut DeviceCore) -> bool,
    ) -> Ended {
        let config = self.config;
        let url = &config.hub;
        let socket = RefCell::new(Tcp(&mut self.socket));
        let channel = match (url.scheme, &config.ca) {
            (Scheme::Ws, _) => Channel::plain(&socket),
            (Scheme::Wss, None) => return Err("wss:// without a CA in the config image"),
            (Scheme::Wss, Some(ca)) => {
                let rng = RadioRng(board.rng);
                let handshake = Channel::tls::<SntpClock>(
                    &socket,
                    &mut *self.tls,
                    url.host.as_str(),
                    &ca.bytes,
                    rng,
                );
                match with_timeout(TLS_TIMEOUT, handshake).await {
                    Ok(Ok(channel)) => {
                        println!(
                            "hub link: TLS 1.3 up, certificate of {:?} checked against the config's CA",
                            url.host.as_str()
                        );
                        channel
                    }
                    Ok(Err(e)) => {
                        println!("hub link: TLS HANDSHAKE FAILED with {url}: {e}");
                        return Err("TLS handshake failed");
                    }
                    Err(_) => return Err("TLS handshake timed out"),
                }
            }
        };
        let mut key = [0u8; 16];
        board.rng.read(&mut key);
        let session = Session::start(channel, &mut *self.link, url, &config.token, key)
            .await
            .map_err(|e| {
                println!("hub link: sending the upgrade request failed: {e}");
                "sending the handshake failed"
            })?;
        println!(
            "hub link: {} up, upgrading to WebSocket ({})",
            if session.channel().is_tls() {
                "TLS"
            } else {
                "TCP"
            },
            shared::SUBPROTOCOL
        );
        drive(session, core, board, done).await
    }

    /// Wi-Fi (if down), an address, SNTP (when due), DNS and TCP: the steps before TLS.
    async fn open_tcp(&mut self, core: &mut DeviceCore, board: &mut Board) -> Ended {
        if !self.controller.is_connected() {
            println!("wifi: connecting to {:?}", self.config.wifi_ssid.as_str());
            match with_timeout(WIFI_TIMEOUT, self.controller.connect_async()).await {
                Ok(Ok(info)) => println!("wifi: connected (channel {})", info.channel),
                Ok(Err(e)) => {
                    println!(
                        "wifi: FAILED: {e:?} (wrong password shows as an auth/handshake reason)"
                    );
                    return Err("Wi-Fi connect failed");
                }
                Err(_) => return Err("Wi-Fi connect timed out (access point out of reach?)"),
            }
        }
        board.wdt.feed();
        if with_timeout(DHCP_TIMEOUT, self.stack.wait_config_up())
            .await
            .is_err()
        {
            return Err("no DHCP lease");
        }
        if let Some(c) = self.stack.config_v4() {
            println!("net: address {}", c.address);
        }
        let due = self
            .clock_set_at
            .is_none_or(|t| uptime_ms() >= t.saturating_add(SNTP_REFRESH_MS));
        if due {
            self.sync_clock(core, &board.rng).await;
            board.wdt.feed();
        }
        let host = self.config.hub.host.as_str();
        let addr =
            match with_timeout(TCP_TIMEOUT, self.stack.dns_query(host, DnsQueryType::A)).await {
                Ok(Ok(addrs)) if !addrs.is_empty() => addrs[0],
                _ => {
                    println!("dns: cannot resolve {host:?}");
                    return Err("hub host not resolved");
                }
            };
        match with_timeout(
            TCP_TIMEOUT,
            self.socket.connect((addr, self.config.hub.port)),
        )
        .await
        {
            Ok(Ok(())) => {}
            _ => {
                println!(
                    "hub link: cannot reach {} ({addr}:{}): hub unreachable",
                    self.config.hub, self.config.hub.port
                );
                return Err("TCP connect failed");
            }
        }
        Ok(())
    }

    async fn sync_clock(&mut self, core: &mut DeviceCore, rng: &Rng) {
        let server = match with_timeout(
            SNTP_TIMEOUT,
            self.stack.dns_query(NTP_SERVER, DnsQueryType::A),
        )
        .await
        {
            Ok(Ok(addrs)) if !addrs.is_empty() => addrs[0],
            _ => {
                println!("sntp: cannot resolve {NTP_SERVER:?}; clock unset, using the hub's");
                return;
            }
        };
        self.ntp.close();
        if self.ntp.bind(0).is_err() {
            println!("sntp: no UDP port");
            return;
        }
        let cookie = u64::from(rng.random()) << 32 | u64::from(rng.random());
        let sent_at = uptime_ms();
        if self
            .ntp
            .send_to(&sntp::request(cookie), (server, NTP_PORT))
            .await
            .is_err()
        {
            println!("sntp: send failed; clock unset");
            return;
        }
        let mut answer = [0u8; NTP_BYTES];
        let got = with_timeout(SNTP_TIMEOUT, self.ntp.recv_from(&mut answer)).await;
        let received_at = uptime_ms();
        match got {
            Ok(Ok((n, _))) => match sntp::parse(&answer[..n], cookie, sent_at, received_at) {
                Ok(unix_ms) if core.handle_wall_clock(received_at, unix_ms) => {
                    self.clock_set_at = Some(received_at);
                    let at_zero_s = unix_ms.saturating_sub(received_at) / 1000;
                    UNIX_AT_UPTIME_ZERO_S
                        .store(u32::try_from(at_zero_s).unwrap_or(0), Ordering::Relaxed);
                    println!("sntp: clock set from {server} (Unix ms {unix_ms})");
                }
                Ok(unix_ms) => println!("sntp: implausible time {unix_ms} from {server}; ignored"),
                Err(e) => println!("sntp: answer refused: {e:?}"),
            },
            _ => println!("sntp: no answer from {server} in 2 s; clock unset, using the hub's"),
        }
        self.ntp.close();
    }
}

/// When the loop wakes next: the core's next timer, and at least once a second (the watchdog).
fn next_wake(core: &mut DeviceCore, now: u64) -> u64 {
    core.poll_timeout().unwrap_or(now + 1000).min(now + 1000)
}

/// One open connection's life: the core's actions, its frames out, the hub's frames in,
/// until either side ends it. `Ok` when it ended cleanly.
async fn drive<S: Socket>(
    mut session: Session<'_, '_, S, TX_QUEUE_BYTES, RX_BYTES>,
    core: &mut DeviceCore,
    board: &mut Board,
    done: &impl Fn(&mut DeviceCore) -> bool,
) -> Ended {
    loop {
        board.wdt.feed();
        let now = uptime_ms();
        if done(core) {
            let _ = with_timeout(Duration::from_secs(1), session.close(core, 1000, now)).await;
            return Ok(());
        }
        while let Some(action) = core.poll_action(now) {
            match action {
                Action::Sample { sensor } => board.sample(core, now, sensor),
                Action::Disconnect { reason } => {
                    println!("hub link: closing ({reason:?})");
                    let code = reason.close_code();
                    let _ =
                        with_timeout(Duration::from_secs(1), session.close(core, code, now)).await;
                    return Ok(());
                }
                // The core only asks while disconnected; if it does, this connection is stale.
                Action::Connect => return Err("the core asked for a new connection"),
            }
        }
        if let Err(e) = session.send_pending(core, now).await {
            println!("hub link: send failed: {e}; reconnecting");
            return Err("send failed");
        }
        if core.is_revoked() {
            println!(
                "hub: this device's token was REVOKED. Re-provision it (hub device add, new config image)."
            );
        }
        // Wake for the core's next timer or a frame from the hub, whichever comes first. Only
        // the readiness wait races the timer: a TLS record, once started, is read to its end.
        let deadline = instant_at(next_wake(core, now));
        if let Either::Second(()) = select(session.readable(), Timer::at(deadline)).await {
            continue;
        }
        let event = match with_timeout(RECORD_TIMEOUT, session.receive(core, uptime_ms)).await {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => {
                println!("hub link: {e}");
                return Err("connection lost");
            }
            Err(_) => {
                println!(
                    "hub link: a record stalled for {} s",
                    RECORD_TIMEOUT.as_secs()
                );
                return Err("connection stalled");
            }
        };
        match event {
            LinkEvent::Handshaking | LinkEvent::Frames => {}
            LinkEvent::Opened => println!("hub link: OPEN, Hello sent; waiting for Welcome"),
            LinkEvent::Closed(cause) => {
                match cause {
                    CloseCause::Handshake(HandshakeError::Unauthorized) => {
                        println!(
                            "hub link: TOKEN REFUSED (HTTP 401): the hub does not know this token or revoked it"
                        )
                    }
                    CloseCause::Handshake(e) => println!("hub link: handshake refused: {e}"),
                    CloseCause::ByHub { code } => println!(
                        "hub link: hub closed the WebSocket (code {code:?}, last goodbye {:?})",
                        core.stats().last_goodbye
                    ),
                    CloseCause::Frame(e) => println!("hub link: protocol error: {e}"),
                }
                let _ =
                    with_timeout(Duration::from_secs(1), session.shutdown(core, uptime_ms())).await;
                return match cause {
                    CloseCause::ByHub { .. } => Ok(()),
                    CloseCause::Handshake(_) => Err("WebSocket upgrade refused"),
                    CloseCause::Frame(_) => Err("protocol error"),
                };
            }
        }
    }
}
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}
