//! `GET /api/v1/events`: server-sent events for open pages (`event:
//! message` and `event: toy`), with a keep-alive comment every 15 seconds.
//! A relative's stream carries only events about the toys granted to them.
//! The stream ends at once when its session ends (sign-out, password
//! change, expiry) or its member is removed or changed (`events::Streams`),
//! and at the latest at the next keep-alive when the session is gone
//! (changed from the command line) or past its end. An account holds at
//! most `events::MAX_STREAMS_PER_ACCOUNT` streams.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::caller::Caller;
use crate::error::{Code, Error, Result};
use crate::events::{Event, MAX_STREAMS_PER_ACCOUNT};
use crate::family::Scope;
use crate::state::AppState;

const KEEPALIVE: Duration = Duration::from_secs(15);

/// Opens the event stream.
pub async fn stream(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let scope = crate::family::scope(&state.store, &caller.user).await?;
    // Toy ids as the events carry them, read once: a change of a relative's
    // toys ends the stream, and the page reconnects with the new ones.
    let toy_ids: Option<Vec<String>> = match &scope {
        Scope::All => None,
        Scope::Only(set) => Some(
            crate::toys::paired(&state)
                .await?
                .into_iter()
                .filter(|t| set.contains(&t.toy.id))
                .map(|t| t.toy.toy_id.to_string())
                .collect(),
        ),
    };
    let uid = caller.user.id;
    let passes = move |ev: &Event| match (ev.page.for_user(), &toy_ids) {
        // Personal news reaches only its member (about toys they see).
        (Some(u), _) => u == uid,
        (None, None) => true,
        (None, Some(ids)) => ev.toy_id.as_ref().is_some_and(|t| ids.contains(t)),
    };
    let session = caller.session.clone();
    let guard = state.events.streams().open(uid, session.id).ok_or_else(|| {
        let mut e = Error::new(
            Code::TooManyStreams,
            format!(
                "this account already has {MAX_STREAMS_PER_ACCOUNT} live pages open; close one (or sign out elsewhere) and reload"
            ),
        );
        e.retry_after = Some(15);
        e
    })?;
    let rx = state.events.subscribe();
    let body = stream::unfold(
        (rx, state, guard, true),
        move |(mut rx, state, guard, first)| {
            let passes = passes.clone();
            let session = session.clone();
            async move {
                if first {
                    let hello = web::Bytes::from_static(b"retry: 3000\n: connected\n\n");
                    return Some((Ok::<_, actix_web::Error>(hello), (rx, state, guard, false)));
                }
                loop {
                    let next = tokio::select! {
                        r = tokio::time::timeout(KEEPALIVE, rx.recv()) => r,
                        // The hub is stopping: end the stream so it does not
                        // hold the shutdown up (the page reconnects after `retry`).
                        () = state.events.shutdown() => return None,
                        // Signed out, removed, changed: end now.
                        () = guard.end.wait() => return None,
                        // The session's absolute end.
                        () = tokio::time::sleep(Duration::from_secs(
                            u64::try_from(session.expires_at - state.now()).unwrap_or(0),
                        )) => return None,
                    };
                    let chunk = match next {
                        Ok(Ok(ev)) if passes(&ev) => {
                            let data = personal(&state, uid, &ev).await;
                            format!("event: {}\ndata: {}\n\n", ev.kind, data)
                        }
                        Ok(Ok(_)) => continue,
                        Ok(Err(RecvError::Lagged(n))) => {
                            format!("event: resync\ndata: {{\"missed\": {n}}}\n\n")
                        }
                        Ok(Err(RecvError::Closed)) => return None,
                        Err(_) => {
                            // Quiet: check the session still lives, then keep the line open.
                            let alive = session.expires_at > state.now()
                                && crate::accounts::session_alive(&state, uid, session.id)
                                    .await
                                    .unwrap_or(false);
                            if !alive {
                                return None;
                            }
                            ": keep-alive\n\n".to_owned()
                        }
                    };
                    return Some((Ok(web::Bytes::from(chunk)), (rx, state, guard, false)));
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The event's `data:` as this member sees it: a child's recording
/// carries whether they have heard it (`heard_by_me`), which differs
/// between members. Left out when it cannot be read (the page keeps what
/// it knew and the next unread fetch corrects it).
async fn personal(state: &AppState, uid: crate::domain::UserId, ev: &Event) -> serde_json::Value {
    let mut data = ev.data.clone();
    if !matches!(ev.page, crate::events::PageEvent::Message(_)) || data["direction"] != "from_toy" {
        return data;
    }
    let Some(id) = data["id"].as_str().map(str::to_owned) else {
        return data;
    };
    if let (Ok(Some(heard)), Some(obj)) = (
        crate::messaging::heard_by_me(state, uid, &id).await,
        data.as_object_mut(),
    ) {
        obj.insert("heard_by_me".into(), serde_json::json!(heard));
    }
    data
}
