//! `/api/v1` for the relay (RELAY.md): the mailbox settings (admin),
//! shares of a message, the list of shares, stopping one, and replies
//! awaiting approval (approve to a toy, discard). Each handler parses and
//! calls one use case in `relay`.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use crate::error::Result;
use crate::http::{Access, Json, Routes};
use crate::relay::{self, SettingsForm, ShareForm};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/api/v1/relay", Access::User, get_settings);
    r.add(Method::PUT, "/api/v1/relay", Access::User, put_settings);
    r.add(
        Method::DELETE,
        "/api/v1/relay",
        Access::User,
        delete_settings,
    );
    r.add(
        Method::POST,
        "/api/v1/messages/{id}/shares",
        Access::User,
        create_share,
    );
    r.add(Method::GET, "/api/v1/shares", Access::User, list_shares);
    r.add(
        Method::DELETE,
        "/api/v1/shares/{id}",
        Access::User,
        stop_share,
    );
    r.add(Method::GET, "/api/v1/replies", Access::User, list_replies);
    r.add(
        Method::POST,
        "/api/v1/messages/{id}/approve",
        Access::User,
        approve,
    );
    r.add(
        Method::POST,
        "/api/v1/messages/{id}/discard",
        Access::User,
        discard,
    );
}

async fn get_settings(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let (s, pending) = relay::settings(&state, &caller.user).await?;
    let admin = caller.user.role == crate::domain::Role::Admin;
    Ok(HttpResponse::Ok().json(relay::settings_json(s.as_ref(), pending, admin)))
}

async fn put_settings(
    state: web::Data<AppState>,
    caller: Caller,
    Json(form): Json<SettingsForm>,
) -> Result<HttpResponse> {
    let s = relay::configure(&state, &caller.user, form).await?;
    Ok(HttpResponse::Ok().json(relay::settings_json(Some(&s), 0, true)))
}

async fn delete_settings(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    relay::turn_off(&state, &caller.user).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn create_share(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(form): Json<ShareForm>,
) -> Result<HttpResponse> {
    let created = relay::share(&state, &caller.user, &path, form).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(created))
}

async fn list_shares(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let list = relay::shares(&state, &caller.user).await?;
    let shares: Vec<_> = list.iter().map(relay::share_json).collect();
    Ok(HttpResponse::Ok().json(json!({"shares": shares})))
}

async fn stop_share(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    relay::stop(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_replies(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let list = relay::replies(&state, &caller.user).await?;
    Ok(HttpResponse::Ok().json(json!({"messages": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    toy_id: String,
}

async fn approve(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(body): Json<ApproveBody>,
) -> Result<HttpResponse> {
    let receipt = relay::approve(&state, &caller.user, &path, &body.toy_id).await?;
    Ok(HttpResponse::Created().json(receipt))
}

async fn discard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    relay::discard(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
