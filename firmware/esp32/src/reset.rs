//! Why the board restarted, for Hello's `reset_reason` (the hub shows it).
//!
//! The chip's reset cause tells power-on, brown-out, watchdogs, deep-sleep wake and software
//! resets apart; a panic is a software reset to the chip, so the panic handler leaves a marker
//! in RTC fast memory (kept across a software reset, lost on power loss) and the next boot
//! reports `Panic` instead.

use esp_println::println;
use shared::ResetReason;

const PANIC_MARK: u32 = 0x7061_6e63; // "panc"

// Only touched by `reason` at boot (before anything else runs) and by the panic handler.
#[esp_hal::ram(unstable(rtc_fast, persistent))]
static mut LAST_PANIC: u32 = 0;

/// The reason for this boot (reads and clears the panic marker).
pub fn reason() -> ResetReason {
    // SAFETY: single-threaded at boot; volatile so the marker is really read and cleared.
    let panicked = unsafe {
        let mark = core::ptr::read_volatile(&raw const LAST_PANIC);
        core::ptr::write_volatile(&raw mut LAST_PANIC, 0);
        mark == PANIC_MARK
    };
    let raw = esp_hal::system::reset_reason().map(|r| r as u32);
    classify(raw, panicked)
}

/// Reset cause codes (ESP-IDF `soc/reset_reasons.h`, the same on C3 and C6).
fn classify(raw: Option<u32>, panicked: bool) -> ResetReason {
    match raw {
        Some(0x03 | 0x0C) if panicked => ResetReason::Panic,
        Some(0x01) => ResetReason::PowerOn,
        Some(0x03 | 0x0C) => ResetReason::Software,
        Some(0x05) => ResetReason::DeepSleepWake,
        Some(0x0F) => ResetReason::Brownout,
        Some(0x07 | 0x08 | 0x09 | 0x0B | 0x0D | 0x10 | 0x11 | 0x12) => ResetReason::Watchdog,
        _ => ResetReason::Unknown,
    }
}

/// Print the panic, mark it for the next boot, and restart.
pub fn on_panic(info: &core::panic::PanicInfo) -> ! {
    println!("\n!! PANIC: {info}\n!! restarting; the hub will see reset reason Panic");
    // SAFETY: the panic handler runs once, with nothing else touching the marker.
    unsafe { core::ptr::write_volatile(&raw mut LAST_PANIC, PANIC_MARK) };
    esp_hal::system::software_reset()
}
