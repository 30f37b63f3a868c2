//! The telemetry board app for ESP32-C3 (default) and ESP32-C6: a thin bare-metal shell over
//! the workspace's device core (`firmware::core::DeviceCore`, the code the host tests prove).
//!
//! Wiring (ESP32-C3 SuperMini / DevKitM-1 and ESP32-C6-DevKitC-1 alike):
//! ```text
//!   BME280 (optional)   board
//!   VIN  ------------   3V3
//!   GND  ------------   GND
//!   SDA  ------------   GPIO4
//!   SCL  ------------   GPIO5      I2C address 0x76 (SDO to GND)
//! ```
//! The chip's internal temperature sensor (TSENS) is always sampled (sensor 0); the BME280 adds
//! temperature, humidity and pressure (sensors 1-3) when it answers at boot. Without it the
//! board runs and declares only what it has.
//!
//! Boot: read the config image from the `devcfg` partition (`partitions.csv`, offset
//! [`config_flash::CONFIG_OFFSET`]); without a valid one, say why on the serial console and wait.
//! Then the core decides everything: `Action::Connect` brings Wi-Fi up (if down), waits for
//! DHCP, resolves the hub, opens TCP, TLS 1.3 for a `wss://` hub (checked against the CA from
//! the config image) and the WebSocket, and carries that connection until it ends; any failure
//! goes back to the core, whose backoff times the next attempt. Every buffer is a `static`
//! sized here or in `net`: reconnecting never allocates (esp-radio's own Wi-Fi buffers come
//! from a heap sized once at boot).
//!
//! With the cargo feature `deep-sleep` the board is a sleepy device instead (`sleepy`): it
//! wakes every `sample_interval_ms`, samples once, keeps the backlog in RTC memory and
//! connects every few wakes to deliver it.
//!
//! Modules, in the order the boot uses them: [`reset`] (why we restarted, panic marker),
//! [`config_flash`] (the config image), [`sensors`], [`net`] (the event loop: Wi-Fi, DHCP, DNS,
//! TCP, TLS + the link) and `sleepy` (deep-sleep mode).
#![no_std]
#![no_main]

mod config_flash;
mod net;
mod reset;
mod sensors;
#[cfg(feature = "deep-sleep")]
mod sleepy;

use embassy_executor::Spawner;
use esp_hal::clock::CpuClock;
use esp_hal::peripherals::TIMG1;
use esp_hal::rng::Rng;
use esp_hal::time::Duration as HalDuration;
use esp_hal::timer::timg::{MwdtStage, MwdtStageAction, TimerGroup, Wdt};
use esp_println::println;
use firmware::core::{CoreConfig, DeviceCore};
use shared::board_config::BoardConfig;
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

/// Firmware version in Hello.
#[cfg(feature = "esp32c3")]
const FIRMWARE: &str = concat!("esp32c3-", env!("CARGO_PKG_VERSION"));
#[cfg(feature = "esp32c6")]
const FIRMWARE: &str = concat!("esp32c6-", env!("CARGO_PKG_VERSION"));

/// Batches in flight at once: 2 keeps the send queue at 3 frames.
pub const MAX_IN_FLIGHT: u8 = 2;

/// The watchdog resets the board if the main loop stalls this long (a hung socket, a driver
/// deadlock). Every wait in the loop is shorter.
const WATCHDOG_S: u64 = 30;

/// Heap for esp-radio's Wi-Fi driver (its buffers and blobs); nothing of ours allocates.
const WIFI_HEAP_BYTES: usize = 72 * 1024;

static CONFIG: StaticCell<BoardConfig> = StaticCell::new();
#[cfg(not(feature = "deep-sleep"))]
static CORE: StaticCell<DeviceCore> = StaticCell::new();

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(size: WIFI_HEAP_BYTES);
    let reset_reason = reset::reason();
    println!("\n== telemetry board {FIRMWARE}, reset reason {reset_reason:?}");

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let config: &'static BoardConfig = match config_flash::read(peripherals.FLASH) {
        Ok(c) => CONFIG.init(c),
        Err(why) => config_flash::wait_forever(why).await,
    };
    println!(
        "config: Wi-Fi {:?}, hub {}, sample every {} ms",
        config.wifi_ssid.as_str(),
        config.hub,
        config.sample_interval_ms
    );
    config_flash::check_tls(config).await;

    let rng = Rng::new();
    let boot_id = rng.random();
    let sensors = sensors::Sensors::new(
        peripherals.TSENS,
        peripherals.I2C0,
        peripherals.GPIO4,
        peripherals.GPIO5,
    );
    let decls = sensors.declarations();
    println!(
        "sensors: {} declared ({})",
        decls.len(),
        if sensors.has_bme280() {
            "TSENS + BME280"
        } else {
            "TSENS only; no BME280 found"
        }
    );

    let mut core_cfg = match CoreConfig::new(FIRMWARE, boot_id, reset_reason, &decls) {
        Ok(c) => c,
        Err(e) => panic!("core config: {e}"),
    };
    core_cfg.device.sample_interval_ms = config.sample_interval_ms;
    core_cfg.max_in_flight = MAX_IN_FLIGHT;
    core_cfg.backoff.seed = u64::from(rng.random()) << 32 | u64::from(rng.random());
    let mut wdt = TimerGroup::new(peripherals.TIMG1).wdt;
    wdt.set_timeout(MwdtStage::Stage0, HalDuration::from_secs(WATCHDOG_S));
    wdt.set_stage_action(MwdtStage::Stage0, MwdtStageAction::ResetSystem);
    wdt.enable();

    #[cfg_attr(feature = "deep-sleep", allow(unused_mut))]
    let mut board = Board { sensors, rng, wdt };

    #[cfg(feature = "deep-sleep")]
    {
        // A sleepy device's schedule is its sleep interval, and a batch spans many wakes.
        core_cfg.follow_hub_config = false;
        core_cfg.device.batch_max_age_ms = shared::limits::MAX_BATCH_SPAN_MS;
        sleepy::run(
            spawner,
            peripherals.WIFI,
            peripherals.LPWR,
            peripherals.RTC_TIMER,
            config,
            core_cfg,
            board,
        )
        .await
    }

    #[cfg(not(feature = "deep-sleep"))]
    {
        let now = net::uptime_ms();
        let core: &'static mut DeviceCore = match DeviceCore::new(core_cfg, now) {
            Ok(c) => CORE.init(c),
            Err(e) => panic!("device core: {e}"),
        };
        let mut link = net::NetLink::start(spawner, peripherals.WIFI, config, &board.rng);
        loop {
            link.run(core, &mut board, |_| false).await;
        }
    }
}

/// What the event loop drives besides the core and the network.
pub struct Board {
    pub sensors: sensors::Sensors,
    pub rng: Rng,
    pub wdt: Wdt<TIMG1<'static>>,
}

impl Board {
    /// The core's `Action::Sample`: read the sensor and hand the value over.
    pub fn sample(&mut self, core: &mut DeviceCore, now: u64, sensor: u8) {
        if let Some(value) = self.sensors.read(sensor) {
            // A refused reading (non-finite) is counted by the core.
            let _ = core.handle_reading(now, sensor, value);
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    reset::on_panic(info)
}
