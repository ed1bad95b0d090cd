//! Pairing endpoints of the toy protocol (`docs/toy-protocol.md` section
//! 3, steps 1, 2 and 4). No client certificate is needed. The rules and the ledger
//! entries of each step are in `toys`; this file parses and renders.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::http::{Access, Json, Routes};
use crate::pairing::{self, Status};
use crate::state::AppState;
use crate::toys::{self, PairingRequest};

/// Largest pairing request.
pub const PAIR_LIMIT: usize = 16 * 1024;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::POST, "/toy/v1/pair", Access::Public, start);
    r.add(
        Method::POST,
        "/toy/v1/pair/{pairing_id}/reveal",
        Access::Public,
        reveal,
    );
    r.add(
        Method::GET,
        "/toy/v1/pair/{pairing_id}",
        Access::Public,
        poll,
    );
}

/// The limiting key of the caller's address (see `pairing::addr_key`).
fn addr_of(req: &HttpRequest) -> Option<String> {
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    crate::pairing::addr_key(&ip)
}

async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(request): Json<PairingRequest, PAIR_LIMIT>,
) -> Result<HttpResponse> {
    let started = toys::request_pairing(&state, request, addr_of(&req)).await?;
    Ok(HttpResponse::Created().json(json!({
        "pairing_id": started.pairing_id,
        "hub_nonce": hex::encode(started.hub_nonce),
        "ca_cert": state.pki.ca_pem(),
        "expires_in": pairing::EXPIRES_IN,
    })))
}

#[derive(Deserialize)]
struct RevealBody {
    toy_nonce: String,
}

async fn reveal(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(b): Json<RevealBody, PAIR_LIMIT>,
) -> Result<HttpResponse> {
    toys::reveal_pairing(&state, &path, &b.toy_nonce, addr_of(&req)).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "awaiting_confirmation"})))
}

async fn poll(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let p = state.pairings.get(&path, state.now()).ok_or_else(|| {
        Error::not_found("no such pairing: it expired or was replaced; start again")
    })?;
    let body = match p.status {
        Status::AwaitingReveal => json!({"status": "awaiting_reveal"}),
        Status::AwaitingConfirmation | Status::Approving => {
            json!({"status": "awaiting_confirmation"})
        }
        Status::Approved { client_cert_pem } => json!({
            "status": "approved",
            "toy_id": p.request.toy_id,
            "client_cert": client_cert_pem,
            "ca_cert": state.pki.ca_pem(),
        }),
        Status::Rejected => json!({"status": "rejected"}),
    };
    Ok(HttpResponse::Ok().json(body))
}
