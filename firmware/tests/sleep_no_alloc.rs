//! A sleepy device's wake cycle allocates nothing: a thousand wakes (restore from the RTC
//! image, sample, connect, Hello, Welcome, batches, acks, save) under a counting allocator.
//! Everything the board keeps is built before counting starts, as at boot; the core lives
//! on the stack here and in a `static` on the board.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use firmware::core::{
    Action, CoreConfig, DEFAULT_SLEEP_IMAGE_BYTES, DeviceCore, SessionState, SleepPolicy,
};
use shared::limits::MAX_BATCH_SPAN_MS;
use shared::{DeviceConfig, DeviceMsg, HubMsg, ResetReason, Welcome};

/// Counts allocations on the thread that armed it (the test harness allocates on others).
struct CountingAlloc;
static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! { static COUNT_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) && COUNT_HERE.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const SLEEP_MS: u64 = 60_000;

fn config(reset: ResetReason) -> CoreConfig {
    let mut c = CoreConfig::new("sleepy-1.0", 0x5eed, reset, &support::sensors()).unwrap();
    c.device = DeviceConfig {
        sample_interval_ms: SLEEP_MS as u32,
        batch_max_readings: 32,
        batch_max_age_ms: MAX_BATCH_SPAN_MS,
        heartbeat_ms: 10_000,
    };
    c.follow_hub_config = false;
    c
}

fn encode(msg: &HubMsg, buf: &mut [u8; 64]) -> usize {
    shared::encode(msg, buf).unwrap().len()
}

#[test]
fn a_thousand_wake_cycles_allocate_nothing() {
    let policy = SleepPolicy {
        send_every: 5,
        ..SleepPolicy::default()
    };
    // Built before counting, as at boot: the RTC region, the configs, reply buffers.
    let mut region = [0u8; DEFAULT_SLEEP_IMAGE_BYTES];
    let cold = config(ResetReason::PowerOn);
    let warm = config(ResetReason::DeepSleepWake);
    let mut reply = [0u8; 64];
    let mut hub_cursor: Option<u32> = None;
    let mut stored_readings = 0u64;
    let mut deliveries = 0u32;
    let mut now = 0u64;

    COUNT_HERE.with(|c| c.set(true));
    ARMED.store(true, Ordering::SeqCst);
    for wake in 0..1000u32 {
        let cfg = if wake == 0 {
            cold.clone()
        } else {
            warm.clone()
        };
        let (mut core, report) = DeviceCore::<16384, 64>::wake(cfg, now, &region, &policy).unwrap();
        while let Some(action) = core.poll_action(now) {
            if let Action::Sample { sensor } = action {
                core.handle_reading(now, sensor, wake as f32).unwrap();
            }
        }
        if report.deliver {
            deliveries += 1;
            core.start_delivery(now);
            assert_eq!(core.poll_action(now), Some(Action::Connect));
            core.handle_connected(now);
            while !core.wake_done(now, &policy) {
                let mut answers: [Option<HubMsg>; 8] = Default::default();
                let mut n = 0;
                while let Some(frame) = core.poll_transmit(now) {
                    let answer = match shared::decode_device(frame).unwrap() {
                        DeviceMsg::Hello(_) => HubMsg::Welcome(Welcome {
                            hub_time_ms: support::HUB_EPOCH_MS + now,
                            stored_seq: hub_cursor,
                            config: DeviceConfig::default(),
                        }),
                        DeviceMsg::Batch(b) => {
                            if hub_cursor.is_none_or(|c| b.seq > c) {
                                hub_cursor = Some(b.seq);
                                stored_readings += b.readings.len() as u64;
                            }
                            HubMsg::Ack { seq: b.seq }
                        }
                        DeviceMsg::Heartbeat(_) => continue,
                    };
                    answers[n] = Some(answer);
                    n += 1;
                }
                for answer in answers.iter().take(n).flatten() {
                    let len = encode(answer, &mut reply);
                    core.handle_frame(now + 3, &reply[..len]).unwrap();
                }
                now += 10;
            }
            assert_eq!(core.state(), SessionState::Streaming);
        }
        core.save_for_sleep(now, &mut region).unwrap();
        now += SLEEP_MS;
    }
    let during_loop = ALLOCATIONS.load(Ordering::SeqCst);
    // The counter itself works: one allocation here is seen.
    drop(std::hint::black_box(Box::new(0x5eed_u64)));
    ARMED.store(false, Ordering::SeqCst);
    COUNT_HERE.with(|c| c.set(false));
    assert_eq!(during_loop, 0, "a wake cycle allocated");
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        1,
        "the counting allocator counts"
    );
    assert_eq!(deliveries, 200, "the cold start, then every 5th wake");
    // Everything sampled was delivered, except the rounds since the last delivery.
    let held = firmware::core::KeptImage::parse(&region)
        .unwrap()
        .readings();
    assert_eq!(stored_readings + held, 2 * 1000);
}
