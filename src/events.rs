//! In-process notifications: the stream of events for parents' pages
//! (server-sent events on `/api/v1/events`) and the per-toy wake-up used by
//! the inbox long-poll, so a new message reaches a waiting toy at once
//! without polling the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

/// An event for parents' pages.
#[derive(Debug, Clone)]
pub struct Event {
    /// `message` or `toy`.
    pub kind: &'static str,
    /// The JSON `data:` line.
    pub data: serde_json::Value,
}

/// The hub's notifier; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    toys: Arc<Mutex<HashMap<i64, Arc<Notify>>>>,
    /// Set once when the hub begins to shut down.
    stopping: Arc<(AtomicBool, Notify)>,
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
        }
    }

    /// Sends an event to every open page (no one listening is fine).
    pub fn publish(&self, kind: &'static str, data: serde_json::Value) {
        let _ = self.tx.send(Event { kind, data });
    }

    /// Listens to events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The wake-up of one toy (by row id).
    pub fn toy_notify(&self, toy: i64) -> Arc<Notify> {
        match self.toys.lock() {
            Ok(mut m) => m.entry(toy).or_default().clone(),
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// Wakes every long-poll of a toy (new message, or the toy was removed).
    pub fn wake_toy(&self, toy: i64) {
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
