//! Use cases of voice messages, shared by both surfaces: turn an upload
//! into a stored clip (decode, normalise, encode off the async threads;
//! store in one transaction; answer only after the commit), the message
//! JSON, state changes, deleting and keeping with their events, and the
//! retention sweep. Inputs and outcomes are typed; nothing here knows HTTP.

use serde_json::json;

use crate::audio::{self, AudioError, AudioKind};
use crate::clock::rfc3339;
use crate::domain::{Direction, IdempotencyKey, IdempotencyScope, MessageState, Role, UserId};
use crate::error::{Code, Error, Result};
use crate::events::PageEvent;
use crate::state::AppState;
use crate::store::{self, audit, messages::Message, toys::Toy, users::User};

/// Largest upload from a parent.
pub const PARENT_LIMIT: usize = 16 << 20;
/// Largest upload from a toy.
pub const TOY_LIMIT: usize = 4 << 20;

/// A message's JSON, as in `docs/api.md` (plus `toy_name`, `peaks`,
/// `expires_at`, and `heard_by_me` when filled in for one member).
pub fn message_json(m: &Message, retention_days: Option<u32>) -> serde_json::Value {
    let expires_at = match (m.keep, retention_days) {
        (false, Some(d)) => Some(rfc3339(m.created_at + i64::from(d) * 86_400)),
        _ => None,
    };
    let mut v = json!({
        "id": m.public_id,
        "toy_id": m.toy_id,
        "direction": m.direction,
        "from": m.sender_name,
        "created_at": rfc3339(m.created_at),
        "duration_ms": m.duration_ms,
        "state": m.state,
        "keep": m.keep,
        "bytes": m.size,
        "peaks": m.peaks,
        "expires_at": expires_at,
    });
    if let (Some(heard), Some(obj)) = (m.heard_by_me, v.as_object_mut()) {
        obj.insert("heard_by_me".into(), json!(heard));
    }
    v
}

/// Fills in `heard_by_me` of the children's recordings among `msgs` for
/// member `by` (a recording stored before their account counts as heard).
pub async fn with_heard(
    state: &AppState,
    by: &User,
    mut msgs: Vec<Message>,
) -> Result<Vec<Message>> {
    let rows: Vec<_> = msgs
        .iter()
        .filter(|m| m.direction == Direction::FromToy)
        .map(|m| m.rowid)
        .collect();
    if rows.is_empty() {
        return Ok(msgs);
    }
    let uid = by.id;
    let heard = state
        .store
        .read(move |c| store::heard::heard_among(c, uid, &rows))
        .await?;
    for m in &mut msgs {
        if m.direction == Direction::FromToy {
            m.heard_by_me = Some(heard.contains(&m.rowid));
        }
    }
    Ok(msgs)
}

/// Whether member `user` has heard the message `public_id` (`None` when
/// it is not a child's recording or is gone): the event stream adds it
/// to each member's copy of `event: message`.
pub async fn heard_by_me(state: &AppState, user: UserId, public_id: &str) -> Result<Option<bool>> {
    let id = public_id.to_owned();
    let found = state
        .store
        .read(move |c| {
            let Some(m) = store::messages::get(c, &id)? else {
                return Ok(None);
            };
            if m.direction != Direction::FromToy {
                return Ok(None);
            }
            Ok(Some(
                store::heard::heard_among(c, user, &[m.rowid])?.contains(&m.rowid),
            ))
        })
        .await?;
    Ok(found)
}

/// One member's unread children's recordings: per toy they may see (every
/// such toy is listed, with 0 when all are heard) and in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// Per visible paired toy, in the order of the toy list.
    pub toys: Vec<(crate::domain::ToyId, i64)>,
    /// Their sum.
    pub total: i64,
}

/// What member `by` has not heard yet (`GET /api/v1/unread`).
pub async fn unread(state: &AppState, by: &User) -> Result<Unread> {
    let toys = crate::toys::visible(state, by).await?;
    let uid = by.id;
    let counts = state
        .store
        .read(move |c| store::heard::unread_per_toy(c, uid))
        .await?;
    let toys: Vec<_> = toys
        .into_iter()
        .map(|t| {
            let n = counts.get(&t.toy.id).copied().unwrap_or(0);
            (t.toy.toy_id, n)
        })
        .collect();
    let total = toys.iter().map(|(_, n)| n).sum();
    Ok(Unread { toys, total })
}

/// Member `by` marks every recording they have not heard as heard: of one
/// toy (as typed; `404` when they may not see it) or of every toy they may
/// see. Only their own state changes: the household's state of each
/// message, other members' counts and the ledger stay as they are.
/// Returns how many were marked.
pub async fn mark_all_heard(state: &AppState, by: &User, toy_id: Option<&str>) -> Result<usize> {
    let among: Vec<_> = match toy_id {
        Some(t) => vec![crate::family::visible_toy(state, by, t).await?.id],
        None => crate::toys::visible(state, by)
            .await?
            .into_iter()
            .map(|t| t.toy.id)
            .collect(),
    };
    let (uid, now) = (by.id, state.now());
    let n = state
        .store
        .write(move |tx| store::heard::mark_all(tx, uid, Some(&among), now))
        .await?;
    if n > 0 {
        state.events.publish(PageEvent::Unread {
            user: uid,
            toy_id: toy_id.map(str::to_owned),
        });
    }
    Ok(n)
}

/// The household's retention period.
pub async fn retention_days(state: &AppState) -> Result<Option<u32>> {
    Ok(state
        .store
        .read(store::household::get)
        .await?
        .and_then(|h| h.retention_days))
}

/// Publishes `event: message` for a message (by public id).
pub async fn publish(state: &AppState, public_id: &str) -> Result<()> {
    let id = public_id.to_owned();
    let m = state
        .store
        .read(move |c| store::messages::get(c, &id))
        .await?;
    if let Some(m) = m {
        let days = retention_days(state).await?;
        state
            .events
            .publish(PageEvent::Message(message_json(&m, days)));
    }
    Ok(())
}

/// The error for audio that cannot be used.
pub fn audio_error(e: AudioError) -> Error {
    match e {
        AudioError::TooLong { duration_ms } => Error::too_large(format!(
            "the recording is {:.1} s long; at most {} s are allowed",
            duration_ms as f64 / 1000.0,
            audio::MAX_DURATION_MS / 1000
        )),
        AudioError::Invalid(msg) => Error::new(Code::InvalidAudio, msg),
    }
}

/// An upload to store: typed by the surface that received it.
pub struct Upload<B> {
    /// The toy it belongs to.
    pub toy: Toy,
    /// Which way.
    pub direction: Direction,
    /// Sender user row.
    pub sender_user: Option<UserId>,
    /// Sender display name.
    pub sender_name: String,
    /// Declared kind.
    pub kind: AudioKind,
    /// The body.
    pub body: B,
    /// Whose keys to look the `Idempotency-Key` up among, and the key.
    pub idempotency: Option<(IdempotencyScope, IdempotencyKey)>,
}

/// What the sender is told about a stored clip (also what a retry with
/// the same key is told again).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// The message's public id.
    pub id: String,
    /// Its length.
    pub duration_ms: u64,
}

/// How an upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A new message.
    New(Receipt),
    /// A retry of one stored before (same key within 24 hours): nothing new.
    Replayed(Receipt),
}

fn replayed(text: &str) -> Result<Stored> {
    serde_json::from_str(text)
        .map(Stored::Replayed)
        .map_err(|e| {
            Error::internal(anyhow::anyhow!(
                "a stored idempotent answer is damaged: {e}"
            ))
        })
}

/// The paired toy a member may send to (by id as typed): a relative only
/// to the toys granted to them, any other toy is `404`.
pub async fn recipient(state: &AppState, by: &User, toy_id: &str) -> Result<Toy> {
    crate::family::visible_toy(state, by, toy_id).await
}

/// A message by public id, when `by` may see its toy (`404` otherwise).
async fn visible_message(state: &AppState, by: &User, public_id: &str) -> Result<Message> {
    let id = public_id.to_owned();
    let m = state
        .store
        .read(move |c| store::messages::get(c, &id))
        .await?
        .ok_or_else(|| Error::not_found("no such message"))?;
    if crate::family::scope(&state.store, by).await?.sees(m.toy) {
        Ok(m)
    } else {
        Err(Error::not_found("no such message"))
    }
}

/// The ledger entry of a message (its id and duration only, never its content).
fn message_entry(
    now: i64,
    actor: String,
    action: audit::Action,
    m: (&str, &str, i64),
) -> audit::AuditEntry {
    let (id, toy, duration_ms) = m;
    let mut e = audit::AuditEntry::new(now, Some(actor), action, audit::Outcome::Success);
    e.subject = Some(id.to_owned());
    e.toy = Some(toy.to_owned());
    e.detail = format!("{:.1} s", duration_ms as f64 / 1000.0);
    e
}

/// Stores an upload: decode, normalise and encode off the async threads,
/// then one transaction (message + idempotency key); wakes the toy and
/// tells open pages. Answers only after the commit.
pub async fn store_upload<B>(state: &AppState, up: Upload<B>) -> Result<Stored>
where
    B: AsRef<[u8]> + Send + 'static,
{
    let now = state.now();
    if let Some((scope, key)) = &up.idempotency {
        let (s, k) = (*scope, key.to_string());
        if let Some(prev) = state
            .store
            .read(move |c| store::idempotency::lookup(c, s, k.as_str(), now))
            .await?
        {
            return replayed(&prev);
        }
    }
    // Refused early when the disk is nearly full, keeping room for
    // sign-ins, deletes and state changes (see `store::space`).
    state.store.admit_upload(up.body.as_ref().len() as u64)?;
    let Upload {
        toy,
        direction,
        sender_user,
        sender_name,
        kind,
        body,
        idempotency,
    } = up;
    // Towards a toy, everything is re-encoded with the limiter (a child's
    // ear is at stake); children's recordings keep their Opus packets.
    let clip = tokio::task::spawn_blocking(move || match direction {
        Direction::ToToy => audio::ingest(kind, body.as_ref()),
        Direction::FromToy => audio::ingest_recording(kind, body.as_ref()),
    })
    .await
    .map_err(|e| Error::internal(anyhow::anyhow!("audio worker failed: {e}")))?
    .map_err(audio_error)?;
    let receipt = Receipt {
        id: hex::encode(rand::random::<[u8; 16]>()),
        duration_ms: clip.duration_ms,
    };
    let answer_text = serde_json::to_string(&receipt)
        .map_err(|e| Error::internal(anyhow::anyhow!("receipt: {e}")))?;
    let pid = receipt.id.clone();
    let toy_row = toy.id;
    let toy_text = toy.toy_id.to_string();
    let stored = state
        .store
        .write(move |tx| {
            if let Some((scope, key)) = &idempotency {
                // A concurrent retry may have stored it meanwhile.
                if let Some(prev) = store::idempotency::lookup(tx, *scope, key.as_str(), now)? {
                    return Ok(Some(prev));
                }
            }
            store::messages::insert(
                tx,
                &store::messages::NewMessage {
                    public_id: &pid,
                    toy: toy_row,
                    direction,
                    sender_user,
                    sender_name: &sender_name,
                    now,
                    duration_ms: clip.duration_ms as i64,
                    peaks: &clip.peaks,
                    audio: &clip.ogg,
                },
            )?;
            if let Some((scope, key)) = &idempotency {
                store::idempotency::remember(tx, *scope, key.as_str(), now, &answer_text)?;
            }
            let (action, actor) = match (direction, sender_user) {
                (Direction::ToToy, Some(uid)) => (
                    audit::Action::MessageSent,
                    store::users::by_id(tx, uid)?.map_or(sender_name.clone(), |u| u.username),
                ),
                (Direction::ToToy, None) => (audit::Action::MessageSent, sender_name.clone()),
                (Direction::FromToy, _) => {
                    (audit::Action::MessageReceived, format!("toy:{toy_text}"))
                }
            };
            let e = message_entry(
                now,
                actor,
                action,
                (&pid, &toy_text, clip.duration_ms as i64),
            );
            audit::record(tx, &e)?;
            Ok(None)
        })
        .await?;
    if let Some(prev) = stored {
        return replayed(&prev);
    }
    if direction == Direction::ToToy {
        state.events.wake_toy(toy_row);
    }
    publish(state, &receipt.id).await?;
    Ok(Stored::New(receipt))
}

/// Which messages a parent asks for, as typed: of one toy or all, older
/// than the message `before` (a public id), at most `limit` (1 to 200,
/// default 50).
#[derive(Debug, Default)]
pub struct ListQuery {
    /// A toy id.
    pub toy: Option<String>,
    /// A number from 1 to 200.
    pub limit: Option<String>,
    /// A message's public id.
    pub before: Option<String>,
}

/// A page of messages for a member, newest first, with the household's
/// retention period: a relative's of their toys only (another toy is `404`).
pub async fn list(
    state: &AppState,
    by: &User,
    q: ListQuery,
) -> Result<(Vec<Message>, Option<u32>)> {
    let scope = crate::family::scope(&state.store, by).await?;
    let limit = match &q.limit {
        None => 50,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| Error::new(Code::InvalidLimit, "limit is a number from 1 to 200"))?,
    };
    let ListQuery { toy, before, .. } = q;
    let toy = toy.as_deref();
    let toy = match toy {
        Some(t) => Some(crate::family::visible_toy(state, by, t).await?.id),
        None => None,
    };
    let before = match before {
        Some(b) => Some(
            state
                .store
                .read(move |c| store::messages::get(c, &b))
                .await?
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidBefore,
                        "before must be the id of a listed message",
                    )
                })?
                .rowid,
        ),
        None => None,
    };
    let granted_to = (!scope.is_all()).then_some(by.id);
    let msgs = state
        .store
        .read(move |c| match granted_to {
            Some(uid) => store::messages::list_granted(c, uid, toy, before, limit),
            None => store::messages::list(c, toy, before, limit),
        })
        .await?;
    let msgs = with_heard(state, by, msgs).await?;
    Ok((msgs, retention_days(state).await?))
}

/// The home page's new recordings: children's recordings `by` has not
/// heard, among the 50 newest messages they may see, newest first.
pub async fn new_recordings(state: &AppState, by: &User) -> Result<(Vec<Message>, Option<u32>)> {
    let scope = crate::family::scope(&state.store, by).await?;
    let msgs = state
        .store
        .read(|c| store::messages::list(c, None, None, 50))
        .await?
        .into_iter()
        .filter(|m| scope.sees(m.toy) && m.direction == Direction::FromToy)
        .collect();
    let msgs = with_heard(state, by, msgs)
        .await?
        .into_iter()
        .filter(|m| m.heard_by_me == Some(false))
        .collect();
    Ok((msgs, retention_days(state).await?))
}

/// A toy's conversation page for member `by`: its 100 newest messages,
/// oldest first.
pub async fn conversation(
    state: &AppState,
    by: &User,
    toy: &Toy,
) -> Result<(Vec<Message>, Option<u32>)> {
    let row = toy.id;
    let mut msgs = state
        .store
        .read(move |c| store::messages::list(c, Some(row), None, 100))
        .await?;
    msgs.reverse();
    let msgs = with_heard(state, by, msgs).await?;
    Ok((msgs, retention_days(state).await?))
}

/// What fetching a message's audio means: a `GET` takes it (the message is
/// then *delivered* or *heard*), a `HEAD` only looks (HTTP's `HEAD` is
/// safe: it changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The audio is taken: the message moves on.
    Take,
    /// Only its headers are asked for: the message stays as it is.
    Look,
}

/// The two forms a parent can fetch audio in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// Ogg Opus, as stored.
    Ogg,
    /// WAV decoded from it, for browsers that cannot play Ogg.
    Wav,
}

/// A parent opens a message's audio in `format` (`ogg`, the default, or
/// `wav`); a child's recording is then *heard*: by this member (their own
/// state, see [`mark_heard`]) and by the household (the message's state).
pub async fn parent_audio(
    state: &AppState,
    by: &User,
    public_id: &str,
    format: Option<&str>,
    fetch: Fetch,
) -> Result<(AudioFormat, Vec<u8>)> {
    let format = match format {
        None | Some("ogg") => AudioFormat::Ogg,
        Some("wav") => AudioFormat::Wav,
        Some(_) => return Err(Error::new(Code::InvalidFormat, "format is ogg or wav")),
    };
    let ogg = match visible_message(state, by, public_id).await {
        Ok(m) => {
            let id = public_id.to_owned();
            let ogg = state
                .store
                .read(move |c| store::messages::audio(c, &id))
                .await?
                .ok_or_else(|| Error::not_found("no such message"))?;
            if m.direction == Direction::FromToy && fetch == Fetch::Take {
                mark_heard(state, by, &m).await;
                advance(state, &m, MessageState::Heard).await?;
            }
            ogg
        }
        // A contact's reply awaiting approval is heard the same way, by
        // parents and admins (a relative is told only "not found").
        Err(e) if e.code == Code::NotFound && by.role != Role::Relative => {
            crate::relay::reply_audio(state, by, public_id)
                .await?
                .ok_or(e)?
        }
        Err(e) => return Err(e),
    };
    if format == AudioFormat::Ogg {
        return Ok((format, ogg));
    }
    let wav = tokio::task::spawn_blocking(move || audio::ogg_to_wav(&ogg))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("audio worker failed: {e}")))?
        .map_err(|e| Error::internal(anyhow::anyhow!("stored audio could not be decoded: {e}")))?;
    Ok((format, wav))
}

/// Records that member `by` heard a child's recording, and tells their
/// open pages (`event: unread`). Best effort like the household's state:
/// playing never fails for it (on a full disk the write waits). Not in the
/// ledger: hearing a recording is a member's own business, and one entry
/// per play would bury the acts the ledger is for (docs/api.md).
pub async fn mark_heard(state: &AppState, by: &User, m: &Message) {
    let (uid, row, now) = (by.id, m.rowid, state.now());
    let new = state
        .store
        .write_or_defer(move |tx| store::heard::mark(tx, uid, row, now))
        .await;
    if new == Some(true) {
        state.events.publish(PageEvent::Unread {
            user: uid,
            toy_id: Some(m.toy_id.to_string()),
        });
    }
}

/// What a toy is handed when it asks for its messages.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// The messages it may take now.
    pub messages: Vec<Message>,
    /// While it is in quiet hours: when they end (Unix seconds). Until then
    /// it is handed nothing, and a long-poll wakes at that moment.
    pub held_until: Option<i64>,
}

/// The messages waiting for a toy. During the toy's quiet hours
/// (`toys::quiet_until`, read from its current row, so a change a parent
/// makes reaches a waiting long-poll) nothing is handed over: the messages
/// wait, and are handed over when the hours end. A message sent earlier
/// and not yet fetched waits too: quiet hours are quiet.
pub async fn inbox(state: &AppState, toy: &Toy) -> Result<Inbox> {
    let (row, id, now) = (toy.id, toy.toy_id.clone(), state.now());
    let (current, messages) = state
        .store
        .read(move |c| {
            let current = store::toys::by_toy_id(c, &id)?;
            Ok((current, store::messages::inbox(c, row)?))
        })
        .await?;
    let held_until = crate::toys::quiet_until(current.as_ref().unwrap_or(toy), now);
    Ok(match held_until {
        Some(_) => Inbox {
            messages: Vec::new(),
            held_until,
        },
        None => Inbox {
            messages,
            held_until,
        },
    })
}

async fn own_message(state: &AppState, toy: &Toy, public_id: &str) -> Result<Message> {
    let id = public_id.to_owned();
    let m = state
        .store
        .read(move |c| store::messages::get(c, &id))
        .await?;
    m.filter(|m| m.toy == toy.id && m.direction == Direction::ToToy)
        .ok_or_else(|| Error::not_found("no such message for this toy"))
}

/// A toy downloads a message for it: the message is then *delivered*.
pub async fn toy_audio(
    state: &AppState,
    toy: &Toy,
    public_id: &str,
    fetch: Fetch,
) -> Result<Vec<u8>> {
    let m = own_message(state, toy, public_id).await?;
    let id = m.public_id.clone();
    let ogg = state
        .store
        .read(move |c| store::messages::audio(c, &id))
        .await?
        .ok_or_else(|| Error::not_found("no such message for this toy"))?;
    if fetch == Fetch::Take {
        advance(state, &m, MessageState::Delivered).await?;
    }
    Ok(ogg)
}

/// A toy played a message to the child: recorded once, in the ledger too.
pub async fn played(state: &AppState, toy: &Toy, public_id: &str) -> Result<()> {
    let m = own_message(state, toy, public_id).await?;
    let first = m.state != MessageState::Played;
    advance(state, &m, MessageState::Played).await?;
    if first {
        let e = message_entry(
            state.now(),
            format!("toy:{}", toy.toy_id),
            audit::Action::MessagePlayed,
            (&m.public_id, toy.toy_id.as_str(), m.duration_ms),
        );
        // Best effort like the state mark: playing never fails for the ledger.
        if let Err(err) = state.store.write(move |tx| audit::record(tx, &e)).await {
            tracing::warn!("cannot record a played message in the ledger: {err}");
        }
    }
    Ok(())
}

/// A parent deletes a message (a relative: `403` for their toys' messages,
/// `404` for others).
pub async fn delete(state: &AppState, by: &User, public_id: &str) -> Result<()> {
    let m = visible_message(state, by, public_id).await?;
    crate::accounts::require(by, Role::Parent)?;
    let id = public_id.to_owned();
    let gone = state
        .store
        .write(move |tx| store::messages::delete(tx, &id))
        .await?;
    if !gone {
        return Err(Error::not_found("no such message"));
    }
    // Give the space back now (a parent deleting on a full disk wants room).
    if let Err(e) = state.store.reclaim_space().await {
        tracing::warn!("cannot give freed space back yet: {e}");
    }
    state.events.publish(PageEvent::MessageDeleted {
        id: public_id.to_owned(),
        toy_id: Some(m.toy_id.to_string()),
    });
    Ok(())
}

/// A parent keeps a message past retention (or lets it go again).
/// Returns the message and the household's retention period.
pub async fn set_keep(
    state: &AppState,
    by: &User,
    public_id: &str,
    keep: bool,
) -> Result<(Message, Option<u32>)> {
    visible_message(state, by, public_id).await?;
    crate::accounts::require(by, Role::Parent)?;
    let id = public_id.to_owned();
    let found = state
        .store
        .write(move |tx| store::messages::set_keep(tx, &id, keep))
        .await?;
    if !found {
        return Err(Error::not_found("no such message"));
    }
    publish(state, public_id).await?;
    let id = public_id.to_owned();
    let m = state
        .store
        .read(move |c| store::messages::get(c, &id))
        .await?
        .ok_or_else(|| Error::not_found("no such message"))?;
    let m = with_heard(state, by, vec![m])
        .await?
        .pop()
        .ok_or_else(|| Error::not_found("no such message"))?;
    Ok((m, retention_days(state).await?))
}

/// Moves a message forward (never back) and tells open pages; when the
/// disk is full the change is put off, never failing the caller.
pub async fn advance(state: &AppState, m: &Message, to: MessageState) -> Result<()> {
    if m.state.rank() >= to.rank() {
        return Ok(());
    }
    let rowid = m.rowid;
    // Best effort: serving a message never depends on this write. On a full
    // disk it waits and is written before a later write (see `Store`).
    let changed = state
        .store
        .write_or_defer(move |tx| store::messages::advance_state(tx, rowid, to.rank(), to))
        .await;
    if changed == Some(true) {
        publish(state, &m.public_id).await?;
    }
    Ok(())
}

/// Deletes messages past the household's retention period (kept ones
/// stay) and gives the space back; forgets idempotency keys older than a
/// day, also when messages are kept forever. Returns how many messages were
/// deleted.
pub async fn retention_sweep(state: &AppState) -> Result<usize> {
    let days = retention_days(state).await?;
    let now = state.now();
    let gone = state
        .store
        .write(move |tx| {
            store::idempotency::purge(tx, now)?;
            match days {
                Some(days) => store::messages::delete_expired(tx, now - i64::from(days) * 86_400),
                None => Ok(Vec::new()),
            }
        })
        .await?;
    if !gone.is_empty() {
        state.store.reclaim_space().await?;
        for id in &gone {
            state.events.publish(PageEvent::MessageDeleted {
                id: id.clone(),
                toy_id: None,
            });
        }
        tracing::info!(count = gone.len(), "retention removed old messages");
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    //! The rules of messages against a real SQLite file, with the clock
    //! moved by hand: who sees and hears what, states that only move
    //! forward, the events pages are told, the ledger, retention.
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::ToyId;
    use crate::events::Event;
    use crate::store::audit::{Action, Filter};
    use futures_util::FutureExt;
    use tokio::sync::broadcast;

    const DAY: i64 = 86_400;

    struct Home {
        _dir: tempfile::TempDir,
        clock: ManualClock,
        state: AppState,
        admin: User,
        parent: User,
        relative: User,
        /// The relative's toy.
        bear: Toy,
        /// A toy the relative may not see.
        owl: Toy,
    }

    async fn home() -> Home {
        let dir = tempfile::tempdir().expect("succeeds");
        let clock = ManualClock::default();
        let state = AppState::for_tests(dir.path(), Arc::new(clock.clone()));
        let now = state.now();
        let (admin, parent, relative, bear, owl) = state
            .store
            .write(move |tx| {
                store::household::create(tx, "Home", now)?;
                let mut users = Vec::new();
                for (name, role) in [
                    ("ada", Role::Admin),
                    ("pat", Role::Parent),
                    ("gran", Role::Relative),
                ] {
                    // Members since long before any message of the tests: a
                    // recording older than an account counts as heard.
                    let id = store::users::insert(tx, name, name, role, "x", now - 100 * DAY)?
                        .expect("succeeds");
                    users.push(store::users::by_id(tx, id)?.expect("succeeds"));
                }
                let mut toys = Vec::new();
                for (id, fp) in [("bear-1", "k1"), ("owl-2", "k2")] {
                    let toy_id = ToyId::parse(id).expect("succeeds");
                    store::toys::upsert_paired(tx, &toy_id, id, "m", fp, fp.as_bytes(), now)?;
                    toys.push(store::toys::by_toy_id(tx, &toy_id)?.expect("succeeds"));
                }
                store::members::set_granted_toys(tx, users[2].id, &[toys[0].id])?;
                let owl = toys.pop().expect("succeeds");
                let bear = toys.pop().expect("succeeds");
                let relative = users.pop().expect("succeeds");
                let parent = users.pop().expect("succeeds");
                Ok((users.pop().expect("succeeds"), parent, relative, bear, owl))
            })
            .await
            .expect("succeeds");
        Home {
            _dir: dir,
            clock,
            state,
            admin,
            parent,
            relative,
            bear,
            owl,
        }
    }

    impl Home {
        /// Stores a message as it is (the audio bytes are not looked at),
        /// `age` seconds old; returns it as read back.
        async fn put(&self, toy: &Toy, direction: Direction, age: i64, audio: &[u8]) -> Message {
            let id = hex::encode(rand::random::<[u8; 16]>());
            let (row, now, audio) = (toy.id, self.state.now() - age, audio.to_vec());
            let pid = id.clone();
            self.state
                .store
                .write(move |tx| {
                    store::messages::insert(
                        tx,
                        &store::messages::NewMessage {
                            public_id: &pid,
                            toy: row,
                            direction,
                            sender_user: None,
                            sender_name: "someone",
                            now,
                            duration_ms: 1500,
                            peaks: &[1, 2, 3],
                            audio: &audio,
                        },
                    )
                })
                .await
                .expect("succeeds");
            self.get(&id).await.expect("succeeds")
        }

        async fn get(&self, id: &str) -> Option<Message> {
            let id = id.to_owned();
            self.state
                .store
                .read(move |c| store::messages::get(c, &id))
                .await
                .expect("succeeds")
        }

        async fn set_retention(&self, days: Option<u32>) {
            self.state
                .store
                .write(move |tx| store::household::set_retention(tx, days))
                .await
                .expect("succeeds");
        }

        async fn ledger(&self, action: Action) -> Vec<audit::AuditEntry> {
            let f = Filter {
                action: Some(action),
                actor: None,
                toy: None,
                before: None,
                limit: 50,
            };
            self.state
                .store
                .read(move |c| audit::query(c, &f))
                .await
                .expect("succeeds")
                .into_iter()
                .map(|e| e.entry)
                .collect()
        }

        fn upload(&self, by: &User, to: &Toy, key: Option<&str>) -> Upload<Vec<u8>> {
            Upload {
                toy: to.clone(),
                direction: Direction::ToToy,
                sender_user: Some(by.id),
                sender_name: by.display_name.clone(),
                kind: AudioKind::Wav,
                body: tone_wav(),
                idempotency: key.map(|k| {
                    (
                        IdempotencyScope::User(by.id),
                        IdempotencyKey::parse(k).expect("succeeds"),
                    )
                }),
            }
        }
    }

    /// Half a second of a 440 Hz tone, 16 kHz mono, written by `hound`.
    fn tone_wav() -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).expect("succeeds");
        for i in 0..8000 {
            let t = i as f32 / 16_000.0;
            w.write_sample((8000.0 * (t * 440.0 * std::f32::consts::TAU).sin()) as i16)
                .expect("succeeds");
        }
        w.finalize().expect("succeeds");
        out.into_inner()
    }

    /// The page events published so far.
    fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<PageEvent> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e.page);
        }
        out
    }

    fn message_events(events: &[PageEvent]) -> Vec<serde_json::Value> {
        events
            .iter()
            .filter_map(|e| match e {
                PageEvent::Message(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    fn deleted(events: &[PageEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                PageEvent::MessageDeleted { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    fn unread_events(events: &[PageEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, PageEvent::Unread { .. }))
            .count()
    }

    fn ids(msgs: &[Message]) -> Vec<&str> {
        msgs.iter().map(|m| m.public_id.as_str()).collect()
    }

    #[test]
    fn upload_limits_are_the_documented_sizes() {
        assert_eq!(PARENT_LIMIT, 16 * 1024 * 1024);
        assert_eq!(TOY_LIMIT, 4 * 1024 * 1024);
    }

    #[tokio::test]
    async fn message_json_says_when_an_unkept_message_expires() {
        let h = home().await;
        let m = h.put(&h.bear, Direction::FromToy, 0, b"ogg").await;
        let v = message_json(&m, Some(30));
        assert_eq!(v["id"], m.public_id.as_str());
        assert_eq!(v["toy_id"], "bear-1");
        assert_eq!(v["expires_at"], rfc3339(m.created_at + 30 * DAY).as_str());
        assert!(v.get("heard_by_me").is_none());
        assert_eq!(
            message_json(&m, None)["expires_at"],
            serde_json::Value::Null
        );
        let kept = Message {
            keep: true,
            heard_by_me: Some(true),
            ..m
        };
        let v = message_json(&kept, Some(30));
        assert_eq!(v["expires_at"], serde_json::Value::Null);
        assert_eq!(v["heard_by_me"], true);
    }

    #[tokio::test]
    async fn each_member_hears_for_themselves() {
        let h = home().await;
        let rec = h.put(&h.bear, Direction::FromToy, 0, b"ogg").await;
        let sent = h.put(&h.bear, Direction::ToToy, 0, b"ogg").await;
        let mut rx = h.state.events.subscribe();
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, &rec.public_id)
                .await
                .expect("succeeds"),
            Some(false)
        );
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, &sent.public_id)
                .await
                .expect("succeeds"),
            None
        );
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, "nothing")
                .await
                .expect("succeeds"),
            None
        );

        mark_heard(&h.state, &h.parent, &rec).await;
        assert_eq!(unread_events(&drain(&mut rx)), 1, "told when it changed");
        mark_heard(&h.state, &h.parent, &rec).await;
        assert_eq!(unread_events(&drain(&mut rx)), 0, "not told again");
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, &rec.public_id)
                .await
                .expect("succeeds"),
            Some(true)
        );
        assert_eq!(
            heard_by_me(&h.state, h.admin.id, &rec.public_id)
                .await
                .expect("succeeds"),
            Some(false)
        );

        let both = vec![rec.clone(), sent.clone()];
        let mine = with_heard(&h.state, &h.parent, both.clone())
            .await
            .expect("succeeds");
        assert_eq!(ids(&mine), ids(&both));
        assert_eq!(mine[0].heard_by_me, Some(true));
        assert_eq!(
            mine[1].heard_by_me, None,
            "a parent's message is not heard by members"
        );
        let theirs = with_heard(&h.state, &h.admin, both)
            .await
            .expect("succeeds");
        assert_eq!(theirs[0].heard_by_me, Some(false));
        let only_sent = with_heard(&h.state, &h.parent, vec![sent])
            .await
            .expect("succeeds");
        assert_eq!(only_sent.len(), 1);
        assert_eq!(only_sent[0].heard_by_me, None);
    }

    #[tokio::test]
    async fn unread_counts_the_toys_a_member_sees_and_mark_all_tells_only_on_change() {
        let h = home().await;
        h.put(&h.bear, Direction::FromToy, 0, b"ogg").await;
        h.put(&h.bear, Direction::FromToy, 0, b"ogg").await;
        h.put(&h.owl, Direction::FromToy, 0, b"ogg").await;
        h.put(&h.owl, Direction::ToToy, 0, b"ogg").await;
        let u = unread(&h.state, &h.parent).await.expect("succeeds");
        assert_eq!(u.total, 3);
        assert!(u.toys.contains(&(h.bear.toy_id.clone(), 2)));
        assert!(u.toys.contains(&(h.owl.toy_id.clone(), 1)));
        let u = unread(&h.state, &h.relative).await.expect("succeeds");
        assert_eq!((u.toys, u.total), (vec![(h.bear.toy_id.clone(), 2)], 2));

        let mut rx = h.state.events.subscribe();
        let err = mark_all_heard(&h.state, &h.relative, Some("owl-2"))
            .await
            .expect_err("refused");
        assert_eq!(err.code, Code::NotFound);
        assert_eq!(
            mark_all_heard(&h.state, &h.relative, None)
                .await
                .expect("succeeds"),
            2
        );
        assert_eq!(unread_events(&drain(&mut rx)), 1);
        assert_eq!(
            mark_all_heard(&h.state, &h.relative, None)
                .await
                .expect("succeeds"),
            0
        );
        assert_eq!(
            unread_events(&drain(&mut rx)),
            0,
            "nothing changed, nothing told"
        );
        assert_eq!(
            mark_all_heard(&h.state, &h.parent, Some("owl-2"))
                .await
                .expect("succeeds"),
            1
        );
        assert_eq!(
            unread(&h.state, &h.parent).await.expect("succeeds").total,
            2
        );
    }

    #[tokio::test]
    async fn a_stored_message_wakes_its_toy_is_told_and_is_in_the_ledger_once() {
        let h = home().await;
        let mut rx = h.state.events.subscribe();
        let wake = h.state.events.toy_notify(h.bear.id);
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let first = store_upload(&h.state, h.upload(&h.parent, &h.bear, Some("k-1")))
            .await
            .expect("succeeds");
        let Stored::New(receipt) = first else {
            panic!("a first upload is new: {first:?}")
        };
        assert!((450..=600).contains(&receipt.duration_ms), "{receipt:?}");
        // Woken before the upload returned: no waiting needed to see it.
        assert!(
            woken.as_mut().now_or_never().is_some(),
            "the toy's long-poll is woken"
        );
        let told = message_events(&drain(&mut rx));
        assert_eq!(told.len(), 1);
        assert_eq!(told[0]["id"], receipt.id.as_str());

        let again = store_upload(&h.state, h.upload(&h.parent, &h.bear, Some("k-1")))
            .await
            .expect("succeeds");
        assert_eq!(again, Stored::Replayed(receipt.clone()));
        let sent = h.ledger(Action::MessageSent).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].actor.as_deref(), Some("pat"));
        assert_eq!(sent[0].subject.as_deref(), Some(receipt.id.as_str()));
        assert_eq!(sent[0].toy.as_deref(), Some("bear-1"));
        let m = h.get(&receipt.id).await.expect("succeeds");
        assert_eq!(
            (m.direction, m.state),
            (Direction::ToToy, MessageState::Queued)
        );
        assert_eq!(
            ids(&inbox(&h.state, &h.bear).await.expect("succeeds").messages),
            [receipt.id.as_str()]
        );
        assert!(
            inbox(&h.state, &h.owl)
                .await
                .expect("succeeds")
                .messages
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_childs_recording_does_not_wake_the_toy() {
        let h = home().await;
        let wake = h.state.events.toy_notify(h.bear.id);
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let up = Upload {
            direction: Direction::FromToy,
            sender_user: None,
            ..h.upload(&h.parent, &h.bear, None)
        };
        let Stored::New(r) = store_upload(&h.state, up).await.expect("succeeds") else {
            panic!("new")
        };
        let received = h.ledger(Action::MessageReceived).await;
        assert_eq!(received[0].actor.as_deref(), Some("toy:bear-1"));
        // A wake-up would have happened before the upload returned.
        assert!(
            woken.as_mut().now_or_never().is_none(),
            "a recording is not for the toy"
        );
        assert!(
            inbox(&h.state, &h.bear)
                .await
                .expect("succeeds")
                .messages
                .is_empty()
        );
        assert_eq!(
            h.get(&r.id).await.expect("succeeds").state,
            MessageState::Received
        );
    }

    #[test]
    fn damaged_stored_answers_and_bad_audio_get_precise_errors() {
        let r = Receipt {
            id: "abc".into(),
            duration_ms: 7,
        };
        let text = serde_json::to_string(&r).expect("succeeds");
        assert_eq!(replayed(&text).expect("succeeds"), Stored::Replayed(r));
        assert_eq!(
            replayed("{").expect_err("refused").code,
            Code::InternalError
        );
        let e = audio_error(AudioError::TooLong {
            duration_ms: 125_000,
        });
        assert_eq!(e.code, Code::PayloadTooLarge);
        assert!(e.message.contains("125.0 s"), "{}", e.message);
        let e = audio_error(AudioError::Invalid("no Opus head".into()));
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::InvalidAudio, "no Opus head")
        );
    }

    #[tokio::test]
    async fn lists_page_newest_first_within_what_a_member_sees() {
        let h = home().await;
        let mut bear = Vec::new();
        for age in [50, 40, 30, 20, 10] {
            bear.push(h.put(&h.bear, Direction::FromToy, age, b"ogg").await);
        }
        let owl = h.put(&h.owl, Direction::ToToy, 5, b"ogg").await;
        h.set_retention(Some(9)).await;
        let q = |toy: Option<&str>, limit: Option<&str>, before: Option<&str>| ListQuery {
            toy: toy.map(Into::into),
            limit: limit.map(Into::into),
            before: before.map(Into::into),
        };
        let (all, days) = list(&h.state, &h.parent, q(None, None, None))
            .await
            .expect("succeeds");
        assert_eq!(days, Some(9));
        let newest_first: Vec<_> = std::iter::once(&owl).chain(bear.iter().rev()).collect();
        assert_eq!(
            ids(&all),
            newest_first
                .iter()
                .map(|m| m.public_id.as_str())
                .collect::<Vec<_>>()
        );
        let (page, _) = list(
            &h.state,
            &h.parent,
            q(None, Some("2"), Some(&bear[3].public_id)),
        )
        .await
        .expect("succeeds");
        assert_eq!(
            ids(&page),
            [bear[2].public_id.as_str(), bear[1].public_id.as_str()]
        );
        let (mine, _) = list(&h.state, &h.relative, q(None, None, None))
            .await
            .expect("succeeds");
        assert_eq!(mine.len(), 5, "a relative lists their toy's messages only");
        assert!(mine.iter().all(|m| m.toy == h.bear.id));
        assert!(mine.iter().all(|m| m.heard_by_me == Some(false)));
        let (owls, _) = list(&h.state, &h.parent, q(Some("owl-2"), None, None))
            .await
            .expect("succeeds");
        assert_eq!(ids(&owls), [owl.public_id.as_str()]);
        for (query, code) in [
            (q(None, Some("0"), None), Code::InvalidLimit),
            (q(None, Some("201"), None), Code::InvalidLimit),
            (q(None, Some("ten"), None), Code::InvalidLimit),
            (q(None, None, Some("nope")), Code::InvalidBefore),
            (q(Some("owl-2"), None, None), Code::NotFound),
        ] {
            let e = list(&h.state, &h.relative, query)
                .await
                .expect_err("refused");
            assert_eq!(e.code, code, "{}", e.message);
        }
        let (max, _) = list(&h.state, &h.parent, q(None, Some("200"), None))
            .await
            .expect("succeeds");
        assert_eq!(max.len(), 6);
    }

    #[tokio::test]
    async fn the_home_page_shows_unheard_recordings_and_the_toy_page_oldest_first() {
        let h = home().await;
        let old = h.put(&h.bear, Direction::FromToy, 30, b"ogg").await;
        let new = h.put(&h.bear, Direction::FromToy, 20, b"ogg").await;
        h.put(&h.bear, Direction::ToToy, 10, b"ogg").await;
        let owl = h.put(&h.owl, Direction::FromToy, 5, b"ogg").await;
        h.set_retention(Some(3)).await;
        mark_heard(&h.state, &h.relative, &old).await;

        let (fresh, days) = new_recordings(&h.state, &h.relative)
            .await
            .expect("succeeds");
        assert_eq!(days, Some(3));
        assert_eq!(ids(&fresh), [new.public_id.as_str()]);
        let (fresh, _) = new_recordings(&h.state, &h.parent).await.expect("succeeds");
        assert_eq!(
            ids(&fresh),
            [
                owl.public_id.as_str(),
                new.public_id.as_str(),
                old.public_id.as_str()
            ]
        );

        let (talk, days) = conversation(&h.state, &h.relative, &h.bear)
            .await
            .expect("succeeds");
        assert_eq!(days, Some(3));
        assert_eq!(talk.len(), 3);
        assert_eq!(talk[0].public_id, old.public_id, "oldest first");
        assert_eq!(talk[0].heard_by_me, Some(true));
        assert_eq!(talk[1].heard_by_me, Some(false));
        assert_eq!(talk[2].direction, Direction::ToToy);
    }

    #[tokio::test]
    async fn a_parent_opening_a_recording_hears_it_looking_changes_nothing() {
        let h = home().await;
        let rec = h.put(&h.bear, Direction::FromToy, 0, b"stored ogg").await;
        let sent = h.put(&h.bear, Direction::ToToy, 0, b"sent ogg").await;
        let e = parent_audio(
            &h.state,
            &h.parent,
            &rec.public_id,
            Some("mp3"),
            Fetch::Take,
        )
        .await
        .expect_err("refused");
        assert_eq!(e.code, Code::InvalidFormat);

        let (f, bytes) = parent_audio(&h.state, &h.parent, &rec.public_id, None, Fetch::Look)
            .await
            .expect("succeeds");
        assert_eq!(
            (f, bytes.as_slice()),
            (AudioFormat::Ogg, &b"stored ogg"[..])
        );
        assert_eq!(
            h.get(&rec.public_id).await.expect("succeeds").state,
            MessageState::Received
        );
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, &rec.public_id)
                .await
                .expect("succeeds"),
            Some(false)
        );

        let (f, _) = parent_audio(
            &h.state,
            &h.parent,
            &rec.public_id,
            Some("ogg"),
            Fetch::Take,
        )
        .await
        .expect("succeeds");
        assert_eq!(f, AudioFormat::Ogg);
        assert_eq!(
            h.get(&rec.public_id).await.expect("succeeds").state,
            MessageState::Heard
        );
        assert_eq!(
            heard_by_me(&h.state, h.parent.id, &rec.public_id)
                .await
                .expect("succeeds"),
            Some(true)
        );

        parent_audio(&h.state, &h.parent, &sent.public_id, None, Fetch::Take)
            .await
            .expect("succeeds");
        assert_eq!(
            h.get(&sent.public_id).await.expect("succeeds").state,
            MessageState::Queued,
            "a parent listening back does not deliver the toy's message"
        );
    }

    #[tokio::test]
    async fn a_parent_can_have_a_message_as_wav() {
        let h = home().await;
        let Stored::New(r) = store_upload(&h.state, h.upload(&h.parent, &h.bear, None))
            .await
            .expect("succeeds")
        else {
            panic!("new")
        };
        let (f, wav) = parent_audio(&h.state, &h.parent, &r.id, Some("wav"), Fetch::Look)
            .await
            .expect("succeeds");
        assert_eq!(f, AudioFormat::Wav);
        let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("succeeds");
        assert!(reader.duration() > 0);
    }

    #[tokio::test]
    async fn relay_replies_are_heard_by_parents_and_unknown_to_relatives() {
        let h = home().await;
        let owl_rec = h.put(&h.owl, Direction::FromToy, 0, b"ogg").await;
        let now = h.state.now();
        h.state
            .store
            .write(move |tx| {
                store::relay::insert_reply(
                    tx,
                    &store::relay::Reply {
                        public_id: "reply-1".into(),
                        share_id: "s1".into(),
                        toy: None,
                        contact: "Aunt".into(),
                        slot: 0,
                        created_at: now,
                        duration_ms: 900,
                        size: 5,
                        peaks: vec![],
                    },
                    b"reply",
                )
            })
            .await
            .expect("succeeds");
        let (_, bytes) = parent_audio(&h.state, &h.parent, "reply-1", None, Fetch::Take)
            .await
            .expect("succeeds");
        assert_eq!(bytes, b"reply");
        for id in ["reply-1", owl_rec.public_id.as_str()] {
            let e = parent_audio(&h.state, &h.relative, id, None, Fetch::Take)
                .await
                .expect_err("refused");
            assert_eq!(e.code, Code::NotFound, "{id}: {}", e.message);
        }
        assert_eq!(
            h.get(&owl_rec.public_id).await.expect("succeeds").state,
            MessageState::Received
        );
    }

    #[tokio::test]
    async fn a_toy_takes_only_its_own_messages_and_playing_is_recorded_once() {
        let h = home().await;
        let mine = h.put(&h.bear, Direction::ToToy, 0, b"for bear").await;
        let owls = h.put(&h.owl, Direction::ToToy, 0, b"for owl").await;
        let recording = h.put(&h.bear, Direction::FromToy, 0, b"child").await;
        for id in [
            owls.public_id.as_str(),
            recording.public_id.as_str(),
            "none",
        ] {
            let e = toy_audio(&h.state, &h.bear, id, Fetch::Take)
                .await
                .expect_err("refused");
            assert_eq!(e.code, Code::NotFound, "{id}");
            let e = played(&h.state, &h.bear, id).await.expect_err("refused");
            assert_eq!(e.code, Code::NotFound, "{id}");
        }
        let bytes = toy_audio(&h.state, &h.bear, &mine.public_id, Fetch::Look)
            .await
            .expect("succeeds");
        assert_eq!(bytes, b"for bear");
        assert_eq!(
            h.get(&mine.public_id).await.expect("succeeds").state,
            MessageState::Queued
        );
        let mut rx = h.state.events.subscribe();
        toy_audio(&h.state, &h.bear, &mine.public_id, Fetch::Take)
            .await
            .expect("succeeds");
        assert_eq!(
            h.get(&mine.public_id).await.expect("succeeds").state,
            MessageState::Delivered
        );
        let told = message_events(&drain(&mut rx));
        assert_eq!(told.len(), 1);
        assert_eq!(told[0]["state"], "delivered");

        played(&h.state, &h.bear, &mine.public_id)
            .await
            .expect("succeeds");
        let first = h.ledger(Action::MessagePlayed).await;
        assert_eq!(first.len(), 1, "the first play is recorded");
        played(&h.state, &h.bear, &mine.public_id)
            .await
            .expect("succeeds");
        let m = h.get(&mine.public_id).await.expect("succeeds");
        assert_eq!(m.state, MessageState::Played);
        let entries = h.ledger(Action::MessagePlayed).await;
        assert_eq!(entries.len(), 1, "played twice, recorded once");
        assert_eq!(entries[0].actor.as_deref(), Some("toy:bear-1"));
        assert_eq!(entries[0].detail, "1.5 s");
        assert_eq!(
            message_events(&drain(&mut rx)).len(),
            1,
            "told once, when it changed"
        );

        // Never backwards: a late download after the play changes nothing.
        toy_audio(&h.state, &h.bear, &mine.public_id, Fetch::Take)
            .await
            .expect("succeeds");
        advance(&h.state, &m, MessageState::Delivered)
            .await
            .expect("succeeds");
        assert_eq!(
            h.get(&mine.public_id).await.expect("succeeds").state,
            MessageState::Played
        );
        assert!(drain(&mut rx).is_empty());
        // An out-of-date copy cannot move it back either.
        advance(&h.state, &mine, MessageState::Delivered)
            .await
            .expect("succeeds");
        assert_eq!(
            h.get(&mine.public_id).await.expect("succeeds").state,
            MessageState::Played
        );
    }

    #[tokio::test]
    async fn parents_delete_and_keep_relatives_may_not() {
        let h = home().await;
        let bear = h.put(&h.bear, Direction::FromToy, 0, b"ogg").await;
        let owl = h.put(&h.owl, Direction::FromToy, 0, b"ogg").await;
        h.set_retention(Some(7)).await;
        for (id, code) in [
            (&bear.public_id, Code::Forbidden),
            (&owl.public_id, Code::NotFound),
        ] {
            assert_eq!(
                delete(&h.state, &h.relative, id)
                    .await
                    .expect_err("refused")
                    .code,
                code
            );
            assert_eq!(
                set_keep(&h.state, &h.relative, id, true)
                    .await
                    .expect_err("refused")
                    .code,
                code
            );
        }
        assert!(!h.get(&bear.public_id).await.expect("succeeds").keep);

        let mut rx = h.state.events.subscribe();
        let (m, days) = set_keep(&h.state, &h.parent, &bear.public_id, true)
            .await
            .expect("succeeds");
        assert!(m.keep);
        assert_eq!(m.heard_by_me, Some(false));
        assert_eq!(days, Some(7));
        assert!(h.get(&bear.public_id).await.expect("succeeds").keep);
        let told = message_events(&drain(&mut rx));
        assert_eq!(
            (told.len(), &told[0]["keep"]),
            (1, &serde_json::json!(true))
        );

        delete(&h.state, &h.parent, &bear.public_id)
            .await
            .expect("succeeds");
        assert!(h.get(&bear.public_id).await.is_none());
        assert_eq!(deleted(&drain(&mut rx)), [bear.public_id.as_str()]);
        assert_eq!(
            delete(&h.state, &h.parent, &bear.public_id)
                .await
                .expect_err("refused")
                .code,
            Code::NotFound
        );
        assert_eq!(
            set_keep(&h.state, &h.admin, &bear.public_id, false)
                .await
                .expect_err("refused")
                .code,
            Code::NotFound
        );
    }

    #[tokio::test]
    async fn retention_removes_what_is_past_it_and_forgets_old_keys_even_when_keeping_forever() {
        let h = home().await;
        store_upload(&h.state, h.upload(&h.parent, &h.bear, Some("old-key")))
            .await
            .expect("succeeds");
        h.clock.advance(time::Duration::days(2));
        // Forever: nothing is deleted, but a 2-day-old key is forgotten.
        assert_eq!(retention_sweep(&h.state).await.expect("succeeds"), 0);
        let again = store_upload(&h.state, h.upload(&h.parent, &h.bear, Some("old-key")))
            .await
            .expect("succeeds");
        assert!(
            matches!(again, Stored::New(_)),
            "the key was purged: {again:?}"
        );

        let expired = h.put(&h.bear, Direction::FromToy, 8 * DAY, b"ogg").await;
        let kept = h.put(&h.bear, Direction::FromToy, 9 * DAY, b"ogg").await;
        let young = h.put(&h.bear, Direction::FromToy, 6 * DAY, b"ogg").await;
        set_keep(&h.state, &h.parent, &kept.public_id, true)
            .await
            .expect("succeeds");
        assert_eq!(
            retention_sweep(&h.state).await.expect("succeeds"),
            0,
            "forever keeps everything"
        );
        h.set_retention(Some(7)).await;
        assert_eq!(retention_days(&h.state).await.expect("succeeds"), Some(7));
        let mut rx = h.state.events.subscribe();
        assert_eq!(retention_sweep(&h.state).await.expect("succeeds"), 1);
        assert_eq!(deleted(&drain(&mut rx)), [expired.public_id.as_str()]);
        assert!(h.get(&expired.public_id).await.is_none());
        assert!(h.get(&kept.public_id).await.is_some());
        assert!(h.get(&young.public_id).await.is_some());
        assert_eq!(retention_sweep(&h.state).await.expect("succeeds"), 0);
        h.clock
            .advance(time::Duration::days(1) + time::Duration::seconds(1));
        assert_eq!(
            retention_sweep(&h.state).await.expect("succeeds"),
            1,
            "the 6-day-old one at 7 days"
        );
        assert!(h.get(&young.public_id).await.is_none());
        h.set_retention(None).await;
        assert_eq!(retention_days(&h.state).await.expect("succeeds"), None);
    }

    #[tokio::test]
    async fn publish_tells_pages_the_message_as_listed() {
        let h = home().await;
        let m = h.put(&h.bear, Direction::ToToy, 0, b"ogg").await;
        h.set_retention(Some(1)).await;
        let mut rx = h.state.events.subscribe();
        publish(&h.state, &m.public_id).await.expect("succeeds");
        publish(&h.state, "gone").await.expect("succeeds");
        let told = message_events(&drain(&mut rx));
        assert_eq!(told, [message_json(&m, Some(1))]);
    }
}
