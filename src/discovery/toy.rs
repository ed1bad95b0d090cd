//! The toy side of discovery: advertise `_hearth-toy._tcp` and find the hub
//! by browsing `_hearth._tcp`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};

use crate::domain::{Invalid, ToyId};

use super::txt::{MAX_MODEL_BYTES, parse_hub_txt, raw_entries, toy_txt};
use super::{
    DiscoveryError, DiscoveryOptions, HUB_SERVICE_TYPE, HubRecord, TOY_SERVICE_TYPE, ToyAdvert,
    instance_from_fullname, instance_name, new_daemon, service_info,
};

/// How long [`ToyAdvertiser::shutdown`] waits for the goodbye packets.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// How long [`find_hub`] waits for an IPv4 address once it has found a hub
/// record carrying only IPv6 ones.
const ADDR_GRACE: Duration = Duration::from_secs(1);

/// A toy's advertisement; it stays on the network until
/// [`ToyAdvertiser::shutdown`] or until the value is dropped.
pub struct ToyAdvertiser {
    daemon: ServiceDaemon,
    opts: DiscoveryOptions,
    advert: Mutex<Current>,
    stopped: AtomicBool,
}

struct Current {
    advert: ToyAdvert,
    instance: String,
    host: String,
}

impl ToyAdvertiser {
    /// Starts advertising `advert`. The toy's mDNS host name is derived from
    /// its id (`hearth-toy-<id>.local`) and carries the addresses of the
    /// selected interfaces.
    pub fn start(advert: ToyAdvert, opts: &DiscoveryOptions) -> Result<Self, DiscoveryError> {
        if advert.model.len() > MAX_MODEL_BYTES {
            return Err(Invalid(format!(
                "a toy model must be at most {MAX_MODEL_BYTES} bytes long"
            ))
            .into());
        }
        let instance = instance_name(&advert.instance)?;
        let host = toy_host(&advert.toy_id);
        let current = Current {
            advert,
            instance,
            host,
        };
        let info = current.service_info(opts)?;
        let daemon = new_daemon(opts)?;
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
        tracing::info!(instance = %current.instance, toy_id = %current.advert.toy_id, "advertising the toy by mDNS");
        Ok(Self {
            daemon,
            opts: opts.clone(),
            advert: Mutex::new(current),
            stopped: AtomicBool::new(false),
        })
    }

    /// Re-announces the record with a new `paired` value (same name, so
    /// browsers see an update rather than a new toy).
    pub fn set_paired(&self, paired: bool) -> Result<(), DiscoveryError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        let mut current = self.advert.lock().unwrap_or_else(PoisonError::into_inner);
        if current.advert.paired == paired {
            return Ok(());
        }
        current.advert.paired = paired;
        let info = current.service_info(&self.opts)?;
        self.daemon.register(info)?;
        Ok(())
    }

    /// Withdraws the record (goodbye packets) and stops the daemon.
    /// Idempotent; waits up to two seconds for the goodbyes to be sent.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        match self.daemon.shutdown() {
            Ok(status) => {
                let _ = status.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => tracing::debug!("mDNS daemon already stopped: {e}"),
        }
    }
}

impl Drop for ToyAdvertiser {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let _ = self.daemon.shutdown();
        }
    }
}

impl Current {
    fn service_info(
        &self,
        opts: &DiscoveryOptions,
    ) -> Result<mdns_sd::ServiceInfo, DiscoveryError> {
        let a = &self.advert;
        let txt = toy_txt(&a.toy_id, &a.model, &a.fp, a.paired);
        service_info(
            TOY_SERVICE_TYPE,
            &self.instance,
            &self.host,
            a.port,
            &txt,
            opts,
        )
    }
}

/// `hearth-toy-<id>.local.`, with characters a host label cannot hold
/// (`.`, `_`) turned into `-` and the label cut to 63 bytes.
fn toy_host(id: &ToyId) -> String {
    let mut label: String = format!("hearth-toy-{id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    label.truncate(63);
    let label = label.trim_end_matches('-');
    format!("{label}.local.")
}

/// Browses `_hearth._tcp` until a valid hub record with at least one address
/// is found, or `timeout` passes ([`DiscoveryError::HubNotFound`]). Invalid
/// records are logged at debug level and skipped. When the first record has
/// only IPv6 addresses, it waits up to one more second for an IPv4 one. With
/// several hubs on the network, the first one resolved wins. Needs a tokio runtime with
/// the time driver enabled.
pub async fn find_hub(
    opts: &DiscoveryOptions,
    timeout: Duration,
) -> Result<HubRecord, DiscoveryError> {
    let daemon = new_daemon(opts)?;
    let result = browse_for_hub(&daemon, timeout).await;
    // Nothing is registered, so there is nothing to wait for.
    let _ = daemon.shutdown();
    result
}

async fn browse_for_hub(
    daemon: &ServiceDaemon,
    timeout: Duration,
) -> Result<HubRecord, DiscoveryError> {
    let browse = daemon.browse(HUB_SERVICE_TYPE)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut found: Option<(String, HubRecord)> = None;
    loop {
        // Once a hub is found, wait only a little longer for its IPv4
        // address: A and AAAA records often arrive in separate packets (one
        // per address family), and a toy would rather not start with only an
        // unscoped IPv6 link-local address.
        let until = match &found {
            Some(_) => deadline.min(tokio::time::Instant::now() + ADDR_GRACE),
            None => deadline,
        };
        let event = match tokio::time::timeout_at(until, browse.recv_async()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) => return Err(DiscoveryError::Mdns("the mDNS engine stopped".into())),
            Err(_) => {
                return match found {
                    Some((_, hub)) => Ok(hub),
                    None => Err(DiscoveryError::HubNotFound(timeout.as_secs())),
                };
            }
        };
        let ServiceEvent::ServiceResolved(svc) = event else {
            continue;
        };
        let hub = match hub_record(&svc) {
            Ok(hub) => hub,
            Err(e) => {
                tracing::debug!(record = %svc.get_fullname(), "ignoring an invalid hub record: {e}");
                continue;
            }
        };
        let key = svc.get_fullname().to_ascii_lowercase();
        let hub = match found.take() {
            Some((k, mut first)) if k == key => {
                first.addrs.extend(hub.addrs);
                sort_addrs(&mut first.addrs);
                first
            }
            Some(other) => {
                // A second hub on the network: keep the first one found.
                found = Some(other);
                continue;
            }
            None => hub,
        };
        if hub.addrs.iter().any(IpAddr::is_ipv4) {
            return Ok(hub);
        }
        found = Some((key, hub));
    }
}

fn sort_addrs(addrs: &mut Vec<IpAddr>) {
    addrs.sort_by_key(|a| (address_rank(a), *a));
    addrs.dedup();
}

/// Checks a resolved `_hearth._tcp` instance.
fn hub_record(svc: &ResolvedService) -> Result<HubRecord, Invalid> {
    let (api, ca_sha256) = parse_hub_txt(&raw_entries(svc.get_properties()))?;
    let host = svc.get_hostname();
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(Invalid("the hub record has no host name".into()));
    }
    let mut addrs: Vec<IpAddr> = svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
    sort_addrs(&mut addrs);
    if addrs.is_empty() {
        return Err(Invalid("the hub record has no address".into()));
    }
    let fullname = svc.get_fullname();
    Ok(HubRecord {
        instance: instance_from_fullname(fullname, HUB_SERVICE_TYPE)
            .unwrap_or_else(|| fullname.to_owned()),
        host: host.to_owned(),
        addrs,
        port: svc.get_port(),
        api,
        ca_sha256,
    })
}

/// Preference order: routable IPv4, routable IPv6, IPv6 link-local (which
/// needs a scope we cannot carry in an `IpAddr`), loopback.
fn address_rank(a: &IpAddr) -> u8 {
    match a {
        _ if a.is_loopback() => 3,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => 2,
        IpAddr::V6(_) => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn toy_host_names_are_single_labels() {
        let id = ToyId::parse("Bear_3F2A.v2").unwrap();
        assert_eq!(toy_host(&id), "hearth-toy-bear-3f2a-v2.local.");
        let id = ToyId::parse(&"a".repeat(64)).unwrap();
        let host = toy_host(&id);
        assert_eq!(host.len(), 63 + ".local.".len());
        let id = ToyId::parse(&format!("{}-{}", "a".repeat(51), "b".repeat(12))).unwrap();
        assert!(!toy_host(&id).contains("-."));
    }

    #[test]
    fn addresses_rank_routable_v4_first() {
        let mut v: Vec<IpAddr> = ["::1", "fe80::1", "127.0.0.1", "2001:db8::1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort_by_key(|a| (address_rank(a), *a));
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            ["10.0.0.2", "2001:db8::1", "fe80::1", "127.0.0.1", "::1"]
        );
    }
}
