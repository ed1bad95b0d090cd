//! The toy's messages (`docs/toy-protocol.md` section 4): the inbox with long-poll,
//! audio download (marks delivered), played, and the child's recordings
//! with idempotency keys.

use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::identity::Toy;
use crate::clock::rfc3339;
use crate::domain::{Direction, IdempotencyScope};
use crate::error::{Code, Error, Result};
use crate::http::{self, Access, Routes, read_body};
use crate::messaging::{self, Stored, TOY_LIMIT, Upload};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/toy/v1/inbox", Access::Toy, inbox);
    r.add(
        Method::GET,
        "/toy/v1/messages/{id}/audio",
        Access::Toy,
        audio,
    );
    r.add(
        Method::POST,
        "/toy/v1/messages/{id}/played",
        Access::Toy,
        played,
    );
    r.add(Method::POST, "/toy/v1/recordings", Access::Toy, recording);
}

#[derive(Deserialize)]
struct InboxQuery {
    wait: Option<String>,
}

/// The inbox as the protocol lists it, and when quiet hours that hold its
/// messages end (Unix seconds), if they do.
async fn list_held(state: &AppState, toy: &Toy) -> Result<(Vec<serde_json::Value>, Option<i64>)> {
    let inbox = messaging::inbox(state, &toy.row).await?;
    let list = inbox
        .messages
        .iter()
        .map(|m| {
            json!({
                "id": m.public_id,
                "from": m.sender_name,
                "created_at": rfc3339(m.created_at),
                "duration_ms": m.duration_ms,
                "bytes": m.size,
                "audio": format!("/toy/v1/messages/{}/audio", m.public_id),
            })
        })
        .collect();
    Ok((list, inbox.held_until))
}

async fn list_inbox(state: &AppState, toy: &Toy) -> Result<Vec<serde_json::Value>> {
    Ok(list_held(state, toy).await?.0)
}

async fn inbox(
    state: web::Data<AppState>,
    toy: Toy,
    q: web::Query<InboxQuery>,
) -> Result<HttpResponse> {
    let wait = match q.wait.as_deref() {
        None => 0,
        Some(s) => s.parse::<u64>().ok().filter(|n| *n <= 60).ok_or_else(|| {
            Error::new(
                Code::InvalidWait,
                "wait is a number of seconds from 0 to 60",
            )
        })?,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let notify = state.events.toy_notify(toy.row.id);
    // At most MAX_PARKED_PER_TOY of a toy's long-polls wait at once; a newer
    // one answers the oldest.
    let parked = (wait > 0).then(|| state.events.park(toy.row.id));
    loop {
        // Register for a wake-up before looking, so a message stored in
        // between is not missed.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (list, held_until) = list_held(&state, &toy).await?;
        if !list.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(HttpResponse::Ok().json(json!({"messages": list})));
        }
        // Messages held by quiet hours are handed over when the hours end:
        // a long-poll waiting then looks again at that moment.
        let look_again = match held_until {
            Some(end) => {
                let secs = u64::try_from(end - state.now()).unwrap_or(0);
                deadline.min(tokio::time::Instant::now() + Duration::from_secs(secs))
            }
            None => deadline,
        };
        let stop = state.events.shutdown();
        tokio::select! {
            r = tokio::time::timeout_at(look_again, woken) => {
                if r.is_err() && look_again >= deadline {
                    let list = list_inbox(&state, &toy).await?;
                    return Ok(HttpResponse::Ok().json(json!({"messages": list})));
                }
            }
            () = async {
                match &parked {
                    Some(p) => p.bumped().await,
                    None => std::future::pending().await,
                }
            } => {
                let list = list_inbox(&state, &toy).await?;
                return Ok(HttpResponse::Ok().json(json!({"messages": list})));
            }
            () = stop => {
                // The hub is stopping: an empty answer the toy retries
                // (toy-protocol.md section 4), on a connection that closes.
                return Ok(HttpResponse::Ok()
                    .insert_header((actix_web::http::header::CONNECTION, "close"))
                    .json(json!({"messages": []})));
            }
        }
        if !crate::toys::still_paired(&state, &toy.row).await? {
            return Err(Error::new(
                Code::ToyNotPaired,
                "this toy was removed by a parent; pair it again",
            ));
        }
    }
}

async fn audio(
    state: web::Data<AppState>,
    toy: Toy,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let fetch = http::fetch_of(&req);
    let ogg = messaging::toy_audio(&state, &toy.row, &path, fetch).await?;
    Ok(HttpResponse::Ok()
        .content_type("audio/ogg")
        .insert_header(("cache-control", "no-store"))
        .body(ogg))
}

async fn played(
    state: web::Data<AppState>,
    toy: Toy,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    messaging::played(&state, &toy.row, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn recording(
    state: web::Data<AppState>,
    toy: Toy,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let kind = http::audio_kind(&req)?;
    let key = http::idempotency_key(&req)?;
    let body = read_body(&req, payload, TOY_LIMIT).await?;
    let stored = messaging::store_upload(
        &state,
        Upload {
            direction: Direction::FromToy,
            sender_user: None,
            sender_name: toy.row.name.clone(),
            kind,
            body,
            idempotency: key.map(|k| (IdempotencyScope::Toy(toy.row.id), k)),
            toy: toy.row,
        },
    )
    .await?;
    Ok(match stored {
        Stored::New(r) => HttpResponse::Created().json(r),
        Stored::Replayed(r) => HttpResponse::Ok().json(r),
    })
}
