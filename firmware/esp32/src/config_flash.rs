//! The per-device config image in flash: `shared::board_config` (postcard + CRC), written by
//! `hub device add NAME --board-config FILE.bin ...` and flashed with
//! `espflash write-bin --chip esp32c3 0x3f0000 FILE.bin`.
//!
//! A PEM CA (`hub device add ... --ca ca.pem`) is turned into DER here, once, inside the
//! config's own buffer: TLS then checks the hub's certificate against it on every connect.

use embassy_time::Timer;
use esp_hal::peripherals::FLASH;
use esp_println::println;
use esp_storage::FlashStorage;
use shared::board_config::{BoardConfig, BoardConfigError, CaFormat, MAX_IMAGE_BYTES, Scheme};
use static_cell::ConstStaticCell;
use telemetry_link::pem::{self, PemError};

/// Where the `devcfg` partition starts (`partitions.csv`): the last 64 KiB of a 4 MiB flash.
pub const CONFIG_OFFSET: u32 = 0x3f_0000;

static SECTOR: ConstStaticCell<[u8; MAX_IMAGE_BYTES]> = ConstStaticCell::new([0; MAX_IMAGE_BYTES]);

/// Why there is no usable config.
#[derive(Debug)]
pub enum NoConfig {
    Flash,
    Image(BoardConfigError),
    /// The CA is marked PEM but holds no usable certificate.
    Ca(PemError),
}

pub fn read(flash: FLASH<'static>) -> Result<BoardConfig, NoConfig> {
    let mut storage = FlashStorage::new(flash);
    let sector = SECTOR.take();
    storage
        .read(CONFIG_OFFSET, sector)
        .map_err(|_| NoConfig::Flash)?;
    let mut config = BoardConfig::decode(sector).map_err(NoConfig::Image)?;
    if let Some(ca) = config.ca.as_mut()
        && ca.format == CaFormat::Pem
    {
        let der = pem::decode_in_place(&mut ca.bytes).map_err(NoConfig::Ca)?;
        ca.bytes.truncate(der);
        ca.format = CaFormat::Der;
    }
    Ok(config)
}

/// Say, every 10 s, why this board cannot start, and how to fix it. Never returns: flash a
/// config image and reset the board.
pub async fn wait_forever(why: NoConfig) -> ! {
    loop {
        match why {
            NoConfig::Flash => println!("NO CONFIG: reading flash at {CONFIG_OFFSET:#x} failed"),
            NoConfig::Image(BoardConfigError::BadMagic {
                found: [0xff, 0xff, 0xff, 0xff],
            }) => {
                println!(
                    "NO CONFIG: the devcfg partition at {CONFIG_OFFSET:#x} is empty (erased flash)."
                )
            }
            NoConfig::Image(e) => {
                println!("NO CONFIG: the image at {CONFIG_OFFSET:#x} is unusable: {e}")
            }
            NoConfig::Ca(e) => println!(
                "NO CONFIG: the CA in the image at {CONFIG_OFFSET:#x} is not a PEM certificate ({e}); pass --ca the CA's .pem or .der"
            ),
        }
        println!(
            "  make one:  hub device add NAME --board-config NAME.bin --wifi-ssid SSID --wifi-password PASS --hub-url ws://HUB:8080/ws/device"
        );
        println!(
            "  flash it:  espflash write-bin --chip {} {CONFIG_OFFSET:#x} NAME.bin   (then reset the board)",
            chip()
        );
        Timer::after_secs(10).await;
    }
}

/// A `wss://` hub needs the CA that signed its certificate: without one, say so every 10 s
/// and wait (nothing else can be trusted). With one, say what TLS will check.
pub async fn check_tls(config: &BoardConfig) {
    if config.hub.scheme != Scheme::Wss {
        return;
    }
    let host = config.hub.host.as_str();
    let Some(ca) = &config.ca else {
        loop {
            println!(
                "NO CA: the hub URL is wss:// but the config image has no CA to check the hub's certificate with."
            );
            println!(
                "  make it again with --ca CA.pem (the CA that signed the hub's --tls-cert), then write-bin it and reset"
            );
            Timer::after_secs(10).await;
        }
    };
    println!(
        "config: wss://, trusting the config's CA ({} bytes DER) for {host:?}",
        ca.bytes.len()
    );
    if host.parse::<core::net::Ipv4Addr>().is_ok() {
        println!(
            "config: NOTE the hub is an IP address: this TLS client matches the certificate's DNS names and common name only, so the hub's certificate needs CN={host} (or a DNS name {host})"
        );
    }
}

fn chip() -> &'static str {
    if cfg!(feature = "esp32c6") {
        "esp32c6"
    } else {
        "esp32c3"
    }
}
