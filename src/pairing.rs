//! Pending pairings (`docs/toy-protocol.md` section 3): the in-memory state machine
//! shared by the toy API (request, reveal, poll) and the parents' API
//! (list, confirm, reject).
//!
//! At most 8 pairings wait at once, each for at most 10 minutes; an
//! approved or rejected pairing can still be polled for 10 minutes. Time is
//! passed in. Nothing here is persisted: a restart simply asks toys to
//! start again, while every outcome is written to the audit log by callers.

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

/// The registry of pairings.
#[derive(Default)]
pub struct Pairings {
    map: Mutex<HashMap<String, Pairing>>,
}

impl Pairings {
    fn with<T>(&self, now: i64, f: impl FnOnce(&mut HashMap<String, Pairing>) -> T) -> T {
        let mut guard = match self.map.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.retain(|_, p| p.alive(now));
        f(&mut guard)
    }

    /// Step 1: a new pairing, replacing any pending one for the same toy.
    /// Returns (pairing id, hub nonce, id of a replaced pairing).
    pub fn start(
        &self,
        request: Request,
        now: i64,
    ) -> Result<(String, [u8; 32], Option<String>), PairError> {
        self.with(now, |map| {
            let replaced = map
                .iter()
                .find(|(_, p)| p.is_open() && p.request.toy_id == request.toy_id)
                .map(|(k, _)| k.clone());
            if let Some(old) = &replaced {
                map.remove(old);
            }
            if map.values().filter(|p| p.is_open()).count() >= MAX_PENDING {
                return Err(PairError::TooMany);
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
        let (id, hub, _) = ps.start(request("bear", [7; 32]), 0).expect("start");
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
        let (id, _, _) = ps.start(request("bear", [1; 32]), 0).expect("start");
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
        let (id, _, _) = ps.start(request("bear", [1; 32]), 0).expect("start");
        assert_eq!(
            ps.reveal(&id, [2; 32], 0),
            Err(PairError::CommitmentMismatch)
        );
        assert!(ps.get(&id, 0).is_none());
        let (id, _, _) = ps.start(request("bear", [1; 32]), 0).expect("start");
        assert!(ps.get(&id, EXPIRES_IN - 1).is_some());
        assert!(ps.get(&id, EXPIRES_IN).is_none(), "expired");
        for i in 0..MAX_PENDING {
            ps.start(request(&format!("t{i}"), [1; 32]), 1000)
                .expect("room");
        }
        assert_eq!(
            ps.start(request("one-more", [1; 32]), 1000).err(),
            Some(PairError::TooMany)
        );
        // Replacing a toy's own pending pairing is allowed even when full.
        let (new_id, _, old) = ps.start(request("t0", [1; 32]), 1000).expect("replace");
        assert!(old.is_some());
        assert!(ps.get(&old.expect("old"), 1000).is_none());
        assert!(ps.get(&new_id, 1000).is_some());
    }
}
