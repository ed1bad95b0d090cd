//! "Your data" (admin): the page, the streamed export, and deleting one
//! toy's messages. Each handler calls a use case in `data` and renders;
//! the zip's bytes come from the use case's channel as they are made.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::caller::{Caller, PageCaller};
use super::pages::{Layout, PageResult, layout, render};
use crate::data::{self, backup::Passphrase};
use crate::domain::Role;
use crate::error::{Code, Error, Result};
use crate::http::{Access, Json, Routes};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/data", Access::Page, data_page);
    r.add(Method::GET, "/api/v1/export", Access::User, export);
    r.add(Method::POST, "/api/v1/backups", Access::User, backup);
    r.add(
        Method::POST,
        "/api/v1/backups/check",
        Access::User,
        check_backup,
    );
    r.add(
        Method::DELETE,
        "/api/v1/household",
        Access::User,
        delete_household,
    );
    r.add(
        Method::DELETE,
        "/api/v1/toys/{toy_id}/messages",
        Access::User,
        delete_toy_messages,
    );
}

/// Sends the chunks of a use case's channel as the response body.
fn download(
    content_type: &'static str,
    file_name: &str,
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> HttpResponse {
    let body = futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(web::Bytes::from), rx))
    });
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body)
}

async fn export(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let ex = data::export::start(&state, &caller.user).await?;
    Ok(download("application/zip", &ex.file_name, ex.chunks))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    passphrase: String,
}

async fn backup(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<BackupBody>,
) -> Result<HttpResponse> {
    // Who may ask comes before what is wrong with the request.
    crate::accounts::require(&caller.user, Role::Admin)?;
    let passphrase = Passphrase::new_for_backup(body.passphrase)?;
    let dl = data::backup::download(&state, &caller.user, passphrase).await?;
    Ok(download(
        "application/octet-stream",
        &dl.file_name,
        dl.chunks,
    ))
}

/// The header that carries the passphrase of a backup to check,
/// percent-encoded UTF-8 (the body is the backup itself).
pub const PASSPHRASE_HEADER: &str = "x-backup-passphrase";

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn check_backup(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse> {
    crate::accounts::require(&caller.user, Role::Admin)?;
    let passphrase = req
        .headers()
        .get(PASSPHRASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(percent_decode)
        .ok_or_else(|| {
            Error::new(
                Code::InvalidInput,
                format!("send the passphrase in the {PASSPHRASE_HEADER} header, percent-encoded"),
            )
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let forward = async move {
        while let Some(chunk) = payload.next().await {
            let item = chunk
                .map(|b| b.to_vec())
                .map_err(|e| std::io::Error::other(format!("the upload broke off: {e}")));
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    };
    let checking =
        data::backup::check_upload(&state, &caller.user, rx, Passphrase::to_open(passphrase));
    let ((), contents) = futures_util::future::join(forward, checking).await;
    let c = contents?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": true,
        "summary": c.summary(),
        "created_at": c.manifest.created_at,
        "household": c.manifest.household,
        "hearth_version": c.manifest.hearth_version,
        "users": c.database.users,
        "toys": c.database.toys,
        "messages": c.database.messages,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    confirm: String,
    password: String,
}

async fn delete_household(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<EraseBody>,
) -> Result<HttpResponse> {
    data::erase_household(
        &state,
        &caller.user,
        data::EraseConfirmation {
            household: body.confirm,
            password: body.password,
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({"setup": "/setup"})))
}

async fn delete_toy_messages(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    data::delete_toy_messages(&state, &caller.user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Template)]
#[template(path = "data.html")]
struct DataPage {
    l: Layout,
    toys: Vec<(String, String)>,
}

async fn data_page(state: web::Data<AppState>, caller: PageCaller) -> PageResult {
    crate::accounts::require(&caller.0.user, Role::Admin)?;
    let l = layout(&state, Some(&caller), "Your data", "account").await?;
    let toys = crate::toys::paired(&state)
        .await?
        .into_iter()
        .map(|t| (t.toy.toy_id.to_string(), t.toy.name.clone()))
        .collect();
    render(&DataPage { l, toys })
}
