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

#[cfg(test)]
impl AppState {
    /// A hub's services on a fresh data directory, without listeners or
    /// mDNS: for the use cases' unit tests (a real SQLite file and real
    /// certificates, the clock the test moves).
    pub(crate) fn for_tests(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Self {
        let mut config = Config::development_defaults();
        config.data_dir = dir.to_path_buf();
        config.mdns.enabled = false;
        crate::datadir::DataDir::new(dir)
            .prepare()
            .expect("a data directory");
        let store = Store::open(dir).expect("a database");
        let pki = HubPki::load_or_create(dir, &["hearth.local".into()], clock.now())
            .expect("certificates");
        Self {
            config,
            store,
            pki: Arc::new(pki),
            clock,
            events: Events::new(),
            pairings: Pairings::default(),
            accounts: Accounts::new(None),
            discovery: None,
            mqtt: crate::mqtt::Link::default(),
        }
    }
}
