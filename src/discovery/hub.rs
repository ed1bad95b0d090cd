//! The hub side of discovery: advertise `_hearth._tcp`, browse
//! `_hearth-toy._tcp` and keep the live list of toys seen.
//!
//! A dedicated thread drains the `mdns-sd` browse channel and applies each
//! event to the list under a short lock; readers ([`Discovery::seen`],
//! [`Discovery::is_up`]) only ever wait for that lock, never for the network.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use mdns_sd::{Receiver, ServiceDaemon, ServiceEvent};
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
    live: Arc<RwLock<Live>>,
    events: broadcast::Sender<DiscoveryEvent>,
    stopped: AtomicBool,
}

/// What is currently registered, so that a rename can replace it.
struct Advertised {
    fullname: String,
    host: String,
    port: u16,
    txt: Vec<(&'static str, String)>,
}

impl Discovery {
    /// Starts advertising `advert` and browsing for toys.
    ///
    /// Fails when the advert breaks `docs/toy-protocol.md` section 1 (empty name, a host
    /// name that is not `something.local`), when a named interface does not
    /// exist, or when the mDNS engine cannot start. Network trouble after the
    /// start is logged, never returned.
    pub fn start(advert: HubAdvert, opts: &DiscoveryOptions) -> Result<Discovery, DiscoveryError> {
        let instance = instance_name(&advert.instance)?;
        let host = host_fqdn(&advert.host)?;
        let txt = hub_txt(&advert.ca_sha256);
        let info = service_info(HUB_SERVICE_TYPE, &instance, &host, advert.port, &txt, opts)?;
        let fullname = info.get_fullname().to_owned();

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
            daemon.register(info)?;
            let (thread_live, thread_events) = (live.clone(), events.clone());
            std::thread::Builder::new()
                .name("hearth-discovery".into())
                .spawn(move || run_browser(browse, &thread_live, &thread_events))
                .map_err(|e| DiscoveryError::Mdns(format!("cannot start a thread: {e}")))?;
            Ok::<(), DiscoveryError>(())
        })();
        if let Err(e) = started {
            let _ = daemon.shutdown();
            return Err(e);
        }
        tracing::info!(instance = %instance, host = %host, port = advert.port, "advertising the hub by mDNS");
        Ok(Discovery {
            inner: Arc::new(Inner {
                daemon,
                opts: opts.clone(),
                advert: Mutex::new(Advertised {
                    fullname,
                    host,
                    port: advert.port,
                    txt,
                }),
                live,
                events,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// Re-advertises the hub under a new instance name (the household was
    /// renamed): a goodbye for the old name, then the new one.
    pub fn rename(&self, instance: &str) -> Result<(), DiscoveryError> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        let instance = instance_name(instance)?;
        let mut advert = self
            .inner
            .advert
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let info = service_info(
            HUB_SERVICE_TYPE,
            &instance,
            &advert.host,
            advert.port,
            &advert.txt,
            &self.inner.opts,
        )?;
        let fullname = info.get_fullname().to_owned();
        if !fullname.eq_ignore_ascii_case(&advert.fullname) {
            // The status channel is not awaited: the daemon handles commands
            // in order, so the goodbye goes out before the new announcement.
            self.inner.daemon.unregister(&advert.fullname)?;
        }
        self.inner.daemon.register(info)?;
        advert.fullname = fullname;
        tracing::info!(instance = %instance, "advertising the hub under a new name");
        Ok(())
    }

    /// Re-announces the hub with a new CA hash in its TXT record (the hub's
    /// keys were replaced), under the same name.
    pub fn set_ca(&self, ca_sha256: &crate::domain::Hex32) -> Result<(), DiscoveryError> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(DiscoveryError::ShutDown);
        }
        let mut advert = self
            .inner
            .advert
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let txt = hub_txt(ca_sha256);
        let instance = instance_from_fullname(&advert.fullname, HUB_SERVICE_TYPE)
            .ok_or_else(|| DiscoveryError::Mdns("the advertised name is not the hub's".into()))?;
        let info = service_info(
            HUB_SERVICE_TYPE,
            &instance,
            &advert.host,
            advert.port,
            &txt,
            &self.inner.opts,
        )?;
        self.inner.daemon.register(info)?;
        advert.txt = txt;
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
