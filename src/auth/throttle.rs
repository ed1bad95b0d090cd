//! Throttling of guesses (logins, setup codes) with growing delays, per
//! key: an account, a source address, or the setup code itself.
//!
//! After `free` failures in a row, each further failure blocks the key for
//! twice as long as the one before (1 s, 2 s, 4 s … up to 15 minutes). A
//! success clears the key. State is in memory: a restart forgets it, which
//! costs an attacker a power cycle of the parent's Pi, not a bypass.

use std::collections::HashMap;
use std::sync::Mutex;

/// Longest block, in seconds.
const MAX_BLOCK_SECS: i64 = 15 * 60;
/// Keys not touched for this long are forgotten.
const FORGET_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: i64,
    last: i64,
}

/// A throttle for one kind of guess.
pub struct Throttle {
    free: u32,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    /// A throttle that lets `free` failures pass before blocking.
    pub fn new(free: u32) -> Self {
        Self {
            free,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds)` to wait when any of `keys` is blocked at `now`.
    pub fn check(&self, keys: &[&str], now: i64) -> Option<u64> {
        let map = self.entries.lock().ok()?;
        keys.iter()
            .filter_map(|k| map.get(*k))
            .map(|e| e.blocked_until - now)
            .filter(|left| *left > 0)
            .max()
            .map(|s| s as u64)
    }

    /// Records a failure for each key.
    pub fn fail(&self, keys: &[&str], now: i64) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() > 10_000 {
            map.retain(|_, e| now - e.last < FORGET_SECS);
        }
        for k in keys {
            let e = map.entry((*k).to_owned()).or_insert(Entry {
                failures: 0,
                blocked_until: 0,
                last: now,
            });
            e.failures += 1;
            e.last = now;
            if e.failures >= self.free {
                let exp = (e.failures - self.free).min(20);
                e.blocked_until = now + (1i64 << exp).min(MAX_BLOCK_SECS);
            }
        }
    }

    /// Clears a key after a success.
    pub fn succeed(&self, key: &str) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_free_failures_and_success_clears() {
        let t = Throttle::new(3);
        for _ in 0..2 {
            t.fail(&["a"], 100);
        }
        assert_eq!(t.check(&["a"], 100), None, "two failures are free");
        t.fail(&["a"], 100);
        assert_eq!(t.check(&["a"], 100), Some(1));
        t.fail(&["a"], 101);
        assert_eq!(t.check(&["a"], 101), Some(2));
        t.fail(&["a"], 103);
        assert_eq!(t.check(&["a"], 103), Some(4));
        assert_eq!(t.check(&["a"], 107), None, "the block ends");
        assert_eq!(t.check(&["b", "a"], 104), Some(3), "any blocked key blocks");
        t.succeed("a");
        assert_eq!(t.check(&["a"], 104), None);
    }

    #[test]
    fn block_is_capped() {
        let t = Throttle::new(1);
        for _ in 0..100 {
            t.fail(&["x"], 0);
        }
        assert_eq!(t.check(&["x"], 0), Some(MAX_BLOCK_SECS as u64));
    }
}
