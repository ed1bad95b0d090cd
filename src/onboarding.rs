//! The first-run checklist an admin sees on the home page after setup:
//! trust the hub's certificate, pair the first toy, invite the family,
//! make a first backup. Each item is ticked from real state (the toys, the
//! members and invitations, the ledger's backups and exports), except the
//! certificate, which only the admin's phone knows about, so they tick it
//! themselves. The list can be put away (per member), and once every item
//! was done it stays away. Nothing here knows HTTP.

use crate::domain::Role;
use crate::error::Result;
use crate::state::AppState;
use crate::store::{self, users::User};

/// What a member marks on their own checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// "I trusted the certificate on my phone."
    CertificateTrusted,
    /// "Hide this list."
    Dismissed,
}

impl Mark {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertificateTrusted => "certificate_trusted",
            Self::Dismissed => "dismissed",
        }
    }
}

/// Stored when every item was seen done, so the list never comes back.
const COMPLETED: &str = "completed";

/// The checklist as shown: which items are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checklist {
    /// The member said they trusted the hub's certificate.
    pub certificate_trusted: bool,
    /// A toy is paired.
    pub toy_paired: bool,
    /// Someone else joined, or an invitation was made.
    pub family_invited: bool,
    /// A backup or an export was made.
    pub backup_made: bool,
}

impl Checklist {
    /// Every item is done.
    pub fn all_done(&self) -> bool {
        self.certificate_trusted && self.toy_paired && self.family_invited && self.backup_made
    }

    /// How many items are done, of four.
    pub fn done_count(&self) -> usize {
        [
            self.certificate_trusted,
            self.toy_paired,
            self.family_invited,
            self.backup_made,
        ]
        .iter()
        .filter(|d| **d)
        .count()
    }
}

/// The checklist to show `by` on the home page, or `None`: not an admin
/// (the items are an admin's to do), put away, or done. The first time it
/// is seen done, that is stored, so that a backup entry the ledger prunes
/// years later does not bring it back.
pub async fn checklist(state: &AppState, by: &User) -> Result<Option<Checklist>> {
    if by.role != Role::Admin {
        return Ok(None);
    }
    let uid = by.id;
    let (marks, progress) = state
        .store
        .read(move |c| {
            Ok((
                store::checklist::marks(c, uid)?,
                store::checklist::progress(c)?,
            ))
        })
        .await?;
    let has = |m: &str| marks.iter().any(|s| s == m);
    if has(Mark::Dismissed.as_str()) || has(COMPLETED) {
        return Ok(None);
    }
    let list = Checklist {
        certificate_trusted: has(Mark::CertificateTrusted.as_str()),
        toy_paired: progress.toy_paired,
        family_invited: progress.family_invited,
        backup_made: progress.backup_made,
    };
    if list.all_done() {
        let now = state.now();
        state
            .store
            .write(move |tx| store::checklist::set_mark(tx, uid, COMPLETED, now))
            .await?;
        return Ok(None);
    }
    Ok(Some(list))
}

/// Member `by` ticks `mark` on their own checklist (admins only: others
/// have no checklist).
pub async fn mark(state: &AppState, by: &User, mark: Mark) -> Result<()> {
    crate::accounts::require(by, Role::Admin)?;
    let (uid, now) = (by.id, state.now());
    state
        .store
        .write(move |tx| store::checklist::set_mark(tx, uid, mark.as_str(), now))
        .await?;
    Ok(())
}
