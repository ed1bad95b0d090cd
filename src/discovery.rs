//! Placeholder until the discovery branch lands (mDNS advertise/browse).

use crate::domain::{Hex32, ToyId};

/// Options.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    /// Interfaces.
    pub interfaces: Vec<String>,
}

/// Hub advert.
pub struct HubAdvert {
    /// Instance.
    pub instance: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// CA hash.
    pub ca_sha256: Hex32,
}

/// A toy seen.
#[derive(Clone, Debug)]
pub struct SeenToy {
    /// Id.
    pub toy_id: ToyId,
    /// Name.
    pub name: String,
    /// Model.
    pub model: String,
    /// Key hash.
    pub fp: Hex32,
    /// Paired flag.
    pub paired: bool,
}

/// Events.
#[derive(Clone, Debug)]
pub enum DiscoveryEvent {
    /// New.
    Appeared(SeenToy),
    /// Changed.
    Updated(SeenToy),
    /// Gone.
    Gone(ToyId),
}

/// Error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DiscoveryError(String);

/// Discovery.
#[derive(Clone)]
pub struct Discovery {
    tx: tokio::sync::broadcast::Sender<DiscoveryEvent>,
}

impl Discovery {
    /// Start.
    pub fn start(_a: HubAdvert, _o: &DiscoveryOptions) -> Result<Discovery, DiscoveryError> {
        Ok(Self { tx: tokio::sync::broadcast::channel(16).0 })
    }
    /// Rename.
    pub fn rename(&self, _i: &str) -> Result<(), DiscoveryError> {
        Ok(())
    }
    /// Seen.
    pub fn seen(&self) -> Vec<SeenToy> {
        Vec::new()
    }
    /// Up.
    pub fn is_up(&self, _t: &ToyId) -> bool {
        false
    }
    /// Subscribe.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DiscoveryEvent> {
        self.tx.subscribe()
    }
    /// Stop.
    pub fn shutdown(&self) {}
}
