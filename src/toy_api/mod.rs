//! `/toy/v1`, the toy protocol (`docs/toy-protocol.md`): pairing (no client
//! certificate needed), then everything else behind the [`identity::Toy`]
//! extractor, which accepts only the current certificate of a paired toy.
//!
//! **Architecture Invariant:** `toy_api` never imports `web`.

pub mod identity;
pub mod inbox;
pub mod pair;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::error::Result;
use crate::http::{Access, Json, Routes};
use crate::state::AppState;
use identity::Toy;

/// Registers the toy API.
pub fn register(r: &mut Routes<'_>) {
    pair::register(r);
    inbox::register(r);
    r.add(Method::GET, "/toy/v1/whoami", Access::Toy, whoami);
    r.add(Method::POST, "/toy/v1/status", Access::Toy, status);
}

async fn whoami(toy: Toy) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({
        "toy_id": toy.row.toy_id,
        "name": toy.row.name,
        "child": toy.row.child_name,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    battery: Option<u8>,
    firmware: Option<String>,
}

async fn status(
    state: web::Data<AppState>,
    toy: Toy,
    Json(b): Json<StatusBody>,
) -> Result<HttpResponse> {
    crate::toys::report_status(&state, &toy.row, b.battery, b.firmware).await?;
    Ok(HttpResponse::NoContent().finish())
}
