//! Use cases of toys: what counts as online (written once, [`online`]),
//! the listing and status of toys, renaming and removing, a parent's
//! confirmation or rejection of a pairing, a toy's calls and status
//! reports, and the online/offline [`Tracker`] of the background job.
//! Toys as characters (issue 15): a toy's picture, its low-battery warning
//! ([`battery_low`], written once) and its quiet hours ([`quiet_until`],
//! which `messaging::inbox` obeys), set by parents through [`edit`].
//!
//! Each act opens its transaction, writes its ledger entry and publishes its
//! page event. Nothing here knows HTTP.

use std::collections::HashSet;

use serde_json::json;

use crate::character::{ClockTime, Picture, QuietHours};
use crate::clock::rfc3339;
use crate::discovery::SeenToy;
use crate::domain::{DisplayName, Hex32, PairingCode, Role, ToyId};
use crate::error::{Code, Error, Result};
use crate::events::{PageEvent, ToyChange};
use crate::pairing::{PairError, Pairing, Request};
use crate::state::AppState;
use crate::store::audit::{self, Action, AuditEntry, Outcome};
use crate::store::messages::Message;
use crate::store::toys::Toy;
use crate::store::users::User;
use crate::store::{self};

/// A toy that called the hub less than this many seconds ago is online.
pub const ONLINE_WINDOW_SECS: i64 = 120;

/// A toy called the hub within [`ONLINE_WINDOW_SECS`] before `now`.
pub fn recently_seen(last_seen: Option<i64>, now: i64) -> bool {
    last_seen.is_some_and(|s| now - s < ONLINE_WINDOW_SECS)
}

/// The online rule: a toy is online when mDNS sees it on the network or it
/// called the hub recently.
pub fn online(toy: &Toy, on_network: bool, now: i64) -> bool {
    on_network || recently_seen(toy.last_seen, now)
}

/// A battery at or below this percentage is low: pages warn that the toy
/// needs charging. 20 % leaves a child's toy an evening of use after the
/// warning, the level phones and most toys warn at.
pub const LOW_BATTERY_PERCENT: u8 = 20;

/// The low-battery rule: the toy's last report was at most
/// [`LOW_BATTERY_PERCENT`] (a toy that never reported is not low).
pub fn battery_low(battery: Option<u8>) -> bool {
    battery.is_some_and(|b| b <= LOW_BATTERY_PERCENT)
}

/// The picture a toy is shown with: the one a parent chose, else the
/// default for its id.
pub fn picture_of(toy: &Toy) -> Picture {
    toy.picture
        .unwrap_or_else(|| Picture::default_for(&toy.toy_id))
}

/// The quiet-hours rule for a toy at `now`: when it is in quiet hours that
/// are on, the Unix time they end (in the household's time zone,
/// `character::local_zone`); messages are held until then.
pub fn quiet_until(toy: &Toy, now: i64) -> Option<i64> {
    toy.quiet
        .and_then(|q| q.ends_after(now, &crate::character::local_zone()))
}

/// A paired toy with its online state at one moment.
#[derive(Debug, Clone)]
pub struct ToyStatus {
    /// Its row.
    pub toy: Toy,
    /// Online now.
    pub online: bool,
    /// In quiet hours now: when they end (Unix seconds).
    pub quiet_until: Option<i64>,
}

impl ToyStatus {
    /// How the toy is shown in lists and on its page: "Mia's Grizzly" once
    /// a parent gave the child's name, else its name.
    pub fn title(&self) -> String {
        match &self.toy.child_name {
            Some(child) => format!("{child}\u{2019}s {}", self.toy.name),
            None => self.toy.name.clone(),
        }
    }

    /// Its picture (chosen or default).
    pub fn picture(&self) -> Picture {
        picture_of(&self.toy)
    }

    /// "Mia’s bear needs charging: battery 12 %" when the battery is low.
    pub fn battery_warning(&self) -> Option<String> {
        let b = self.toy.battery.filter(|b| battery_low(Some(*b)))?;
        Some(format!(
            "{} needs charging: battery {b}\u{a0}%",
            self.title()
        ))
    }

    /// What a sender is told while the toy is in quiet hours:
    /// "Mia’s bear is in quiet hours until 07:00; it will hear this then."
    pub fn quiet_note(&self) -> Option<String> {
        self.quiet_until?;
        let end = self.toy.quiet?.end;
        Some(format!(
            "{} is in quiet hours until {end}; it will hear this then.",
            self.title()
        ))
    }

    /// The toy's JSON (`docs/api.md`): also the data of `event: toy` `updated`.
    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.toy;
        let quiet = t
            .quiet
            .map(|q| json!({"on": q.on, "start": q.start.to_string(), "end": q.end.to_string()}));
        json!({
            "toy_id": t.toy_id,
            "name": t.name,
            "model": t.model,
            "online": self.online,
            "last_seen": t.last_seen.map(rfc3339),
            "battery": t.battery,
            "firmware": t.firmware,
            "child": t.child_name,
            "title": self.title(),
            "key_changed": t.earlier_key_fp.as_ref().is_some_and(|k| *k != t.key_fp),
            "picture": self.picture().as_str(),
            "battery_low": battery_low(t.battery),
            "battery_warning": self.battery_warning(),
            "quiet_hours": quiet,
            "quiet_now": self.quiet_until.is_some(),
            "quiet_until": self.quiet_until.map(rfc3339),
            "quiet_note": self.quiet_note(),
        })
    }
}

/// Applies the online rule to a row, asking mDNS whether the toy is up.
pub fn status_of(state: &AppState, toy: Toy, now: i64) -> ToyStatus {
    let up = state
        .discovery
        .as_ref()
        .is_some_and(|d| d.is_up(&toy.toy_id));
    ToyStatus {
        online: online(&toy, up, now),
        quiet_until: quiet_until(&toy, now),
        toy,
    }
}

/// Every toy a parent may see: unpaired ones on the network, pairings
/// waiting, paired ones.
pub struct Listing {
    /// Seen by mDNS and not paired here.
    pub discovered: Vec<SeenToy>,
    /// Pairings in progress.
    pub pending: Vec<Pairing>,
    /// Paired toys, by name.
    pub paired: Vec<ToyStatus>,
}

/// The paired toys with their online state.
pub async fn paired(state: &AppState) -> Result<Vec<ToyStatus>> {
    let now = state.now();
    let rows = state.store.read(store::toys::list_paired).await?;
    Ok(rows.into_iter().map(|t| status_of(state, t, now)).collect())
}

/// The paired toys `by` may see (a relative: only those granted).
pub async fn visible(state: &AppState, by: &User) -> Result<Vec<ToyStatus>> {
    let scope = crate::family::scope(&state.store, by).await?;
    let mut all = paired(state).await?;
    all.retain(|t| scope.sees(t.toy.id));
    Ok(all)
}

/// The listing of the Toys page and `GET /api/v1/toys`: a relative gets
/// only their toys, and neither discovered toys nor pairings.
pub async fn listing(state: &AppState, by: &User) -> Result<Listing> {
    let now = state.now();
    if by.role < Role::Parent {
        return Ok(Listing {
            discovered: Vec::new(),
            pending: Vec::new(),
            paired: visible(state, by).await?,
        });
    }
    let paired = paired(state).await?;
    let ids: HashSet<&ToyId> = paired.iter().map(|t| &t.toy.toy_id).collect();
    let discovered = state
        .discovery
        .as_ref()
        .map(|d| d.seen())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !ids.contains(&s.toy_id))
        .collect();
    let pending = state.pairings.pending(now);
    Ok(Listing {
        discovered,
        pending,
        paired,
    })
}

/// One paired toy (not removed), by its id as typed in a path.
pub async fn paired_toy(state: &AppState, toy_id: &str) -> Result<Toy> {
    let id = ToyId::parse(toy_id).map_err(|_| Error::not_found("no such toy"))?;
    state
        .store
        .read(move |c| store::toys::by_toy_id(c, &id))
        .await?
        .filter(|t| t.removed_at.is_none())
        .ok_or_else(|| Error::not_found("no such paired toy"))
}

/// One paired toy `by` may see, with its online state (`404` for others).
pub async fn status(state: &AppState, by: &User, toy_id: &str) -> Result<ToyStatus> {
    let toy = crate::family::visible_toy(state, by, toy_id).await?;
    Ok(status_of(state, toy, state.now()))
}

/// A removed toy as its family knew it, with what is left of its
/// conversation: its messages stay until retention takes them (kept ones
/// until a parent deletes them), so its page explains and lists them
/// instead of answering `404`.
#[derive(Debug, Clone)]
pub struct RemovedToy {
    /// The toy id the family knew it by (without a `#row` suffix).
    pub toy_id: String,
    /// Its newest removed row (name, when it was removed).
    pub toy: Toy,
    /// Its messages (every removed row of that id), oldest first, at most 100.
    pub messages: Vec<Message>,
}

/// The toy id a removed row was known by (without its `#row` suffix).
pub fn base_id(t: &Toy) -> String {
    t.toy_id
        .as_str()
        .split('#')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The removed toy `toy_id` with its remaining messages, when it is not
/// paired now and `by` may see it (a relative: one granted to them); `404`
/// otherwise, as for a toy that never existed.
pub async fn removed(state: &AppState, by: &User, toy_id: &str) -> Result<RemovedToy> {
    let id = ToyId::parse(toy_id).map_err(|_| Error::not_found("no such toy"))?;
    let scope = crate::family::scope(&state.store, by).await?;
    let found = state
        .store
        .read(move |c| {
            if store::toys::by_toy_id(c, &id)?.is_some_and(|t| t.removed_at.is_none()) {
                return Ok(None);
            }
            let rows = store::toys::removed_rows(c, Some(&id))?;
            let mut messages = Vec::new();
            for r in &rows {
                messages.extend(store::messages::list(c, Some(r.id), None, 100)?);
            }
            Ok(Some((rows, messages)))
        })
        .await?;
    let Some((rows, mut messages)) = found else {
        return Err(Error::not_found("no such toy"));
    };
    let rows: Vec<Toy> = rows.into_iter().filter(|r| scope.sees(r.id)).collect();
    messages.retain(|m| scope.sees(m.toy));
    messages.sort_by_key(|m| (m.created_at, m.rowid));
    let skip = messages.len().saturating_sub(100);
    messages.drain(..skip);
    let toy = rows
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found("no such toy"))?;
    Ok(RemovedToy {
        toy_id: base_id(&toy),
        toy,
        messages,
    })
}

/// The removed toys `by` may see that still have messages, newest removal
/// first, one per toy id (and none that is paired again).
pub async fn removed_with_messages(state: &AppState, by: &User) -> Result<Vec<Toy>> {
    let scope = crate::family::scope(&state.store, by).await?;
    let rows = state
        .store
        .read(move |c| {
            let paired: HashSet<String> = store::toys::list_paired(c)?
                .into_iter()
                .map(|t| t.toy_id.to_string())
                .collect();
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for r in store::toys::removed_rows(c, None)? {
                let base = base_id(&r);
                if paired.contains(&base) || seen.contains(&base) {
                    continue;
                }
                if store::messages::list(c, Some(r.id), None, 1)?.is_empty() {
                    continue;
                }
                seen.insert(base);
                out.push(r);
            }
            Ok(out)
        })
        .await?;
    Ok(rows.into_iter().filter(|r| scope.sees(r.id)).collect())
}

/// What a parent changes about a toy, as typed (`PATCH /api/v1/toys/{id}`):
/// each field left out stays as it is.
#[derive(Debug, Default)]
pub struct ToyEdit {
    /// A new name.
    pub name: Option<String>,
    /// The child's name; `""` clears it.
    pub child: Option<String>,
    /// A picture's wire name.
    pub picture: Option<String>,
    /// Quiet hours.
    pub quiet: Option<QuietEdit>,
}

/// Quiet hours as typed: `on`, and `start`/`end` as `HH:MM` (left out:
/// the stored ones, which must then exist to switch them on).
#[derive(Debug, Default)]
pub struct QuietEdit {
    /// Whether they apply.
    pub on: bool,
    /// When they begin.
    pub start: Option<String>,
    /// When they end.
    pub end: Option<String>,
}

/// Checks typed quiet hours against the stored ones.
fn check_quiet(q: QuietEdit, stored: Option<QuietHours>) -> Result<QuietHours> {
    let bad = |e: crate::domain::Invalid| Code::InvalidQuietHours.invalid(e);
    let start = q
        .start
        .as_deref()
        .map(|s| ClockTime::parse("start", s.trim()))
        .transpose()
        .map_err(bad)?
        .or(stored.map(|s| s.start));
    let end = q
        .end
        .as_deref()
        .map(|s| ClockTime::parse("end", s.trim()))
        .transpose()
        .map_err(bad)?
        .or(stored.map(|s| s.end));
    match (start, end) {
        (Some(start), Some(end)) => QuietHours::new(q.on, start, end).map_err(bad),
        _ => Err(Error::new(
            Code::InvalidQuietHours,
            "quiet hours need a start and an end, like 19:30 and 07:00",
        )),
    }
}

/// A parent or admin changes a toy: its name, its child's name, its
/// picture, its quiet hours. Everything is checked before anything is
/// stored; one transaction stores the changes with their ledger entries
/// (`toy_renamed` for the names, `toy_settings_changed` for the picture
/// and the quiet hours). A relative may not (`403`).
pub async fn edit(state: &AppState, by: &User, toy_id: &str, e: ToyEdit) -> Result<ToyStatus> {
    crate::accounts::require(by, Role::Parent)?;
    let current = paired_toy(state, toy_id).await?;
    let toy_id = current.toy_id.clone();
    let name = e
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| Code::InvalidName.invalid(e))?;
    // The child's name: the same rule as any shown name; "" clears it.
    let child = match e.child.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(c) => Some(Some(DisplayName::parse(c).map_err(|e| {
            Error::new(Code::InvalidName, format!("the child's name: {}", e.0))
        })?)),
    };
    let picture = e
        .picture
        .as_deref()
        .map(|p| Picture::parse(p.trim()))
        .transpose()
        .map_err(|e| Code::InvalidPicture.invalid(e))?;
    let quiet = e.quiet.map(|q| check_quiet(q, current.quiet)).transpose()?;
    let mut renamed = Vec::new();
    if let Some(n) = &name {
        renamed.push(format!("renamed {:?}", n.as_str()));
    }
    match &child {
        Some(Some(c)) => renamed.push(format!("child {:?}", c.as_str())),
        Some(None) => renamed.push("child cleared".into()),
        None => {}
    }
    let mut settings = Vec::new();
    if let Some(p) = picture {
        settings.push(format!("picture {}", p.as_str()));
    }
    if let Some(q) = &quiet {
        settings.push(match q.on {
            true => format!("quiet hours {} to {}", q.start, q.end),
            false => format!("quiet hours off (kept: {} to {})", q.start, q.end),
        });
    }
    let (now, actor) = (state.now(), by.username.clone());
    let entry = |action, details: &Vec<String>| {
        let mut a = AuditEntry::new(now, Some(actor.clone()), action, Outcome::Success);
        a.subject = Some(toy_id.to_string());
        a.toy = Some(toy_id.to_string());
        a.detail = details.join("; ");
        a
    };
    let entries: Vec<AuditEntry> = [
        (!renamed.is_empty()).then(|| entry(Action::ToyRenamed, &renamed)),
        (!settings.is_empty()).then(|| entry(Action::ToySettingsChanged, &settings)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let id = toy_id.clone();
    let toy = state
        .store
        .write(move |tx| {
            let mut found = true;
            if let Some(n) = &name {
                found &= store::toys::rename(tx, &id, n.as_str())?;
            }
            if let Some(c) = &child {
                found &= store::toys::set_child(tx, &id, c.as_ref().map(DisplayName::as_str))?;
            }
            if let Some(p) = picture {
                found &= store::toys::set_picture(tx, &id, Some(p))?;
            }
            if let Some(q) = &quiet {
                found &= store::toys::set_quiet(tx, &id, q)?;
            }
            if !found {
                return Ok(None);
            }
            for a in &entries {
                audit::record(tx, a)?;
            }
            store::toys::by_toy_id(tx, &id).map(|t| t.filter(|t| t.removed_at.is_none()))
        })
        .await?
        .ok_or_else(|| Error::not_found("no such paired toy"))?;
    let status = status_of(state, toy, state.now());
    state
        .events
        .publish(PageEvent::ToyUpdated(status.to_json()));
    Ok(status)
}

/// A parent removes (unpairs) a toy: its certificate is refused from now
/// on, and a toy waiting in a long-poll learns it at once.
pub async fn remove(state: &AppState, by: &User, toy_id: &str) -> Result<()> {
    crate::accounts::require(by, Role::Parent)?;
    let toy_id = ToyId::parse(toy_id).map_err(|_| Error::not_found("no such toy"))?;
    let now = state.now();
    let (id, actor) = (toy_id.clone(), by.username.clone());
    let removed = state
        .store
        .write(move |tx| {
            let row = store::toys::by_toy_id(tx, &id)?;
            let removed = store::toys::remove(tx, &id, now)?;
            if removed {
                let mut e = AuditEntry::new(now, Some(actor), Action::ToyRemoved, Outcome::Success);
                e.subject = Some(id.to_string());
                e.toy = Some(id.to_string());
                e.detail = "unpaired; its certificate is refused from now on".into();
                audit::record(tx, &e)?;
            }
            Ok(row.filter(|_| removed))
        })
        .await?;
    let Some(row) = removed else {
        return Err(Error::not_found("no such paired toy"));
    };
    state.events.wake_toy(row.id);
    state
        .events
        .publish(PageEvent::toy(ToyChange::Removed, &toy_id));
    Ok(())
}

/// The answer to a refused pairing step of a parent.
pub fn pair_error(e: PairError) -> Error {
    match e {
        PairError::NotFound => Error::not_found(
            "no such pairing: it expired or was replaced; ask the toy to start again",
        ),
        PairError::WrongState(msg) => Error::new(Code::PairingNotReady, msg),
        PairError::TooMany => Error::too_many("too many pairings are waiting", 60),
        PairError::AddrLimit(wait) => {
            Error::too_many("too many pairing requests from one address", wait)
        }
        PairError::KeyInUse => Error::new(
            Code::PairingInProgress,
            "a pairing for this toy id is already waiting with another key",
        ),
        PairError::CommitmentMismatch => Error::new(
            Code::CommitmentMismatch,
            "the toy's nonce does not match its commitment",
        ),
        PairError::WrongCode { attempts_left } => {
            let msg = if attempts_left == 0 {
                "wrong code; that was the last attempt, so the pairing is rejected. Start pairing again on the toy".to_owned()
            } else {
                format!(
                    "wrong code; check the code the toy announced ({attempts_left} attempts left)"
                )
            };
            Error::new(Code::WrongCode, msg).with_extra("attempts_left", json!(attempts_left))
        }
    }
}

async fn record(state: &AppState, entry: AuditEntry) -> Result<()> {
    state
        .store
        .write(move |tx| audit::record(tx, &entry))
        .await?;
    Ok(())
}

/// A parent types the code a toy announced: on a match the toy's
/// certificate is issued and the toy is stored as paired, in one
/// transaction with its ledger entry; any failure rolls the pairing back so
/// the parent can try again. A wrong code is recorded too.
pub async fn confirm_pairing(
    state: &AppState,
    by: &User,
    pairing_id: &str,
    code: &str,
) -> Result<ToyId> {
    crate::accounts::require(by, Role::Parent)?;
    let code = PairingCode::parse(code).map_err(|e| Code::InvalidCode.invalid(e))?;
    let now = state.now();
    let actor = by.username.clone();
    let approval = match state
        .pairings
        .confirm(pairing_id, &code, &state.pki.ca_der(), now)
    {
        Ok(a) => a,
        Err(e) => {
            if let PairError::WrongCode { attempts_left } = e {
                let toy = state
                    .pairings
                    .get(pairing_id, now)
                    .map(|p| p.request.toy_id.to_string());
                let mut e = AuditEntry::new(
                    now,
                    Some(actor.clone()),
                    Action::PairingCodeWrong,
                    Outcome::Failure,
                );
                e.subject.clone_from(&toy);
                e.toy = toy;
                e.detail = if attempts_left == 0 {
                    "wrong code; third attempt, pairing rejected".into()
                } else {
                    format!("wrong code; {attempts_left} attempts left")
                };
                record(state, e).await?;
                state
                    .events
                    .publish(PageEvent::pairing(ToyChange::Pairing, pairing_id, None));
            }
            return Err(pair_error(e));
        }
    };
    let req = approval.request.clone();
    let issued = state
        .pki
        .issue_toy_cert(&req.csr, &req.toy_id, state.clock.now());
    let (der, pem) = match issued {
        Ok(x) => x,
        Err(e) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(Error::internal(anyhow::Error::new(e)));
        }
    };
    let cert_hash = crate::pki::cert_sha256(&der);
    let (toy_id, name, model, fp) = (
        req.toy_id.clone(),
        req.name.to_string(),
        req.model.clone(),
        req.csr.key_fp().to_hex(),
    );
    let stored = state
        .store
        .write(move |tx| {
            if store::toys::by_toy_id(tx, &toy_id)?.is_some_and(|t| t.removed_at.is_none()) {
                return Ok(false);
            }
            store::toys::upsert_paired(tx, &toy_id, &name, &model, &fp, &cert_hash, now)?;
            let mut e = AuditEntry::new(now, Some(actor), Action::ToyPaired, Outcome::Success);
            e.subject = Some(toy_id.to_string());
            e.toy = Some(toy_id.to_string());
            e.detail = format!("paired; key sha256 {fp}");
            audit::record(tx, &e)?;
            Ok(true)
        })
        .await;
    match stored {
        Ok(true) => {}
        Ok(false) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(Error::new(
                Code::AlreadyPaired,
                "a toy with this id is already paired; remove it first",
            ));
        }
        Err(e) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(e.into());
        }
    }
    state.pairings.finish_approval(&approval.id, pem, now);
    state.events.publish(PageEvent::pairing(
        ToyChange::Paired,
        &approval.id,
        Some(req.toy_id.to_string()),
    ));
    Ok(req.toy_id)
}

/// A parent declines a pairing.
pub async fn reject_pairing(state: &AppState, by: &User, pairing_id: &str) -> Result<()> {
    crate::accounts::require(by, Role::Parent)?;
    let now = state.now();
    let toy = state.pairings.reject(pairing_id, now).map_err(pair_error)?;
    let mut e = AuditEntry::new(
        now,
        Some(by.username.clone()),
        Action::PairingRejected,
        Outcome::Failure,
    );
    e.subject = Some(toy.to_string());
    e.toy = Some(toy.to_string());
    e.detail = "a parent declined the pairing".into();
    record(state, e).await?;
    state
        .events
        .publish(PageEvent::pairing(ToyChange::Pairing, pairing_id, None));
    Ok(())
}

/// A refused pairing request of a toy.
fn bad(msg: impl Into<String>) -> Error {
    Error::new(Code::InvalidPairingRequest, msg)
}

/// Records an unauthenticated act of a toy (the actor is `toy:<id>`) when
/// the address still has quota (`pairing`), so a loop cannot fill the
/// disk; rows skipped before are summed up in the next one written.
async fn toy_record(
    state: &AppState,
    addr: Option<&str>,
    action: Action,
    toy: Option<String>,
    outcome: Outcome,
    detail: String,
) -> Result<()> {
    let Some(skipped) = state.pairings.audit_quota(addr, state.now()) else {
        return Ok(());
    };
    let detail = match (skipped, addr) {
        (0, _) => detail,
        (n, Some(a)) => format!(
            "{detail} ({n} earlier unauthenticated attempts from {a} were not recorded one by one)"
        ),
        (n, None) => format!("{detail} ({n} earlier attempts were not recorded one by one)"),
    };
    let entry = AuditEntry {
        at: state.now(),
        actor: toy.as_ref().map(|t| format!("toy:{t}")),
        action,
        subject: toy.clone(),
        toy,
        client: addr.unwrap_or_default().to_owned(),
        outcome,
        detail,
    };
    record(state, entry).await
}

/// A toy's pairing request, as sent (step 1): the JSON body of
/// `POST /toy/v1/pair`, fields unchecked until [`check_pairing_request`].
#[derive(serde::Deserialize)]
pub struct PairingRequest {
    /// Its id.
    pub toy_id: String,
    /// Its name.
    pub name: String,
    /// Model text (may be empty).
    #[serde(default)]
    pub model: String,
    /// Its CSR (PEM).
    pub csr: String,
    /// SHA-256 of its nonce, hex.
    pub commitment: String,
}

/// A pairing that started: what the toy needs for the next step.
pub struct PairingStarted {
    /// The pairing's id.
    pub pairing_id: String,
    /// The hub's nonce.
    pub hub_nonce: [u8; 32],
}

/// Checks a step-1 request without any state: toy id, name, model,
/// commitment and CSR (also what the fuzzer drives).
pub fn check_pairing_request(b: PairingRequest) -> Result<Request> {
    let toy_id = ToyId::parse(&b.toy_id).map_err(|e| bad(e.0))?;
    let name = DisplayName::parse(&b.name).map_err(|e| bad(format!("name: {e}")))?;
    if b.model.len() > 64 || b.model.chars().any(char::is_control) {
        return Err(bad("model is at most 64 bytes of printable text"));
    }
    let commitment = Hex32::parse("commitment", &b.commitment).map_err(|e| bad(e.0))?;
    let csr = crate::pki::check_csr(&b.csr).map_err(|e| bad(e.0))?;
    Ok(Request {
        toy_id,
        name,
        model: b.model,
        csr,
        commitment,
    })
}

/// A toy asks to pair (`docs/toy-protocol.md` section 3, step 1): every
/// field is checked, an already paired id is refused, at most 8 wait, and
/// the outcome is recorded. `addr` is the caller's limiting key
/// (`pairing::addr_key`): one address gets a few requests and pending
/// pairings, and a pending pairing is replaced only by the same key.
pub async fn request_pairing(
    state: &AppState,
    b: PairingRequest,
    addr: Option<String>,
) -> Result<PairingStarted> {
    if let Err(wait) = state.pairings.admit(addr.as_deref(), state.now()) {
        toy_record(
            state,
            addr.as_deref(),
            Action::PairingRequested,
            None,
            Outcome::Failure,
            "too many pairing requests from this address".into(),
        )
        .await?;
        return Err(Error::too_many(
            "too many pairing requests from this address; try again later",
            wait,
        ));
    }
    let request = check_pairing_request(b)?;
    let toy_id = request.toy_id.clone();
    let id = toy_id.clone();
    let paired = state
        .store
        .read(move |c| store::toys::by_toy_id(c, &id))
        .await?
        .is_some_and(|t| t.removed_at.is_none());
    if paired {
        return Err(Error::new(
            Code::AlreadyPaired,
            "a toy with this id is already paired; a parent must remove it on the Toys page first",
        ));
    }
    let now = state.now();
    let started = state.pairings.start(request, addr.clone(), now);
    let (pairing_id, hub_nonce, replaced) = match started {
        Ok(x) => x,
        Err(e) => {
            // Every refusal is recorded (within the address's quota) with
            // what the toy is told.
            let (detail, answer) = match e {
                PairError::KeyInUse => (
                    "a pending pairing for this toy id has another key",
                    Error::new(
                        Code::PairingInProgress,
                        "a pairing for this toy id is already waiting with another key; it ends when a parent confirms or rejects it, or after 10 minutes",
                    ),
                ),
                PairError::AddrLimit(wait) => (
                    "too many pending pairings from this address",
                    Error::too_many(
                        "too many pairings from this address are waiting; finish or wait for them",
                        wait,
                    ),
                ),
                PairError::TooMany => (
                    "too many pairings pending",
                    Error::too_many(
                        "too many pairings are waiting; try again in a few minutes",
                        60,
                    ),
                ),
                _ => return Err(Error::internal(anyhow::anyhow!("unexpected pairing state"))),
            };
            toy_record(
                state,
                addr.as_deref(),
                Action::PairingRequested,
                Some(toy_id.to_string()),
                Outcome::Failure,
                detail.into(),
            )
            .await?;
            return Err(answer);
        }
    };
    let detail = match &replaced {
        Some(_) => "pairing requested (replacing an earlier request)".to_owned(),
        None => "pairing requested".to_owned(),
    };
    toy_record(
        state,
        addr.as_deref(),
        Action::PairingRequested,
        Some(toy_id.to_string()),
        Outcome::Success,
        detail,
    )
    .await?;
    state.events.publish(PageEvent::pairing(
        ToyChange::Pairing,
        &pairing_id,
        Some(toy_id.to_string()),
    ));
    Ok(PairingStarted {
        pairing_id,
        hub_nonce,
    })
}

/// A toy reveals its nonce (step 2); a nonce that does not match the
/// commitment discards the pairing and is recorded.
pub async fn reveal_pairing(
    state: &AppState,
    id: &str,
    toy_nonce: &str,
    addr: Option<String>,
) -> Result<()> {
    let nonce = Hex32::parse("toy_nonce", toy_nonce).map_err(|e| bad(e.0))?;
    let now = state.now();
    let toy = state
        .pairings
        .get(id, now)
        .map(|p| p.request.toy_id.to_string());
    match state.pairings.reveal(id, nonce.0, now) {
        Ok(()) => {
            state
                .events
                .publish(PageEvent::pairing(ToyChange::Pairing, id, None));
            Ok(())
        }
        Err(PairError::NotFound) => Err(Error::not_found(
            "no such pairing: it expired or was replaced; start again",
        )),
        Err(PairError::WrongState(m)) => Err(Error::new(Code::AlreadyRevealed, m)),
        Err(PairError::CommitmentMismatch) => {
            toy_record(
                state,
                addr.as_deref(),
                Action::PairingRevealed,
                toy,
                Outcome::Failure,
                "nonce did not match the commitment; pairing discarded".into(),
            )
            .await?;
            state
                .events
                .publish(PageEvent::pairing(ToyChange::Pairing, id, None));
            Err(Error::new(
                Code::CommitmentMismatch,
                "SHA-256 of toy_nonce does not equal the commitment; the pairing is discarded, start again",
            ))
        }
        Err(_) => Err(Error::internal(anyhow::anyhow!("unexpected pairing state"))),
    }
}

/// A paired toy called the hub: remember when (at most every 30 seconds,
/// to spare the SD card) and tell pages when it comes back after a quiet
/// spell. mDNS does not count here: the call itself is the news.
pub async fn called(state: &AppState, toy: &Toy) -> Result<()> {
    let now = state.now();
    if toy.last_seen.is_none_or(|s| now - s >= 30) {
        let (id, was_online) = (toy.id, recently_seen(toy.last_seen, now));
        // Best effort: a full disk must not keep a toy from its messages.
        if let Err(e) = state
            .store
            .write(move |tx| store::toys::touch(tx, id, now))
            .await
        {
            tracing::warn!("cannot record that a toy called: {e}");
        }
        if !was_online {
            state
                .events
                .publish(PageEvent::toy(ToyChange::Online, &toy.toy_id));
        }
    }
    Ok(())
}

/// The toy still holds the pairing it had when its request began (not
/// removed, not paired again with another certificate).
pub async fn still_paired(state: &AppState, toy: &Toy) -> Result<bool> {
    let id = toy.toy_id.clone();
    let row = state
        .store
        .read(move |c| store::toys::by_toy_id(c, &id))
        .await?;
    Ok(row.is_some_and(|r| r.removed_at.is_none() && r.cert_sha256 == toy.cert_sha256))
}

/// The paired toy holding the client certificate `der`, if any.
pub async fn by_certificate(state: &AppState, der: &[u8]) -> Result<Option<Toy>> {
    let hash = crate::pki::cert_sha256(der);
    Ok(state
        .store
        .read(move |c| store::toys::by_cert(c, &hash))
        .await?)
}

/// A toy reports its battery (0 to 100) and firmware text.
pub async fn report_status(
    state: &AppState,
    toy: &Toy,
    battery: Option<u8>,
    firmware: Option<String>,
) -> Result<()> {
    if battery.is_some_and(|x| x > 100) {
        return Err(Error::new(
            Code::InvalidBattery,
            "battery is a percentage from 0 to 100",
        ));
    }
    if firmware
        .as_ref()
        .is_some_and(|f| f.len() > 128 || f.chars().any(char::is_control))
    {
        return Err(Error::new(
            Code::InvalidFirmware,
            "firmware is at most 128 bytes of printable text",
        ));
    }
    let (id, now) = (toy.id, state.now());
    state
        .store
        .write(move |tx| store::toys::set_status(tx, id, battery, firmware.as_deref(), now))
        .await?;
    state
        .events
        .publish(PageEvent::toy(ToyChange::Status, &toy.toy_id));
    Ok(())
}

/// Remembers which paired toys were online at the last look, to tell pages
/// when one goes offline.
#[derive(Debug, Default)]
pub struct Tracker {
    online: HashSet<ToyId>,
}

impl Tracker {
    /// Looks again: publishes `offline` for each toy online before and not
    /// now. Returns the toys that went offline.
    pub async fn tick(&mut self, state: &AppState) -> Result<Vec<ToyId>> {
        let now_online: HashSet<ToyId> = paired(state)
            .await?
            .into_iter()
            .filter(|t| t.online)
            .map(|t| t.toy.toy_id)
            .collect();
        let gone: Vec<ToyId> = self.online.difference(&now_online).cloned().collect();
        for id in &gone {
            state.events.publish(PageEvent::toy(ToyChange::Offline, id));
        }
        self.online = now_online;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn toy(last_seen: Option<i64>) -> Toy {
        Toy {
            id: crate::domain::ToyRowId(1),
            toy_id: ToyId::parse("toy-1").expect("id"),
            name: "Bear".into(),
            model: String::new(),
            key_fp: String::new(),
            cert_sha256: None,
            paired_at: 0,
            removed_at: None,
            last_seen,
            battery: None,
            firmware: None,
            child_name: None,
            earlier_key_fp: None,
            picture: None,
            quiet: None,
        }
    }

    #[test]
    fn online_at_its_boundaries_with_an_injected_clock() {
        let clock = ManualClock::default();
        let seen = clock.unix();
        let t = toy(Some(seen));
        assert!(online(&t, false, clock.unix()), "just called");
        clock.advance(time::Duration::seconds(ONLINE_WINDOW_SECS - 1));
        assert!(online(&t, false, clock.unix()), "119 s after its call");
        clock.advance(time::Duration::seconds(1));
        assert!(!online(&t, false, clock.unix()), "120 s after its call");
        assert!(online(&t, true, clock.unix()), "mDNS sees it");
        assert!(!online(&toy(None), false, clock.unix()), "never called");
        assert!(online(&toy(None), true, clock.unix()));
    }
}
