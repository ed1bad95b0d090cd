//! The hub side of discovery: advertise `_hearth._tcp`, browse
//! `_hearth-toy._tcp` and keep the live list of toys seen.
//!
//! The hub claims its host name before announcing it: it asks the network
//! whether another device answers for the name and, if one does, takes the
//! next numbered one (`hearth-2.local`); the server certificate is made to
//! cover the name (the caller's [`CertifyHost`]) before the name goes out.
//!
//! A dedicated thread drains the `mdns-sd` browse channel and applies each
//! event to the list under a short lock; readers ([`Discovery::seen`],
//! [`Discovery::is_up`]) only ever wait for that lock, never for the network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use mdns_sd::{
    DaemonEvent, HostnameResolutionEvent, RRType, Receiver, ServiceDaemon, ServiceEvent,
};
use tokio::sync::broadcast;

use crate::domain::ToyId;

use super::txt::{hub_txt, parse_toy_txt, raw_entries};
use super::{
    DiscoveryError, DiscoveryEvent, DiscoveryOptions, HUB_SERVICE_TYPE, HubAdvert, SeenToy,
    TOY_SERVICE_TYPE, host_fqdn, instance_from_fullname, instance_name, new_daemon, service_info,
};

/// How many events a slow subscriber may fall behind before it sees
/// `RecvError::Lagged` (it can then call [`Discovery::seen`] to catch up).
const EVENT_CAPACITY: usize = 256;

/// How long [`Discovery::shutdown`] waits for the goodbye packets to leave.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// How long the hub listens for another device answering for a host name
/// before it claims the name (as long as an RFC 6762 probe: three probes
/// 250 ms apart).
const HOST_PROBE: Duration = Duration::from_millis(750);

/// How many host names the hub tries: the configured one, then `-2` to `-9`.
const HOST_TRIES: u32 = 9;

/// Makes the server certificate cover a host name (`hearth-2.local`, no
/// trailing dot) before the hub announces it; an error keeps the name
/// unannounced. The hub's is [`crate::pki::HubPki::set_host_name`].
pub type CertifyHost = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The hub's discovery: its advertisement and the live list of toys seen.
/// Cloning gives another handle to the same daemon and list.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    daemon: ServiceDaemon,
    opts: DiscoveryOptions,
    advert: Mutex<Advertised>,
    certify: CertifyHost,
    live: Arc<RwLock<Live>>,
    events: broadcast::Sender<DiscoveryEvent>,
    stopped: AtomicBool,
}

/// What is advertised (or about to be, until the host name is claimed), so
/// that a rename or a new CA can replace it.
struct Advertised {
    instance: String,
    fullname: String,
    /// Fully qualified (`hearth.local.`).
    host: String,
    port: u16,
    txt: Vec<(&'static str, String)>,
    /// Whether the service is registered with the daemon yet.
    announced: bool,
}

impl Advertised {
    fn info(&self, opts: &DiscoveryOptions) -> Result<mdns_sd::ServiceInfo, DiscoveryError> {
        service_info(
            HUB_SERVICE_TYPE,
            &self.instance,
            &self.host,
            self.port,
            &self.txt,
            opts,
        )
    }
}

impl Discovery {
    /// Starts browsing for toys and, on a thread, claims a host name and
    /// advertises `advert` under it: the configured name (`advert.host`)
    /// unless another device on the network answers for it, then `-2`,
    /// `-3`, ... (as RFC 6762 section 9 suggests). `certify` is called with
    /// the name before it is announced, so the server certificate covers
    /// every host name a toy can learn from the hub.
    ///
    /// Fails when the advert breaks `docs/toy-protocol.md` section 1 (empty name, a host
    /// name that is not `something.local`), when a named interface does not
    /// exist, or when the mDNS engine cannot start. Network trouble after the
    /// start is logged, never returned.
    pub fn start(
        advert: HubAdvert,
        opts: &DiscoveryOptions,
        certify: CertifyHost,
    ) -> Result<Discovery, DiscoveryError> {
        let instance = instance_name(&advert.instance)?;
        let host = host_fqdn(&advert.host)?;
        let txt = hub_txt(&advert.ca_sha256);
        let planned = Advertised {
            fullname: String::new(),
            instance,
            host,
            port: advert.port,
            txt,
            announced: false,
        };
        let fullname = planned.info(opts)?.get_fullname().to_owned();
        let planned = Advertised {
            fullname,
            ..planned
        };

        let daemon = new_daemon(opts)?;
        // The hub never announces nor browses on loopback: no device on the
        // network can reach 127.0.0.1, and hearing its own records back
        // there made the daemon see a conflict with itself on a rename and
        // rename the hub's host (`hearth-2.local`), which the server
        // certificate does not cover.
        if let Err(e) = daemon.disable_interface(vec![
            mdns_sd::IfKind::LoopbackV4,
            mdns_sd::IfKind::LoopbackV6,
        ]) {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let live = Arc::new(RwLock::new(Live::default()));
        let started = (|| {
            let browse = daemon.browse(TOY_SERVICE_TYPE)?;
            let monitor = daemon.monitor()?;
            let (thread_live, thread_events) = (live.clone(), events.clone());
            std::thread::Builder::new()
                .name("hearth-discovery".into())
                .spawn(move || run_browser(browse, &thread_live, &thread_events))
                .map_err(|e| DiscoveryError::Mdns(format!("cannot start a thread: {e}")))?;
            Ok::<_, DiscoveryError>(monitor)
        })();
        let monitor = match started {
            Ok(m) => m,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e);
            }
        };
        let inner = Arc::new(Inner {
            daemon,
            opts: opts.clone(),
            advert: Mutex::new(planned),
            certify,
            live,
            events,
            stopped: AtomicBool::new(false),
        });
        // The thread holds a weak handle: dropping the last `Discovery`
        // still stops the daemon, which ends the thread.
        let weak = Arc::downgrade(&inner);
        if let Err(e) = std::thread::Builder::new()
            .name("hearth-mdns-host".into())
            .spawn(move || claim_host(&weak, &monitor))
        {
            let _ = inner.daemon.shutdown();
            return Err(DiscoveryError::Mdns(format!("cannot start a thread: {e}")));
        }
        Ok(Discovery { inner })
    }

    /// Re-advertises the hub under a new instance name (the household was
    /// renamed): a goodbye for the old name, then the new one. The host name
    /// stays.
    pub fn rename(&self, instance: &str) -> Result<(), DiscoveryError> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        let instance = instance_name(instance)?;
        let mut advert = lock(&self.inner.advert);
        let next = Advertised {
            instance: instance.clone(),
            fullname: String::new(),
            host: advert.host.clone(),
            port: advert.port,
            txt: advert.txt.clone(),
            announced: advert.announced,
        };
        let info = next.info(&self.inner.opts)?;
        let fullname = info.get_fullname().to_owned();
        if advert.announced {
            if !fullname.eq_ignore_ascii_case(&advert.fullname) {
                // The status channel is not awaited: the daemon handles
                // commands in order, so the goodbye goes out before the new
                // announcement.
                self.inner.daemon.unregister(&advert.fullname)?;
            }
            self.inner.daemon.register(info)?;
        }
        *advert = Advertised { fullname, ..next };
        tracing::info!(instance = %instance, "advertising the hub under a new name");
        Ok(())
    }

    /// Re-announces the hub with a new CA hash in its TXT record (the hub's
    /// keys were replaced), under the same name.
    pub fn set_ca(&self, ca_sha256: &crate::domain::Hex32) -> Result<(), DiscoveryError> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        let mut advert = lock(&self.inner.advert);
        let previous = std::mem::replace(&mut advert.txt, hub_txt(ca_sha256));
        if advert.announced {
            let registered = advert
                .info(&self.inner.opts)
                .and_then(|info| Ok(self.inner.daemon.register(info)?));
            if let Err(e) = registered {
                advert.txt = previous;
                return Err(e);
            }
        }
        tracing::info!("advertising the hub's new certificate authority");
        Ok(())
    }

    /// The valid toy records currently visible, one per toy id, in name order.
    pub fn seen(&self) -> Vec<SeenToy> {
        self.inner
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .seen()
    }

    /// Whether a valid record for `toy_id` is currently visible.
    pub fn is_up(&self, toy_id: &ToyId) -> bool {
        self.inner
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .has_id(toy_id)
    }

    /// Changes to the list from now on. Call [`Discovery::seen`] after
    /// subscribing for the current state.
    pub fn subscribe(&self) -> broadcast::Receiver<DiscoveryEvent> {
        self.inner.events.subscribe()
    }

    /// Withdraws the hub's advertisement (goodbye packets) and stops the
    /// daemon. Idempotent. Waits up to two seconds for the goodbyes to be
    /// sent, so call it from a blocking context (`spawn_blocking`) in async
    /// code.
    pub fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // The daemon's exit unregisters every service (goodbyes) and stops
        // the browse, which ends the browser thread.
        match self.inner.daemon.shutdown() {
            Ok(status) => {
                let _ = status.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => tracing::debug!("mDNS daemon already stopped: {e}"),
        }
    }
}

impl Inner {
    /// Certifies `host` when it is not the current host name, then
    /// registers the service under it.
    fn announce(&self, host: &str) -> Result<(), DiscoveryError> {
        let mut advert = lock(&self.advert);
        if self.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        // Also for the configured name: the certificate must cover whatever
        // is announced, and the call is cheap when it already does.
        (self.certify)(host.trim_end_matches('.')).map_err(DiscoveryError::Certificate)?;
        if !host.eq_ignore_ascii_case(&advert.host) {
            tracing::warn!(
                configured = %advert.host, host = %host,
                "another device on the network answers for the hub's host name; the hub is announced under a numbered one, which its certificate now covers"
            );
            advert.host = host.to_owned();
        }
        self.daemon.register(advert.info(&self.opts)?)?;
        advert.announced = true;
        tracing::info!(instance = %advert.instance, host = %advert.host, port = advert.port, "advertising the hub by mDNS");
        Ok(())
    }

    /// Follows a host name the daemon chose itself, after a conflict it
    /// found while probing (another device started answering for the name
    /// between the hub's own check and its announcement): the certificate
    /// is reissued at once, milliseconds after the announcement.
    fn adopt_host(&self, host: &str) {
        let mut advert = lock(&self.advert);
        if host.eq_ignore_ascii_case(&advert.host) {
            return;
        }
        tracing::warn!(old = %advert.host, host = %host, "mDNS renamed the hub's host after a conflict; reissuing the server certificate for the new name");
        match (self.certify)(host.trim_end_matches('.')) {
            Ok(()) => advert.host = host.to_owned(),
            Err(e) => {
                tracing::error!(host = %host, "cannot make the server certificate cover the new host name; toys will refuse the hub until it restarts: {e}")
            }
        }
    }
}

/// Claims a host name and announces the hub under it, then follows host
/// renames the daemon makes on its own until the daemon stops.
fn claim_host(inner: &Weak<Inner>, monitor: &Receiver<DaemonEvent>) {
    let Some(first) = inner.upgrade() else { return };
    let configured = lock(&first.advert).host.clone();
    let host = free_host_name(&first.daemon, &configured);
    if let Err(e) = first.announce(&host) {
        match e {
            DiscoveryError::ShutDown => {}
            e => tracing::error!(host = %host, "cannot advertise the hub: {e}"),
        }
    }
    drop(first);
    while let Ok(event) = monitor.recv() {
        let DaemonEvent::NameChange(change) = event else {
            continue;
        };
        if !matches!(change.rr_type, RRType::A | RRType::AAAA) {
            // An instance name (`Home (2)`): the certificate does not name it.
            continue;
        }
        let Some(inner) = inner.upgrade() else { break };
        inner.adopt_host(&change.new_name);
    }
}

/// The first of `host`, `host-2`, ... (fully qualified) for which no other
/// device answers; `host` itself when every one is taken.
fn free_host_name(daemon: &ServiceDaemon, host: &str) -> String {
    let ours: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    for n in 1..=HOST_TRIES {
        let candidate = numbered_host(host, n);
        if !host_taken(daemon, &candidate, &ours) {
            return candidate;
        }
        tracing::info!(host = %candidate, "another device answers for this host name");
    }
    tracing::warn!(host = %host, "every host name tried is taken; announcing the configured one");
    host.to_owned()
}

/// `hearth.local.` for 1, `hearth-2.local.` for 2, and so on.
fn numbered_host(host: &str, n: u32) -> String {
    if n <= 1 {
        return host.to_owned();
    }
    let (label, rest) = host.split_once('.').unwrap_or((host, "local."));
    let suffix = format!("-{n}");
    // Host names are ASCII (checked by `host_fqdn`): any byte is a boundary.
    let keep = label.len().min(63 - suffix.len());
    format!("{}{suffix}.{rest}", &label[..keep])
}

/// Whether a device other than this machine answers for `host` within
/// [`HOST_PROBE`]. Answers with this machine's own addresses (another
/// process here, or the hub itself) are no conflict, as in RFC 6762.
fn host_taken(daemon: &ServiceDaemon, host: &str, ours: &[IpAddr]) -> bool {
    let wait = u64::try_from(HOST_PROBE.as_millis()).unwrap_or(750);
    let Ok(answers) = daemon.resolve_hostname(host, Some(wait)) else {
        return false;
    };
    let deadline = Instant::now() + HOST_PROBE + Duration::from_millis(250);
    let mut taken = false;
    while let Ok(event) = answers.recv_deadline(deadline) {
        match event {
            HostnameResolutionEvent::AddressesFound(_, addrs) => {
                if let Some(a) = addrs.iter().find(|a| !ours.contains(&a.to_ip_addr())) {
                    tracing::debug!(host = %host, addr = ?a, "a device answers for the host name");
                    taken = true;
                    break;
                }
            }
            HostnameResolutionEvent::SearchTimeout(_)
            | HostnameResolutionEvent::SearchStopped(_) => {
                break;
            }
            _ => {}
        }
    }
    let _ = daemon.stop_resolve_hostname(host);
    taken
}

fn lock(advert: &Mutex<Advertised>) -> std::sync::MutexGuard<'_, Advertised> {
    advert.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let _ = self.daemon.shutdown();
        }
    }
}

/// Drains the browse channel until the daemon stops.
fn run_browser(
    browse: Receiver<ServiceEvent>,
    live: &RwLock<Live>,
    events: &broadcast::Sender<DiscoveryEvent>,
) {
    while let Ok(event) = browse.recv() {
        let changes = match event {
            ServiceEvent::ServiceResolved(svc) => {
                let key = svc.get_fullname().to_ascii_lowercase();
                match parse_toy_txt(&raw_entries(svc.get_properties())) {
                    Ok(record) => {
                        let name = instance_from_fullname(svc.get_fullname(), TOY_SERVICE_TYPE)
                            .unwrap_or_else(|| svc.get_fullname().to_owned());
                        let toy = SeenToy {
                            toy_id: record.toy_id,
                            name,
                            model: record.model,
                            fp: record.fp,
                            paired: record.paired,
                        };
                        write(live).upsert(key, toy)
                    }
                    Err(e) => {
                        tracing::debug!(record = %svc.get_fullname(), "ignoring an invalid toy record: {e}");
                        write(live).remove(&key)
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                write(live).remove(&fullname.to_ascii_lowercase())
            }
            ServiceEvent::SearchStopped(_) => break,
            ServiceEvent::SearchStarted(_) | ServiceEvent::ServiceFound(..) => Vec::new(),
            // `ServiceEvent` is non-exhaustive; nothing new is of use to us yet.
            _ => Vec::new(),
        };
        for change in changes {
            tracing::debug!(?change, "toy list changed");
            // An error only means nobody is subscribed right now.
            let _ = events.send(change);
        }
    }
    tracing::debug!("toy browsing stopped");
}

fn write(live: &RwLock<Live>) -> std::sync::RwLockWriteGuard<'_, Live> {
    live.write().unwrap_or_else(PoisonError::into_inner)
}

/// Valid toy records keyed by lower-cased DNS-SD full name. Two records may
/// claim the same toy id (a toy renamed, or a spoof); the list shows one per
/// id and the id is up while any of them is.
#[derive(Default)]
struct Live {
    records: BTreeMap<String, SeenToy>,
}

impl Live {
    fn has_id(&self, id: &ToyId) -> bool {
        self.records.values().any(|t| &t.toy_id == id)
    }

    /// The record shown for `id`: the first in full-name order.
    fn shown(&self, id: &ToyId) -> Option<&SeenToy> {
        self.records.values().find(|t| &t.toy_id == id)
    }

    fn seen(&self) -> Vec<SeenToy> {
        let mut out: Vec<SeenToy> = Vec::new();
        for toy in self.records.values() {
            if !out.iter().any(|t| t.toy_id == toy.toy_id) {
                out.push(toy.clone());
            }
        }
        out
    }

    fn upsert(&mut self, key: String, toy: SeenToy) -> Vec<DiscoveryEvent> {
        let before = self.shown(&toy.toy_id).cloned();
        let old = self.records.insert(key, toy.clone());
        let mut changes = Vec::new();
        if let Some(old) = old {
            if old.toy_id != toy.toy_id && !self.has_id(&old.toy_id) {
                changes.push(DiscoveryEvent::Gone(old.toy_id));
            }
        }
        let after = self.shown(&toy.toy_id).cloned();
        match (before, after) {
            (None, Some(now)) => changes.push(DiscoveryEvent::Appeared(now)),
            (Some(was), Some(now)) if was != now => changes.push(DiscoveryEvent::Updated(now)),
            _ => {}
        }
        changes
    }

    fn remove(&mut self, key: &str) -> Vec<DiscoveryEvent> {
        let Some(old) = self.records.remove(key) else {
            return Vec::new();
        };
        match self.shown(&old.toy_id) {
            None => vec![DiscoveryEvent::Gone(old.toy_id)],
            Some(now) if *now != old => vec![DiscoveryEvent::Updated(now.clone())],
            Some(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::Hex32;

    fn toy(id: &str, name: &str, paired: bool) -> SeenToy {
        SeenToy {
            toy_id: ToyId::parse(id).unwrap(),
            name: name.into(),
            model: "m".into(),
            fp: Hex32([7; 32]),
            paired,
        }
    }

    #[test]
    fn the_live_list_reports_each_change_once() {
        let mut live = Live::default();
        let a = toy("a", "A", false);
        assert_eq!(
            live.upsert("a._t".into(), a.clone()),
            vec![DiscoveryEvent::Appeared(a.clone())]
        );
        // A re-announcement changes nothing.
        assert_eq!(live.upsert("a._t".into(), a.clone()), vec![]);
        let a2 = toy("a", "A", true);
        assert_eq!(
            live.upsert("a._t".into(), a2.clone()),
            vec![DiscoveryEvent::Updated(a2.clone())]
        );
        // A second record for the same id (later in name order) is not shown.
        assert_eq!(live.upsert("z._t".into(), toy("a", "Z", true)), vec![]);
        assert_eq!(live.seen(), vec![a2.clone()]);
        // Removing the shown record shows the other one.
        assert_eq!(
            live.remove("a._t"),
            vec![DiscoveryEvent::Updated(toy("a", "Z", true))]
        );
        assert!(live.has_id(&a.toy_id));
        assert_eq!(
            live.remove("z._t"),
            vec![DiscoveryEvent::Gone(a.toy_id.clone())]
        );
        assert_eq!(live.remove("z._t"), vec![]);
        assert!(!live.has_id(&a.toy_id));
    }

    #[test]
    fn numbered_host_names_follow_rfc_6762_and_stay_one_label() {
        assert_eq!(numbered_host("hearth.local.", 1), "hearth.local.");
        assert_eq!(numbered_host("hearth.local.", 2), "hearth-2.local.");
        assert_eq!(numbered_host("hearth.local.", 9), "hearth-9.local.");
        let long = format!("{}.local.", "a".repeat(63));
        let two = numbered_host(&long, 2);
        assert_eq!(two, format!("{}-2.local.", "a".repeat(61)));
        assert!(super::super::host_fqdn(&two).is_ok());
    }

    #[test]
    fn a_record_that_changes_id_reports_gone_and_appeared() {
        let mut live = Live::default();
        live.upsert("k".into(), toy("a", "A", false));
        let b = toy("b", "A", false);
        assert_eq!(
            live.upsert("k".into(), b.clone()),
            vec![
                DiscoveryEvent::Gone(ToyId::parse("a").unwrap()),
                DiscoveryEvent::Appeared(b)
            ]
        );
    }
}
