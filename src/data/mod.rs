//! "Your data": what an admin can do with everything the household has
//! stored. `export` streams a zip that plays offline, `backup` makes and
//! checks age-encrypted snapshots and restores them, and this module
//! deletes one toy's messages or the whole household. Like every use case, it checks the role,
//! writes the ledger entry and knows nothing of HTTP.

pub mod backup;
pub mod export;

use std::io::{self, Write};

use tokio::sync::mpsc;

use crate::domain::Role;
use crate::error::{Code, Error, Result};
use crate::events::PageEvent;
use crate::state::AppState;
use crate::store::{
    self,
    audit::{Action, AuditEntry, Outcome},
    users::User,
};

/// What an admin types to delete the household.
pub struct EraseConfirmation {
    /// The household's name, exactly.
    pub household: String,
    /// The admin's own password.
    pub password: String,
}

/// An admin deletes the whole household: every message, toy, account,
/// session, share and ledger entry (every row of every table), then the
/// database is compacted so no deleted audio stays in its free pages or
/// its WAL, the hub's keys are replaced (a new CA and server certificate),
/// and the hub is back at first-run setup with a new setup code, live. One ledger entry, `household_deleted`, is left, naming no one.
pub async fn erase_household(
    state: &AppState,
    by: &User,
    confirm: EraseConfirmation,
) -> Result<()> {
    crate::accounts::require(by, Role::Admin)?;
    let name = crate::accounts::household_name(state).await?;
    if confirm.household != name {
        return Err(Error::new(
            Code::ConfirmationMismatch,
            "type the household's name exactly as it is shown, to confirm that everything is to be deleted",
        ));
    }
    crate::accounts::confirm_password(state, by, confirm.password).await?;
    // Nothing of the household may stay outside the home: every share is
    // stopped and its mailbox objects deleted first, and the mailbox
    // settings and secret removed; an unreachable mailbox stops the
    // deletion here, before anything is deleted (`502 relay_unreachable`).
    crate::relay::turn_off(state, by).await?;
    state.store.erase_everything().await?;
    let now = state.now();
    state
        .store
        .write(move |tx| {
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(store::audit::SYSTEM.to_owned()),
                    action: Action::HouseholdDeleted,
                    subject: None,
                    toy: None,
                    client: String::new(),
                    outcome: Outcome::Success,
                    detail: "everything stored before was deleted".into(),
                },
            )
        })
        .await?;
    state.store.compact_fully().await?;
    // The rows are gone whatever happens to the keys: setup must come back
    // even if they could not be replaced (the next start makes new ones
    // when the old files are gone, and the error is reported).
    let keys = replace_keys(state).await;
    tracing::warn!("the household was deleted by its admin; the hub is back at first-run setup");
    crate::accounts::start_over(state)?;
    keys
}

/// Replaces the hub's CA and server certificate, live: the old keys are
/// overwritten and removed, new TLS connections are served a certificate
/// from the new CA, and mDNS advertises its hash. Toys paired with the old
/// CA are gone with the household anyway.
async fn replace_keys(state: &AppState) -> Result<()> {
    let (pki, now) = (state.pki.clone(), state.clock.now());
    tokio::task::spawn_blocking(move || pki.replace_ca(now))
        .await
        .map_err(|e| Error::internal(e.into()))?
        .map_err(|e| Error::internal(e.into()))?;
    // A pairing code shown for the old CA could never match now.
    state.pairings.clear();
    if let Some(d) = &state.discovery {
        if let Err(e) = d.set_ca(&state.pki.ca_sha256()) {
            tracing::warn!("cannot advertise the new certificate authority yet: {e}");
        }
    }
    Ok(())
}

/// An admin deletes every message of one toy (the toy stays paired).
/// Returns how many messages were deleted.
pub async fn delete_toy_messages(state: &AppState, by: &User, toy_id: &str) -> Result<usize> {
    crate::accounts::require(by, Role::Admin)?;
    let toy = crate::toys::paired_toy(state, toy_id).await?;
    let now = state.now();
    let actor = by.username.to_string();
    let subject = toy.toy_id.to_string();
    let toy_key = subject.clone();
    let toy_field = Some(subject.clone());
    let gone = state
        .store
        .write(move |tx| {
            let gone = store::messages::delete_for_toy(tx, toy.id)?;
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(actor),
                    action: Action::ToyMessagesDeleted,
                    subject: Some(subject),
                    toy: toy_field,
                    client: String::new(),
                    outcome: Outcome::Success,
                    detail: format!("{} messages deleted", gone.len()),
                },
            )?;
            Ok(gone)
        })
        .await?;
    // secure_delete zeroed the freed pages; this gives them back to the
    // file system and empties the WAL, which held copies of them.
    if let Err(e) = state.store.reclaim_space().await {
        tracing::warn!("cannot give freed space back yet: {e}");
    }
    for id in &gone {
        state.events.publish(PageEvent::MessageDeleted {
            id: id.clone(),
            toy_id: Some(toy_key.clone()),
        });
    }
    Ok(gone.len())
}

/// A file made while it is sent: its name and its bytes, in order. An
/// `Err` item means it could not be finished (the download must fail, not
/// end looking whole).
pub struct Download {
    /// The suggested file name.
    pub file_name: String,
    /// The bytes.
    pub chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
}

/// Bytes gathered before a chunk goes to the channel.
const CHUNK: usize = 64 * 1024;
/// Chunks that may wait in the channel: with [`CHUNK`], the most a
/// download holds in memory beyond what its maker is working on.
const CHANNEL_DEPTH: usize = 4;

/// Runs `work` on a blocking thread, writing into a channel the caller
/// sends on; a slow client slows `work` down (back-pressure), a client
/// that goes away stops it.
fn spawn_download(
    what: &'static str,
    work: impl FnOnce(&mut ChannelWriter) -> anyhow::Result<()> + Send + 'static,
) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let mut sink = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        let outcome = work(&mut sink).and_then(|()| Ok(sink.send_buffered()?));
        if let Err(e) = outcome {
            if tx.is_closed() {
                tracing::info!("{what} cancelled by the client");
            } else {
                tracing::error!("{what} failed: {e:#}");
                let _ = tx.blocking_send(Err(io::Error::other(format!(
                    "the {what} failed; see the hub's log"
                ))));
            }
        }
    });
    rx
}

/// A `Write` that hands full chunks to the channel, waiting while the
/// client is slower than the maker.
pub(crate) struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
}

impl ChannelWriter {
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the download was cancelled"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over chunks that arrive on a channel (an upload read on a
/// blocking thread while the surface receives it).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
