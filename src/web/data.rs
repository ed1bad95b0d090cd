//! "Your data": the admin's page, the streamed export, backups and their
//! check, deleting one toy's messages or the household, and the restore
//! offered on the first-run setup page (public, but it needs the setup
//! code). Each handler calls a use case in `data` and renders; downloads
//! come from the use case's channel as they are made, and uploads go to
//! one as they arrive.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::caller::{Caller, PageCaller, check_form_origin};
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
        Method::POST,
        "/api/v1/setup/restore",
        Access::Public,
        restore_at_setup,
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

/// The header that carries the setup code with a restore at setup.
pub const SETUP_CODE_HEADER: &str = "x-setup-code";

/// The largest backup the hub takes as an upload (to check or restore).
/// A backup holds every recording, so this is large; the disk, not the
/// memory, holds it (see `data::backup`).
pub const BACKUP_LIMIT: usize = if usize::BITS > 32 {
    (16u64 << 30) as usize
} else {
    usize::MAX
};

/// The passphrase header, decoded; `None` when absent or badly encoded.
fn passphrase_header(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(PASSPHRASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(percent_decode)
}

fn passphrase_missing() -> Error {
    Error::new(
        Code::InvalidInput,
        format!("send the passphrase in the {PASSPHRASE_HEADER} header, percent-encoded"),
    )
}

fn backup_too_large() -> Error {
    Error::too_large(format!(
        "a backup here may have at most {}",
        crate::http::human_size(BACKUP_LIMIT)
    ))
}

/// Hands the request body to a use case's channel as it arrives, and runs
/// the use case meanwhile. A body over [`BACKUP_LIMIT`] (declared or sent)
/// is `413`, whatever the use case made of the part it saw; a use case
/// that stops reading stops the upload.
async fn with_upload<T>(
    req: &HttpRequest,
    mut payload: web::Payload,
    use_case: impl std::future::Future<Output = Result<T>>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> Result<T> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BACKUP_LIMIT as u64) {
        return Err(backup_too_large());
    }
    let too_large = std::cell::Cell::new(false);
    let forward = async {
        // Owned here: the channel closes (the end of the upload for the
        // reader) when this ends.
        let tx = tx;
        let mut seen = 0usize;
        while let Some(chunk) = payload.next().await {
            seen = seen.saturating_add(chunk.as_ref().map_or(0, |b| b.len()));
            if seen > BACKUP_LIMIT {
                too_large.set(true);
                let _ = tx
                    .send(Err(std::io::Error::other("the upload is too large")))
                    .await;
                return;
            }
            let item = chunk
                .map(|b| b.to_vec())
                .map_err(|e| std::io::Error::other(format!("the upload broke off: {e}")));
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    };
    // A use case that answers before the upload ends (a wrong setup code)
    // answers at once; the rest of the body is not read.
    let outcome = {
        let (forward, use_case) = (std::pin::pin!(forward), std::pin::pin!(use_case));
        match futures_util::future::select(forward, use_case).await {
            futures_util::future::Either::Left(((), use_case)) => use_case.await,
            futures_util::future::Either::Right((outcome, _)) => outcome,
        }
    };
    if too_large.get() {
        return Err(backup_too_large());
    }
    outcome
}

fn contents_json(c: &data::backup::Contents) -> serde_json::Value {
    json!({
        "ok": true,
        "summary": c.summary(),
        "created_at": c.manifest.created_at,
        "household": c.manifest.household,
        "hearth_version": c.manifest.hearth_version,
        "users": c.database.users,
        "toys": c.database.toys,
        "messages": c.database.messages,
    })
}

async fn check_backup(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    crate::accounts::require(&caller.user, Role::Admin)?;
    let passphrase = passphrase_header(&req).ok_or_else(passphrase_missing)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let checking =
        data::backup::check_upload(&state, &caller.user, rx, Passphrase::to_open(passphrase));
    let c = with_upload(&req, payload, checking, tx).await?;
    Ok(HttpResponse::Ok().json(contents_json(&c)))
}

/// `POST /api/v1/setup/restore`: the body is the backup, the setup code
/// and the passphrase come in headers (so the upload need not be parsed
/// to find them, and the code is checked before the body is read).
async fn restore_at_setup(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    check_form_origin(&req)?;
    let code = req
        .headers()
        .get(SETUP_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let passphrase = passphrase_header(&req).map(Passphrase::to_open);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let client = super::api::client(&req);
    let restoring = data::backup::restore_at_setup(&state, &client, &code, passphrase, rx);
    let c = with_upload(&req, payload, restoring, tx).await?;
    Ok(HttpResponse::Created().json(contents_json(&c)))
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
