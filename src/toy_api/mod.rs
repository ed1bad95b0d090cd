//! `/toy/v1`, the toy protocol (PROTOCOL.md): pairing (no client
//! certificate needed), then everything else behind the [`identity::Toy`]
//! extractor, which accepts only the current certificate of a paired toy.
//!
//! **Architecture Invariant:** `toy_api` never imports `web`.

pub mod identity;
pub mod inbox;
pub mod pair;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::http::{Access, JSON_LIMIT, Routes, read_body};
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

/// Parses a JSON body, `400` with the parser's words when malformed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::bad_request(
            "invalid_json",
            format!("the body is not the expected JSON: {e}"),
        )
    })
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
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = read_body(&req, payload, JSON_LIMIT).await?;
    let b: StatusBody = parse_json(&body)?;
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
