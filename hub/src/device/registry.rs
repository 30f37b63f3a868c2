//! Which devices are connected right now, one connection per device.
//!
//! A new connection of a device replaces the old one (the old one is told `Replaced` and
//! closed with 4000); revocation kicks the open connection. A connection only reports its
//! device offline if it is still the current one, so a replaced socket closing late never
//! marks a live device offline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use shared::CloseReason;
use tokio::sync::watch;

#[derive(Default)]
pub struct ConnectedDevices {
    current: Mutex<HashMap<i64, Entry>>,
    next_generation: AtomicU64,
}

struct Entry {
    generation: u64,
    kick: watch::Sender<Option<CloseReason>>,
}

/// Held by a device session; `kicked` fires when the session must close.
pub struct Registration {
    pub device_id: i64,
    pub generation: u64,
    pub kicked: watch::Receiver<Option<CloseReason>>,
}

impl ConnectedDevices {
    /// Make this connection the device's current one, replacing any other.
    pub fn register(&self, device_id: i64) -> Registration {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (kick, kicked) = watch::channel(None);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.insert(device_id, Entry { generation, kick }) {
            let _ = old.kick.send(Some(CloseReason::Replaced));
        }
        Registration {
            device_id,
            generation,
            kicked,
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
            .map(|entry| entry.kick.send(Some(reason)).is_ok())
            .unwrap_or(false)
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
        assert_eq!(*old.kicked.borrow(), Some(CloseReason::Replaced));
        assert_eq!(*new.kicked.borrow(), None);
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
        assert_eq!(*reg.kicked.borrow(), Some(CloseReason::Revoked));
        assert!(!devices.kick(2, CloseReason::Revoked));
    }
}
