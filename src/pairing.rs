//! Pending pairings (`docs/toy-protocol.md` section 3): the in-memory state machine
//! shared by the toy API (request, reveal, poll) and the parents' API
//! (list, confirm, reject).
//!
//! At most 8 pairings wait at once, each for at most 10 minutes; an
//! approved or rejected pairing can still be polled for 10 minutes. Time is
//! passed in. Nothing here is persisted: a restart simply asks toys to
//! start again, while every outcome is written to the audit log by callers.
//!
//! Nobody needs credentials to ask for a pairing, so the registry also
//! keeps what one network address may do: a pending pairing is replaced
//! only by a request with the same key (another key is refused, so nobody
//! can cancel a real toy's pairing by sending its public id); one address
//! may send [`ADDR_REQUESTS`] requests per [`ADDR_WINDOW`] and hold
//! [`ADDR_OPEN`] pending pairings, so one device cannot fill every slot;
//! and it causes at most [`ADDR_AUDIT_ROWS`] audit rows per window, the
//! rest being counted and summed up in the next row, so a loop cannot fill
//! the disk. The hub's own machine (loopback) is not limited.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{DisplayName, Hex32, PairingCode, ToyId};
use crate::pki::CheckedCsr;

/// Most pairings waiting at once.
pub const MAX_PENDING: usize = 8;
/// How long a pairing waits, in seconds (`expires_in`).
pub const EXPIRES_IN: i64 = 600;
/// How long a finished pairing can still be polled, in seconds.
pub const FINISHED_TTL: i64 = 600;
/// Wrong codes before a pairing is rejected.
pub const MAX_ATTEMPTS: u8 = 3;
/// Pairing requests one address may send per window.
pub const ADDR_REQUESTS: u32 = 6;
/// Pending pairings one address may hold at once.
pub const ADDR_OPEN: usize = 2;
/// Audit rows one address may cause per window without credentials.
pub const ADDR_AUDIT_ROWS: u32 = 10;
/// The per-address window, in seconds.
pub const ADDR_WINDOW: i64 = 600;
/// Addresses remembered at most; beyond, the oldest windows are dropped.
const ADDR_REMEMBERED: usize = 4096;

/// Where a pairing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the toy's nonce.
    AwaitingReveal,
    /// Waiting for a parent to type the code.
    AwaitingConfirmation,
    /// A parent's code matched and the certificate is being issued.
    Approving,
    /// Paired: the client certificate (PEM).
    Approved {
        /// The toy's new client certificate.
        client_cert_pem: String,
    },
    /// A parent declined, or three wrong codes.
    Rejected,
}

/// A pairing request as the toy sent it, checked.
#[derive(Clone)]
pub struct Request {
    /// The toy id.
    pub toy_id: ToyId,
    /// Its display name.
    pub name: DisplayName,
    /// Model text.
    pub model: String,
    /// Its checked CSR.
    pub csr: CheckedCsr,
    /// SHA-256 of its nonce.
    pub commitment: Hex32,
}

/// One pairing.
#[derive(Clone)]
pub struct Pairing {
    /// Opaque id.
    pub id: String,
    /// What the toy asked.
    pub request: Request,
    /// Our nonce.
    pub hub_nonce: [u8; 32],
    /// The toy's nonce, once revealed.
    pub toy_nonce: Option<[u8; 32]>,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// When it was approved or rejected.
    pub finished_at: Option<i64>,
    /// Wrong codes so far.
    pub wrong_codes: u8,
    /// Where it stands.
    pub status: Status,
    /// The limiting key of the address it came from (`None`: not limited).
    pub addr: Option<String>,
}

impl Pairing {
    fn is_open(&self) -> bool {
        matches!(
            self.status,
            Status::AwaitingReveal | Status::AwaitingConfirmation | Status::Approving
        )
    }

    fn alive(&self, now: i64) -> bool {
        match self.finished_at {
            Some(t) => now < t + FINISHED_TTL,
            None => now < self.created_at + EXPIRES_IN,
        }
    }
}

/// Why a pairing step was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PairError {
    /// 429: too many pending.
    TooMany,
    /// 429: this address sent too many requests or holds too many
    /// pending pairings; seconds to wait.
    AddrLimit(u64),
    /// 409: a pending pairing for this toy id has another key.
    KeyInUse,
    /// 404: unknown or expired.
    NotFound,
    /// 409: the step does not fit the pairing's state.
    WrongState(&'static str),
    /// 422: the revealed nonce does not match the commitment (pairing discarded).
    CommitmentMismatch,
    /// 422: a wrong code; attempts left (0 means the pairing is now rejected).
    WrongCode {
        /// Attempts left.
        attempts_left: u8,
    },
}

/// What a confirmed code unlocks: the data to issue a certificate.
pub struct Approval {
    /// The pairing id.
    pub id: String,
    /// The request.
    pub request: Request,
}

/// What one address did in its current window.
#[derive(Debug, Clone, Copy)]
struct AddrUse {
    window_start: i64,
    requests: u32,
    audit_rows: u32,
    /// Audit rows skipped and not yet summed up in a written row.
    unrecorded: u32,
}

/// The limiting key of a client address: the address itself, or for IPv6
/// its /64 (one home device can take any address of its prefix). `None`
/// for loopback: the hub's own machine is not limited.
pub fn addr_key(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(a) if a.is_loopback() => None,
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) => {
            None
        }
        _ => Some(crate::auth::throttle::address_bucket(ip)),
    }
}

/// The registry of pairings.
#[derive(Default)]
pub struct Pairings {
    map: Mutex<HashMap<String, Pairing>>,
    addrs: Mutex<HashMap<String, AddrUse>>,
}

impl Pairings {
    /// Forgets every pending pairing (the hub's CA was replaced: a code
    /// shown for the old one could never match).
    pub fn clear(&self) {
        match self.map.lock() {
            Ok(mut g) => g.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }

    fn with<T>(&self, now: i64, f: impl FnOnce(&mut HashMap<String, Pairing>) -> T) -> T {
        let mut guard = match self.map.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.retain(|_, p| p.alive(now));
        f(&mut guard)
    }

    fn with_addr<T>(&self, key: &str, now: i64, f: impl FnOnce(&mut AddrUse) -> T) -> T {
        let mut guard = match self.addrs.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.len() >= ADDR_REMEMBERED {
            guard.retain(|_, u| now < u.window_start + ADDR_WINDOW);
            if guard.len() >= ADDR_REMEMBERED {
                guard.clear();
            }
        }
        let u = guard.entry(key.to_owned()).or_insert(AddrUse {
            window_start: now,
            requests: 0,
            audit_rows: 0,
            unrecorded: 0,
        });
        if now >= u.window_start + ADDR_WINDOW {
            *u = AddrUse {
                window_start: now,
                requests: 0,
                audit_rows: 0,
                unrecorded: u.unrecorded,
            };
        }
        f(u)
    }

    /// Counts a pairing request from the address with limiting key `addr`
    /// (see [`addr_key`]); `Err(seconds)` when it sent too many this window.
    /// Called before any work on the request.
    pub fn admit(&self, addr: Option<&str>, now: i64) -> Result<(), u64> {
        let Some(addr) = addr else { return Ok(()) };
        self.with_addr(addr, now, |u| {
            if u.requests >= ADDR_REQUESTS {
                Err((u.window_start + ADDR_WINDOW - now).max(1) as u64)
            } else {
                u.requests += 1;
                Ok(())
            }
        })
    }

    /// Whether an audit row caused by an unauthenticated request from `addr`
    /// may be written: `Some(n)` yes, and `n` earlier rows from this address
    /// were skipped (say so in this one); `None` skip it (it is counted).
    pub fn audit_quota(&self, addr: Option<&str>, now: i64) -> Option<u32> {
        let Some(addr) = addr else { return Some(0) };
        self.with_addr(addr, now, |u| {
            if u.audit_rows >= ADDR_AUDIT_ROWS {
                u.unrecorded = u.unrecorded.saturating_add(1);
                None
            } else {
                u.audit_rows += 1;
                Some(std::mem::take(&mut u.unrecorded))
            }
        })
    }

    /// Step 1: a new pairing, replacing a pending one for the same toy
    /// only when it has the same key. `addr` is the limiting key of the
    /// toy's address ([`addr_key`]). Returns (pairing id, hub nonce, id of a
    /// replaced pairing).
    pub fn start(
        &self,
        request: Request,
        addr: Option<String>,
        now: i64,
    ) -> Result<(String, [u8; 32], Option<String>), PairError> {
        self.with(now, |map| {
            let replaced = map
                .iter()
                .find(|(_, p)| p.is_open() && p.request.toy_id == request.toy_id)
                .map(|(k, p)| (k.clone(), p.request.csr.spki_der == request.csr.spki_der));
            let replaced = match replaced {
                Some((_, false)) => return Err(PairError::KeyInUse),
                Some((old, true)) => {
                    map.remove(&old);
                    Some(old)
                }
                None => None,
            };
            if map.values().filter(|p| p.is_open()).count() >= MAX_PENDING {
                return Err(PairError::TooMany);
            }
            if let Some(a) = &addr {
                let open_here = map
                    .values()
                    .filter(|p| p.is_open() && p.addr.as_ref() == Some(a))
                    .count();
                if open_here >= ADDR_OPEN {
                    let oldest = map
                        .values()
                        .filter(|p| p.is_open() && p.addr.as_ref() == Some(a))
                        .map(|p| p.created_at)
                        .min()
                        .unwrap_or(now);
                    return Err(PairError::AddrLimit(
                        (oldest + EXPIRES_IN - now).max(1) as u64
                    ));
                }
            }
            let id = hex::encode(rand::random::<[u8; 16]>());
            let hub_nonce = rand::random::<[u8; 32]>();
            map.insert(
                id.clone(),
                Pairing {
                    id: id.clone(),
                    request,
                    hub_nonce,
                    toy_nonce: None,
                    created_at: now,
                    finished_at: None,
                    wrong_codes: 0,
                    status: Status::AwaitingReveal,
                    addr,
                },
            );
            Ok((id, hub_nonce, replaced))
        })
    }

    /// Step 2: the toy reveals its nonce.
    pub fn reveal(&self, id: &str, toy_nonce: [u8; 32], now: i64) -> Result<(), PairError> {
        self.with(now, |map| {
            let p = map.get_mut(id).ok_or(PairError::NotFound)?;
            if p.status != Status::AwaitingReveal {
                return Err(PairError::WrongState("the nonce was already revealed"));
            }
            if Hex32::sha256(&toy_nonce) != p.request.commitment {
                map.remove(id);
                return Err(PairError::CommitmentMismatch);
            }
            p.toy_nonce = Some(toy_nonce);
            p.status = Status::AwaitingConfirmation;
            Ok(())
        })
    }

    /// Step 4: where the pairing stands.
    pub fn get(&self, id: &str, now: i64) -> Option<Pairing> {
        self.with(now, |map| map.get(id).cloned())
    }

    /// Pairings waiting for the toy or a parent, oldest first.
    pub fn pending(&self, now: i64) -> Vec<Pairing> {
        let mut v: Vec<Pairing> = self.with(now, |map| {
            map.values().filter(|p| p.is_open()).cloned().collect()
        });
        v.sort_by_key(|p| p.created_at);
        v
    }

    /// A parent types the code. The code of the pairing is computed from
    /// the CA certificate, the toy's key and both nonces, and compared in
    /// constant time. On a match the pairing becomes `Approving`.
    pub fn confirm(
        &self,
        id: &str,
        code: &PairingCode,
        ca_der: &[u8],
        now: i64,
    ) -> Result<Approval, PairError> {
        self.with(now, |map| {
            let p = map.get_mut(id).ok_or(PairError::NotFound)?;
            match p.status {
                Status::AwaitingConfirmation => {}
                Status::AwaitingReveal => {
                    return Err(PairError::WrongState(
                        "the toy has not revealed its nonce yet; wait a moment and try again",
                    ));
                }
                _ => return Err(PairError::WrongState("this pairing is already decided")),
            }
            let toy_nonce = p.toy_nonce.ok_or(PairError::WrongState("not revealed"))?;
            let expected =
                PairingCode::compute(ca_der, &p.request.csr.spki_der, &toy_nonce, &p.hub_nonce);
            if expected.ct_eq(code) {
                p.status = Status::Approving;
                Ok(Approval {
                    id: p.id.clone(),
                    request: p.request.clone(),
                })
            } else {
                p.wrong_codes += 1;
                let left = MAX_ATTEMPTS.saturating_sub(p.wrong_codes);
                if left == 0 {
                    p.status = Status::Rejected;
                    p.finished_at = Some(now);
                }
                Err(PairError::WrongCode {
                    attempts_left: left,
                })
            }
        })
    }

    /// The certificate was issued and stored: the toy may collect it.
    pub fn finish_approval(&self, id: &str, client_cert_pem: String, now: i64) {
        self.with(now, |map| {
            if let Some(p) = map.get_mut(id) {
                p.status = Status::Approved { client_cert_pem };
                p.finished_at = Some(now);
            }
        });
    }

    /// Issuing failed: the parent may try again.
    pub fn abort_approval(&self, id: &str, now: i64) {
        self.with(now, |map| {
            if let Some(p) = map.get_mut(id) {
                if p.status == Status::Approving {
                    p.status = Status::AwaitingConfirmation;
                }
            }
        });
    }

    /// A parent declines. Returns the toy id when the pairing was open.
    pub fn reject(&self, id: &str, now: i64) -> Result<ToyId, PairError> {
        self.with(now, |map| {
            let p = map.get_mut(id).ok_or(PairError::NotFound)?;
            if !matches!(
                p.status,
                Status::AwaitingReveal | Status::AwaitingConfirmation
            ) {
                return Err(PairError::WrongState("this pairing is already decided"));
            }
            p.status = Status::Rejected;
            p.finished_at = Some(now);
            Ok(p.request.toy_id.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, nonce: [u8; 32]) -> Request {
        let (_, csr) = crate::pki::make_toy_key_and_csr(id).expect("csr");
        Request {
            toy_id: ToyId::parse(id).expect("id"),
            name: DisplayName::parse("Bear").expect("name"),
            model: "test".into(),
            csr: crate::pki::check_csr(&csr).expect("csr ok"),
            commitment: Hex32::sha256(&nonce),
        }
    }

    #[test]
    fn full_flow_and_wrong_codes() {
        let ps = Pairings::default();
        let ca = b"ca-der";
        let (id, hub, _) = ps.start(request("bear", [7; 32]), None, 0).expect("start");
        assert!(matches!(
            ps.confirm(&id, &PairingCode::parse("000000").expect("c"), ca, 1),
            Err(PairError::WrongState(_))
        ));
        ps.reveal(&id, [7; 32], 1).expect("reveal");
        assert!(
            matches!(ps.reveal(&id, [7; 32], 1), Err(PairError::WrongState(_))),
            "second reveal is 409"
        );
        let p = ps.get(&id, 2).expect("exists");
        let right = PairingCode::compute(ca, &p.request.csr.spki_der, &[7; 32], &hub);
        let wrong = PairingCode::parse(if right.as_str() == "000000" {
            "000001"
        } else {
            "000000"
        })
        .expect("c");
        assert_eq!(
            ps.confirm(&id, &wrong, ca, 2).err(),
            Some(PairError::WrongCode { attempts_left: 2 })
        );
        assert!(ps.confirm(&id, &right, ca, 3).is_ok());
        ps.finish_approval(&id, "PEM".into(), 3);
        assert!(matches!(
            ps.get(&id, 4).expect("exists").status,
            Status::Approved { .. }
        ));
        assert!(
            ps.get(&id, 3 + FINISHED_TTL).is_none(),
            "finished pairings are forgotten after 10 minutes"
        );
    }

    #[test]
    fn three_wrong_codes_reject() {
        let ps = Pairings::default();
        let (id, _, _) = ps.start(request("bear", [1; 32]), None, 0).expect("start");
        ps.reveal(&id, [1; 32], 0).expect("reveal");
        let mut lefts = Vec::new();
        for _ in 0..3 {
            // "999999" is wrong unless by a one-in-a-million chance.
            if let Err(PairError::WrongCode { attempts_left }) =
                ps.confirm(&id, &PairingCode::parse("999999").expect("c"), b"ca", 1)
            {
                lefts.push(attempts_left);
            }
        }
        assert_eq!(lefts, vec![2, 1, 0]);
        assert_eq!(ps.get(&id, 1).expect("exists").status, Status::Rejected);
    }

    #[test]
    fn mismatch_discards_and_expiry_and_limits() {
        let ps = Pairings::default();
        let (id, _, _) = ps.start(request("bear", [1; 32]), None, 0).expect("start");
        assert_eq!(
            ps.reveal(&id, [2; 32], 0),
            Err(PairError::CommitmentMismatch)
        );
        assert!(ps.get(&id, 0).is_none());
        let (id, _, _) = ps.start(request("bear", [1; 32]), None, 0).expect("start");
        assert!(ps.get(&id, EXPIRES_IN - 1).is_some());
        assert!(ps.get(&id, EXPIRES_IN).is_none(), "expired");
        let mut first = None;
        for i in 0..MAX_PENDING {
            let r = request(&format!("t{i}"), [1; 32]);
            first.get_or_insert_with(|| r.clone());
            ps.start(r, None, 1000).expect("room");
        }
        assert_eq!(
            ps.start(request("one-more", [1; 32]), None, 1000).err(),
            Some(PairError::TooMany)
        );
        // Replacing a toy's own pending pairing is allowed even when full.
        let t0 = request_with_key("t0", first.as_ref().expect("t0"));
        let (new_id, _, old) = ps.start(t0, None, 1000).expect("replace");
        assert!(old.is_some());
        assert!(ps.get(&old.expect("old"), 1000).is_none());
        assert!(ps.get(&new_id, 1000).is_some());
    }

    fn request_with_key(id: &str, key_of: &Request) -> Request {
        let mut r = request(id, [3; 32]);
        r.csr = key_of.csr.clone();
        r
    }

    #[test]
    fn another_key_never_replaces_a_pending_pairing() {
        let ps = Pairings::default();
        let real = request("bear", [1; 32]);
        let (id, _, _) = ps.start(real.clone(), None, 0).expect("start");
        assert_eq!(
            ps.start(request("bear", [2; 32]), None, 1).err(),
            Some(PairError::KeyInUse),
            "another key is refused"
        );
        assert!(ps.get(&id, 1).is_some(), "the real pairing lives on");
        let (new_id, _, old) = ps
            .start(request_with_key("bear", &real), None, 2)
            .expect("the same key replaces");
        assert_eq!(old.as_deref(), Some(id.as_str()));
        assert!(ps.get(&id, 2).is_none());
        ps.reject(&new_id, 3).expect("reject");
        assert!(
            ps.start(request("bear", [2; 32]), None, 4).is_ok(),
            "after a rejection another key may try"
        );
    }

    #[test]
    fn remembered_addresses_are_bounded_and_only_expired_ones_forgotten() {
        // Found by cargo-mutants: nothing exercised the eviction.
        // (At capacity every call evicts, so the recent address spends its
        // window first and the map is filled last.)
        let ps = Pairings::default();
        for _ in 0..ADDR_REQUESTS {
            assert_eq!(ps.admit(Some("recent"), 10 + ADDR_WINDOW - 1), Ok(()));
        }
        for n in 0..ADDR_REMEMBERED - 1 {
            assert_eq!(ps.admit(Some(&format!("old{n}")), 10), Ok(()));
        }
        let remembered = || ps.addrs.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(remembered(), ADDR_REMEMBERED);
        // The old windows end exactly now: they are forgotten, the recent
        // address (and its spent window) is kept.
        assert_eq!(ps.admit(Some("new"), 10 + ADDR_WINDOW), Ok(()));
        assert_eq!(remembered(), 2, "only the expired addresses went");
        assert!(
            ps.admit(Some("recent"), 10 + ADDR_WINDOW).is_err(),
            "the recent address is still limited"
        );
        // A map full of live windows is cleared rather than grown.
        let full = Pairings::default();
        for n in 0..ADDR_REMEMBERED {
            assert_eq!(full.admit(Some(&format!("a{n}")), 10), Ok(()));
        }
        assert_eq!(full.admit(Some("b"), 11), Ok(()));
        assert_eq!(full.addrs.lock().map(|m| m.len()).unwrap_or(0), 1);
    }

    #[test]
    fn one_address_is_limited_in_requests_open_pairings_and_audit_rows() {
        let ps = Pairings::default();
        let a = addr_key("192.168.1.50");
        assert_eq!(addr_key("127.0.0.1"), None, "loopback is not limited");
        assert_eq!(addr_key("::ffff:127.0.0.1"), None);
        assert_eq!(
            addr_key("2001:db8:1:2:aaaa::1"),
            addr_key("2001:db8:1:2:bbbb::2"),
            "one IPv6 /64 is one address"
        );
        // Limited at all (a mutant exempting every IPv6 address survived
        // the comparison above, None == None).
        assert_eq!(
            addr_key("2001:db8:1:2:aaaa::1").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(addr_key("::1"), None);
        assert_eq!(addr_key("::ffff:10.0.0.9").as_deref(), Some("10.0.0.9"));
        for i in 0..ADDR_OPEN {
            assert_eq!(ps.admit(a.as_deref(), 0), Ok(()));
            ps.start(request(&format!("junk{i}"), [1; 32]), a.clone(), 0)
                .expect("room");
        }
        assert_eq!(ps.admit(a.as_deref(), 0), Ok(()));
        assert_eq!(
            ps.start(request("junk-more", [1; 32]), a.clone(), 10).err(),
            Some(PairError::AddrLimit((EXPIRES_IN - 10) as u64)),
            "one address holds at most ADDR_OPEN pending pairings"
        );
        let other = addr_key("192.168.1.51");
        assert!(ps.start(request("real", [1; 32]), other, 10).is_ok());
        // The wait names the end of this address's own oldest pairing, not
        // another address's (a mutant widening the filter survived).
        let c = addr_key("192.168.1.52");
        for i in 0..ADDR_OPEN {
            ps.start(request(&format!("c{i}"), [1; 32]), c.clone(), 50)
                .expect("room");
        }
        assert_eq!(
            ps.start(request("c-more", [1; 32]), c.clone(), 60).err(),
            Some(PairError::AddrLimit((EXPIRES_IN - 10) as u64))
        );
        for _ in (ADDR_OPEN as u32 + 1)..ADDR_REQUESTS {
            assert_eq!(ps.admit(a.as_deref(), 20), Ok(()));
        }
        assert_eq!(ps.admit(a.as_deref(), 20), Err((ADDR_WINDOW - 20) as u64));
        assert_eq!(ps.admit(a.as_deref(), ADDR_WINDOW), Ok(()), "a new window");
        assert_eq!(ps.admit(None, 0), Ok(()));
        // Audit rows: ADDR_AUDIT_ROWS, then skipped and counted, then summed up.
        let b = addr_key("10.0.0.9");
        for _ in 0..ADDR_AUDIT_ROWS {
            assert_eq!(ps.audit_quota(b.as_deref(), 0), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(ps.audit_quota(b.as_deref(), 1), None);
        }
        assert_eq!(ps.audit_quota(b.as_deref(), ADDR_WINDOW), Some(500));
        assert_eq!(ps.audit_quota(b.as_deref(), ADDR_WINDOW), Some(0));
    }

    #[test]
    fn pending_lists_open_pairings_oldest_first_and_a_failed_issue_reopens_confirmation() {
        // Found by cargo-mutants: nothing called `pending` or
        // `abort_approval`, and confirming before the reveal was matched as
        // any `WrongState`, so the "already decided" answer also passed.
        let ps = Pairings::default();
        let ca = b"ca-der";
        let (late, _, _) = ps.start(request("late", [5; 32]), None, 20).expect("start");
        let (early, hub, _) = ps
            .start(request("early", [6; 32]), None, 10)
            .expect("start");
        let (gone, _, _) = ps.start(request("gone", [7; 32]), None, 15).expect("start");
        ps.reject(&gone, 21).expect("reject");
        let ids: Vec<String> = ps.pending(22).into_iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            vec![early.clone(), late.clone()],
            "open ones, oldest first"
        );
        assert_eq!(
            ps.confirm(&early, &PairingCode::parse("000000").expect("c"), ca, 22)
                .err(),
            Some(PairError::WrongState(
                "the toy has not revealed its nonce yet; wait a moment and try again"
            ))
        );
        ps.reveal(&early, [6; 32], 23).expect("reveal");
        let p = ps.get(&early, 23).expect("exists");
        let right = PairingCode::compute(ca, &p.request.csr.spki_der, &[6; 32], &hub);
        ps.confirm(&early, &right, ca, 24).expect("approving");
        assert_eq!(
            ps.get(&early, 24).expect("exists").status,
            Status::Approving
        );
        // Issuing failed: the parent may type the code again.
        ps.abort_approval(&early, 25);
        assert_eq!(
            ps.get(&early, 25).expect("exists").status,
            Status::AwaitingConfirmation
        );
        // Only an approving pairing goes back; others stay where they are.
        ps.abort_approval(&late, 25);
        assert_eq!(
            ps.get(&late, 25).expect("exists").status,
            Status::AwaitingReveal
        );
        assert!(ps.confirm(&early, &right, ca, 26).is_ok());
    }
}
