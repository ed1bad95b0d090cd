//! `/api/v1`: setup, login and sessions, the household, and toys and
//! pairings (`docs/api.md`). Message endpoints are in `messages`. Each
//! handler parses, calls a use case (`accounts`, `toys`) and renders.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use crate::accounts::{self, Client, HouseholdChange, PasswordChange, SetupForm};
use crate::auth::tokens;
use crate::clock::rfc3339;
use crate::domain::{SessionId, SessionKind};
use crate::error::{Code, Error, Result};
use crate::http::{Access, Json, Routes};
use crate::pairing::Status;
use crate::state::AppState;
use crate::store::household::Household;
use crate::toys;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::POST, "/api/v1/setup", Access::Public, post_setup);
    r.add(Method::POST, "/api/v1/login", Access::Public, post_login);
    r.add(Method::POST, "/api/v1/logout", Access::User, post_logout);
    r.add(Method::GET, "/api/v1/me", Access::User, get_me);
    r.add(Method::PATCH, "/api/v1/me", Access::User, patch_me);
    r.add(
        Method::POST,
        "/api/v1/me/password",
        Access::User,
        post_password,
    );
    r.add(
        Method::POST,
        "/api/v1/me/checklist",
        Access::User,
        post_checklist,
    );
    r.add(Method::GET, "/api/v1/sessions", Access::User, get_sessions);
    r.add(
        Method::DELETE,
        "/api/v1/sessions/{id}",
        Access::User,
        delete_session,
    );
    r.add(
        Method::GET,
        "/api/v1/household",
        Access::User,
        get_household,
    );
    r.add(
        Method::PATCH,
        "/api/v1/household",
        Access::User,
        patch_household,
    );
    r.add(Method::GET, "/api/v1/toys", Access::User, get_toys);
    r.add(
        Method::PATCH,
        "/api/v1/toys/{toy_id}",
        Access::User,
        patch_toy,
    );
    r.add(
        Method::DELETE,
        "/api/v1/toys/{toy_id}",
        Access::User,
        delete_toy,
    );
    r.add(
        Method::POST,
        "/api/v1/pairings/{pairing_id}/confirm",
        Access::User,
        confirm_pairing,
    );
    r.add(
        Method::POST,
        "/api/v1/pairings/{pairing_id}/reject",
        Access::User,
        reject_pairing,
    );
}

/// The client as the use cases see it: its address and what it calls itself.
pub fn client(req: &HttpRequest) -> Client {
    Client {
        ip: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect())
            .unwrap_or_default(),
    }
}

async fn post_setup(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<SetupForm>,
) -> Result<HttpResponse> {
    let username = accounts::set_up(&state, &client(&req), body).await?;
    Ok(HttpResponse::Created().json(json!({"username": username})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn post_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<LoginBody>,
) -> Result<HttpResponse> {
    let s = accounts::sign_in(
        &state,
        &client(&req),
        &body.username,
        body.password,
        SessionKind::Bearer,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"token": s.token, "expires_at": rfc3339(s.expires_at)})))
}

async fn post_logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    accounts::sign_out(&state, &caller.session).await?;
    let mut resp = HttpResponse::NoContent();
    if caller.via_cookie {
        let mut c = actix_web::cookie::Cookie::new(tokens::SESSION_COOKIE, "");
        c.set_path("/");
        c.set_secure(true);
        c.set_http_only(true);
        c.make_removal();
        resp.cookie(c);
    }
    Ok(resp.finish())
}

async fn get_me(caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({
        "username": caller.user.username,
        "display_name": caller.user.display_name,
        "role": caller.user.role,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MePatch {
    display_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecklistMark {
    mark: crate::onboarding::Mark,
}

/// Ticks the certificate item of the caller's first-run checklist, or
/// puts the list away.
async fn post_checklist(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<ChecklistMark>,
) -> Result<HttpResponse> {
    crate::onboarding::mark(&state, &caller.user, body.mark).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn patch_me(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<MePatch>,
) -> Result<HttpResponse> {
    let user = accounts::set_display_name(&state, &caller.user, &body.display_name).await?;
    Ok(HttpResponse::Ok().json(json!({
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn post_password(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<PasswordBody>,
) -> Result<HttpResponse> {
    let change = PasswordChange {
        current: body.current_password,
        new: body.new_password,
    };
    let ended = accounts::change_password(&state, &caller.user, &caller.session, change).await?;
    Ok(HttpResponse::Ok().json(json!({"other_sessions_ended": ended})))
}

async fn get_sessions(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let list = accounts::sessions(&state, &caller.user).await?;
    let sessions: Vec<_> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "kind": s.kind,
                "created_at": rfc3339(s.created_at),
                "last_seen": rfc3339(s.last_seen),
                "expires_at": rfc3339(s.expires_at),
                "user_agent": s.user_agent,
                "device": super::device::describe(&s.user_agent),
                "client_ip": s.client_ip,
                "current": s.id == caller.session.id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions})))
}

async fn delete_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id: i64 = path.parse().map_err(|_| {
        Error::new(
            Code::InvalidSessionId,
            "a session id is a number from the sessions list",
        )
    })?;
    accounts::end_session(&state, &caller.user, SessionId(id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn household_json(h: &Household) -> HttpResponse {
    HttpResponse::Ok().json(json!({"name": h.name, "retention_days": h.retention_days}))
}

async fn get_household(state: web::Data<AppState>, _caller: Caller) -> Result<HttpResponse> {
    Ok(household_json(&accounts::household(&state).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HouseholdPatch {
    name: Option<String>,
    /// Days, or `null` for keep forever; absent leaves it unchanged.
    #[serde(default, deserialize_with = "double_option")]
    retention_days: Option<Option<u32>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<u32>>, D::Error> {
    Ok(Some(Option::<u32>::deserialize(d)?))
}

async fn patch_household(
    state: web::Data<AppState>,
    caller: Caller,
    Json(patch): Json<HouseholdPatch>,
) -> Result<HttpResponse> {
    let change = HouseholdChange {
        name: patch.name,
        retention_days: patch.retention_days,
    };
    let h = accounts::change_household(&state, &caller.user, change).await?;
    Ok(household_json(&h))
}

/// A pending pairing's JSON (`docs/api.md`).
pub fn pending_json(p: &crate::pairing::Pairing) -> serde_json::Value {
    json!({
        "pairing_id": p.id,
        "toy_id": p.request.toy_id,
        "name": p.request.name,
        "model": p.request.model,
        "created_at": rfc3339(p.created_at),
        "awaiting": if p.status == Status::AwaitingReveal { "reveal" } else { "confirmation" },
    })
}

async fn get_toys(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let l = toys::listing(&state, &caller.user).await?;
    let discovered: Vec<_> = l
        .discovered
        .iter()
        .map(|s| json!({"toy_id": s.toy_id, "name": s.name, "model": s.model, "fp": s.fp.to_hex(), "paired": s.paired}))
        .collect();
    let pending: Vec<_> = l.pending.iter().map(pending_json).collect();
    let paired: Vec<_> = l.paired.iter().map(toys::ToyStatus::to_json).collect();
    Ok(HttpResponse::Ok()
        .json(json!({"discovered": discovered, "pending": pending, "paired": paired})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyPatch {
    name: Option<String>,
    child: Option<String>,
    picture: Option<String>,
    quiet_hours: Option<QuietPatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietPatch {
    on: bool,
    start: Option<String>,
    end: Option<String>,
}

async fn patch_toy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(patch): Json<ToyPatch>,
) -> Result<HttpResponse> {
    let edit = toys::ToyEdit {
        name: patch.name,
        child: patch.child,
        picture: patch.picture,
        quiet: patch.quiet_hours.map(|q| toys::QuietEdit {
            on: q.on,
            start: q.start,
            end: q.end,
        }),
    };
    let t = toys::edit(&state, &caller.user, &path, edit).await?;
    Ok(HttpResponse::Ok().json(t.to_json()))
}

async fn delete_toy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    toys::remove(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
}

async fn confirm_pairing(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(body): Json<ConfirmBody>,
) -> Result<HttpResponse> {
    let toy_id = toys::confirm_pairing(&state, &caller.user, &path, &body.code).await?;
    Ok(HttpResponse::Ok().json(json!({"toy_id": toy_id})))
}

async fn reject_pairing(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    toys::reject_pairing(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
