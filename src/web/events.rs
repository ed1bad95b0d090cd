//! `GET /api/v1/events`: server-sent events for open pages (`event:
//! message` and `event: toy`), with a keep-alive comment every 15 seconds.
//! The stream ends when the session that opened it ends.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::caller::Caller;
use crate::error::Result;
use crate::state::AppState;

const KEEPALIVE: Duration = Duration::from_secs(15);

/// Opens the event stream.
pub async fn stream(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let rx = state.events.subscribe();
    let session_id = caller.session.id;
    let uid = caller.user.id;
    let body = stream::unfold(
        (rx, state, true),
        move |(mut rx, state, first)| async move {
            if first {
                let hello = web::Bytes::from_static(b"retry: 3000\n: connected\n\n");
                return Some((Ok::<_, actix_web::Error>(hello), (rx, state, false)));
            }
            let next = tokio::select! {
                r = tokio::time::timeout(KEEPALIVE, rx.recv()) => r,
                // The hub is stopping: end the stream so it does not hold
                // the shutdown up (the page reconnects after `retry`).
                () = state.events.shutdown() => return None,
            };
            let chunk = match next {
                Ok(Ok(ev)) => format!("event: {}\ndata: {}\n\n", ev.kind, ev.data),
                Ok(Err(RecvError::Lagged(n))) => {
                    format!("event: resync\ndata: {{\"missed\": {n}}}\n\n")
                }
                Ok(Err(RecvError::Closed)) => return None,
                Err(_) => {
                    // Quiet: check the session still lives, then keep the line open.
                    let alive = crate::accounts::session_alive(&state, uid, session_id)
                        .await
                        .unwrap_or(false);
                    if !alive {
                        return None;
                    }
                    ": keep-alive\n\n".to_owned()
                }
            };
            Some((Ok(web::Bytes::from(chunk)), (rx, state, false)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
