//! The services every request handler shares (store, certificates,
//! notifier, pairings, accounts, clock, configuration), built once
//! at start and handed to the surfaces and the use cases they call.

use std::sync::Arc;

use crate::accounts::Accounts;
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
    /// Guess throttles and the setup code.
    pub accounts: Accounts,
    /// mDNS, when on.
    pub discovery: Option<Discovery>,
    /// The MQTT publisher's status (`mqtt::run`).
    pub mqtt: crate::mqtt::Link,
}

impl AppState {
    /// Now, as Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }
}
