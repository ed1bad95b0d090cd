//! Connection limits that keep one device on the LAN from starving the
//! others: a cap per client address on open connections and on TLS
//! handshakes in progress, checked the moment a connection is accepted
//! (before any TLS work), and the timeouts and sizes the listener uses.
//!
//! actix counts handshakes and connections per worker, not per client: a
//! flood of idle sockets or stalled handshakes from one address filled its
//! slots and locked parents and toys out for seconds (issue 9). Here a
//! connection over its address's cap is closed at once, so junk costs the
//! hub one accept and one close.
//!
//! The cap is per full address, not per IPv6 /64: every device of a home
//! shares its /64, so a /64 cap would let one device lock out the rest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Open connections one address may hold: a browser opens about six, an
/// event stream and a long-poll add one each; a toy needs two.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;
/// TLS handshakes one address may have in progress.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 8;
/// Handshakes in progress per worker, all addresses together (actix's
/// default is 256): a Pi Zero 2 W does a few hundred P-256 handshakes a
/// second, so more in flight only queues work.
pub const MAX_HANDSHAKES_PER_WORKER: usize = 64;
/// Open connections per worker; with two workers, well under the unit's
/// `LimitNOFILE=8192` (1000 toys hold one or two each).
pub const MAX_CONNECTIONS_PER_WORKER: usize = 3000;
/// Threads each worker may run blocking work on (SQLite, audio, files, a
/// download being written). tokio's default, 512 shared by the workers, let
/// 1000 toys polling at once start hundreds of threads that each waited on
/// the single SQLite writer or opened a reader of its own, and stayed for
/// 10 s with their stacks and malloc arenas (BENCHMARKS.md (o)). SQLite
/// writes one at a time and a Pi has four cores, so more threads only
/// wait; sixteen leave room for downloads, which hold one each while the
/// client reads.
pub const BLOCKING_THREADS_PER_WORKER: usize = 16;
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// The request head must arrive within this after the connection opens.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle keep-alive connection stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Counts per client address; shared by all workers.
#[derive(Clone, Default)]
pub struct ConnLimits {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, PerIp>,
    handshaking: std::collections::HashSet<SocketAddr>,
}

#[derive(Default, Clone, Copy)]
struct PerIp {
    open: usize,
    handshaking: usize,
}

impl ConnLimits {
    /// Admits a new connection from `peer`, or `None` when its address is
    /// over a cap. The connection counts as open, and as handshaking until
    /// [`ConnLimits::handshake_done`], for as long as the admission lives.
    pub fn admit(&self, peer: Option<SocketAddr>) -> Option<Admission> {
        let Some(peer) = peer else {
            // No peer address (never seen on TCP): nothing to key on.
            return Some(Admission {
                limits: None,
                peer: None,
            });
        };
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let e = c.per_ip.entry(peer.ip()).or_default();
        if e.open >= MAX_CONNECTIONS_PER_ADDRESS || e.handshaking >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        e.open += 1;
        e.handshaking += 1;
        c.handshaking.insert(peer);
        Some(Admission {
            limits: Some(self.clone()),
            peer: Some(peer),
        })
    }

    /// The TLS handshake of the connection from `peer` finished.
    pub fn handshake_done(&self, peer: SocketAddr) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if c.handshaking.remove(&peer) {
            if let Some(e) = c.per_ip.get_mut(&peer.ip()) {
                e.handshaking = e.handshaking.saturating_sub(1);
            }
        }
    }

    /// (open, handshaking) for `ip`; for tests and diagnostics.
    pub fn counts(&self, ip: IpAddr) -> (usize, usize) {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.per_ip
            .get(&ip)
            .map(|e| (e.open, e.handshaking))
            .unwrap_or_default()
    }

    fn release(&self, peer: SocketAddr) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let was_handshaking = c.handshaking.remove(&peer);
        if let Some(e) = c.per_ip.get_mut(&peer.ip()) {
            e.open = e.open.saturating_sub(1);
            if was_handshaking {
                e.handshaking = e.handshaking.saturating_sub(1);
            }
            if e.open == 0 {
                c.per_ip.remove(&peer.ip());
            }
        }
    }
}

/// A connection's place under its address's caps; released on drop.
pub struct Admission {
    limits: Option<ConnLimits>,
    peer: Option<SocketAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (Some(l), Some(p)) = (&self.limits, self.peer) {
            l.release(p);
        }
    }
}

/// The answer to a request that sent `Expect: 100-continue`, before actix
/// writes `100 Continue`: a declared `Content-Length` over `limit` (the
/// endpoint's body limit) is `413 payload_too_large` at once, with
/// `Connection: close`, so the client is never invited to send a body the
/// hub would refuse. `None`: go on (actix then writes `100 Continue`).
pub fn refuse_expected_body(
    req: &actix_http::Request,
    limit: usize,
) -> Option<actix_http::Response<actix_web::body::BoxBody>> {
    use actix_http::HttpMessage as _;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    if declared <= limit as u64 {
        return None;
    }
    let err = crate::error::Error::too_large(format!(
        "the body is larger than the {} allowed here",
        super::human_size(limit)
    ));
    let mut res: actix_http::Response<actix_web::body::BoxBody> = err.to_json_response().into();
    res.head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn caps_are_per_address_and_released_on_drop() {
        let l = ConnLimits::default();
        let mut held = Vec::new();
        for port in 0..MAX_HANDSHAKES_PER_ADDRESS {
            held.push(
                l.admit(Some(addr(&format!("10.0.0.9:{}", 1000 + port))))
                    .expect("admit"),
            );
        }
        // The ninth handshake from the same address is refused, another
        // address is not affected.
        assert!(l.admit(Some(addr("10.0.0.9:2000"))).is_none());
        assert!(l.admit(Some(addr("10.0.0.10:2000"))).is_some());
        // Finished handshakes free handshake slots but stay open.
        for port in 0..MAX_HANDSHAKES_PER_ADDRESS {
            l.handshake_done(addr(&format!("10.0.0.9:{}", 1000 + port)));
        }
        assert_eq!(l.counts("10.0.0.9".parse().expect("ip")), (8, 0));
        for port in 0..(MAX_CONNECTIONS_PER_ADDRESS - MAX_HANDSHAKES_PER_ADDRESS) {
            let a = addr(&format!("10.0.0.9:{}", 3000 + port));
            held.push(l.admit(Some(a)).expect("admit"));
            l.handshake_done(a);
        }
        assert!(l.admit(Some(addr("10.0.0.9:4000"))).is_none(), "open cap");
        held.pop();
        assert!(
            l.admit(Some(addr("10.0.0.9:4001"))).is_some(),
            "released on drop"
        );
        drop(held);
        assert_eq!(l.counts("10.0.0.9".parse().expect("ip")), (0, 0));
    }
}
