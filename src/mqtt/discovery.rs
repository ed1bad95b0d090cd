//! What the hub publishes, as pure functions of typed facts: Home
//! Assistant's device-based discovery configs (one device for the hub, one
//! per paired toy `via_device` the hub), the retained states, and the event
//! payloads.
//!
//! **Privacy invariant:** the inputs are [`ToyFacts`] and [`HubFacts`]:
//! toy ids, the names parents gave the toys, online state, battery, last
//! seen and counts. No message id, audio, duration or member name can reach
//! a payload, because none is ever handed to this module.

use serde_json::{Value, json};

use crate::config::MqttConfig;

/// What happened, as Home Assistant's `event` entity names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyEvent {
    /// A child recorded a message.
    NewRecording,
    /// The toy played a parent's message.
    MessagePlayed,
    /// A relative's reply waits for a parent's approval.
    ReplyAwaitingApproval,
}

impl ToyEvent {
    /// Every event type, as declared in the discovery config.
    pub const ALL: [Self; 3] = [
        Self::NewRecording,
        Self::MessagePlayed,
        Self::ReplyAwaitingApproval,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewRecording => "new_recording",
            Self::MessagePlayed => "message_played",
            Self::ReplyAwaitingApproval => "reply_awaiting_approval",
        }
    }
}

/// The facts about one paired toy that may leave the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToyFacts {
    /// Its id.
    pub toy_id: String,
    /// The name its parents gave it.
    pub name: String,
    /// Online by the hub's rule (`toys::online`).
    pub online: bool,
    /// Battery percentage, when reported.
    pub battery: Option<u8>,
    /// When it last called, RFC 3339.
    pub last_seen: Option<String>,
    /// Its recordings no one has heard yet.
    pub unheard: i64,
}

/// The facts about the hub that may leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFacts {
    /// A stable id for this hub (from its CA's fingerprint).
    pub hub_id: String,
    /// Paired toys.
    pub toys: usize,
    /// Recordings no one has heard yet, all toys.
    pub unheard: i64,
}

/// The topics of one hub.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    base: String,
    hub_id: String,
}

/// An id usable as a Home Assistant object id (`[A-Za-z0-9_-]`).
fn object_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Topics {
    /// The topics for `cfg` and the hub `hub_id`.
    pub fn new(cfg: &MqttConfig, hub_id: &str) -> Self {
        Self {
            prefix: cfg.discovery_prefix.clone(),
            base: cfg.base_topic.clone(),
            hub_id: object_id(hub_id),
        }
    }

    /// Where the hub says `online` (retained) and its last will `offline`.
    pub fn availability(&self) -> String {
        format!("{}/status", self.base)
    }

    /// Home Assistant's birth and will messages.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The hub's own state (retained).
    pub fn hub_state(&self) -> String {
        format!("{}/hub/state", self.base)
    }

    /// The hub device's discovery config.
    pub fn hub_config(&self) -> String {
        format!("{}/device/hearth_{}/config", self.prefix, self.hub_id)
    }

    /// A toy's state (retained).
    pub fn toy_state(&self, toy_id: &str) -> String {
        format!("{}/toy/{toy_id}/state", self.base)
    }

    /// A toy's events (not retained).
    pub fn toy_event(&self, toy_id: &str) -> String {
        format!("{}/toy/{toy_id}/event", self.base)
    }

    /// A toy device's discovery config.
    pub fn toy_config(&self, toy_id: &str) -> String {
        format!(
            "{}/device/hearth_{}_{}/config",
            self.prefix,
            self.hub_id,
            object_id(toy_id)
        )
    }

    fn hub_ident(&self) -> String {
        format!("hearth_{}", self.hub_id)
    }

    fn toy_ident(&self, toy_id: &str) -> String {
        format!("hearth_{}_{}", self.hub_id, object_id(toy_id))
    }

    fn origin() -> Value {
        json!({"name": "Hearth", "sw": env!("CARGO_PKG_VERSION")})
    }

    /// The hub device: paired toys and unheard recordings.
    pub fn hub_config_payload(&self) -> Value {
        let id = self.hub_ident();
        json!({
            "device": {"identifiers": [id], "name": "Hearth", "manufacturer": "Hearth",
                       "model": "Hearth hub", "sw_version": env!("CARGO_PKG_VERSION")},
            "origin": Self::origin(),
            "availability_topic": self.availability(),
            "state_topic": self.hub_state(),
            "components": {
                "toys": {"platform": "sensor", "unique_id": format!("{id}_toys"),
                         "name": "Paired toys", "icon": "mdi:teddy-bear",
                         "state_class": "measurement",
                         "value_template": "{{ value_json.toys }}"},
                "unheard": {"platform": "sensor", "unique_id": format!("{id}_unheard"),
                            "name": "Unheard recordings", "icon": "mdi:message-badge",
                            "state_class": "measurement",
                            "value_template": "{{ value_json.unheard }}"},
            },
        })
    }

    /// A toy's device: online, battery, last seen, unheard recordings and
    /// its event entity.
    pub fn toy_config_payload(&self, toy: &ToyFacts) -> Value {
        let id = self.toy_ident(&toy.toy_id);
        let events: Vec<&str> = ToyEvent::ALL.iter().map(|e| e.as_str()).collect();
        json!({
            "device": {"identifiers": [id], "name": toy.name, "manufacturer": "Hearth",
                       "model": "Hearth toy", "via_device": self.hub_ident()},
            "origin": Self::origin(),
            "availability_topic": self.availability(),
            "state_topic": self.toy_state(&toy.toy_id),
            "components": {
                "online": {"platform": "binary_sensor", "unique_id": format!("{id}_online"),
                           "name": "Online", "device_class": "connectivity",
                           "value_template": "{{ 'ON' if value_json.online else 'OFF' }}"},
                "battery": {"platform": "sensor", "unique_id": format!("{id}_battery"),
                            "name": "Battery", "device_class": "battery",
                            "unit_of_measurement": "%", "state_class": "measurement",
                            "value_template": "{{ value_json.battery }}"},
                "last_seen": {"platform": "sensor", "unique_id": format!("{id}_last_seen"),
                              "name": "Last seen", "device_class": "timestamp",
                              "value_template": "{{ value_json.last_seen }}"},
                "unheard": {"platform": "sensor", "unique_id": format!("{id}_unheard"),
                            "name": "Unheard recordings", "icon": "mdi:message-badge",
                            "state_class": "measurement",
                            "value_template": "{{ value_json.unheard }}"},
                "event": {"platform": "event", "unique_id": format!("{id}_event"),
                          "name": "Messages", "state_topic": self.toy_event(&toy.toy_id),
                          "event_types": events},
            },
        })
    }
}

/// A toy's retained state. A battery or last-seen time not known yet is
/// `null`, which the templates render as `None`: Home Assistant shows
/// "unknown".
pub fn toy_state_payload(toy: &ToyFacts) -> Value {
    json!({
        "online": toy.online,
        "battery": toy.battery,
        "last_seen": toy.last_seen,
        "unheard": toy.unheard,
    })
}

/// The hub's retained state.
pub fn hub_state_payload(hub: &HubFacts) -> Value {
    json!({"toys": hub.toys, "unheard": hub.unheard})
}

/// An event's payload, as the `event` entity expects it.
pub fn event_payload(e: ToyEvent) -> Value {
    json!({"event_type": e.as_str()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new(&MqttConfig::default(), "abc123")
    }

    fn bear() -> ToyFacts {
        ToyFacts {
            toy_id: "bear.1".into(),
            name: "Bear".into(),
            online: true,
            battery: Some(80),
            last_seen: Some("2026-11-30T10:00:00Z".into()),
            unheard: 2,
        }
    }

    #[test]
    fn toy_device_is_device_based_discovery_via_the_hub() {
        let t = topics();
        assert_eq!(
            t.toy_config("bear.1"),
            "homeassistant/device/hearth_abc123_bear_1/config"
        );
        let c = t.toy_config_payload(&bear());
        assert_eq!(c["device"]["via_device"], "hearth_abc123");
        assert_eq!(
            t.hub_config_payload()["device"]["identifiers"][0],
            "hearth_abc123"
        );
        assert_eq!(c["device"]["name"], "Bear");
        assert_eq!(c["availability_topic"], "hearth/status");
        assert_eq!(c["state_topic"], "hearth/toy/bear.1/state");
        let cmps = c["components"].as_object().expect("components");
        let platforms: Vec<(&str, &str)> = cmps
            .iter()
            .map(|(k, v)| (k.as_str(), v["platform"].as_str().expect("platform")))
            .collect();
        assert_eq!(
            platforms,
            [
                ("battery", "sensor"),
                ("event", "event"),
                ("last_seen", "sensor"),
                ("online", "binary_sensor"),
                ("unheard", "sensor"),
            ]
        );
        assert!(cmps.values().all(|v| v["unique_id"].is_string()));
        assert_eq!(
            cmps["event"]["event_types"],
            json!(["new_recording", "message_played", "reply_awaiting_approval"])
        );
        assert_eq!(cmps["event"]["state_topic"], "hearth/toy/bear.1/event");
        assert_eq!(cmps["last_seen"]["device_class"], "timestamp");
        assert_eq!(cmps["battery"]["unit_of_measurement"], "%");
    }

    #[test]
    fn states_carry_only_status_and_counts() {
        assert_eq!(
            toy_state_payload(&bear()),
            json!({"online": true, "battery": 80, "last_seen": "2026-11-30T10:00:00Z", "unheard": 2})
        );
        let hub = HubFacts {
            hub_id: "abc123".into(),
            toys: 1,
            unheard: 2,
        };
        assert_eq!(hub_state_payload(&hub), json!({"toys": 1, "unheard": 2}));
        assert_eq!(
            event_payload(ToyEvent::NewRecording),
            json!({"event_type": "new_recording"})
        );
    }
}
