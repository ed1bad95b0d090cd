//! Throttling of guesses (logins, setup codes) with growing delays, per
//! key: an account, a source address, or the setup code itself.
//!
//! After `free` failures in a row, each further failure blocks the key for
//! twice as long as the one before (1 s, 2 s, 4 s … up to 15 minutes). A
//! success clears the key. State is in memory: a restart forgets it, which
//! costs an attacker a power cycle of the parent's Pi, not a bypass.
//!
//! Callers [`reserve`](Throttle::reserve) a guess before doing any slow work
//! (Argon2): the check and the charge happen under one lock, so parallel
//! guesses cannot all pass a check made before any of them was recorded.
//! A guess that turns out right is then cleared or refunded.

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

/// The throttle bucket of a client address, as text: an IPv4 address as
/// itself (also when it arrives IPv4-mapped), an IPv6 address as its /64,
/// because one device on a home network can take any address of its
/// prefix (SLAAC privacy addresses): keyed per /128, an attacker would own
/// 2^64 buckets. Text that is no address (not expected from a socket) is
/// one shared bucket, `unknown`.
pub fn address_bucket(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
        Ok(a) => a.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// A client address as text, an IPv4-mapped IPv6 address as the IPv4 one,
/// so both spellings of one client share their key; `unknown` for text that
/// is no address.
pub fn full_address(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Ok(a) => a.to_string(),
        Err(_) => "unknown".into(),
    }
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
        charge(&mut map, self.free, keys, now);
    }

    /// Checks `keys` and, when none is blocked, charges one failure to each
    /// at once (under the same lock), so the slot is taken before any slow
    /// work. `Err(seconds)` to wait when one is blocked; nothing is charged
    /// then. A right guess afterwards calls [`succeed`](Self::succeed) or
    /// [`refund`](Self::refund).
    pub fn reserve(&self, keys: &[&str], now: i64) -> Result<(), u64> {
        reserve_all(&[(self, keys)], now)
    }

    /// Takes back one failure charged by [`reserve`](Self::reserve) for a
    /// guess that was right, without clearing earlier failures. A block
    /// that the refunded failure alone caused is lifted.
    pub fn refund(&self, keys: &[&str]) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        for k in keys {
            if let Some(e) = map.get_mut(*k) {
                e.failures = e.failures.saturating_sub(1);
                if e.failures < self.free {
                    e.blocked_until = 0;
                }
                if e.failures == 0 {
                    map.remove(*k);
                }
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

/// [`Throttle::reserve`] over several throttles: every key of every
/// throttle is checked before any is charged, all under the throttles'
/// locks, taken in the order given (callers always pass the same order).
pub fn reserve_all(parts: &[(&Throttle, &[&str])], now: i64) -> Result<(), u64> {
    let mut guards = Vec::with_capacity(parts.len());
    for (t, _) in parts {
        match t.entries.lock() {
            Ok(g) => guards.push(g),
            // A poisoned map only means a panic elsewhere; keep throttling.
            Err(p) => guards.push(p.into_inner()),
        }
    }
    let wait = parts
        .iter()
        .zip(guards.iter())
        .flat_map(|((_, keys), map)| keys.iter().filter_map(|k| map.get(*k)))
        .map(|e| e.blocked_until - now)
        .filter(|left| *left > 0)
        .max();
    if let Some(wait) = wait {
        return Err(wait as u64);
    }
    for ((t, keys), map) in parts.iter().zip(guards.iter_mut()) {
        charge(map, t.free, keys, now);
    }
    Ok(())
}

fn charge(map: &mut HashMap<String, Entry>, free: u32, keys: &[&str], now: i64) {
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
        if e.failures >= free {
            let exp = (e.failures - free).min(20);
            e.blocked_until = now + (1i64 << exp).min(MAX_BLOCK_SECS);
        }
    }
}

/// Caps the ledger rows one source address can cause with failed guesses
/// (sign-ins, invitation codes): at most `rows` per `window` seconds; the
/// ones skipped are counted and summed up in the next row written, so an
/// unauthenticated loop cannot grow the ledger without bound.
pub struct RowQuota {
    rows: u32,
    window: i64,
    /// Per address: (window start, rows written, rows skipped).
    used: Mutex<HashMap<String, (i64, u32, u32)>>,
}

impl RowQuota {
    /// `rows` per `window` seconds per address.
    pub fn new(rows: u32, window: i64) -> Self {
        Self {
            rows,
            window,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(skipped before)` when `addr` may write a row now (and counts
    /// it), `None` when its quota is spent (and counts the skip).
    pub fn take(&self, addr: &str, now: i64) -> Option<u32> {
        let Ok(mut map) = self.used.lock() else {
            return Some(0);
        };
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, u| now - u.0 < window);
        }
        let u = map.entry(addr.to_owned()).or_insert((now, 0, 0));
        if now - u.0 >= self.window {
            u.0 = now;
            u.1 = 0;
        }
        if u.1 >= self.rows {
            u.2 = u.2.saturating_add(1);
            None
        } else {
            u.1 += 1;
            Some(std::mem::take(&mut u.2))
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
    fn address_buckets_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(address_bucket("192.168.1.20"), "192.168.1.20");
        assert_ne!(
            address_bucket("192.168.1.20"),
            address_bucket("192.168.1.21")
        );
        assert_eq!(address_bucket("::ffff:192.168.1.20"), "192.168.1.20");
        let a = address_bucket("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, address_bucket("2001:db8:1:2::1"), "one /64, one bucket");
        assert_eq!(a, address_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(
            a,
            address_bucket("2001:db8:1:3::1"),
            "the next /64 is another"
        );
        assert_ne!(a, address_bucket("2001:db9:1:2::1"));
        assert_eq!(address_bucket("fe80::1"), "fe80::/64");
        assert_eq!(address_bucket("::1"), "::/64");
        assert_eq!(address_bucket("127.0.0.1"), "127.0.0.1");
        assert_eq!(address_bucket(""), "unknown");
        assert_eq!(address_bucket("not an address"), "unknown");
        assert_eq!(full_address("::ffff:10.0.0.7"), "10.0.0.7");
        assert_eq!(full_address("2001:db8:1:2:0:0:0:1"), "2001:db8:1:2::1");
        assert_ne!(
            full_address("2001:db8:1:2::1"),
            full_address("2001:db8:1:2::2")
        );
        assert_eq!(full_address("10.0.0.7"), "10.0.0.7");
        assert_eq!(full_address("x"), "unknown");
    }

    #[test]
    fn block_is_capped() {
        let t = Throttle::new(1);
        for _ in 0..100 {
            t.fail(&["x"], 0);
        }
        assert_eq!(t.check(&["x"], 0), Some(15 * 60), "15 minutes at most");
    }

    #[test]
    fn keys_idle_for_a_day_are_forgotten_once_the_map_is_large() {
        // Times as the hub has them (Unix seconds), not from 0.
        let t0 = 1_800_000_000;
        let t = Throttle::new(1);
        for _ in 0..12 {
            t.fail(&["old"], t0);
        }
        for i in 0..10_001 {
            t.fail(&[&format!("flood-{i}")], t0);
        }
        // An hour later the map is swept, but "old" is kept: its next
        // failure still blocks for the full 15 minutes.
        t.fail(&["sweep-1"], t0 + 3_700);
        t.fail(&["old"], t0 + 3_700);
        assert_eq!(t.check(&["old"], t0 + 3_700), Some(15 * 60));
        // A day after its last failure it is forgotten: it starts again.
        let later = t0 + 3_700 + 24 * 3600;
        t.fail(&["sweep-2"], later);
        t.fail(&["old"], later);
        assert_eq!(t.check(&["old"], later), Some(1));
    }

    #[test]
    fn parallel_reservations_pass_only_the_free_ones() {
        let t = std::sync::Arc::new(Throttle::new(5));
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..60 {
                s.spawn(|| {
                    if t.reserve(&["user:mum"], 100).is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 5, "only the free guesses pass");
    }

    #[test]
    fn reserve_all_charges_nothing_when_one_is_blocked_and_refund_undoes() {
        let (a, b) = (Throttle::new(2), Throttle::new(1));
        assert_eq!(reserve_all(&[(&a, &["k"]), (&b, &["x"])], 10), Ok(()));
        assert_eq!(reserve_all(&[(&a, &["k"]), (&b, &["x"])], 10), Err(1));
        assert_eq!(
            a.check(&["k"], 10),
            None,
            "the refused guess was not charged"
        );
        b.refund(&["x"]);
        assert_eq!(b.check(&["x"], 10), None, "a right guess is refunded");
        assert_eq!(reserve_all(&[(&a, &["k"]), (&b, &["x"])], 10), Ok(()));
        assert_eq!(a.check(&["k"], 10), Some(1));
    }

    #[test]
    fn reserve_tells_the_seconds_left_and_opens_when_they_are_up() {
        let t = Throttle::new(1);
        for now in [1_000, 1_001, 1_003] {
            assert_eq!(t.reserve(&["k"], now), Ok(()));
        }
        // Three failures: blocked for 4 s from 1003.
        assert_eq!(t.reserve(&["k"], 1_003), Err(4));
        assert_eq!(t.reserve(&["k"], 1_006), Err(1));
        assert_eq!(
            t.reserve(&["k"], 1_007),
            Ok(()),
            "open at the second it ends"
        );
    }

    #[test]
    fn the_map_is_swept_only_above_ten_thousand_keys() {
        let t = Throttle::new(1);
        for _ in 0..12 {
            t.fail(&["old"], 0);
        }
        for i in 0..9_999 {
            t.fail(&[&format!("flood-{i}")], 0);
        }
        // 10 000 keys: no sweep yet, "old" keeps its failures.
        t.fail(&["old"], 2 * 24 * 3600);
        assert_eq!(t.check(&["old"], 2 * 24 * 3600), Some(15 * 60));
    }

    #[test]
    fn a_small_map_keeps_its_keys_however_old() {
        let t = Throttle::new(1);
        for _ in 0..12 {
            t.fail(&["old"], 0);
        }
        t.fail(&["other"], 7 * 24 * 3600);
        t.fail(&["old"], 7 * 24 * 3600);
        assert_eq!(t.check(&["old"], 7 * 24 * 3600), Some(15 * 60));
    }

    #[test]
    fn a_refund_lifts_a_block_the_refunded_failure_caused_and_only_that() {
        let t = Throttle::new(2);
        t.fail(&["k"], 0);
        t.fail(&["k"], 0);
        t.fail(&["k"], 0);
        assert_eq!(t.check(&["k"], 0), Some(2));
        t.refund(&["k"]);
        assert_eq!(t.check(&["k"], 0), Some(2), "two failures still block");
        t.refund(&["k"]);
        assert_eq!(t.check(&["k"], 0), None, "one failure alone does not");
        t.fail(&["k"], 0);
        assert_eq!(t.check(&["k"], 0), Some(1), "the earlier failure was kept");
    }

    #[test]
    fn row_quota_caps_rows_per_window_and_sums_the_skipped() {
        let q = RowQuota::new(3, 600);
        for _ in 0..3 {
            assert_eq!(q.take("a", 0), Some(0));
        }
        for _ in 0..50 {
            assert_eq!(q.take("a", 10), None);
        }
        assert_eq!(
            q.take("b", 10),
            Some(0),
            "another address has its own quota"
        );
        assert_eq!(q.take("a", 599), None);
        assert_eq!(
            q.take("a", 600),
            Some(51),
            "the next window sums the skipped"
        );
        assert_eq!(q.take("a", 601), Some(0));
    }

    #[test]
    fn a_row_quota_window_starts_at_its_first_row() {
        let q = RowQuota::new(1, 600);
        assert_eq!(q.take("a", 10_000), Some(0));
        assert_eq!(q.take("a", 10_599), None);
        assert_eq!(q.take("a", 10_600), Some(1));
    }

    #[test]
    fn row_quota_keeps_ten_thousand_addresses() {
        let q = RowQuota::new(1, 600);
        assert_eq!(q.take("a", 1_000), Some(0));
        assert_eq!(q.take("a", 1_000), None);
        for i in 0..9_999 {
            q.take(&format!("f{i}"), 1_000);
        }
        assert_eq!(q.take("a", 1_600), Some(1), "not swept: the skip is summed");
    }

    #[test]
    fn above_ten_thousand_addresses_spent_windows_are_forgotten() {
        let q = RowQuota::new(1, 600);
        for who in ["a", "b"] {
            assert_eq!(q.take(who, 1_000), Some(0));
            assert_eq!(q.take(who, 1_000), None);
        }
        for i in 0..10_000 {
            q.take(&format!("f{i}"), 1_000);
        }
        assert_eq!(q.take("a", 1_599), None, "a window still open is kept");
        assert_eq!(q.take("b", 1_600), Some(0), "an ended window is forgotten");
    }
}
