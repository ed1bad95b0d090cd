//! Use cases of the household ledger: reading it with filters and paging
//! (admins and parents; relatives never), its JSON and CSV forms, and
//! retention (entries older than [`RETENTION_DAYS`] are deleted by the
//! background job). Other features (the data export) reuse [`entries`] and
//! [`csv`]. Nothing here knows HTTP.

use crate::clock::rfc3339;
use crate::domain::Role;
use crate::error::{Code, Error, Result};
use crate::store::audit::{self, Action, Filter, StoredEntry};
use crate::store::users::User;
use crate::store::{self, Store};

/// Entries older than this many days are deleted.
pub const RETENTION_DAYS: i64 = 400;
/// The most entries one page (or one CSV download) holds.
pub const MAX_LIMIT: u32 = 1000;
/// A page's default size.
pub const DEFAULT_LIMIT: u32 = 50;

/// Which entries are asked for, as typed (query strings, the page's form).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// 1 to [`MAX_LIMIT`].
    pub limit: Option<String>,
    /// Only entries older than this entry id.
    pub before: Option<String>,
    /// One action of the vocabulary.
    pub action: Option<String>,
    /// A username, `toy:<id>` or `system`.
    pub actor: Option<String>,
    /// A toy id.
    pub toy: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl LedgerQuery {
    /// The checked filter: `400` with a precise code for a bad value.
    pub fn parse(self) -> Result<Filter> {
        let limit = match nonempty(self.limit) {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidLimit,
                        format!("limit is a number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let before = match nonempty(self.before) {
            None => None,
            Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::new(
                    Code::InvalidBefore,
                    "before is the id of a ledger entry (a positive number)",
                )
            })?),
        };
        let action = match nonempty(self.action) {
            None => None,
            Some(s) => Some(Action::parse(&s).ok_or_else(|| {
                Error::new(
                    Code::InvalidAction,
                    format!("{s:?} is not a ledger action; see the list in docs/api.md"),
                )
            })?),
        };
        Ok(Filter {
            action,
            actor: nonempty(self.actor),
            toy: nonempty(self.toy),
            before,
            limit,
        })
    }
}

/// Entries matching `q`, newest first, for an admin or a parent.
pub async fn entries(store: &Store, by: &User, q: LedgerQuery) -> Result<Vec<StoredEntry>> {
    crate::accounts::require(by, Role::Parent)?;
    let f = q.parse()?;
    Ok(store.read(move |c| audit::query(c, &f)).await?)
}

/// The members and toys that appear as actors, for the page's filter.
pub async fn actors(store: &Store, by: &User) -> Result<Vec<String>> {
    crate::accounts::require(by, Role::Parent)?;
    Ok(store.read(audit::actors).await?)
}

/// An entry's JSON (`docs/api.md`).
pub fn entry_json(s: &StoredEntry) -> serde_json::Value {
    let e = &s.entry;
    serde_json::json!({
        "id": s.id,
        "at": rfc3339(e.at),
        "actor": e.actor,
        "action": e.action,
        "target": e.subject,
        "toy": e.toy,
        "outcome": e.outcome,
        "client": e.client,
        "detail": e.detail,
    })
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break; a leading `=`, `+`, `-` or `@` is prefixed with `'` so that a
/// spreadsheet never runs it as a formula.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV header line.
pub const CSV_HEADER: &str = "id,at,actor,action,target,toy,outcome,client,detail\r\n";

/// Entries as CSV, with the header line (CRLF line ends).
pub fn csv(entries: &[StoredEntry]) -> String {
    let mut out = String::from(CSV_HEADER);
    for s in entries {
        out.push_str(&csv_row(s));
    }
    out
}

/// One entry as a CSV line (RFC 4180, CRLF), as [`csv`] and the export's
/// `ledger.csv` write it.
pub fn csv_row(s: &StoredEntry) -> String {
    let e = &s.entry;
    let row = [
        s.id.to_string(),
        rfc3339(e.at),
        e.actor.clone().unwrap_or_default(),
        e.action.as_str().to_owned(),
        e.subject.clone().unwrap_or_default(),
        e.toy.clone().unwrap_or_default(),
        e.outcome.as_str().to_owned(),
        e.client.clone(),
        e.detail.clone(),
    ];
    let mut line = row.iter().map(|f| field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// Deletes entries older than [`RETENTION_DAYS`] and invitations that
/// ended more than 30 days ago; returns how many entries went.
pub async fn retention_sweep(store: &Store, now: i64) -> Result<usize> {
    let n = store
        .write(move |tx| {
            store::members::purge_invites(tx, now - 30 * 86_400)?;
            audit::delete_before(tx, now - RETENTION_DAYS * 86_400)
        })
        .await?;
    if n > 0 {
        tracing::info!(count = n, "ledger retention removed old entries");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{AuditEntry, Outcome};

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut e = AuditEntry::new(0, Some("mum".into()), Action::SignIn, Outcome::Success);
        e.detail = "said \"hi\", then\nleft".into();
        e.subject = Some("=HYPERLINK(\"x\")".into());
        let text = csv(&[StoredEntry { id: 7, entry: e }]);
        assert_eq!(
            text,
            "id,at,actor,action,target,toy,outcome,client,detail\r\n\
             7,1970-01-01T00:00:00Z,mum,sign_in,\"'=HYPERLINK(\"\"x\"\")\",,success,,\"said \"\"hi\"\", then\nleft\"\r\n"
        );
    }

    #[test]
    fn queries_are_checked() {
        let q = |f: fn(&mut LedgerQuery)| {
            let mut q = LedgerQuery::default();
            f(&mut q);
            q.parse()
        };
        assert_eq!(q(|_| {}).expect("defaults").limit, DEFAULT_LIMIT);
        let code = |r: Result<Filter>| r.expect_err("refused").code;
        assert_eq!(code(q(|q| q.limit = Some("0".into()))), Code::InvalidLimit);
        assert_eq!(
            code(q(|q| q.limit = Some("1001".into()))),
            Code::InvalidLimit
        );
        assert_eq!(
            code(q(|q| q.before = Some("x".into()))),
            Code::InvalidBefore
        );
        assert_eq!(
            code(q(|q| q.action = Some("pairing.confirm".into()))),
            Code::InvalidAction
        );
        let f = q(|q| {
            q.action = Some("toy_paired".into());
            q.actor = Some(" ".into());
            q.toy = Some("bear".into());
        })
        .expect("ok");
        assert_eq!(f.action, Some(Action::ToyPaired));
        assert_eq!(f.actor, None, "an empty filter is no filter");
        assert_eq!(f.toy.as_deref(), Some("bear"));
    }
}
