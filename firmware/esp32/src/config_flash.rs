//! The per-device config image in flash: `shared::board_config` (postcard + CRC), written by
//! `hub device add NAME --board-config FILE.bin ...` and flashed with
//! `espflash write-bin --chip esp32c3 0x3f0000 FILE.bin`.

use embassy_time::Timer;
use esp_hal::peripherals::FLASH;
use esp_println::println;
use esp_storage::FlashStorage;
use shared::board_config::{BoardConfig, BoardConfigError, MAX_IMAGE_BYTES};
use static_cell::ConstStaticCell;

/// Where the `devcfg` partition starts (`partitions.csv`): the last 64 KiB of a 4 MiB flash.
pub const CONFIG_OFFSET: u32 = 0x3f_0000;

static SECTOR: ConstStaticCell<[u8; MAX_IMAGE_BYTES]> = ConstStaticCell::new([0; MAX_IMAGE_BYTES]);

/// Why there is no usable config.
#[derive(Debug)]
pub enum NoConfig {
    Flash,
    Image(BoardConfigError),
}

pub fn read(flash: FLASH<'static>) -> Result<BoardConfig, NoConfig> {
    let mut storage = FlashStorage::new(flash);
    let sector = SECTOR.take();
    storage
        .read(CONFIG_OFFSET, sector)
        .map_err(|_| NoConfig::Flash)?;
    BoardConfig::decode(sector).map_err(NoConfig::Image)
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

pub async fn wait_forever_msg(msg: &str) -> ! {
    loop {
        println!("STOPPED: {msg}");
        Timer::after_secs(10).await;
    }
}

fn chip() -> &'static str {
    if cfg!(feature = "esp32c6") {
        "esp32c6"
    } else {
        "esp32c3"
    }
}
