//! The ledger (audit log): who did what to which toy or account, and how
//! it ended. What can be recorded is the [`Action`] and [`Outcome`] lists.

use rusqlite::{Connection, params};

use super::{StoreResult, w};

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// First-run setup made the household and its first admin.
    #[serde(rename = "setup")]
    Setup,
    /// A password was changed (on the account page or with `hearth user passwd`).
    #[serde(rename = "password.change")]
    PasswordChange,
    /// A toy asked to pair.
    #[serde(rename = "pairing.request")]
    PairingRequest,
    /// A toy revealed its nonce.
    #[serde(rename = "pairing.reveal")]
    PairingReveal,
    /// A parent typed the pairing code.
    #[serde(rename = "pairing.confirm")]
    PairingConfirm,
    /// A parent declined a pairing.
    #[serde(rename = "pairing.reject")]
    PairingReject,
    /// A parent removed a toy.
    #[serde(rename = "toy.remove")]
    ToyRemove,
    /// A parent shared a message through the relay.
    #[serde(rename = "share_created")]
    ShareCreated,
    /// A parent stopped a share (or turned relay off).
    #[serde(rename = "share_stopped")]
    ShareStopped,
    /// A share reached its end.
    #[serde(rename = "share_expired")]
    ShareExpired,
    /// An object was uploaded to the relay mailbox (detail: its size).
    #[serde(rename = "relay_upload")]
    RelayUpload,
    /// An object was deleted from the relay mailbox.
    #[serde(rename = "relay_delete")]
    RelayDelete,
    /// A contact's reply was fetched and awaits approval.
    #[serde(rename = "reply_received")]
    ReplyReceived,
    /// A parent approved a reply to a toy.
    #[serde(rename = "reply_approved")]
    ReplyApproved,
    /// A parent discarded a reply.
    #[serde(rename = "reply_discarded")]
    ReplyDiscarded,
    /// A reply object that did not decrypt or validate was deleted.
    #[serde(rename = "reply_rejected")]
    ReplyRejected,
    /// An admin set, changed or removed the relay mailbox (or a live check failed).
    #[serde(rename = "relay_settings_changed")]
    RelaySettingsChanged,
}

impl Action {
    const ALL: [Self; 17] = [
        Self::Setup,
        Self::PasswordChange,
        Self::PairingRequest,
        Self::PairingReveal,
        Self::PairingConfirm,
        Self::PairingReject,
        Self::ToyRemove,
        Self::ShareCreated,
        Self::ShareStopped,
        Self::ShareExpired,
        Self::RelayUpload,
        Self::RelayDelete,
        Self::ReplyReceived,
        Self::ReplyApproved,
        Self::ReplyDiscarded,
        Self::ReplyRejected,
        Self::RelaySettingsChanged,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::PasswordChange => "password.change",
            Self::PairingRequest => "pairing.request",
            Self::PairingReveal => "pairing.reveal",
            Self::PairingConfirm => "pairing.confirm",
            Self::PairingReject => "pairing.reject",
            Self::ToyRemove => "toy.remove",
            Self::ShareCreated => "share_created",
            Self::ShareStopped => "share_stopped",
            Self::ShareExpired => "share_expired",
            Self::RelayUpload => "relay_upload",
            Self::RelayDelete => "relay_delete",
            Self::ReplyReceived => "reply_received",
            Self::ReplyApproved => "reply_approved",
            Self::ReplyDiscarded => "reply_discarded",
            Self::ReplyRejected => "reply_rejected",
            Self::RelaySettingsChanged => "relay_settings_changed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused or failed.
    Failure,
}

impl Outcome {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// Who acted: a username, `toy:<id>` or `system` (the command line).
    pub actor: Option<String>,
    /// What was attempted.
    pub action: Action,
    /// What it was about, e.g. a toy id or a username.
    pub subject: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// More detail for people.
    pub detail: String,
}

/// The actor of entries written by the command line (`hearth user …`).
pub const SYSTEM: &str = "system";

/// Appends an entry.
pub fn record(tx: &Connection, e: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, subject, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.at, e.actor, e.action.as_str(), e.subject, e.outcome.as_str(), e.detail],
    )
    .map_err(w)?;
    Ok(())
}

fn unknown(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        Box::new(std::io::Error::other(format!("unknown {what} {value:?}"))),
    )
}

/// The newest entries first.
pub fn recent(c: &Connection, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let mut st = c.prepare(
        "SELECT at, actor, action, subject, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let v = st
        .query_map([limit], |r| {
            let action: String = r.get(2)?;
            let outcome: String = r.get(4)?;
            Ok(AuditEntry {
                at: r.get(0)?,
                actor: r.get(1)?,
                action: Action::parse(&action).ok_or_else(|| unknown(2, "action", &action))?,
                subject: r.get(3)?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| unknown(4, "outcome", &outcome))?,
                detail: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_outcomes_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).expect("json"),
                serde_json::json!(a.as_str())
            );
        }
        assert_eq!(Action::parse("pairing.guess"), None);
        assert_eq!(Outcome::parse("success"), Some(Outcome::Success));
        assert_eq!(Outcome::parse("maybe"), None);
    }
}
