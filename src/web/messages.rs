//! `/api/v1` messages: send to a toy, list, audio (Ogg, or WAV for
//! browsers that cannot play Ogg), delete, keep.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use crate::clock::rfc3339;
use crate::domain::{Direction, IdempotencyScope};
use crate::error::Result;
use crate::http::{self, Access, Json, Routes, read_body};
use crate::messaging::{self, AudioFormat, PARENT_LIMIT, Stored, Upload};
use crate::state::AppState;

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
    r.add(Method::GET, "/api/v1/unread", Access::User, unread);
    r.add(Method::POST, "/api/v1/heard", Access::User, heard_all);
    r.add(
        Method::POST,
        "/api/v1/toys/{toy_id}/heard",
        Access::User,
        heard_toy,
    );
}

/// The JSON of one member's unread counts.
pub fn unread_json(u: &messaging::Unread) -> serde_json::Value {
    let toys: Vec<_> = u
        .toys
        .iter()
        .map(|(id, n)| json!({"toy_id": id, "unread": n}))
        .collect();
    json!({"total": u.total, "toys": toys})
}

async fn unread(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let u = messaging::unread(&state, &caller.user).await?;
    Ok(HttpResponse::Ok().json(unread_json(&u)))
}

async fn heard_all(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let n = messaging::mark_all_heard(&state, &caller.user, None).await?;
    let u = messaging::unread(&state, &caller.user).await?;
    let mut v = unread_json(&u);
    v["marked"] = json!(n);
    Ok(HttpResponse::Ok().json(v))
}

async fn heard_toy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let n = messaging::mark_all_heard(&state, &caller.user, Some(&path)).await?;
    let u = messaging::unread(&state, &caller.user).await?;
    let mut v = unread_json(&u);
    v["marked"] = json!(n);
    Ok(HttpResponse::Ok().json(v))
}

async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let toy = messaging::recipient(&state, &caller.user, &path).await?;
    // Whether the toy is online as the message is stored, so the page can
    // say when it will be heard.
    let status = crate::toys::status_of(&state, toy.clone(), state.now());
    let online = status.online;
    // In quiet hours the message is held until they end (`messaging::inbox`).
    let quiet = status.quiet_until.map(|until| {
        json!({
            "until": rfc3339(until),
            "note": status.quiet_note(),
        })
    });
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
    let answer = |r: messaging::Receipt| json!({"id": r.id, "duration_ms": r.duration_ms, "toy_online": online, "quiet": quiet});
    Ok(match stored {
        Stored::New(r) => HttpResponse::Created().json(answer(r)),
        Stored::Replayed(r) => HttpResponse::Ok().json(answer(r)),
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
    let ListQuery { toy, limit, before } = q.into_inner();
    let q = messaging::ListQuery { toy, limit, before };
    let (msgs, days) = messaging::list(&state, &caller.user, q).await?;
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
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<AudioQuery>,
) -> Result<HttpResponse> {
    let fetch = http::fetch_of(&req);
    let (format, bytes) =
        messaging::parent_audio(&state, &caller.user, &path, q.format.as_deref(), fetch).await?;
    let content_type = match format {
        AudioFormat::Ogg => "audio/ogg",
        AudioFormat::Wav => "audio/wav",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-store"))
        .body(bytes))
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
