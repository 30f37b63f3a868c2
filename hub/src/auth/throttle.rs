//! Login throttling: after `max_failures` failed logins within `window` from one source
//! address, or for one user name from anywhere, further attempts are refused (HTTP 429 with
//! `Retry-After`) until that window ends, without even checking the password. Guessing is held
//! to a few tries a minute per name, and one address cannot keep the password checker busy.
//!
//! The table is bounded: when it is full of live entries, new keys are refused too (fail
//! closed) until entries expire, so a flood of fake names cannot flush a real one's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<Key, Window>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(addr: IpAddr, user: &str) -> [Key; 2] {
        let user: String = user.chars().take(64).collect::<String>().to_lowercase();
        [Key::Addr(addr), Key::User(user)]
    }

    /// `Err(wait)` when this attempt must be refused, and for how long.
    pub fn check(&self, addr: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for key in Self::keys(addr, user) {
            if let Some(w) = entries.get(&key) {
                let end = w.start + self.window;
                if now >= end {
                    entries.remove(&key);
                } else if w.failures >= self.max_failures {
                    wait = wait.max(end - now);
                }
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if entries.len() >= MAX_ENTRIES {
            let window = self.window;
            entries.retain(|_, w| now < w.start + window);
            if entries.len() >= MAX_ENTRIES {
                return Err(self.window);
            }
        }
        Ok(())
    }

    /// Count a failed attempt against the address and the name.
    pub fn failed(&self, addr: IpAddr, user: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(addr, user) {
            let w = entries.entry(key).or_insert(Window {
                start: now,
                failures: 0,
            });
            if now >= w.start + self.window {
                *w = Window {
                    start: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// A successful login clears the name's count (the address keeps its own).
    pub fn succeeded(&self, user: &str) {
        let [_, key] = Self::keys(IpAddr::from([0, 0, 0, 0]), user);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_the_address_and_the_name_until_the_window_ends() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check(a, "ada", now).is_ok());
            t.failed(a, "ada", now);
        }
        let wait = t
            .check(a, "ada", now + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.check(a, "bob", now).is_err(), "the address is locked");
        assert!(
            t.check(b, "ADA", now).is_err(),
            "the name is locked from anywhere"
        );
        assert!(t.check(b, "bob", now).is_ok());
        assert!(
            t.check(a, "ada", now + Duration::from_secs(60)).is_ok(),
            "window over"
        );
    }

    #[test]
    fn success_clears_the_name() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        let a = IpAddr::from([10, 0, 0, 1]);
        let now = Instant::now();
        t.failed(a, "ada", now);
        t.succeeded("ada");
        t.failed(IpAddr::from([10, 0, 0, 9]), "ada", now);
        assert!(t.check(IpAddr::from([10, 0, 0, 3]), "ada", now).is_ok());
    }

    #[test]
    fn a_full_table_fails_closed() {
        let t = LoginThrottle::new(5, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..MAX_ENTRIES / 2 {
            t.failed(
                IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
                &format!("u{i}"),
                now,
            );
        }
        assert!(t.check(IpAddr::from([10, 2, 0, 0]), "new", now).is_err());
        assert!(
            t.check(
                IpAddr::from([10, 2, 0, 0]),
                "new",
                now + Duration::from_secs(61)
            )
            .is_ok()
        );
    }
}
