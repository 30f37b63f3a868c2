//! Deep-sleep mode (cargo feature `deep-sleep`): a battery board that wakes every
//! `sample_interval_ms` of its config image, samples each sensor once, and connects only every
//! [`POLICY`]`.send_every` wakes to deliver the backlog. Between wakes the chip is in deep sleep
//! (a few µA); a wake is a reboot.
//!
//! Everything not yet delivered lives in [`KEPT`], 4 KiB of RTC fast memory that deep sleep,
//! panics and watchdog resets keep and a power loss clears. The device core writes and reads
//! it (`DeviceCore::save_for_sleep`, `DeviceCore::wake`: the code the host tests in
//! `firmware/tests/sleep.rs` prove): boot id, seq, clock, the open batch and the unacked frames,
//! with a CRC, so a cold boot starts clean. When it fills, the oldest batches are dropped and
//! counted, and the count reaches the hub.
//!
//! The core's clock is the RTC timer (it runs through deep sleep, restarts at power-on), so a
//! boot id's uptime keeps growing across wakes, as the hub expects within one boot.

use embassy_executor::Spawner;
use esp_hal::peripherals::{LPWR, RTC_TIMER, WIFI};
use esp_hal::rtc_cntl::Rtc;
use esp_hal::rtc_cntl::sleep::{LowPower, RtcSleepConfig};
use esp_hal::time::{Duration as HalDuration, Instant as HalInstant};
use esp_println::println;
use firmware::core::{Action, CoreConfig, DEFAULT_SLEEP_IMAGE_BYTES, DeviceCore, SleepPolicy};
use shared::board_config::BoardConfig;
use static_cell::StaticCell;

use crate::Board;
use crate::net::{self, NetLink};

/// Deliver every 10th wake (10 minutes at a 60 s interval), or sooner when the image passes
/// 75% of its region or after a crash; give a delivery 20 s (Wi-Fi, DHCP,
/// TLS if `wss://`, a few batches), then sleep again and keep the rest.
pub const POLICY: SleepPolicy = SleepPolicy {
    send_every: 10,
    send_when_full_permille: 750,
    delivery_budget_ms: 20_000,
};

/// The backlog across deep sleeps. Touched only by the main task, at boot and before sleeping.
#[esp_hal::ram(unstable(rtc_fast, persistent))]
static mut KEPT: [u8; DEFAULT_SLEEP_IMAGE_BYTES] = [0; DEFAULT_SLEEP_IMAGE_BYTES];

static CORE: StaticCell<DeviceCore> = StaticCell::new();

fn kept() -> &'static [u8] {
    // SAFETY: only this module touches KEPT, from the main task, never while a `&mut` exists.
    unsafe { &*(&raw const KEPT) }
}

fn save(core: &mut DeviceCore) {
    let now = net::uptime_ms();
    // SAFETY: as in `kept`; no shared borrow of KEPT is alive here.
    let region = unsafe { &mut *(&raw mut KEPT) };
    match core.save_for_sleep(now, region) {
        Ok(len) => println!(
            "sleep: image {len} of {} bytes, {} readings dropped this boot",
            region.len(),
            core.stats().dropped_readings
        ),
        Err(e) => println!("sleep: CANNOT SAVE the backlog: {e}"),
    }
}

/// One wake, then deep sleep. Never returns.
pub async fn run(
    spawner: Spawner,
    wifi: WIFI<'static>,
    lpwr: LPWR<'static>,
    rtc_timer: RTC_TIMER<'static>,
    config: &'static BoardConfig,
    core_cfg: CoreConfig,
    mut board: Board,
) -> ! {
    let rtc = Rtc::new(rtc_timer);
    let since_power_up = rtc.time_since_power_up().as_millis();
    net::set_uptime_base(since_power_up.saturating_sub(net::uptime_ms()));
    let now = net::uptime_ms();
    let (core, report) = match DeviceCore::wake(core_cfg, now, kept(), &POLICY) {
        Ok((c, r)) => (CORE.init(c), r),
        Err(e) => panic!("device core: {e}"),
    };
    match report.cold {
        Some(why) => println!("sleep: cold start ({why})"),
        None => println!(
            "sleep: wake {} of boot {:08x}, {} readings kept",
            report.wake,
            core.boot_id(),
            report.kept_readings
        ),
    }
    while let Some(action) = core.poll_action(now) {
        if let Action::Sample { sensor } = action {
            board.sample(core, now, sensor);
        }
    }
    if report.deliver {
        core.start_delivery(now);
        // Saved before connecting: a crash during the delivery keeps this wake's samples.
        save(core);
        println!("sleep: delivering the backlog");
        let mut link = NetLink::start(spawner, wifi, config, &board.rng);
        // Ends with a close (1000) when the backlog is delivered or the budget is spent.
        link.run(core, &mut board, |core| {
            core.wake_done(net::uptime_ms(), &POLICY)
        })
        .await;
    }
    save(core);
    let interval = u64::from(core.device_config().sample_interval_ms);
    println!("sleep: next wake in {interval} ms");
    let mut low_power = LowPower::new(lpwr);
    low_power.set_wakeup_deadline(HalInstant::now() + HalDuration::from_millis(interval));
    low_power.sleep_deep(RtcSleepConfig::deep())
}
