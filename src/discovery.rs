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

/// Port advertised by a toy that listens on none.
pub const NO_PORT: u16 = 9;

/// A hub found on the network (stand-in; the discovery branch has the real one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRecord {
    /// Instance.
    pub instance: String,
    /// SRV target without its trailing dot.
    pub host: String,
    /// Addresses.
    pub addrs: Vec<std::net::IpAddr>,
    /// Port.
    pub port: u16,
    /// TXT `api`.
    pub api: String,
    /// TXT `ca`.
    pub ca_sha256: Hex32,
}

/// What a toy advertises (stand-in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToyAdvert {
    /// Instance.
    pub instance: String,
    /// Id.
    pub toy_id: ToyId,
    /// Model.
    pub model: String,
    /// Key hash.
    pub fp: Hex32,
    /// Paired flag.
    pub paired: bool,
    /// Port.
    pub port: u16,
}

/// A toy's advertisement (stand-in: advertises nothing).
pub struct ToyAdvertiser;

impl ToyAdvertiser {
    /// Start.
    pub fn start(_advert: ToyAdvert, _opts: &DiscoveryOptions) -> Result<Self, DiscoveryError> {
        Ok(Self)
    }
    /// Paired flag.
    pub fn set_paired(&self, _paired: bool) -> Result<(), DiscoveryError> {
        Ok(())
    }
    /// Stop.
    pub fn shutdown(&self) {}
}

/// Browse for a hub (stand-in: finds none).
pub async fn find_hub(_opts: &DiscoveryOptions, timeout: std::time::Duration) -> Result<HubRecord, DiscoveryError> {
    tokio::time::sleep(timeout).await;
    Err(DiscoveryError(format!("no Hearth hub answered within {} s (mDNS stand-in)", timeout.as_secs())))
}
