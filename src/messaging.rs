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
