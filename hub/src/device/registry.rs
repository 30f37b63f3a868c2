//! Which devices are connected right now, one connection per device.
//!
//! A new connection of a device replaces the old one (the old one is told `Replaced` and
//! closed with 4000); revocation kicks the open connection. A connection only reports its
//! device offline if it is still the current one, so a replaced socket closing late never
//! marks a live device offline.
//!
//! The registry also rings every session's ping round: one timer for the hub
//! ([`ConnectedDevices::ping_all`], every `ping_interval`) instead of one per connection, which
//! an idle connection would keep allocated for its whole life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use shared::CloseReason;
use tokio::sync::Notify;

#[derive(Default)]
pub struct ConnectedDevices {
    current: Mutex<HashMap<i64, Entry>>,
    next_generation: AtomicU64,
}

struct Entry {
    generation: u64,
    kick: Arc<Kick>,
}

/// Held by a device session; its `kick` fires when the session must close.
pub struct Registration {
    pub device_id: i64,
    pub generation: u64,
    pub kick: Arc<Kick>,
}

/// Tells one session to close, and why, or that its ping is due: about 80 bytes per
/// connection (a `watch` channel took 344, a ping `Interval` 136 more).
#[derive(Default)]
pub struct Kick {
    reason: Mutex<Option<CloseReason>>,
    ping_due: AtomicBool,
    notify: Notify,
}

/// What woke a streaming session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Close, for this reason.
    Close(CloseReason),
    /// The ping round: check the device was heard from lately and ping it.
    PingDue,
}

impl Kick {
    fn send(&self, reason: CloseReason) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        // Stored as a permit if the session is not waiting right now.
        self.notify.notify_one();
    }

    fn ping(&self) {
        self.ping_due.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Why the session was told to close, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the session is told to close. A ping round meanwhile stays due for
    /// [`Kick::next`].
    pub async fn kicked(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }

    /// The next signal: a close (which stays, and wins over a due ping) or a ping round.
    pub async fn next(&self) -> Signal {
        loop {
            if let Some(reason) = self.reason() {
                return Signal::Close(reason);
            }
            if self.ping_due.swap(false, Ordering::AcqRel) {
                return Signal::PingDue;
            }
            self.notify.notified().await;
        }
    }
}

impl ConnectedDevices {
    /// Make this connection the device's current one, replacing any other.
    pub fn register(&self, device_id: i64) -> Registration {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Kick::default());
        let entry = Entry {
            generation,
            kick: kick.clone(),
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.insert(device_id, entry) {
            old.kick.send(CloseReason::Replaced);
        }
        Registration {
            device_id,
            generation,
            kick,
        }
    }

    /// Forget this connection. True when it was still the device's current one.
    pub fn unregister(&self, registration: &Registration) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match current.get(&registration.device_id) {
            Some(entry) if entry.generation == registration.generation => {
                current.remove(&registration.device_id);
                true
            }
            _ => false,
        }
    }

    /// Close the device's open connection, if any, for `reason`.
    pub fn kick(&self, device_id: i64, reason: CloseReason) -> bool {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .get(&device_id)
            .map(|entry| entry.kick.send(reason))
            .is_some()
    }

    /// Close every open connection for `reason` (shutdown).
    pub fn kick_all(&self, reason: CloseReason) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for entry in current.values() {
            entry.kick.send(reason);
        }
    }

    /// Ring the ping round of every connected device.
    pub fn ping_all(&self) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for entry in current.values() {
            entry.kick.ping();
        }
    }

    pub fn is_online(&self, device_id: i64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&device_id)
    }

    pub fn count(&self) -> usize {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_replaces_the_old_one_and_only_the_new_one_goes_offline() {
        let devices = ConnectedDevices::default();
        let old = devices.register(7);
        let new = devices.register(7);
        assert_eq!(old.kick.reason(), Some(CloseReason::Replaced));
        assert_eq!(new.kick.reason(), None);
        assert!(
            !devices.unregister(&old),
            "the replaced connection must not mark the device offline"
        );
        assert!(devices.is_online(7));
        assert!(devices.unregister(&new));
        assert!(!devices.is_online(7));
    }

    #[test]
    fn kick_reaches_the_current_connection() {
        let devices = ConnectedDevices::default();
        let reg = devices.register(1);
        assert!(devices.kick(1, CloseReason::Revoked));
        assert_eq!(reg.kick.reason(), Some(CloseReason::Revoked));
        assert!(!devices.kick(2, CloseReason::Revoked));
    }

    #[test]
    fn shutdown_kicks_every_connection() {
        let devices = ConnectedDevices::default();
        let (a, b) = (devices.register(1), devices.register(2));
        devices.kick_all(CloseReason::Shutdown);
        assert_eq!(a.kick.reason(), Some(CloseReason::Shutdown));
        assert_eq!(b.kick.reason(), Some(CloseReason::Shutdown));
    }

    #[tokio::test]
    async fn a_kick_before_the_session_waits_is_not_lost() {
        let devices = ConnectedDevices::default();
        let reg = devices.register(3);
        assert!(devices.kick(3, CloseReason::Revoked));
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), reg.kick.kicked())
            .await
            .expect("resolves at once");
        assert_eq!(reason, CloseReason::Revoked);
    }

    /// The session's next signal, or `None` when nothing comes within 50 ms.
    async fn next(reg: &Registration) -> Option<Signal> {
        tokio::time::timeout(std::time::Duration::from_millis(50), reg.kick.next())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_ping_round_wakes_every_session_once_and_a_close_wins() {
        let devices = ConnectedDevices::default();
        let (a, b) = (devices.register(5), devices.register(6));
        devices.ping_all();
        assert_eq!(next(&a).await, Some(Signal::PingDue));
        assert_eq!(next(&b).await, Some(Signal::PingDue));
        assert_eq!(next(&a).await, None, "one round, one ping");
        // A ping round before a kick that the session has not looked at yet: the close wins.
        devices.ping_all();
        devices.kick(5, CloseReason::Revoked);
        assert_eq!(next(&a).await, Some(Signal::Close(CloseReason::Revoked)));
        // Waiting for a close does not eat a due ping.
        devices.ping_all();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), b.kick.kicked())
                .await
                .is_err()
        );
        assert_eq!(next(&b).await, Some(Signal::PingDue));
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_when_replaced() {
        let devices = Arc::new(ConnectedDevices::default());
        let reg = devices.register(4);
        let waiting = tokio::spawn(async move { reg.kick.kicked().await });
        tokio::task::yield_now().await;
        devices.register(4);
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(reason, CloseReason::Replaced);
    }
}
