//! The audit log: who did what to which toy or account, and how it ended.

use rusqlite::{Connection, params};

use super::{StoreResult, w};

/// An audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// Who acted: a username, `toy:<id>` or `system`.
    pub actor: Option<String>,
    /// What was attempted, e.g. `pairing.confirm`.
    pub action: String,
    /// What it was about, e.g. a toy id.
    pub subject: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// More detail for people.
    pub detail: String,
}

/// Appends an entry.
pub fn record(tx: &Connection, e: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, subject, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.at, e.actor, e.action, e.subject, e.outcome, e.detail],
    )
    .map_err(w)?;
    Ok(())
}

/// The newest entries first.
pub fn recent(c: &Connection, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let mut st = c.prepare(
        "SELECT at, actor, action, subject, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let v = st
        .query_map([limit], |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                subject: r.get(3)?,
                outcome: r.get(4)?,
                detail: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}
