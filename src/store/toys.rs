//! Paired toys: identity (key and current certificate), name, status.
//!
//! A removed toy's id paired again with another key is another device (or
//! a reset toy): it gets a new row with an empty inbox, while the old row
//! keeps its conversation under the id `<toy_id>#<row id>` (`#` is never
//! part of a toy id) until retention removes its messages.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::character::{ClockTime, Picture, QuietHours};
use crate::domain::{ToyId, ToyRowId};

/// A toy row.
#[derive(Debug, Clone)]
pub struct Toy {
    /// Row id.
    pub id: ToyRowId,
    /// The toy's own stable id.
    pub toy_id: ToyId,
    /// Name shown to parents.
    pub name: String,
    /// Model text from pairing.
    pub model: String,
    /// Hex SHA-256 of its public key.
    pub key_fp: String,
    /// SHA-256 of its current client certificate.
    pub cert_sha256: Option<Vec<u8>>,
    /// When it paired.
    pub paired_at: i64,
    /// When a parent removed it, if so.
    pub removed_at: Option<i64>,
    /// Its last call to the hub.
    pub last_seen: Option<i64>,
    /// Battery percent it last reported.
    pub battery: Option<u8>,
    /// Firmware text it last reported.
    pub firmware: Option<String>,
    /// The child it belongs to.
    pub child_name: Option<String>,
    /// The key of an earlier toy that had this id, when that key differs
    /// (the id was paired again with another key).
    pub earlier_key_fp: Option<String>,
    /// The picture a parent chose (`None`: the default for its id).
    pub picture: Option<Picture>,
    /// Its quiet hours, once a parent set them (on or off).
    pub quiet: Option<QuietHours>,
}

const COLS: &str = "id, toy_id, name, model, key_fp, cert_sha256, paired_at, removed_at, last_seen, battery, firmware, child_name, \
    picture, quiet_on, quiet_start, quiet_end, \
    (SELECT o.key_fp FROM toys o WHERE substr(o.toy_id, 1, length(toys.toy_id) + 1) = toys.toy_id || '#' \
     ORDER BY o.id DESC LIMIT 1)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Toy> {
    Ok(Toy {
        id: r.get(0)?,
        toy_id: toy_id_column(r, 1)?,
        name: r.get(2)?,
        model: r.get(3)?,
        key_fp: r.get(4)?,
        cert_sha256: r.get(5)?,
        paired_at: r.get(6)?,
        removed_at: r.get(7)?,
        last_seen: r.get(8)?,
        battery: r.get(9)?,
        firmware: r.get(10)?,
        child_name: r.get(11)?,
        picture: picture_column(r, 12)?,
        quiet: quiet_columns(r, 13)?,
        earlier_key_fp: r.get(16)?,
    })
}

/// A damaged column: a value the vocabulary no longer knows.
fn damaged(i: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        Box::new(std::io::Error::other(msg)),
    )
}

fn picture_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Picture>> {
    let text: Option<String> = r.get(i)?;
    text.map(|t| Picture::parse(&t).map_err(|e| damaged(i, e.0)))
        .transpose()
}

/// `quiet_on`, `quiet_start`, `quiet_end` from column `i` on.
fn quiet_columns(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<QuietHours>> {
    let on: bool = r.get(i)?;
    let (start, end): (Option<u16>, Option<u16>) = (r.get(i + 1)?, r.get(i + 2)?);
    let (Some(start), Some(end)) = (start, end) else {
        return Ok(None);
    };
    let time = |m: u16, j: usize| {
        ClockTime::from_minutes(m)
            .ok_or_else(|| damaged(j, format!("{m} minutes is not a time of day")))
    };
    QuietHours::new(on, time(start, i + 1)?, time(end, i + 2)?)
        .map(Some)
        .map_err(|e| damaged(i + 1, e.0))
}

/// Reads a toy id column; one that no longer parses is a damaged row.
pub(crate) fn toy_id_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<ToyId> {
    let text: String = r.get(i)?;
    ToyId::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(e.0)),
        )
    })
}

/// A toy by its id, removed or not.
pub fn by_toy_id(c: &Connection, toy_id: &ToyId) -> StoreResult<Option<Toy>> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM toys WHERE toy_id = ?1"),
        [toy_id.as_str()],
        row,
    )
    .optional()?)
}

/// The paired (not removed) toy holding the certificate with this SHA-256.
pub fn by_cert(c: &Connection, cert_sha256: &[u8]) -> StoreResult<Option<Toy>> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM toys WHERE cert_sha256 = ?1 AND removed_at IS NULL"),
        [cert_sha256],
        row,
    )
    .optional()?)
}

/// Every paired toy, by name.
pub fn list_paired(c: &Connection) -> StoreResult<Vec<Toy>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM toys WHERE removed_at IS NULL ORDER BY name, toy_id"
    ))?;
    let v = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Removed rows, newest removal first: those of `toy_id` (its own row
/// and the rows set aside under `<toy_id>#<row id>`), or every one.
pub fn removed_rows(c: &Connection, toy_id: Option<&ToyId>) -> StoreResult<Vec<Toy>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM toys WHERE removed_at IS NOT NULL
           AND (?1 IS NULL OR toy_id = ?1 OR substr(toy_id, 1, length(?1) + 1) = ?1 || '#')
         ORDER BY removed_at DESC, id DESC"
    ))?;
    let v = st
        .query_map([toy_id.map(ToyId::as_str)], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The ids of toys removed (unpaired) at some time, as their parents knew
/// them (a row set aside by a re-pairing with another key counts too),
/// without the ones paired now.
pub fn removed_ids(c: &Connection) -> StoreResult<Vec<String>> {
    let mut st = c.prepare("SELECT DISTINCT toy_id FROM toys WHERE removed_at IS NOT NULL")?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let paired: std::collections::HashSet<String> = list_paired(c)?
        .into_iter()
        .map(|t| t.toy_id.to_string())
        .collect();
    let mut ids: Vec<String> = rows
        .into_iter()
        .map(|id| id.split('#').next().unwrap_or_default().to_owned())
        .filter(|id| !id.is_empty() && !paired.contains(id))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Records a completed pairing: a new toy, or a removed one paired again
/// (with the same key its conversation is kept; with another key the old
/// row is set aside and the toy starts afresh). A toy paired again keeps
/// the name it had on the hub; `name` (the toy's own) names a new toy only.
/// Only `cert_sha256` is accepted from now on.
pub fn upsert_paired(
    tx: &Connection,
    toy_id: &ToyId,
    name: &str,
    model: &str,
    key_fp: &str,
    cert_sha256: &[u8],
    now: i64,
) -> StoreResult<ToyRowId> {
    // The name the family knows the toy by (a rename on the hub) outlives
    // a re-pairing by the same toy id, with the same key or another.
    let known: Option<String> = tx
        .query_row(
            "SELECT name FROM toys WHERE toy_id = ?1",
            [toy_id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let name = known.as_deref().unwrap_or(name);
    tx.execute(
        "UPDATE toys SET toy_id = toy_id || '#' || id
         WHERE toy_id = ?1 AND removed_at IS NOT NULL AND key_fp <> ?2",
        params![toy_id.as_str(), key_fp],
    )
    .map_err(w)?;
    tx.execute(
        "INSERT INTO toys (toy_id, name, model, key_fp, cert_sha256, paired_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT(toy_id) DO UPDATE SET name = excluded.name, model = excluded.model,
             key_fp = excluded.key_fp, cert_sha256 = excluded.cert_sha256,
             paired_at = excluded.paired_at, removed_at = NULL, last_seen = excluded.last_seen",
        params![toy_id.as_str(), name, model, key_fp, cert_sha256, now],
    )
    .map_err(w)?;
    Ok(tx.query_row(
        "SELECT id FROM toys WHERE toy_id = ?1",
        [toy_id.as_str()],
        |r| r.get(0),
    )?)
}

/// Unpairs a toy: its certificate is refused from now on. True when it was paired.
pub fn remove(tx: &Connection, toy_id: &ToyId, now: i64) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE toys SET removed_at = ?1, cert_sha256 = NULL WHERE toy_id = ?2 AND removed_at IS NULL",
            params![now, toy_id.as_str()],
        )
        .map_err(w)?
        == 1)
}

/// Renames a paired toy. True when it exists.
pub fn rename(tx: &Connection, toy_id: &ToyId, name: &str) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE toys SET name = ?1 WHERE toy_id = ?2 AND removed_at IS NULL",
            params![name, toy_id.as_str()],
        )
        .map_err(w)?
        == 1)
}

/// Sets (or with `None` clears) the name of the child a toy belongs to.
/// True when the toy is paired.
pub fn set_child(tx: &Connection, toy_id: &ToyId, child: Option<&str>) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE toys SET child_name = ?1 WHERE toy_id = ?2 AND removed_at IS NULL",
            params![child, toy_id.as_str()],
        )
        .map_err(w)?
        == 1)
}

/// Sets (or with `None` resets to the default) a paired toy's picture.
/// True when the toy is paired.
pub fn set_picture(tx: &Connection, toy_id: &ToyId, picture: Option<Picture>) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE toys SET picture = ?1 WHERE toy_id = ?2 AND removed_at IS NULL",
            params![picture.map(Picture::as_str), toy_id.as_str()],
        )
        .map_err(w)?
        == 1)
}

/// Stores a paired toy's quiet hours. True when the toy is paired.
pub fn set_quiet(tx: &Connection, toy_id: &ToyId, q: &QuietHours) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE toys SET quiet_on = ?1, quiet_start = ?2, quiet_end = ?3
             WHERE toy_id = ?4 AND removed_at IS NULL",
            params![q.on, q.start.minutes(), q.end.minutes(), toy_id.as_str()],
        )
        .map_err(w)?
        == 1)
}

/// Records that the toy called the hub.
pub fn touch(tx: &Connection, id: ToyRowId, now: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE toys SET last_seen = ?1 WHERE id = ?2",
        params![now, id],
    )
    .map_err(w)?;
    Ok(())
}

/// Stores a status report.
pub fn set_status(
    tx: &Connection,
    id: ToyRowId,
    battery: Option<u8>,
    firmware: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE toys SET battery = COALESCE(?1, battery), firmware = COALESCE(?2, firmware), last_seen = ?3 WHERE id = ?4",
        params![battery, firmware, now, id],
    )
    .map_err(w)?;
    Ok(())
}
