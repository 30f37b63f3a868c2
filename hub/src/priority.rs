//! CPU priorities of the hub's threads: when the CPU is short, committing what has been read
//! comes first, reading more comes second, the live view last.
//!
//! | thread | nice |
//! |---|---|
//! | `store-writer` (commits, then acks) | the hub's own (what it was started with) |
//! | `tokio-rt-worker` (device sessions, HTTP, pings) | the hub's own + [`NETWORK_OFFSET`] |
//! | `live-clients` (`/ws/live` fan-out) | 19, the lowest |
//!
//! Why: a device keeps at most 64 batches unacked, so reading faster than the writer commits
//! gains nothing; it only takes CPU from the writer. With both cores busy (unpaced ingest at
//! 1,000 devices beside the load generator), the writer at the sessions' priority got too
//! little of them; one step of priority ahead of the sessions raised the readings persisted
//! per second from 1.30–1.35 M to 1.70–1.81 M, taking turns on the same binary
//! (docs/performance.md, Ingest). On a box with CPU to spare nothing changes: priorities only
//! decide who waits when threads compete.
//!
//! Only lowering is used, which needs no privilege: an unprivileged thread cannot raise its
//! priority back, so the writer must be started from a thread at the hub's own nice (the
//! hub starts it from `main`'s thread, in `Store::open`); [`store`] logs if it was not.
//! Linux only (priorities are per thread there); elsewhere these do nothing.

/// How much lower than the writer the runtime's worker threads run: nice +5 is about a third
/// of the writer's CPU weight when both want the same core.
pub const NETWORK_OFFSET: i32 = 5;

/// The hub's multi-thread runtime: its workers and blocking threads run at [`network`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(network)
        .build()
}

/// The store writer: the hub's own nice.
pub fn store() {
    set(base(), "store writer");
}

/// A tokio worker or blocking thread (`Builder::on_thread_start`).
pub fn network() {
    set((base() + NETWORK_OFFSET).min(LOWEST), "runtime worker");
}

/// The live-clients thread: the lowest there is.
pub fn lowest() {
    set(LOWEST, "live thread");
}

const LOWEST: i32 = 19;

/// The nice of this thread.
#[cfg(target_os = "linux")]
pub fn current() -> i32 {
    // SAFETY: gettid has no preconditions; getpriority only reads its arguments. errno is not
    // checked: -1 is also a valid nice, and a thread can always read its own.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(not(target_os = "linux"))]
pub fn current() -> i32 {
    0
}

/// The hub's own nice: the main thread's (its id is the process id), which the hub never changes.
#[cfg(target_os = "linux")]
fn base() -> i32 {
    // SAFETY: as in current().
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t) }
}

#[cfg(not(target_os = "linux"))]
fn base() -> i32 {
    0
}

#[cfg(target_os = "linux")]
fn set(nice: i32, what: &str) {
    if current() == nice {
        return;
    }
    // SAFETY: as in current().
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    // Said once: where it fails (a sandbox that forbids it), it fails for every new thread.
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if rc != 0 && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            from = current(),
            to = nice,
            "could not set the {what}'s CPU priority; it keeps its current one"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set(_nice: i32, _what: &str) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn on_new_thread(f: impl FnOnce() + Send + 'static) -> i32 {
        std::thread::spawn(move || {
            f();
            current()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn workers_run_below_the_writer_and_the_live_thread_lowest() {
        let base = base();
        assert_eq!(on_new_thread(store), base);
        assert_eq!(on_new_thread(network), (base + NETWORK_OFFSET).min(19));
        assert_eq!(on_new_thread(lowest), 19);
        // This thread is untouched.
        assert_eq!(current(), base);
    }
}
