//! Home automation: the hub's toy status and events on the family's MQTT
//! broker, with Home Assistant's MQTT discovery (see `docs/home-assistant.md`).
//!
//! - [`session`]: one checked connection (home-network address, TLS with
//!   rustls/ring, MQTT 3.1.1 framed by `rumqttc`'s codec).
//! - [`discovery`]: the payloads, pure functions of typed facts.
//! - [`run`]: the publisher, a background task. It listens to the hub's
//!   typed [`crate::events::PageEvent`]s on their broadcast channel, which
//!   is bounded and never blocks the sender: a request never waits for the
//!   broker. When the publisher falls behind (or was disconnected) it drops
//!   the backlog and publishes the whole current state instead. It
//!   reconnects with a growing pause (1 s to 60 s), publishes everything
//!   again on each connect and when Home Assistant says `online` on
//!   `<discovery_prefix>/status`, and leaves a retained `offline` as its will.
//! - [`check`] (`hearth mqtt check`, the admin's test button) and
//!   [`set_password`] (`hearth mqtt set-password`, the admin's page).
//!
//! **Architecture Invariant:** only the broker's checked address is dialled
//! (home network only), and only toy ids, toy names, states, counts and
//! event names are published (see [`discovery`]).

pub mod discovery;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::Packet;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::config::MqttConfig;
use crate::datadir::{DataDir, DataFile};
use crate::domain::{Direction, MessageState};
use crate::error::{Code, Error, Result};
use crate::events::PageEvent;
use crate::state::AppState;
use crate::store::audit::{self, Action, AuditEntry, Outcome};
use crate::store::{self, Store};

pub use discovery::{HubFacts, Topics, ToyEvent, ToyFacts};
pub use session::{MqttError, Session};

/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often every state is published again without news.
const STATE_EVERY: Duration = Duration::from_secs(300);
/// A recording older than this when its event is seen is not announced
/// (its `event: message` is a later change, such as *keep*).
const FRESH_SECS: i64 = 300;

/// How the link to the broker is doing, for the admin's page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LinkState {
    /// MQTT is off in the configuration.
    #[default]
    Off,
    /// Trying to connect.
    Connecting,
    /// Connected to this address.
    Connected(String),
    /// The last attempt failed, with why.
    Failed(String),
}

/// The publisher's status and its "try now" bell; cheap to clone, kept in
/// [`AppState`].
#[derive(Clone, Default)]
pub struct Link {
    state: Arc<Mutex<LinkState>>,
    retry: Arc<Notify>,
}

impl Link {
    /// The state now.
    pub fn state(&self) -> LinkState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set(&self, s: LinkState) {
        if let Ok(mut g) = self.state.lock() {
            *g = s;
        }
    }

    /// Ends the current pause and connects again (a new password was set).
    pub fn retry_now(&self) {
        self.retry.notify_one();
    }
}

/// The hub's id on the broker: the start of its CA's fingerprint, stable
/// for the life of the hub (the CA never changes).
pub fn hub_id(state: &AppState) -> String {
    state.pki.ca_sha256().to_hex()[..12].to_owned()
}

/// The broker password kept in the data directory, if any.
pub fn read_password(data_dir: &Path) -> std::result::Result<Option<String>, MqttError> {
    let path = DataDir::new(data_dir).path(DataFile::MqttPassword);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim_end_matches(['\n', '\r']).to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MqttError::Protocol(format!(
            "cannot read the MQTT password file {}: {e}",
            path.display()
        ))),
    }
}

/// Stores the broker password (mode 0600, in the data directory, never in
/// the world-readable configuration) and records it in the ledger (not the
/// password). An empty password removes the file.
pub async fn set_password(
    store: &Store,
    data_dir: &Path,
    now: i64,
    actor: &str,
    password: String,
) -> Result<()> {
    if password.len() > 1024 || password.chars().any(char::is_control) {
        return Err(Error::new(
            Code::InvalidInput,
            "the MQTT password is at most 1024 bytes, on one line",
        ));
    }
    let path = DataDir::new(data_dir).path(DataFile::MqttPassword);
    let removed = password.is_empty();
    tokio::task::spawn_blocking(move || {
        if removed {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            crate::datadir::write_private_file(&path, password.as_bytes())
        }
    })
    .await
    .map_err(|e| Error::internal(anyhow::anyhow!("password writer: {e}")))?
    .map_err(|e| {
        Error::internal(anyhow::Error::new(e).context("cannot store the MQTT password"))
    })?;
    let actor = actor.to_owned();
    store
        .write(move |tx| {
            audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(actor),
                    action: Action::MqttPasswordSet,
                    subject: None,
                    toy: None,
                    client: String::new(),
                    outcome: Outcome::Success,
                    detail: if removed {
                        "MQTT password removed".into()
                    } else {
                        "MQTT password set".into()
                    },
                },
            )
        })
        .await?;
    Ok(())
}

/// Connects once with the configured settings and password, and says how
/// it went: `Ok` names the broker's address and the transport.
pub async fn check(cfg: &MqttConfig, data_dir: &Path) -> std::result::Result<String, MqttError> {
    let password = read_password(data_dir)?;
    let client_id = format!("hearth-check-{}", hex::encode(rand::random::<[u8; 4]>()));
    let s = Session::open(
        cfg,
        &session::Hello {
            client_id: &client_id,
            password: password.as_deref(),
            will: None,
        },
    )
    .await?;
    let addr = s.addr;
    s.disconnect().await;
    let how = if cfg.tls {
        "over TLS, broker certificate checked"
    } else {
        "without TLS"
    };
    let who = if cfg.username.is_empty() {
        "without a user name".to_owned()
    } else {
        format!("as {}", cfg.username)
    };
    Ok(format!("connected to the broker at {addr} {how}, {who}"))
}

/// The facts that may leave the hub, now.
async fn facts(state: &AppState) -> Result<(HubFacts, Vec<ToyFacts>)> {
    let toys = crate::toys::paired(state).await?;
    let counts = state.store.read(store::messages::unheard_per_toy).await?;
    let toys: Vec<ToyFacts> = toys
        .into_iter()
        .map(|t| ToyFacts {
            unheard: counts.get(&t.toy.id).copied().unwrap_or(0),
            toy_id: t.toy.toy_id.to_string(),
            name: t.toy.name.clone(),
            online: t.online,
            battery: t.toy.battery,
            last_seen: t.toy.last_seen.map(crate::clock::rfc3339),
        })
        .collect();
    let hub = HubFacts {
        hub_id: hub_id(state),
        toys: toys.len(),
        unheard: toys.iter().map(|t| t.unheard).sum(),
    };
    Ok((hub, toys))
}

/// What the publisher remembers across sessions.
#[derive(Default)]
struct Memory {
    /// Toys whose config is on the broker, with the name in it.
    configs: HashMap<String, String>,
    /// Messages already announced (kept in the hub, never published).
    announced: HashSet<String>,
}

impl Memory {
    fn announce_once(&mut self, id: &str) -> bool {
        if self.announced.len() > 4096 {
            self.announced.clear();
        }
        self.announced.insert(id.to_owned())
    }
}

/// The publisher: runs until the hub shuts down. Does nothing when MQTT is off.
pub async fn run(state: Arc<AppState>) {
    let cfg = state.config.mqtt.clone();
    if !cfg.enabled {
        return;
    }
    let topics = Topics::new(&cfg, &hub_id(&state));
    let client_id = format!("hearth-{}", hub_id(&state));
    let availability = topics.availability();
    let mut memory = Memory::default();
    let mut backoff = MIN_BACKOFF;
    let mut last_error = String::new();
    loop {
        state.mqtt.set(LinkState::Connecting);
        // Events from before this connection are stale: the full state
        // published on connect covers them.
        let mut rx = state.events.subscribe();
        let opened = match read_password(&state.config.data_dir) {
            Ok(password) => {
                let hello = session::Hello {
                    client_id: &client_id,
                    password: password.as_deref(),
                    will: Some((&availability, "offline")),
                };
                tokio::select! {
                    s = Session::open(&cfg, &hello) => s,
                    _ = state.events.shutdown() => return,
                }
            }
            Err(e) => Err(e),
        };
        let failure = match opened {
            Ok(s) => {
                tracing::info!(broker = %s.addr, "MQTT: connected; publishing toy status");
                state.mqtt.set(LinkState::Connected(s.addr.to_string()));
                backoff = MIN_BACKOFF;
                last_error.clear();
                match serve(&state, &topics, s, &mut rx, &mut memory).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let why = failure.to_string();
        if why != last_error {
            tracing::warn!("MQTT: {why}; retrying (the hub works on without it)");
            last_error = why.clone();
        }
        state.mqtt.set(LinkState::Failed(why));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = state.mqtt.retry.notified() => backoff = MIN_BACKOFF,
            _ = state.events.shutdown() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn internal(e: Error) -> MqttError {
    MqttError::Protocol(format!("cannot read the hub's state: {e}"))
}

async fn publish_json(
    s: &mut Session,
    topic: &str,
    v: &serde_json::Value,
    retain: bool,
) -> std::result::Result<(), MqttError> {
    s.publish(topic, v.to_string().as_bytes(), retain).await
}

/// Publishes every config and state, removes the configs of toys no longer
/// paired, and says `online`.
async fn publish_all(
    state: &AppState,
    topics: &Topics,
    s: &mut Session,
    memory: &mut Memory,
) -> std::result::Result<(), MqttError> {
    let (hub, toys) = facts(state).await.map_err(internal)?;
    publish_json(s, &topics.hub_config(), &topics.hub_config_payload(), true).await?;
    // Toys unpaired while the broker was away, or while MQTT was off or the
    // hub was not running: an empty retained config removes any left behind
    // (one for a device Home Assistant never saw changes nothing).
    let paired: HashSet<&str> = toys.iter().map(|t| t.toy_id.as_str()).collect();
    let mut gone: HashSet<String> = memory
        .configs
        .keys()
        .filter(|k| !paired.contains(k.as_str()))
        .cloned()
        .collect();
    gone.extend(
        state
            .store
            .read(store::toys::removed_ids)
            .await
            .map_err(|e| internal(e.into()))?,
    );
    for id in gone {
        remove_toy(topics, s, memory, &id).await?;
    }
    for t in &toys {
        publish_config(topics, s, memory, t).await?;
    }
    publish_states(topics, s, &hub, &toys).await?;
    s.publish(&topics.availability(), b"online", true).await
}

async fn publish_states(
    topics: &Topics,
    s: &mut Session,
    hub: &HubFacts,
    toys: &[ToyFacts],
) -> std::result::Result<(), MqttError> {
    for t in toys {
        publish_json(
            s,
            &topics.toy_state(&t.toy_id),
            &discovery::toy_state_payload(t),
            true,
        )
        .await?;
    }
    publish_json(
        s,
        &topics.hub_state(),
        &discovery::hub_state_payload(hub),
        true,
    )
    .await
}

/// Publishes one toy's retained discovery config and remembers its name.
async fn publish_config(
    topics: &Topics,
    s: &mut Session,
    memory: &mut Memory,
    t: &ToyFacts,
) -> std::result::Result<(), MqttError> {
    let config = topics.toy_config_payload(t);
    publish_json(s, &topics.toy_config(&t.toy_id), &config, true).await?;
    memory.configs.insert(t.toy_id.clone(), t.name.clone());
    Ok(())
}

/// Empty retained configs remove the toy's device and entities from Home
/// Assistant; its retained state is cleared too.
async fn remove_toy(
    topics: &Topics,
    s: &mut Session,
    memory: &mut Memory,
    toy_id: &str,
) -> std::result::Result<(), MqttError> {
    s.publish(&topics.toy_config(toy_id), b"", true).await?;
    s.publish(&topics.toy_state(toy_id), b"", true).await?;
    memory.configs.remove(toy_id);
    Ok(())
}

/// Publishes one toy's config (when new or renamed) and everyone's state.
async fn refresh(
    state: &AppState,
    topics: &Topics,
    s: &mut Session,
    memory: &mut Memory,
    toy_id: Option<&str>,
) -> std::result::Result<(), MqttError> {
    let (hub, toys) = facts(state).await.map_err(internal)?;
    if let Some(t) = toy_id.and_then(|id| toys.iter().find(|t| t.toy_id == id)) {
        if memory.configs.get(&t.toy_id) != Some(&t.name) {
            publish_config(topics, s, memory, t).await?;
        }
    }
    publish_states(topics, s, &hub, &toys).await
}

/// A contact's reply through the relay that now awaits a parent's
/// approval, announced once on the shared message's toy (only the event
/// name goes out: never the contact, the reply or its audio).
fn reply_event(
    memory: &mut Memory,
    m: &serde_json::Value,
    public_id: &str,
) -> Option<(String, ToyEvent)> {
    if m["direction"] != "from_contact" || m["state"] != "awaiting_approval" {
        return None;
    }
    let toy = m["toy_id"].as_str()?.to_owned();
    let event = ToyEvent::ReplyAwaitingApproval;
    let key = format!("{}:{public_id}", event.as_str());
    memory.announce_once(&key).then_some((toy, event))
}

/// The event a message change is, if it is one to announce.
async fn message_event(
    state: &AppState,
    memory: &mut Memory,
    public_id: &str,
) -> Result<Option<(String, ToyEvent)>> {
    let id = public_id.to_owned();
    let Some(m) = state
        .store
        .read(move |c| store::messages::get(c, &id))
        .await?
    else {
        return Ok(None);
    };
    let event = match (m.direction, m.state) {
        (Direction::FromToy, MessageState::Received)
            if state.now() - m.created_at <= FRESH_SECS =>
        {
            ToyEvent::NewRecording
        }
        (Direction::ToToy, MessageState::Played) => ToyEvent::MessagePlayed,
        _ => return Ok(None),
    };
    let key = format!("{}:{}", event.as_str(), m.public_id);
    Ok(memory
        .announce_once(&key)
        .then(|| (m.toy_id.to_string(), event)))
}

async fn on_event(
    state: &AppState,
    topics: &Topics,
    s: &mut Session,
    memory: &mut Memory,
    event: PageEvent,
) -> std::result::Result<(), MqttError> {
    use crate::events::ToyChange;
    match event {
        PageEvent::Toy {
            change: ToyChange::Removed,
            toy_id: Some(id),
            ..
        } => {
            remove_toy(topics, s, memory, &id).await?;
            refresh(state, topics, s, memory, None).await
        }
        PageEvent::Toy {
            change: ToyChange::Pairing,
            ..
        } => Ok(()),
        PageEvent::Toy {
            toy_id: Some(id), ..
        } => refresh(state, topics, s, memory, Some(&id)).await,
        PageEvent::Toy { toy_id: None, .. } => Ok(()),
        PageEvent::ToyUpdated(toy) => {
            let id = toy["toy_id"].as_str().map(str::to_owned);
            refresh(state, topics, s, memory, id.as_deref()).await
        }
        PageEvent::Message(m) => {
            let Some(id) = m["id"].as_str() else {
                return Ok(());
            };
            let announced = match reply_event(memory, &m, id) {
                Some(reply) => Some(reply),
                None => message_event(state, memory, id).await.map_err(internal)?,
            };
            refresh(state, topics, s, memory, None).await?;
            if let Some((toy, e)) = announced {
                publish_json(
                    s,
                    &topics.toy_event(&toy),
                    &discovery::event_payload(e),
                    false,
                )
                .await?;
            }
            Ok(())
        }
        PageEvent::MessageDeleted { .. } => refresh(state, topics, s, memory, None).await,
        // One member's own heard state: Home Assistant counts what the
        // household has not heard, which this does not change.
        PageEvent::Unread { .. } => Ok(()),
    }
}

/// One connected session: subscribe to Home Assistant's status, publish
/// everything, then follow events until the connection or the hub ends
/// (`Ok` only at shutdown).
async fn serve(
    state: &AppState,
    topics: &Topics,
    mut s: Session,
    rx: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
    memory: &mut Memory,
) -> std::result::Result<(), MqttError> {
    let ha_status = topics.ha_status();
    s.subscribe(&ha_status).await?;
    publish_all(state, topics, &mut s, memory).await?;
    let mut ping = tokio::time::interval(session::KEEP_ALIVE / 2);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    // States are also refreshed now and then: a toy's last call is
    // recorded without an event while it stays online.
    let mut restate = tokio::time::interval(STATE_EVERY);
    restate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    restate.tick().await;
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            p = s.next() => {
                heard = Instant::now();
                match p? {
                    Packet::Publish(p) if p.topic == ha_status && p.payload.as_ref() == b"online" => {
                        tracing::info!("MQTT: Home Assistant came online; publishing everything again");
                        publish_all(state, topics, &mut s, memory).await?;
                    }
                    Packet::Disconnect => {
                        return Err(MqttError::Protocol("the broker disconnected".into()));
                    }
                    _ => {}
                }
            }
            e = rx.recv() => match e {
                Ok(e) => on_event(state, topics, &mut s, memory, e.page).await?,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!("MQTT: {n} events skipped; publishing everything again");
                    publish_all(state, topics, &mut s, memory).await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = restate.tick() => refresh(state, topics, &mut s, memory, None).await?,
            _ = ping.tick() => {
                if heard.elapsed() > session::KEEP_ALIVE * 2 {
                    return Err(MqttError::Protocol("the broker stopped answering pings".into()));
                }
                s.send(Packet::PingReq).await?;
            }
            _ = state.events.shutdown() => {
                let _ = s.publish(&topics.availability(), b"offline", true).await;
                s.disconnect().await;
                return Ok(());
            }
        }
    }
}

/// What the admin's MQTT page and `GET /api/v1/mqtt` show: the settings
/// from the configuration file (never the password), whether a password
/// is stored, and the link's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    /// `[mqtt] enabled`.
    pub enabled: bool,
    /// `[mqtt] host`.
    pub host: String,
    /// The port used.
    pub port: u16,
    /// `[mqtt] tls`.
    pub tls: bool,
    /// `[mqtt] ca_file`, when set.
    pub ca_file: Option<String>,
    /// `[mqtt] username`.
    pub username: String,
    /// `[mqtt] discovery_prefix`.
    pub discovery_prefix: String,
    /// `[mqtt] base_topic`.
    pub base_topic: String,
    /// A password is stored in the data directory.
    pub password_set: bool,
    /// `off`, `connecting`, `connected` or `failed`.
    pub link: &'static str,
    /// The broker's address when connected, why when failed.
    pub detail: Option<String>,
}

/// The MQTT settings and link state (admins only).
pub fn overview(state: &AppState, by: &crate::store::users::User) -> Result<Overview> {
    crate::accounts::require(by, crate::domain::Role::Admin)?;
    let c = &state.config.mqtt;
    let (link, detail) = match state.mqtt.state() {
        LinkState::Off => ("off", None),
        LinkState::Connecting => ("connecting", None),
        LinkState::Connected(a) => ("connected", Some(a)),
        LinkState::Failed(w) => ("failed", Some(w)),
    };
    let password_set = DataDir::new(&state.config.data_dir)
        .path(DataFile::MqttPassword)
        .exists();
    Ok(Overview {
        enabled: c.enabled,
        host: c.host.clone(),
        port: c.effective_port(),
        tls: c.tls,
        ca_file: c.ca_file.as_ref().map(|p| p.display().to_string()),
        username: c.username.clone(),
        discovery_prefix: c.discovery_prefix.clone(),
        base_topic: c.base_topic.clone(),
        password_set,
        link,
        detail,
    })
}

/// An admin sets (or, empty, removes) the broker password; the publisher
/// tries again at once with it.
pub async fn change_password(
    state: &AppState,
    by: &crate::store::users::User,
    password: String,
) -> Result<()> {
    crate::accounts::require(by, crate::domain::Role::Admin)?;
    set_password(
        &state.store,
        &state.config.data_dir,
        state.now(),
        by.username.as_str(),
        password,
    )
    .await?;
    state.mqtt.retry_now();
    Ok(())
}

/// An admin's "test connection": connects once with the current settings
/// and password. `Ok(Ok(how))` or `Ok(Err(why))`; `Err` only when the
/// caller may not.
pub async fn test_connection(
    state: &AppState,
    by: &crate::store::users::User,
) -> Result<std::result::Result<String, String>> {
    crate::accounts::require(by, crate::domain::Role::Admin)?;
    Ok(check(&state.config.mqtt, &state.config.data_dir)
        .await
        .map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reply_awaiting_approval_is_announced_once_on_its_toy() {
        let mut memory = Memory::default();
        let reply = json!({"id": "r1", "toy_id": "bear-1", "direction": "from_contact",
            "from": "Grandma", "state": "awaiting_approval"});
        let (toy, event) = reply_event(&mut memory, &reply, "r1").expect("announced");
        assert_eq!(toy, "bear-1");
        assert_eq!(event.as_str(), "reply_awaiting_approval");
        assert!(
            reply_event(&mut memory, &reply, "r1").is_none(),
            "only once"
        );
        let toy_message = json!({"id": "m1", "toy_id": "bear-1", "direction": "from_toy",
            "state": "received"});
        assert!(reply_event(&mut memory, &toy_message, "m1").is_none());
        let unshared = json!({"id": "r2", "toy_id": null, "direction": "from_contact",
            "state": "awaiting_approval"});
        assert!(reply_event(&mut memory, &unshared, "r2").is_none());
    }
}
