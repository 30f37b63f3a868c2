//! Wi-Fi station, DHCP, DNS and one TCP socket, carrying the [`telemetry_link::Link`] that
//! speaks WebSocket for the device core. One connect attempt per `Action::Connect`: bring
//! Wi-Fi up if it is down, wait for an address, resolve the hub, connect TCP, handshake. A
//! failure anywhere is reported to the core, whose backoff (with jitter) times the next try,
//! so a dead access point or hub is retried at the same humane pace as a dead socket.
//!
//! The socket, its buffers and the link are `static`s created once; a reconnect aborts the
//! socket and reuses all of it.

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Instant, Timer, with_timeout};
use embedded_io_async::Write;
use esp_hal::peripherals::WIFI;
use esp_hal::rng::Rng;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, Interface, WifiController,
};
use firmware::core::DeviceCore;
use shared::board_config::BoardConfig;
use shared::limits::MAX_DEVICE_FRAME_BYTES;
use static_cell::{ConstStaticCell, StaticCell};
use telemetry_link::frame::MAX_HEADER_BYTES;
use telemetry_link::sntp::{self, NTP_PORT, PACKET_BYTES as NTP_BYTES};
use telemetry_link::{CloseCause, HandshakeError, Link, LinkEvent};

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

type BoardLink = Link<TX_QUEUE_BYTES, RX_BYTES>;

static LINK: StaticCell<BoardLink> = StaticCell::new();
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

/// Milliseconds on the device core's timeline.
pub fn uptime_ms() -> u64 {
    // SAFETY: written once by `set_uptime_base` before any task runs, read-only afterwards.
    let base = unsafe { core::ptr::read_volatile(&raw const UPTIME_BASE_MS) };
    base.saturating_add(Instant::now().as_millis())
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
    config: &'static BoardConfig,
    connected: bool,
}

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
            config,
            connected: false,
        }
    }

    /// One connect attempt (`Action::Connect`). Success: the core gets `handle_connected` when
    /// the hub's 101 arrives (in `wait`). Failure: `handle_disconnected` now.
    pub async fn connect(&mut self, core: &mut DeviceCore, rng: &Rng) {
        self.socket.abort();
        self.connected = false;
        match self.try_connect(core, rng).await {
            Ok(()) => self.connected = true,
            Err(step) => {
                self.socket.abort();
                self.link.socket_closed(core, uptime_ms());
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
    }

    async fn try_connect(&mut self, core: &mut DeviceCore, rng: &Rng) -> Result<(), &'static str> {
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
            self.sync_clock(core, rng).await;
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
        let mut key = [0u8; 16];
        rng.read(&mut key);
        self.link
            .start(&self.config.hub, &self.config.token, key)
            .map_err(|_| "handshake request does not fit")?;
        self.flush()
            .await
            .map_err(|_| "sending the handshake failed")?;
        println!(
            "hub link: TCP up, upgrading to WebSocket ({})",
            shared::SUBPROTOCOL
        );
        Ok(())
    }

    /// Ask [`NTP_SERVER`] the time and give it to the core (readings then carry
    /// `Clock::Sntp`). A failure only says so: the hub's clock (Welcome, Pong) still maps
    /// uptime, and the next connect attempt asks again.
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
                    println!("sntp: clock set from {server} (Unix ms {unix_ms})");
                }
                Ok(unix_ms) => println!("sntp: implausible time {unix_ms} from {server}; ignored"),
                Err(e) => println!("sntp: answer refused: {e:?}"),
            },
            _ => println!("sntp: no answer from {server} in 2 s; clock unset, using the hub's"),
        }
        self.ntp.close();
    }

    /// Queue the core's frames and write them.
    pub async fn send_pending(&mut self, core: &mut DeviceCore) {
        if !self.connected {
            return;
        }
        if let Err(e) = self.link.send_pending(core, uptime_ms()) {
            println!("hub link: send failed: {e}");
            self.drop_socket(core);
            return;
        }
        if self.flush().await.is_err() {
            println!("hub link: write failed; reconnecting");
            self.drop_socket(core);
        }
    }

    /// Close with `code` (the core already moved on).
    pub async fn close(&mut self, core: &mut DeviceCore, code: u16) {
        if self.connected {
            self.link.close(code);
            let _ = with_timeout(Duration::from_secs(1), self.flush()).await;
            self.socket.close();
        }
        self.drop_socket(core);
    }

    /// Until `deadline` (uptime ms): read what the hub sends and hand it to the core.
    pub async fn wait(&mut self, core: &mut DeviceCore, deadline: u64) {
        let until = Instant::from_millis(deadline);
        if !self.connected {
            Timer::at(until).await;
            return;
        }
        let read = match select(self.socket.read(self.link.read_space()), Timer::at(until)).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => {
                println!("hub link: connection closed by the network or the hub");
                self.drop_socket(core);
                return;
            }
            Either::First(Ok(n)) => n,
            Either::Second(()) => return,
        };
        match self.link.received(core, uptime_ms(), read) {
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
                let _ = with_timeout(Duration::from_secs(1), self.flush()).await;
                self.socket.close();
                self.socket.abort();
                self.connected = false;
                return;
            }
        }
        if self.flush().await.is_err() {
            self.drop_socket(core);
        }
    }

    async fn flush(&mut self) -> Result<(), embassy_net::tcp::Error> {
        let bytes = self.link.outgoing();
        if !bytes.is_empty() {
            self.socket.write_all(bytes).await?;
        }
        self.link.written();
        Ok(())
    }

    fn drop_socket(&mut self, core: &mut DeviceCore) {
        self.socket.abort();
        self.connected = false;
        self.link.socket_closed(core, uptime_ms());
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}
