//! `/toy/v1`, the toy protocol (PROTOCOL.md): pairing (no client
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

use crate::error::{Error, Result};
use crate::http::{Access, Json, Routes};
use crate::state::AppState;
use crate::store;
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
    if b.battery.is_some_and(|x| x > 100) {
        return Err(Error::bad_request(
            "invalid_battery",
            "battery is a percentage from 0 to 100",
        ));
    }
    if b.firmware
        .as_ref()
        .is_some_and(|f| f.len() > 128 || f.chars().any(char::is_control))
    {
        return Err(Error::bad_request(
            "invalid_firmware",
            "firmware is at most 128 bytes of printable text",
        ));
    }
    let (id, now) = (toy.row.id, state.now());
    state
        .store
        .write(move |tx| store::toys::set_status(tx, id, b.battery, b.firmware.as_deref(), now))
        .await?;
    state
        .events
        .publish("toy", json!({"change": "status", "toy_id": toy.row.toy_id}));
    Ok(HttpResponse::NoContent().finish())
}
