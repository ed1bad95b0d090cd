//! The services every request handler shares (store, certificates,
//! notifier, pairings, throttles, clock, configuration), built once by
//! `app` and handed to `web` and `toy_api` as actix app data.

use std::sync::{Arc, Mutex};

use crate::auth::throttle::Throttle;
use crate::clock::Clock;
use crate::config::Config;
use crate::discovery::Discovery;
use crate::events::Events;
use crate::pairing::Pairings;
use crate::pki::HubPki;
use crate::store::Store;

/// Shared services.
pub struct AppState {
    /// The checked configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Certificates and keys.
    pub pki: Arc<HubPki>,
    /// The clock (a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// Notifications for pages and toys.
    pub events: Events,
    /// Pairings in progress.
    pub pairings: Pairings,
    /// Login throttle per account (5 free failures).
    pub login_account_throttle: Throttle,
    /// Login throttle per source address (20 free failures: a family shares one).
    pub login_addr_throttle: Throttle,
    /// Setup-code throttle (every wrong code blocks, growing).
    pub setup_throttle: Throttle,
    /// The setup code while setup is not done.
    pub setup_code: Mutex<Option<String>>,
    /// mDNS, when on.
    pub discovery: Option<Discovery>,
}

impl AppState {
    /// Now, as Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }
}
