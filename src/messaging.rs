//! What both surfaces do with voice messages: turn an upload into a stored
//! clip (decode, normalise, encode off the async threads; store in one
//! transaction; answer only after the commit), the message JSON, state
//! changes with their events, and the retention sweep.

use serde_json::json;

use crate::audio::{self, AudioError, AudioKind};
use crate::clock::rfc3339;
use crate::domain::{Direction, IdempotencyKey, MessageState};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{self, messages::Message, toys::Toy};

/// Largest upload from a parent.
pub const PARENT_LIMIT: usize = 16 << 20;
/// Largest upload from a toy.
pub const TOY_LIMIT: usize = 4 << 20;

/// A message's JSON, as in API.md (plus `toy_name`, `peaks`, `expires_at`).
pub fn message_json(m: &Message, retention_days: Option<u32>) -> serde_json::Value {
    let expires_at = match (m.keep, retention_days) {
        (false, Some(d)) => Some(rfc3339(m.created_at + i64::from(d) * 86_400)),
        _ => None,
    };
    json!({
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
    })
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
        state.events.publish("message", message_json(&m, days));
    }
    Ok(())
}

/// Maps an audio error to its HTTP answer.
pub fn audio_error(e: AudioError) -> Error {
    match e {
        AudioError::TooLong { duration_ms } => Error::too_large(format!(
            "the recording is {:.1} s long; at most {} s are allowed",
            duration_ms as f64 / 1000.0,
            audio::MAX_DURATION_MS / 1000
        )),
        AudioError::Invalid(msg) => Error::unprocessable("invalid_audio", msg),
    }
}

/// The audio kind of a request, or `415`.
pub fn audio_kind(req: &actix_web::HttpRequest) -> Result<AudioKind> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    AudioKind::from_content_type(ct).ok_or_else(|| {
        Error::unsupported_media_type(format!(
            "content type {ct:?} is not accepted; send audio/wav (16-bit PCM) or audio/ogg (Ogg Opus)"
        ))
    })
}

/// The `Idempotency-Key` header, if any (`400` when malformed).
pub fn idempotency_key(req: &actix_web::HttpRequest) -> Result<Option<IdempotencyKey>> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                Error::bad_request("invalid_idempotency_key", "Idempotency-Key must be ASCII")
            })?;
            IdempotencyKey::parse(s)
                .map(Some)
                .map_err(|e| Error::bad_request("invalid_idempotency_key", e.0))
        }
    }
}

/// An upload to store.
pub struct Upload {
    /// The toy it belongs to.
    pub toy: Toy,
    /// Which way.
    pub direction: Direction,
    /// Sender user row.
    pub sender_user: Option<i64>,
    /// Sender display name.
    pub sender_name: String,
    /// Declared kind.
    pub kind: AudioKind,
    /// The body.
    pub body: actix_web::web::Bytes,
    /// Idempotency scope (e.g. `toy:3`) and key.
    pub idempotency: Option<(String, IdempotencyKey)>,
}

/// Stores an upload. Returns (status 201 or 200 for a replay, body JSON).
pub async fn store_upload(state: &AppState, up: Upload) -> Result<(u16, serde_json::Value)> {
    let now = state.now();
    if let Some((scope, key)) = &up.idempotency {
        let (s, k) = (scope.clone(), key.to_string());
        if let Some(prev) = state
            .store
            .read(move |c| store::idempotency::lookup(c, &s, k.as_str(), now))
            .await?
        {
            let v: serde_json::Value = serde_json::from_str(&prev).unwrap_or_default();
            return Ok((200, v));
        }
    }
    let (kind, body, direction) = (up.kind, up.body.clone(), up.direction);
    // Towards a toy, everything is re-encoded with the limiter (a child's
    // ear is at stake); children's recordings keep their Opus packets.
    let clip = tokio::task::spawn_blocking(move || match direction {
        Direction::ToToy => audio::ingest(kind, &body),
        Direction::FromToy => audio::ingest_recording(kind, &body),
    })
    .await
    .map_err(|e| Error::internal(anyhow::anyhow!("audio worker failed: {e}")))?
    .map_err(audio_error)?;
    let public_id = hex::encode(rand::random::<[u8; 16]>());
    let answer = json!({"id": public_id, "duration_ms": clip.duration_ms});
    let answer_text = answer.to_string();
    let pid = public_id.clone();
    let toy_row = up.toy.id;
    let stored = state
        .store
        .write(move |tx| {
            if let Some((scope, key)) = &up.idempotency {
                // A concurrent retry may have stored it meanwhile.
                if let Some(prev) = store::idempotency::lookup(tx, scope, key.as_str(), now)? {
                    return Ok(Some(prev));
                }
            }
            store::messages::insert(
                tx,
                &store::messages::NewMessage {
                    public_id: &pid,
                    toy: toy_row,
                    direction: up.direction,
                    sender_user: up.sender_user,
                    sender_name: &up.sender_name,
                    now,
                    duration_ms: clip.duration_ms as i64,
                    peaks: &clip.peaks,
                    audio: &clip.ogg,
                },
            )?;
            if let Some((scope, key)) = &up.idempotency {
                store::idempotency::remember(tx, scope, key.as_str(), now, &answer_text)?;
            }
            Ok(None)
        })
        .await?;
    if let Some(prev) = stored {
        return Ok((200, serde_json::from_str(&prev).unwrap_or_default()));
    }
    if up.direction == Direction::ToToy {
        state.events.wake_toy(toy_row);
    }
    publish(state, &public_id).await?;
    Ok((201, answer))
}

/// Moves a message forward (never back) and tells open pages.
pub async fn advance(state: &AppState, m: &Message, to: MessageState) -> Result<()> {
    if m.state.rank() >= to.rank() {
        return Ok(());
    }
    let rowid = m.rowid;
    let changed = state
        .store
        .write(move |tx| store::messages::advance_state(tx, rowid, to.rank(), to))
        .await?;
    if changed {
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
            state
                .events
                .publish("message", json!({"id": id, "deleted": true}));
        }
        tracing::info!(count = gone.len(), "retention removed old messages");
    }
    Ok(gone.len())
}
