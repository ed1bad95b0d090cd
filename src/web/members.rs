//! `/api/v1` for family members and the household ledger: members
//! (`/users`), invitations (`/invites`), joining with a code (`/join`,
//! public, throttled), and the ledger as JSON and CSV. Each handler parses,
//! calls a use case (`family`, `ledger`) and renders.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde_json::json;

use super::api::client;
use super::caller::Caller;
use crate::accounts::Client;
use crate::clock::rfc3339;
use crate::error::{Error, Result};
use crate::family::{
    self, Actor, Ctx, Invitation, InviteRequest, InviteView, JoinForm, Member, MemberChange,
};
use crate::http::{Access, Json, Routes};
use crate::ledger::{self, LedgerQuery};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/api/v1/users", Access::User, get_users);
    r.add(
        Method::PATCH,
        "/api/v1/users/{username}",
        Access::User,
        patch_user,
    );
    r.add(
        Method::DELETE,
        "/api/v1/users/{username}",
        Access::User,
        delete_user,
    );
    r.add(Method::GET, "/api/v1/invites", Access::User, get_invites);
    r.add(Method::POST, "/api/v1/invites", Access::User, post_invite);
    r.add(
        Method::DELETE,
        "/api/v1/invites/{invite_id}",
        Access::User,
        delete_invite,
    );
    r.add(
        Method::POST,
        "/api/v1/invites/{invite_id}/reissue",
        Access::User,
        reissue_invite,
    );
    r.add(Method::POST, "/api/v1/join", Access::Public, post_join);
    r.add(Method::GET, "/api/v1/ledger", Access::User, get_ledger);
    r.add(
        Method::GET,
        "/api/v1/ledger.csv",
        Access::User,
        get_ledger_csv,
    );
}

/// Where the caller reached the hub: the base of links made for them (the
/// join link). The `Host` header itself, never `X-Forwarded-Host`.
pub fn base_url(req: &HttpRequest) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("hearth.local");
    format!("https://{host}")
}

/// A member's JSON (`docs/api.md`).
pub fn member_json(m: &Member) -> serde_json::Value {
    json!({
        "username": m.username,
        "role": m.role,
        "toys": m.toys,
        "created_at": rfc3339(m.created_at),
        "last_sign_in": m.last_sign_in.map(rfc3339),
    })
}

fn invitation_json(i: &Invitation) -> serde_json::Value {
    json!({
        "invite_id": i.invite_id,
        "code": i.code,
        "url": i.url,
        "expires_at": rfc3339(i.expires_at),
        "qr_svg": i.qr_svg,
    })
}

/// An invitation's JSON as listed (never its code).
pub fn invite_json(v: &InviteView) -> serde_json::Value {
    let i = &v.invite;
    json!({
        "invite_id": i.public_id,
        "role": i.role,
        "toys": v.toys,
        "created_by": i.created_by,
        "created_at": rfc3339(i.created_at),
        "expires_at": rfc3339(i.expires_at),
        "state": v.state,
        "used_by": i.used_by,
    })
}

/// Who calls a family route, with what every family use case takes: the
/// hub's state, the signed-in member and where they called from.
struct Acting {
    state: web::Data<AppState>,
    caller: Caller,
    client: Client,
}

impl Acting {
    fn ctx(&self) -> Ctx<'_> {
        Ctx::of(&self.state)
    }

    fn actor(&self) -> Actor<'_> {
        Actor::Member(&self.caller.user, &self.client)
    }
}

impl FromRequest for Acting {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let caller = Caller::from_request(req, payload);
        let client = client(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                Error::internal(anyhow::anyhow!("the hub's state is not registered"))
            })?;
            Ok(Acting {
                state,
                caller: caller.await?,
                client,
            })
        })
    }
}

async fn get_users(a: Acting) -> Result<HttpResponse> {
    let list = family::members(&a.ctx(), a.actor()).await?;
    let users: Vec<_> = list.iter().map(member_json).collect();
    Ok(HttpResponse::Ok().json(json!({"users": users})))
}

async fn patch_user(
    a: Acting,
    path: web::Path<String>,
    Json(change): Json<MemberChange>,
) -> Result<HttpResponse> {
    let m = family::change_member(&a.ctx(), a.actor(), &path, change).await?;
    Ok(HttpResponse::Ok().json(member_json(&m)))
}

async fn delete_user(a: Acting, path: web::Path<String>) -> Result<HttpResponse> {
    family::remove_member(&a.ctx(), a.actor(), &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get_invites(a: Acting) -> Result<HttpResponse> {
    let list = family::invites(&a.ctx(), a.actor()).await?;
    let invites: Vec<_> = list.iter().map(invite_json).collect();
    Ok(HttpResponse::Ok().json(json!({"invites": invites})))
}

async fn post_invite(
    a: Acting,
    req: HttpRequest,
    Json(body): Json<InviteRequest>,
) -> Result<HttpResponse> {
    let i = family::invite(&a.ctx(), a.actor(), body, &base_url(&req)).await?;
    Ok(HttpResponse::Created().json(invitation_json(&i)))
}

async fn delete_invite(a: Acting, path: web::Path<String>) -> Result<HttpResponse> {
    family::revoke(&a.ctx(), a.actor(), &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn reissue_invite(
    a: Acting,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let i = family::reissue(&a.ctx(), a.actor(), &path, &base_url(&req)).await?;
    Ok(HttpResponse::Created().json(invitation_json(&i)))
}

async fn post_join(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<JoinForm>,
) -> Result<HttpResponse> {
    let (username, role) = family::join(&state, &client(&req), body).await?;
    Ok(HttpResponse::Created().json(json!({"username": username, "role": role})))
}

async fn get_ledger(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<LedgerQuery>,
) -> Result<HttpResponse> {
    let list = ledger::entries(&state.store, &caller.user, q.into_inner()).await?;
    let entries: Vec<_> = list.iter().map(ledger::entry_json).collect();
    Ok(HttpResponse::Ok().json(json!({"entries": entries})))
}

async fn get_ledger_csv(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<LedgerQuery>,
) -> Result<HttpResponse> {
    let mut q = q.into_inner();
    // A download holds up to the maximum unless a smaller page is asked for.
    q.limit = q.limit.or_else(|| Some(ledger::MAX_LIMIT.to_string()));
    let list = ledger::entries(&state.store, &caller.user, q).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"hearth-ledger.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(ledger::csv(&list)))
}
