//! In-process notifications: the stream of events for parents' pages
//! (server-sent events on `/api/v1/events`) and the per-toy wake-up used by
//! the inbox long-poll, so a new message reaches a waiting toy at once
//! without polling the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use crate::domain::ToyRowId;

/// What changed about a toy, for `event: toy` (the wire names of
/// `docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyChange {
    /// An unpaired toy appeared (or changed) on the network.
    Discovered,
    /// It left the network.
    Gone,
    /// A pairing started, moved on or ended without pairing.
    Pairing,
    /// A pairing completed.
    Paired,
    /// A parent renamed it.
    Updated,
    /// A parent removed it.
    Removed,
    /// It reported battery or firmware.
    Status,
    /// It called the hub after a quiet spell.
    Online,
    /// It has been quiet too long.
    Offline,
}

impl ToyChange {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovered => "discovered",
            Self::Gone => "gone",
            Self::Pairing => "pairing",
            Self::Paired => "paired",
            Self::Updated => "updated",
            Self::Removed => "removed",
            Self::Status => "status",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// Everything open pages are told, one variant per kind of news.
#[derive(Debug, Clone)]
pub enum PageEvent {
    /// `event: message` with the message's JSON (new or changed).
    Message(serde_json::Value),
    /// `event: message` with `{"id", "deleted": true}`.
    MessageDeleted {
        /// Its public id.
        id: String,
    },
    /// `event: toy` with `{"change", "toy_id"?, "pairing_id"?}`.
    Toy {
        /// What changed.
        change: ToyChange,
        /// The toy, when known.
        toy_id: Option<String>,
        /// The pairing, for pairing news.
        pairing_id: Option<String>,
    },
    /// `event: toy` with `{"change": "updated", "toy"}`: the toy's new JSON.
    ToyUpdated(serde_json::Value),
}

impl PageEvent {
    /// `event: toy` about one toy.
    pub fn toy(change: ToyChange, toy_id: impl ToString) -> Self {
        Self::Toy {
            change,
            toy_id: Some(toy_id.to_string()),
            pairing_id: None,
        }
    }

    /// `event: toy` about a pairing (and its toy, when given).
    pub fn pairing(change: ToyChange, pairing_id: &str, toy_id: Option<String>) -> Self {
        Self::Toy {
            change,
            toy_id,
            pairing_id: Some(pairing_id.to_owned()),
        }
    }

    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Message(_) | Self::MessageDeleted { .. } => "message",
            Self::Toy { .. } | Self::ToyUpdated(_) => "toy",
        }
    }

    /// The `data:` JSON.
    pub fn data(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Message(m) => m.clone(),
            Self::MessageDeleted { id } => json!({"id": id, "deleted": true}),
            Self::Toy {
                change,
                toy_id,
                pairing_id,
            } => {
                let mut v = json!({"change": change.as_str()});
                if let Some(obj) = v.as_object_mut() {
                    if let Some(t) = toy_id {
                        obj.insert("toy_id".into(), json!(t));
                    }
                    if let Some(p) = pairing_id {
                        obj.insert("pairing_id".into(), json!(p));
                    }
                }
                v
            }
            Self::ToyUpdated(toy) => json!({"change": "updated", "toy": toy}),
        }
    }
}

/// An event for parents' pages, as sent on the stream.
#[derive(Debug, Clone)]
pub struct Event {
    /// `message` or `toy`.
    pub kind: &'static str,
    /// The JSON `data:` line.
    pub data: serde_json::Value,
    /// The typed event itself, for listeners other than pages (the MQTT
    /// publisher reads the facts from it, not from the JSON).
    pub page: PageEvent,
}

/// The hub's notifier; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    toys: Arc<Mutex<HashMap<ToyRowId, Arc<Notify>>>>,
    /// Set once when the hub begins to shut down.
    stopping: Arc<(AtomicBool, Notify)>,
    /// Parked long-polls per toy, oldest first.
    parked: Arc<Mutex<ParkedPolls>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A notifier with room for a burst of events per slow listener.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            tx,
            toys: Arc::new(Mutex::new(HashMap::new())),
            stopping: Arc::new((AtomicBool::new(false), Notify::new())),
            parked: Arc::default(),
        }
    }

    /// Registers a long-poll of `toy` about to park. When the toy already
    /// has [`MAX_PARKED_PER_TOY`] parked, the oldest is told to answer now
    /// (its [`Parked::bumped`] resolves): a toy certificate cannot hold
    /// more connections and tasks open by opening more long-polls. The
    /// registration ends when the handle is dropped.
    pub fn park(&self, toy: ToyRowId) -> Parked {
        let bumped = Arc::new(Notify::new());
        let mut reg = match self.parked.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        reg.next += 1;
        let id = reg.next;
        let queue = reg.by_toy.entry(toy).or_default();
        queue.push_back((id, bumped.clone()));
        while queue.len() > MAX_PARKED_PER_TOY {
            if let Some((_, oldest)) = queue.pop_front() {
                // A stored permit: the oldest answers even if it is not
                // awaiting yet.
                oldest.notify_one();
            }
        }
        Parked {
            toy,
            id,
            bumped,
            registry: self.parked.clone(),
        }
    }

    /// Sends an event to every open page (no one listening is fine).
    pub fn publish(&self, event: PageEvent) {
        let _ = self.tx.send(Event {
            kind: event.name(),
            data: event.data(),
            page: event,
        });
    }

    /// Listens to events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The wake-up of one toy (by row id).
    pub fn toy_notify(&self, toy: ToyRowId) -> Arc<Notify> {
        match self.toys.lock() {
            Ok(mut m) => m.entry(toy).or_default().clone(),
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// Wakes every long-poll of a toy (new message, or the toy was removed).
    pub fn wake_toy(&self, toy: ToyRowId) {
        self.toy_notify(toy).notify_waiters();
    }

    /// The hub is shutting down: parked long-polls answer now (empty, the
    /// toy asks again) and event streams end, so no connection holds the
    /// shutdown up.
    pub fn begin_shutdown(&self) {
        self.stopping.0.store(true, Ordering::SeqCst);
        self.stopping.1.notify_waiters();
    }

    /// Resolves once [`Events::begin_shutdown`] was called (at once if it was).
    pub fn shutdown(&self) -> impl std::future::Future<Output = ()> + use<> {
        let stopping = self.stopping.clone();
        async move {
            let notified = stopping.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if stopping.0.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Long-polls one toy may keep parked at once; a further one answers the
/// oldest (`docs/toy-protocol.md` section 4: the toy asks again).
pub const MAX_PARKED_PER_TOY: usize = 2;

/// The parked long-polls of every toy.
#[derive(Default)]
struct ParkedPolls {
    next: u64,
    by_toy: HashMap<ToyRowId, std::collections::VecDeque<(u64, Arc<Notify>)>>,
}

/// One parked long-poll (see [`Events::park`]); dropping it unregisters it.
pub struct Parked {
    toy: ToyRowId,
    id: u64,
    bumped: Arc<Notify>,
    registry: Arc<Mutex<ParkedPolls>>,
}

impl Parked {
    /// Resolves when a newer long-poll of the same toy pushed this one out.
    pub async fn bumped(&self) {
        self.bumped.notified().await;
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut reg = match self.registry.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(queue) = reg.by_toy.get_mut(&self.toy) {
            queue.retain(|(id, _)| *id != self.id);
            if queue.is_empty() {
                reg.by_toy.remove(&self.toy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `p` was told to answer (within 50 ms).
    async fn quick(p: &Parked) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), p.bumped())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_third_parked_long_poll_of_a_toy_answers_the_oldest() {
        let events = Events::new();
        let (toy, other) = (ToyRowId(1), ToyRowId(2));
        let first = events.park(toy);
        let second = events.park(toy);
        let elsewhere = events.park(other);
        assert!(!quick(&first).await, "two parked polls are allowed");
        let third = events.park(toy);
        assert!(quick(&first).await, "the third answers the oldest");
        assert!(!quick(&second).await && !quick(&third).await);
        assert!(!quick(&elsewhere).await, "another toy's poll stays");
        drop(second);
        let fourth = events.park(toy);
        assert!(!quick(&third).await, "a dropped poll frees its place");
        drop(first);
        let _fifth = events.park(toy);
        assert!(quick(&third).await, "then the oldest parked one answers");
        assert!(!quick(&fourth).await);
        drop((third, fourth, _fifth, elsewhere));
        let left = events.parked.lock().map(|r| r.by_toy.len()).unwrap_or(9);
        assert_eq!(left, 0, "dropped polls leave nothing behind");
    }
    use serde_json::json;

    #[test]
    fn page_events_keep_the_wire_form() {
        let e = PageEvent::toy(ToyChange::Offline, "toy-1");
        assert_eq!(e.name(), "toy");
        assert_eq!(e.data(), json!({"change": "offline", "toy_id": "toy-1"}));
        let e = PageEvent::pairing(ToyChange::Paired, "p1", Some("toy-1".into()));
        assert_eq!(
            e.data(),
            json!({"change": "paired", "toy_id": "toy-1", "pairing_id": "p1"})
        );
        let e = PageEvent::pairing(ToyChange::Pairing, "p1", None);
        assert_eq!(e.data(), json!({"change": "pairing", "pairing_id": "p1"}));
        let e = PageEvent::MessageDeleted { id: "m".into() };
        assert_eq!(
            (e.name(), e.data()),
            ("message", json!({"id": "m", "deleted": true}))
        );
        let e = PageEvent::ToyUpdated(json!({"toy_id": "toy-1"}));
        assert_eq!(
            e.data(),
            json!({"change": "updated", "toy": {"toy_id": "toy-1"}})
        );
    }
}
