//! The ledger (audit log): who did what to which toy, message or account,
//! from which address, and how it ended. What can be recorded is the
//! [`Action`] and [`Outcome`] lists; their wire names are the vocabulary of
//! `docs/api.md`. Children's voices never appear here: a message entry
//! names the message id and its duration only.

use rusqlite::{Connection, params};

use super::{StoreResult, w};

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// What was attempted.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum Action {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl Action {
            /// Every action, in the order of `docs/api.md`.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The stored and wire form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                }
            }
        }
    };
}

actions! {
    /// First-run setup made the household and its first admin.
    Setup = "setup",
    /// A member signed in.
    SignIn = "sign_in",
    /// A sign-in with a wrong username or password (capped per address).
    SignInFailed = "sign_in_failed",
    /// A password was changed (account page or `hearth user passwd`).
    PasswordChanged = "password_changed",
    /// A toy asked to pair.
    PairingRequested = "pairing_requested",
    /// A toy revealed its nonce (recorded when it did not match).
    PairingRevealed = "pairing_revealed",
    /// A parent typed a wrong pairing code.
    PairingCodeWrong = "pairing_code_wrong",
    /// A parent declined a pairing.
    PairingRejected = "pairing_rejected",
    /// A parent confirmed a pairing: the toy is paired.
    ToyPaired = "toy_paired",
    /// A parent renamed a toy.
    ToyRenamed = "toy_renamed",
    /// A parent removed a toy.
    ToyRemoved = "toy_removed",
    /// A parent changed a toy's picture or quiet hours.
    ToySettingsChanged = "toy_settings_changed",
    /// A member sent a message to a toy (id and duration only).
    MessageSent = "message_sent",
    /// A toy uploaded a recording (id and duration only).
    MessageReceived = "message_received",
    /// A toy played a message to the child.
    MessagePlayed = "message_played",
    /// An admin invited a parent or a relative.
    InviteCreated = "invite_created",
    /// An admin revoked an invitation.
    InviteRevoked = "invite_revoked",
    /// Someone joined the household with an invitation.
    MemberJoined = "member_joined",
    /// A wrong, used or expired invitation code (capped per address).
    JoinFailed = "join_failed",
    /// A member was added on the command line.
    MemberAdded = "member_added",
    /// A member's role or toys changed.
    MemberChanged = "member_changed",
    /// A member was removed.
    MemberRemoved = "member_removed",
    /// An admin changed the household's settings.
    SettingsChanged = "settings_changed",
    /// An admin downloaded the export of everything.
    ExportCreated = "export_created",
    /// An encrypted backup was made (page, command line or schedule).
    BackupCreated = "backup_created",
    /// A backup was decrypted and verified without restoring it.
    BackupChecked = "backup_checked",
    /// The hub was rebuilt from a backup.
    RestoreDone = "restore_done",
    /// An admin deleted every message of one toy.
    ToyMessagesDeleted = "toy_messages_deleted",
    /// An admin deleted the whole household (the one entry left after it).
    HouseholdDeleted = "household_deleted",
    /// An admin set or removed the MQTT broker password.
    MqttPasswordSet = "mqtt_password_set",
    /// A parent shared a message through the relay.
    ShareCreated = "share_created",
    /// A parent stopped a share (or turned relay off).
    ShareStopped = "share_stopped",
    /// A share reached its end.
    ShareExpired = "share_expired",
    /// An object was uploaded to the relay mailbox (detail: its size).
    RelayUpload = "relay_upload",
    /// An object was deleted from the relay mailbox.
    RelayDelete = "relay_delete",
    /// A contact's reply was fetched and awaits approval.
    ReplyReceived = "reply_received",
    /// A parent approved a reply to a toy.
    ReplyApproved = "reply_approved",
    /// A parent discarded a reply.
    ReplyDiscarded = "reply_discarded",
    /// A reply object that did not decrypt or validate was deleted.
    ReplyRejected = "reply_rejected",
    /// An admin set, changed or removed the relay mailbox (or a live check failed).
    RelaySettingsChanged = "relay_settings_changed",
}

impl Action {
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
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
    /// What it was about: a toy id, a message id, a username, an invitation.
    pub subject: Option<String>,
    /// The toy it concerns, when it concerns one (the ledger's toy filter).
    pub toy: Option<String>,
    /// The network address it came from (empty for the command line and jobs).
    pub client: String,
    /// How it ended.
    pub outcome: Outcome,
    /// More detail for people.
    pub detail: String,
}

impl AuditEntry {
    /// An entry with no subject, toy, client or detail yet.
    pub fn new(at: i64, actor: Option<String>, action: Action, outcome: Outcome) -> Self {
        Self {
            at,
            actor,
            action,
            subject: None,
            toy: None,
            client: String::new(),
            outcome,
            detail: String::new(),
        }
    }
}

/// A stored entry with its row id (the ledger's `before` cursor).
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Row id.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// The actor of entries written by the command line (`hearth user …`).
pub const SYSTEM: &str = "system";

/// Appends an entry.
pub fn record(tx: &Connection, e: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, subject, toy, client, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.at,
            e.actor,
            e.action.as_str(),
            e.subject,
            e.toy,
            e.client,
            e.outcome.as_str(),
            e.detail
        ],
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

const COLS: &str = "id, at, actor, action, subject, toy, client, outcome, detail";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    let action: String = r.get(3)?;
    let outcome: String = r.get(7)?;
    Ok(StoredEntry {
        id: r.get(0)?,
        entry: AuditEntry {
            at: r.get(1)?,
            actor: r.get(2)?,
            action: Action::parse(&action).ok_or_else(|| unknown(3, "action", &action))?,
            subject: r.get(4)?,
            toy: r.get(5)?,
            client: r.get(6)?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| unknown(7, "outcome", &outcome))?,
            detail: r.get(8)?,
        },
    })
}

/// Which entries to read: all filters optional, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this action.
    pub action: Option<Action>,
    /// Only this actor (a username, `toy:<id>` or `system`).
    pub actor: Option<String>,
    /// Only entries about this toy.
    pub toy: Option<String>,
    /// Only entries older than this row id.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Entries matching `f`, newest first.
pub fn query(c: &Connection, f: &Filter) -> StoreResult<Vec<StoredEntry>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM audit
         WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR actor = ?2)
           AND (?3 IS NULL OR toy = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let v = st
        .query_map(
            params![
                f.action.map(Action::as_str),
                f.actor,
                f.toy,
                f.before,
                f.limit
            ],
            row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Calls `f` for every entry, oldest first, one row at a time (the
/// export's `ledger.csv`, never the whole ledger in memory).
pub fn for_each<E: From<rusqlite::Error>>(
    c: &Connection,
    mut f: impl FnMut(StoredEntry) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = c.prepare(&format!("SELECT {COLS} FROM audit ORDER BY id ASC"))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(row(r)?)?;
    }
    Ok(())
}

/// The newest entries first.
pub fn recent(c: &Connection, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let f = Filter {
        limit,
        ..Filter::default()
    };
    Ok(query(c, &f)?.into_iter().map(|s| s.entry).collect())
}

/// The distinct actors, for the ledger page's filter.
pub fn actors(c: &Connection) -> StoreResult<Vec<String>> {
    let mut st = c.prepare(
        "SELECT DISTINCT actor FROM audit WHERE actor IS NOT NULL ORDER BY actor LIMIT 200",
    )?;
    let v = st
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(v)
}

/// Deletes entries from before `cutoff`; returns how many.
pub fn delete_before(tx: &Connection, cutoff: i64) -> StoreResult<usize> {
    tx.execute("DELETE FROM audit WHERE at < ?1", [cutoff])
        .map_err(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_outcomes_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert_eq!(
                serde_json::to_value(a).expect("json"),
                serde_json::json!(a.as_str())
            );
            assert!(
                a.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} is snake_case",
                a.as_str()
            );
        }
        assert_eq!(Action::parse("pairing.confirm"), None);
        assert_eq!(Outcome::parse("success"), Some(Outcome::Success));
        assert_eq!(Outcome::parse("maybe"), None);
    }

    #[test]
    fn version_1_rows_are_renamed_by_the_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hearth.db");
        {
            let c = Connection::open(&path).expect("open");
            c.execute_batch(include_str!("migrations/0001_initial.sql"))
                .expect("v1");
            c.pragma_update(None, "user_version", 1).expect("version");
            for (action, outcome, subject) in [
                ("pairing.confirm", "success", "bear"),
                ("pairing.confirm", "failure", "bear"),
                ("password.change", "success", "dad"),
                ("toy.remove", "success", "fox"),
                ("setup", "success", ""),
            ] {
                c.execute(
                    "INSERT INTO audit (at, actor, action, subject, outcome) VALUES (1, 'mum', ?1, ?2, ?3)",
                    params![action, subject, outcome],
                )
                .expect("row");
            }
        }
        let store = super::super::Store::open(dir.path()).expect("migrated");
        let mut got = store
            .read_blocking(|c| recent(c, 10))
            .expect("read")
            .into_iter()
            .map(|e| (e.action.as_str(), e.toy))
            .collect::<Vec<_>>();
        got.reverse();
        assert_eq!(
            got,
            vec![
                ("toy_paired", Some("bear".to_owned())),
                ("pairing_code_wrong", Some("bear".to_owned())),
                ("password_changed", None),
                ("toy_removed", Some("fox".to_owned())),
                ("setup", None),
            ]
        );
    }
}
