//! The parents' side: HTML pages (askama) and the JSON API under
//! `/api/v1`, with server-sent events for live pages. Handlers parse the
//! request, call a use case (`accounts`, `toys`, `messaging`) and render.
//!
//! **Architecture Invariant:** `web` never imports `toy_api` (and vice
//! versa); what they share lives in the use cases, `state`, `pairing`,
//! `events` and `http`.

pub mod api;
pub mod assets;
pub mod caller;
pub mod data;
pub mod device;
pub mod errors;
pub mod events;
pub mod family_pages;
pub mod members;
pub mod messages;
pub mod mqtt;
pub mod pages;
pub mod relay;

use actix_web::http::Method;

use crate::http::{Access, Routes};

/// Every route of the parents' side.
pub fn register(r: &mut Routes<'_>) {
    api::register(r);
    messages::register(r);
    data::register(r);
    mqtt::register(r);
    members::register(r);
    relay::register(r);
    pages::register(r);
    family_pages::register(r);
    assets::register(r);
    r.add(Method::GET, "/api/v1/events", Access::User, events::stream);
}
