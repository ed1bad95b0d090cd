//! The reference toy's client logic: its state on disk ([`ToyState`]), the
//! TLS it speaks ([`tls`]), pairing ([`pair()`]), the paired toy API
//! ([`ToyClient`]) and the message loop the `hearth-toy` binary runs
//! ([`agent`]). Tests drive the same code directly.
//!
//! Everything here treats what comes from the network as untrusted: answers
//! are size-capped, parsed into types and checked; nothing panics on them.
//!
//! **Architecture Invariant:** this module talks to the hub only through the
//! toy protocol (`docs/toy-protocol.md`); it never reaches into the hub's own modules
//! (`store`, `web`, `toy_api`), so it stays a faithful example for firmware
//! authors.

pub mod agent;
mod client;
mod pair;
mod state;
pub mod tls;

use std::fmt;

pub use client::{HubAddress, InboxMessage, Recording, Retry, ToyClient, WhoAmI, sniff_audio};
pub use pair::{CodeReady, PairOptions, pair};
pub use state::{Credentials, ToyState};

/// What went wrong talking to the hub, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ToyError {
    /// The hub does not accept this toy's certificate (`401` or a TLS
    /// alert), or the toy holds none.
    #[error("this toy is not paired with the hub: {0}; pair it again (hearth-toy --repair)")]
    NotPaired(String),
    /// A parent removed the toy (`403`).
    #[error("this toy was removed from the hub by a parent: pair it again (hearth-toy --repair)")]
    Removed,
    /// The hub's certificate does not chain to the CA pinned at pairing or
    /// does not cover the expected name.
    #[error(
        "the hub's certificate is not valid for this toy ({0}); if the hub was reinstalled, pair \
         again with --repair; if its name differs, pass --hub-name"
    )]
    HubIdentity(String),
    /// The hub could not be reached, or the connection broke (retryable).
    #[error("cannot reach the hub: {0}; check that the hub is running and on the same network")]
    Network(String),
    /// The hub answered with an error body.
    #[error("the hub refused the request ({status} {code}): {message}")]
    Hub {
        /// HTTP status.
        status: u16,
        /// The `error.code` of the body (or `http_<status>` when there was none).
        code: String,
        /// The `error.message` of the body.
        message: String,
    },
    /// The hub's answer breaks the protocol.
    #[error("the hub's answer does not follow the toy protocol: {0}")]
    Protocol(String),
    /// Pairing stopped.
    #[error("pairing failed: {0}")]
    Pairing(PairingFailure),
    /// The toy's own files or configuration.
    #[error("{0}")]
    Local(String),
}

/// Why pairing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingFailure {
    /// The CA of step 1 does not match the TXT `ca` of the mDNS record.
    CaMismatch,
    /// The CA of step 4 is not the one of step 1.
    CaChanged,
    /// The client certificate is not signed by the CA for the toy's key.
    BadClientCertificate(String),
    /// A parent declined, or three wrong codes.
    Rejected,
    /// The pairing expired or was replaced (`404`).
    Expired,
    /// The hub already has a paired toy with this id (`409`).
    AlreadyPaired,
    /// No parent confirmed in time.
    TimedOut,
}

impl fmt::Display for PairingFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaMismatch => f.write_str(
                "the hub's CA certificate does not match the one it advertises by mDNS (TXT ca); \
                 something on the network may be impersonating the hub, so the toy stopped",
            ),
            Self::CaChanged => f.write_str(
                "the hub sent a different CA certificate at the end of pairing than at the start; \
                 the toy stopped",
            ),
            Self::BadClientCertificate(why) => write!(
                f,
                "the certificate the hub issued is not valid for this toy ({why}); the toy stopped"
            ),
            Self::Rejected => f.write_str(
                "a parent declined the pairing, or the code was typed wrong three times; start again",
            ),
            Self::Expired => f.write_str("the pairing expired or was replaced; start again"),
            Self::AlreadyPaired => f.write_str(
                "the hub already has a paired toy with this id; a parent must remove it on the \
                 Toys page first",
            ),
            Self::TimedOut => f.write_str("no parent confirmed the code in time; start again"),
        }
    }
}

impl ToyError {
    /// True when trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Hub { status, .. } => *status == 429 || *status == 503,
            _ => false,
        }
    }
}
