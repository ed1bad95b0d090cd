//! The admin's Home Assistant (MQTT) settings: `GET /api/v1/mqtt`,
//! `PUT /api/v1/mqtt/password`, `POST /api/v1/mqtt/check` and the page
//! `/settings/mqtt` that uses them from `static/app.js`. The rules (admins
//! only, where the password lives, the broker check) are in `mqtt`.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::caller::{Caller, PageCaller};
use super::errors::PageError;
use crate::error::{Error, Result};
use crate::http::{Access, Json, Routes};
use crate::mqtt::{self, Overview};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/api/v1/mqtt", Access::User, get_mqtt);
    r.add(
        Method::PUT,
        "/api/v1/mqtt/password",
        Access::User,
        put_password,
    );
    r.add(Method::POST, "/api/v1/mqtt/check", Access::User, post_check);
    r.add(Method::GET, "/settings/mqtt", Access::Page, page);
}

async fn get_mqtt(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(mqtt::overview(&state, &caller.user)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn put_password(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<PasswordBody>,
) -> Result<HttpResponse> {
    mqtt::change_password(&state, &caller.user, body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn post_check(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let body = match mqtt::test_connection(&state, &caller.user).await? {
        Ok(how) => json!({"ok": true, "message": how}),
        Err(why) => json!({"ok": false, "message": why}),
    };
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Template)]
#[template(path = "mqtt.html")]
struct MqttPage {
    l: super::pages::Layout,
    o: Overview,
}

async fn page(state: web::Data<AppState>, caller: PageCaller) -> Result<HttpResponse, PageError> {
    let o = mqtt::overview(&state, &caller.0.user)?;
    let l = super::pages::layout(&state, Some(&caller), "Home Assistant", "account").await?;
    MqttPage { l, o }
        .render()
        .map(|b| {
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(b)
        })
        .map_err(|e| PageError::Error(Error::internal(anyhow::anyhow!("template failed: {e}"))))
}
