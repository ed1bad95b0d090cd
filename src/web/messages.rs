//! `/api/v1` messages: send to a toy, list, audio (Ogg, or WAV for
//! browsers that cannot play Ogg), delete, keep.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use crate::domain::{Direction, IdempotencyScope, MessageState, Role};
use crate::error::{Code, Error, Result};
use crate::http::{self, Access, Json, Routes, read_body};
use crate::messaging::{self, PARENT_LIMIT, Stored, Upload};
use crate::state::AppState;
use crate::store;
use crate::toys;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(
        Method::POST,
        "/api/v1/toys/{toy_id}/messages",
        Access::User,
        send,
    );
    r.add(Method::GET, "/api/v1/messages", Access::User, list);
    r.add(
        Method::GET,
        "/api/v1/messages/{id}/audio",
        Access::User,
        audio,
    );
    r.add(
        Method::DELETE,
        "/api/v1/messages/{id}",
        Access::User,
        delete,
    );
    r.add(Method::PATCH, "/api/v1/messages/{id}", Access::User, patch);
}

async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let toy = toys::paired_toy(&state, &path).await?;
    let kind = http::audio_kind(&req)?;
    let key = http::idempotency_key(&req)?;
    let body = read_body(&req, payload, PARENT_LIMIT).await?;
    let stored = messaging::store_upload(
        &state,
        Upload {
            toy,
            direction: Direction::ToToy,
            sender_user: Some(caller.user.id),
            sender_name: caller.user.display_name.clone(),
            kind,
            body,
            idempotency: key.map(|k| (IdempotencyScope::User(caller.user.id), k)),
        },
    )
    .await?;
    Ok(match stored {
        Stored::New(r) => HttpResponse::Created().json(r),
        Stored::Replayed(r) => HttpResponse::Ok().json(r),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    toy: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let limit = match &q.limit {
        None => 50,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| Error::new(Code::InvalidLimit, "limit is a number from 1 to 200"))?,
    };
    let toy = match &q.toy {
        Some(t) => Some(toys::paired_toy(&state, t).await?.id),
        None => None,
    };
    let before = match &q.before {
        Some(b) => {
            let b = b.clone();
            let m = state
                .store
                .read(move |c| store::messages::get(c, &b))
                .await?;
            Some(
                m.ok_or_else(|| {
                    Error::new(
                        Code::InvalidBefore,
                        "before must be the id of a listed message",
                    )
                })?
                .rowid,
            )
        }
        None => None,
    };
    let msgs = state
        .store
        .read(move |c| store::messages::list(c, toy, before, limit))
        .await?;
    let days = messaging::retention_days(&state).await?;
    let list: Vec<_> = msgs
        .iter()
        .map(|m| messaging::message_json(m, days))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"messages": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioQuery {
    format: Option<String>,
}

async fn audio(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<AudioQuery>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let id = path.into_inner();
    let wav = match q.format.as_deref() {
        None | Some("ogg") => false,
        Some("wav") => true,
        Some(_) => return Err(Error::new(Code::InvalidFormat, "format is ogg or wav")),
    };
    let id2 = id.clone();
    let found = state
        .store
        .read(move |c| Ok(store::messages::get(c, &id2)?.zip(store::messages::audio(c, &id2)?)))
        .await?;
    let (m, ogg) = found.ok_or_else(|| Error::not_found("no such message"))?;
    if m.direction == Direction::FromToy {
        messaging::advance(&state, &m, MessageState::Heard).await?;
    }
    if wav {
        let bytes = tokio::task::spawn_blocking(move || crate::audio::ogg_to_wav(&ogg))
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("audio worker failed: {e}")))?
            .map_err(|e| {
                Error::internal(anyhow::anyhow!("stored audio could not be decoded: {e}"))
            })?;
        Ok(HttpResponse::Ok()
            .content_type("audio/wav")
            .insert_header(("cache-control", "no-store"))
            .body(bytes))
    } else {
        Ok(HttpResponse::Ok()
            .content_type("audio/ogg")
            .insert_header(("cache-control", "no-store"))
            .body(ogg))
    }
}

async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    messaging::delete(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagePatch {
    keep: bool,
}

async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(p): Json<MessagePatch>,
) -> Result<HttpResponse> {
    let (m, days) = messaging::set_keep(&state, &caller.user, &path, p.keep).await?;
    Ok(HttpResponse::Ok().json(messaging::message_json(&m, days)))
}
