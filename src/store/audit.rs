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
    /// An admin downloaded the export of everything.
    #[serde(rename = "export_created")]
    ExportCreated,
    /// An encrypted backup was made (page, command line or schedule).
    #[serde(rename = "backup_created")]
    BackupCreated,
    /// A backup was decrypted and verified without restoring it.
    #[serde(rename = "backup_checked")]
    BackupChecked,
    /// The hub was rebuilt from a backup.
    #[serde(rename = "restore_done")]
    RestoreDone,
    /// An admin deleted every message of one toy.
    #[serde(rename = "toy_messages_deleted")]
    ToyMessagesDeleted,
    /// An admin deleted the whole household (the one entry left after it).
    #[serde(rename = "household_deleted")]
    HouseholdDeleted,
    /// An admin set or removed the MQTT broker password.
    #[serde(rename = "mqtt_password_set")]
    MqttPasswordSet,
}

impl Action {
    const ALL: [Self; 14] = [
        Self::Setup,
        Self::PasswordChange,
        Self::PairingRequest,
        Self::PairingReveal,
        Self::PairingConfirm,
        Self::PairingReject,
        Self::ToyRemove,
        Self::ExportCreated,
        Self::BackupCreated,
        Self::BackupChecked,
        Self::RestoreDone,
        Self::ToyMessagesDeleted,
        Self::HouseholdDeleted,
        Self::MqttPasswordSet,
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
            Self::ExportCreated => "export_created",
            Self::BackupCreated => "backup_created",
            Self::BackupChecked => "backup_checked",
            Self::RestoreDone => "restore_done",
            Self::ToyMessagesDeleted => "toy_messages_deleted",
            Self::HouseholdDeleted => "household_deleted",
            Self::MqttPasswordSet => "mqtt_password_set",
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

/// A ledger entry with its row id, as the export's `ledger.csv` lists it.
#[derive(Debug, Clone)]
pub struct NumberedEntry {
    /// The row id (orders entries).
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// Calls `f` for every entry, oldest first, one row at a time.
pub fn for_each<E: From<rusqlite::Error>>(
    c: &Connection,
    mut f: impl FnMut(NumberedEntry) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = c.prepare(
        "SELECT id, at, actor, action, subject, outcome, detail FROM audit ORDER BY id ASC",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let action: String = r.get(3)?;
        let outcome: String = r.get(5)?;
        f(NumberedEntry {
            id: r.get(0)?,
            entry: AuditEntry {
                at: r.get(1)?,
                actor: r.get(2)?,
                action: Action::parse(&action).ok_or_else(|| unknown(3, "action", &action))?,
                subject: r.get(4)?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| unknown(5, "outcome", &outcome))?,
                detail: r.get(6)?,
            },
        })?;
    }
    Ok(())
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
