//! The export: every clip as `.ogg` under `messages/<toy name>/`, with
//! readable file names (date, direction, who), `messages.json`,
//! `ledger.csv` and `index.html`, a player that works from the unpacked
//! folder with no network and no script. The zip is streamed: a blocking
//! thread reads one row at a time from one read transaction (a consistent
//! snapshot) and writes the zip crate's streaming writer into a bounded
//! channel, which the surface sends on; neither memory nor disk ever
//! holds the whole archive. Entries are stored, not compressed: Opus does
//! not compress further, and the rest is small.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use askama::Template;
use rusqlite::Connection;
use serde_json::json;
use time::OffsetDateTime;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{ChannelWriter, Download, spawn_download};
use crate::clock::rfc3339;
use crate::domain::{Direction, Role};
use crate::error::Result;
use crate::state::AppState;
use crate::store::{
    self,
    audit::{Action, AuditEntry, Outcome},
    users::User,
};

/// An admin exports everything. The ledger entry is written before the
/// first byte is sent.
pub async fn start(state: &AppState, by: &User) -> Result<Download> {
    crate::accounts::require(by, Role::Admin)?;
    let now = state.now();
    let actor = by.username.to_string();
    let count = state
        .store
        .write(move |tx| {
            let n = store::messages::count(tx)?;
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(actor),
                    action: Action::ExportCreated,
                    subject: None,
                    toy: None,
                    client: String::new(),
                    outcome: Outcome::Success,
                    detail: format!("{n} messages"),
                },
            )?;
            Ok(n)
        })
        .await?;
    tracing::info!(messages = count, "export started");
    let store = state.store.clone();
    let chunks = spawn_download("export", move |sink| {
        let mut outcome = Ok(());
        store.read_blocking(|c| {
            outcome = write_zip(c, sink, now);
            Ok(())
        })?;
        outcome
    });
    Ok(Download {
        file_name: format!("hearth-export-{}.zip", file_date(now)),
        chunks,
    })
}

/// One clip as `messages.json` and `index.html` list it.
#[derive(serde::Serialize)]
struct Clip {
    id: String,
    toy_id: String,
    toy_name: String,
    direction: Direction,
    from: String,
    created_at: String,
    duration_ms: i64,
    state: crate::domain::MessageState,
    keep: bool,
    file: String,
}

/// `index.html` of the export.
#[derive(Template)]
#[template(path = "export_index.html")]
struct Player<'a> {
    household: &'a str,
    exported_at: String,
    toys: Vec<PlayerToy<'a>>,
}

struct PlayerToy<'a> {
    name: &'a str,
    clips: Vec<PlayerClip<'a>>,
}

struct PlayerClip<'a> {
    clip: &'a Clip,
    href: String,
    when: String,
    seconds: String,
}

fn write_zip(c: &Connection, sink: &mut ChannelWriter, now: i64) -> anyhow::Result<()> {
    // One read transaction: clips, list and ledger are the same moment.
    let snapshot = c.unchecked_transaction()?;
    let household = store::household::get(&snapshot)?
        .map(|h| h.name)
        .unwrap_or_default();
    let mut zip = ZipWriter::new_stream(&mut *sink);
    let mut names = Names::default();
    let mut clips: Vec<Clip> = Vec::new();
    store::messages::for_each_with_audio(&snapshot, |m, toy_name, audio| -> anyhow::Result<()> {
        let folder = names.folder(m.toy_id.as_str(), &toy_name);
        let base = match m.direction {
            Direction::ToToy => format!(
                "{} to {} from {}",
                file_time(m.created_at),
                toy_name,
                m.sender_name
            ),
            Direction::FromToy => format!("{} from {}", file_time(m.created_at), toy_name),
        };
        let file = names.file(&folder, &base);
        zip.start_file(file.as_str(), options(m.created_at))?;
        zip.write_all(&audio)?;
        clips.push(Clip {
            id: m.public_id,
            toy_id: m.toy_id.to_string(),
            toy_name,
            direction: m.direction,
            from: m.sender_name,
            created_at: rfc3339(m.created_at),
            duration_ms: m.duration_ms,
            state: m.state,
            keep: m.keep,
            file,
        });
        Ok(())
    })?;

    zip.start_file("messages.json", options(now))?;
    serde_json::to_writer_pretty(
        &mut zip,
        &json!({
            "format": "hearth-export-1",
            "household": household,
            "exported_at": rfc3339(now),
            "messages": clips,
        }),
    )?;

    zip.start_file("ledger.csv", options(now))?;
    zip.write_all(crate::ledger::CSV_HEADER.as_bytes())?;
    store::audit::for_each(&snapshot, |e| -> anyhow::Result<()> {
        zip.write_all(crate::ledger::csv_row(&e).as_bytes())?;
        Ok(())
    })?;

    zip.start_file("index.html", options(now))?;
    let page = player(&household, now, &clips).render()?;
    zip.write_all(page.as_bytes())?;
    zip.finish()?;
    Ok(())
}

fn player<'a>(household: &'a str, now: i64, clips: &'a [Clip]) -> Player<'a> {
    let mut toys: Vec<PlayerToy<'a>> = Vec::new();
    for clip in clips {
        let view = PlayerClip {
            clip,
            href: href(&clip.file),
            when: file_time(rfc3339_to_unix(&clip.created_at)).replacen(' ', " at ", 1),
            seconds: format!("{:.1} s", clip.duration_ms as f64 / 1000.0),
        };
        match toys.iter_mut().find(|t| t.name == clip.toy_name) {
            Some(t) => t.clips.push(view),
            None => toys.push(PlayerToy {
                name: &clip.toy_name,
                clips: vec![view],
            }),
        }
    }
    Player {
        household,
        exported_at: file_time(now),
        toys,
    }
}

fn rfc3339_to_unix(s: &str) -> i64 {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or_default()
}

fn options(at: i64) -> SimpleFileOptions {
    let t = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let stamp = DateTime::from_date_and_time(
        u16::try_from(t.year()).unwrap_or(1980),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
    .unwrap_or_default();
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(stamp)
        .unix_permissions(0o644)
}

/// `2026-11-30 15-21-52 UTC`: sorts by time and is a valid file name everywhere.
fn file_time(at: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}-{:02}-{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-11-30`.
pub(super) fn file_date(at: i64) -> String {
    file_time(at).chars().take(10).collect()
}

/// Unique, safe names inside the archive.
#[derive(Default)]
struct Names {
    folders: HashMap<String, String>,
    taken: HashSet<String>,
}

impl Names {
    /// The folder of a toy: its name, made unique when two toys share one.
    fn folder(&mut self, toy_id: &str, toy_name: &str) -> String {
        if let Some(f) = self.folders.get(toy_id) {
            return f.clone();
        }
        let mut f = format!("messages/{}", safe_name(toy_name));
        if self.folders.values().any(|v| *v == f) {
            f = format!("messages/{} ({})", safe_name(toy_name), safe_name(toy_id));
        }
        self.folders.insert(toy_id.to_owned(), f.clone());
        f
    }

    /// `folder/base.ogg`, or `folder/base (2).ogg` when taken.
    fn file(&mut self, folder: &str, base: &str) -> String {
        let base = safe_name(base);
        let mut n = 1;
        loop {
            let candidate = if n == 1 {
                format!("{folder}/{base}.ogg")
            } else {
                format!("{folder}/{base} ({n}).ogg")
            };
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

/// A name that is one path segment on every common file system: no
/// separators, no control or reserved characters, no leading dots.
fn safe_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_control() || "/\\:*?\"<>|".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    if trimmed.is_empty() {
        "unnamed".into()
    } else {
        trimmed.chars().take(100).collect()
    }
}

/// A relative URL for an archive path (each byte outside the unreserved
/// set percent-encoded, `/` kept).
fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_unique_and_readable() {
        let mut n = Names::default();
        let bear = n.folder("bear-1", "Bear/../x");
        assert_eq!(bear, "messages/Bear_.._x");
        assert_eq!(n.folder("bear-1", "ignored"), bear);
        assert_eq!(
            n.folder("bear-2", "Bear/../x"),
            "messages/Bear_.._x (bear-2)"
        );
        let a = n.file(&bear, "2026-11-30 15-21-52 UTC from Bear");
        let b = n.file(&bear, "2026-11-30 15-21-52 UTC from Bear");
        assert_eq!(
            a,
            "messages/Bear_.._x/2026-11-30 15-21-52 UTC from Bear.ogg"
        );
        assert_eq!(
            b,
            "messages/Bear_.._x/2026-11-30 15-21-52 UTC from Bear (2).ogg"
        );
        assert_eq!(safe_name("..."), "unnamed");
        assert_eq!(safe_name("\u{7}a:b"), "_a_b");
    }

    #[test]
    fn hrefs_are_percent_encoded() {
        assert_eq!(
            href("messages/Bär & co/a b.ogg"),
            "messages/B%C3%A4r%20%26%20co/a%20b.ogg"
        );
    }
}
