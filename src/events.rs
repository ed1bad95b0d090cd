//! In-process notifications: the stream of events for parents' pages
//! (server-sent events on `/api/v1/events`) and the per-toy wake-up used by
//! the inbox long-poll, so a new message reaches a waiting toy at once
//! without polling the database.
//!
//! It also keeps the register of open event streams ([`Streams`]): at most
//! [`MAX_STREAMS_PER_ACCOUNT`] per account, and a way for the use cases to
//! end a member's (or one session's) streams at once when they sign out,
//! change their password, are removed or have their role or toys changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use crate::domain::{SessionId, ToyRowId, UserId};

/// Open event streams one account may hold at once.
pub const MAX_STREAMS_PER_ACCOUNT: usize = 8;

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
        /// Its toy, when known (only then do relatives of that toy hear of it).
        toy_id: Option<String>,
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
    /// `event: unread` with `{"toy_id"}` (null for every toy): one
    /// member's own heard state changed (they played a recording or marked
    /// some heard), so their pages fetch their unread counts again. Only
    /// that member's streams carry it.
    Unread {
        /// The member whose state changed.
        user: UserId,
        /// The toy, or `None` for every toy they see.
        toy_id: Option<String>,
    },
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
            Self::Unread { .. } => "unread",
        }
    }

    /// The toy the news is about, when it is about one paired toy: a
    /// relative's stream passes only events about the toys granted to them.
    pub fn toy_id(&self) -> Option<String> {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        match self {
            Self::Message(m) => text(&m["toy_id"]),
            Self::MessageDeleted { toy_id, .. } => toy_id.clone(),
            // Pairing news is about a toy that is not paired yet.
            Self::Toy {
                toy_id,
                pairing_id: None,
                ..
            } => toy_id.clone(),
            Self::Toy { .. } => None,
            Self::ToyUpdated(t) => text(&t["toy_id"]),
            Self::Unread { toy_id, .. } => toy_id.clone(),
        }
    }

    /// The `data:` JSON.
    pub fn data(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Message(m) => m.clone(),
            Self::MessageDeleted { id, .. } => json!({"id": id, "deleted": true}),
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
            Self::Unread { toy_id, .. } => json!({"toy_id": toy_id}),
        }
    }

    /// The one member this news is for, when it is personal.
    pub fn for_user(&self) -> Option<UserId> {
        match self {
            Self::Unread { user, .. } => Some(*user),
            _ => None,
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
    /// The paired toy it is about, if any (see [`PageEvent::toy_id`]).
    pub toy_id: Option<String>,
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
    /// The open event streams.
    streams: Streams,
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
            streams: Streams::default(),
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

    /// The register of open event streams.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Sends an event to every open page (no one listening is fine).
    pub fn publish(&self, event: PageEvent) {
        let _ = self.tx.send(Event {
            kind: event.name(),
            data: event.data(),
            toy_id: event.toy_id(),
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

/// A latch set once: what ends one event stream.
#[derive(Debug, Default)]
pub struct Latch(AtomicBool, Notify);

impl Latch {
    /// Sets it and wakes whoever waits.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.notify_waiters();
    }

    /// True once set.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Resolves once set (at once if it was).
    pub async fn wait(&self) {
        let notified = self.1.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

struct OpenStream {
    user: UserId,
    session: SessionId,
    end: Arc<Latch>,
}

/// The open event streams, by a private number.
#[derive(Clone, Default)]
pub struct Streams {
    open: Arc<Mutex<(u64, HashMap<u64, OpenStream>)>>,
}

/// Which streams to end.
#[derive(Debug, Clone, Copy)]
pub enum StreamsOf {
    /// Every stream of a member, except those of one session (kept when a
    /// member changes their own password).
    User(UserId, Option<SessionId>),
    /// Every stream of one session.
    Session(SessionId),
}

/// An open stream's place in the register: dropping it frees the place.
pub struct StreamGuard {
    id: u64,
    streams: Streams,
    /// Set when the stream must end.
    pub end: Arc<Latch>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut g) = self.streams.open.lock() {
            g.1.remove(&self.id);
        }
    }
}

impl Streams {
    /// Registers a stream of `session`; `None` when the account already
    /// holds [`MAX_STREAMS_PER_ACCOUNT`].
    pub fn open(&self, user: UserId, session: SessionId) -> Option<StreamGuard> {
        let mut g = self.open.lock().ok()?;
        if g.1.values().filter(|s| s.user == user).count() >= MAX_STREAMS_PER_ACCOUNT {
            return None;
        }
        g.0 += 1;
        let id = g.0;
        let end = Arc::new(Latch::default());
        g.1.insert(
            id,
            OpenStream {
                user,
                session,
                end: end.clone(),
            },
        );
        Some(StreamGuard {
            id,
            streams: self.clone(),
            end,
        })
    }

    /// Ends the chosen streams now; returns how many.
    pub fn end(&self, which: StreamsOf) -> usize {
        let Ok(g) = self.open.lock() else { return 0 };
        let mut n = 0;
        for s in g.1.values() {
            let hit = match which {
                StreamsOf::User(u, keep) => s.user == u && Some(s.session) != keep,
                StreamsOf::Session(id) => s.session == id,
            };
            if hit {
                s.end.set();
                n += 1;
            }
        }
        n
    }

    /// How many streams a member holds open.
    pub fn count(&self, user: UserId) -> usize {
        self.open
            .lock()
            .map(|g| g.1.values().filter(|s| s.user == user).count())
            .unwrap_or(0)
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
        let e = PageEvent::MessageDeleted {
            id: "m".into(),
            toy_id: Some("toy-1".into()),
        };
        assert_eq!(e.toy_id().as_deref(), Some("toy-1"));
        assert_eq!(
            (e.name(), e.data()),
            ("message", json!({"id": "m", "deleted": true}))
        );
        assert_eq!(
            PageEvent::pairing(ToyChange::Paired, "p1", Some("toy-1".into())).toy_id(),
            None,
            "pairing news reaches no relative"
        );
        let e = PageEvent::Unread {
            user: UserId(3),
            toy_id: None,
        };
        assert_eq!((e.name(), e.data()), ("unread", json!({"toy_id": null})));
        assert_eq!(e.for_user(), Some(UserId(3)));
        let e = PageEvent::ToyUpdated(json!({"toy_id": "toy-1"}));
        assert_eq!(e.toy_id().as_deref(), Some("toy-1"));
        assert_eq!(
            e.data(),
            json!({"change": "updated", "toy": {"toy_id": "toy-1"}})
        );
    }

    #[test]
    fn streams_are_capped_per_account_and_end_by_user_or_session() {
        let streams = Streams::default();
        let (u1, u2) = (UserId(1), UserId(2));
        let mut held: Vec<_> = (0..MAX_STREAMS_PER_ACCOUNT)
            .map(|i| streams.open(u1, SessionId(i as i64 % 2)).expect("room"))
            .collect();
        assert!(
            streams.open(u1, SessionId(0)).is_none(),
            "the ninth is refused"
        );
        let other = streams
            .open(u2, SessionId(9))
            .expect("another account has room");
        held.pop();
        assert!(
            streams.open(u1, SessionId(0)).is_some(),
            "a closed one frees its place"
        );
        assert_eq!(streams.end(StreamsOf::User(u1, Some(SessionId(1)))), 4);
        assert!(held[0].end.is_set() && !held[1].end.is_set());
        assert_eq!(streams.end(StreamsOf::Session(SessionId(1))), 3);
        assert!(held[1].end.is_set());
        assert!(!other.end.is_set());
        assert_eq!(streams.count(u2), 1);
    }
}
