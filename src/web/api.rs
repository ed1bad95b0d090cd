//! `/api/v1`: setup, login and sessions, the household, and toys and
//! pairings (API.md). Message endpoints are in `messages`.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use crate::auth::{password, setup, tokens};
use crate::clock::rfc3339;
use crate::domain::{DisplayName, PairingCode, Role, ToyId, Username};
use crate::error::{Error, Result};
use crate::http::{Access, Json, Routes};
use crate::pairing::{PairError, Status};
use crate::state::AppState;
use crate::store::{self, audit::AuditEntry};

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::POST, "/api/v1/setup", Access::Public, post_setup);
    r.add(Method::POST, "/api/v1/login", Access::Public, post_login);
    r.add(Method::POST, "/api/v1/logout", Access::User, post_logout);
    r.add(Method::GET, "/api/v1/me", Access::User, get_me);
    r.add(
        Method::POST,
        "/api/v1/me/password",
        Access::User,
        post_password,
    );
    r.add(Method::GET, "/api/v1/sessions", Access::User, get_sessions);
    r.add(
        Method::DELETE,
        "/api/v1/sessions/{id}",
        Access::User,
        delete_session,
    );
    r.add(
        Method::GET,
        "/api/v1/household",
        Access::User,
        get_household,
    );
    r.add(
        Method::PATCH,
        "/api/v1/household",
        Access::User,
        patch_household,
    );
    r.add(Method::GET, "/api/v1/toys", Access::User, get_toys);
    r.add(
        Method::PATCH,
        "/api/v1/toys/{toy_id}",
        Access::User,
        patch_toy,
    );
    r.add(
        Method::DELETE,
        "/api/v1/toys/{toy_id}",
        Access::User,
        delete_toy,
    );
    r.add(
        Method::POST,
        "/api/v1/pairings/{pairing_id}/confirm",
        Access::User,
        confirm_pairing,
    );
    r.add(
        Method::POST,
        "/api/v1/pairings/{pairing_id}/reject",
        Access::User,
        reject_pairing,
    );
}

/// `1 second`, `5 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

/// The client address as text (for throttling and the sessions list).
pub fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

fn user_agent(req: &HttpRequest) -> String {
    req.headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect())
        .unwrap_or_default()
}

/// Runs argon2 off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("worker failed: {e}")))
}

async fn audit(state: &AppState, entry: AuditEntry) -> Result<()> {
    state
        .store
        .write(move |tx| store::audit::record(tx, &entry))
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The setup form.
pub struct SetupBody {
    /// The one-time code.
    pub setup_code: String,
    /// Household name.
    pub household: String,
    /// First admin's username.
    pub username: String,
    /// First admin's password.
    pub password: String,
}

/// First-run setup; shared by the API and the setup page.
pub async fn do_setup(state: &AppState, req: &HttpRequest, body: SetupBody) -> Result<String> {
    let now = state.now();
    let ip = client_ip(req);
    let done = state.store.read(store::users::any_admin).await?;
    if done {
        return Err(Error::conflict(
            "already_set_up",
            "this hub is already set up; sign in instead",
        ));
    }
    let keys = ["setup", ip.as_str()];
    if let Some(wait) = state.setup_throttle.check(&keys, now) {
        return Err(Error::too_many(
            format!("too many wrong setup codes; wait {}", seconds(wait)),
            wait,
        ));
    }
    let expected = state
        .setup_code
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default();
    let given = setup::normalise(&body.setup_code);
    if expected.is_empty() || !tokens::tokens_equal(&given, &expected) {
        state.setup_throttle.fail(&keys, now);
        tracing::warn!(client = %ip, "wrong setup code");
        return Err(Error::forbidden(
            "wrong_setup_code",
            "that setup code is wrong; read it from the hub's log or its setup-code file",
        ));
    }
    let household = DisplayName::parse(&body.household)
        .map_err(|e| Error::unprocessable("invalid_household", format!("household name: {e}")))?;
    let username = Username::parse(&body.username)
        .map_err(|e| Error::unprocessable("invalid_username", e.0))?;
    password::check_rule(&body.password, username.as_str(), household.as_str())
        .map_err(|e| Error::unprocessable("weak_password", e.0))?;
    let pw = body.password;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(Error::internal)?;
    let (hh, un) = (household.to_string(), username.to_string());
    let created = state
        .store
        .write(move |tx| {
            if store::users::any_admin(tx)? {
                return Ok(false);
            }
            if store::household::get(tx)?.is_none() {
                store::household::create(tx, &hh, now)?;
            }
            store::users::insert(tx, &un, &un, Role::Admin, &hash, now)?;
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(un.clone()),
                    action: "setup".into(),
                    subject: None,
                    outcome: "success".into(),
                    detail: format!("household {hh:?} created"),
                },
            )?;
            Ok(true)
        })
        .await?;
    if !created {
        return Err(Error::conflict(
            "already_set_up",
            "this hub is already set up; sign in instead",
        ));
    }
    if let Ok(mut g) = state.setup_code.lock() {
        *g = None;
    }
    if let Err(e) = setup::remove(&state.config.data_dir) {
        tracing::warn!(error = %e, "could not remove the setup-code file");
    }
    if let Some(d) = &state.discovery {
        let _ = d.rename(household.as_str());
    }
    tracing::info!(username = %username, "setup done; the first admin exists");
    Ok(username.to_string())
}

async fn post_setup(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<SetupBody>,
) -> Result<HttpResponse> {
    let username = do_setup(&state, &req, body).await?;
    Ok(HttpResponse::Created().json(json!({"username": username})))
}

/// A new session.
pub struct NewSession {
    /// The secret token.
    pub token: String,
    /// Absolute end (Unix seconds).
    pub expires_at: i64,
}

/// Checks credentials with throttling and opens a session; shared by the
/// API (bearer) and the login page (cookie).
pub async fn do_login(
    state: &AppState,
    req: &HttpRequest,
    username: &str,
    pw: String,
    kind: &'static str,
) -> Result<NewSession> {
    let now = state.now();
    let ip = client_ip(req);
    let name = Username::parse(username)
        .map(|u| u.to_string())
        .unwrap_or_default();
    let account_key = format!("user:{name}");
    let addr_key = format!("addr:{ip}");
    let wait = [
        state.login_account_throttle.check(&[&account_key], now),
        state.login_addr_throttle.check(&[&addr_key], now),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(wait) = wait {
        return Err(Error::too_many(
            format!("too many failed sign-ins; wait {}", seconds(wait)),
            wait,
        ));
    }
    let lookup = name.clone();
    let user = state
        .store
        .read(move |c| store::users::by_username(c, &lookup))
        .await?;
    let pw_for_check = pw.clone();
    let verdict = match user.clone() {
        Some(u) => blocking(move || password::verify(&pw_for_check, &u.password_hash)).await?,
        None => {
            blocking(move || password::verify_dummy(&pw_for_check)).await?;
            false
        }
    };
    let Some(user) = user.filter(|_| verdict) else {
        state.login_account_throttle.fail(&[&account_key], now);
        state.login_addr_throttle.fail(&[&addr_key], now);
        tracing::info!(client = %ip, username = %name, "failed sign-in");
        return Err(Error::unauthorized("wrong username or password"));
    };
    state.login_account_throttle.succeed(&account_key);
    let rehash = if password::needs_rehash(&user.password_hash) {
        Some(
            blocking(move || password::hash(&pw))
                .await?
                .map_err(Error::internal)?,
        )
    } else {
        None
    };
    let token = tokens::new_token();
    let csrf = tokens::new_token();
    let expires_at = now + (state.config.sessions.absolute_hours * 3600) as i64;
    let (hash, ua, uid) = (tokens::token_hash(&token), user_agent(req), user.id);
    state
        .store
        .write(move |tx| {
            if let Some(h) = rehash {
                store::users::set_password_hash(tx, uid, &h)?;
            }
            store::sessions::insert(
                tx,
                &store::sessions::NewSession {
                    token_hash: &hash,
                    user_id: uid,
                    kind,
                    csrf_token: &csrf,
                    now,
                    expires_at,
                    user_agent: &ua,
                    client_ip: &ip,
                },
            )
        })
        .await?;
    tracing::info!(username = %user.username, kind, "signed in");
    Ok(NewSession { token, expires_at })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn post_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<LoginBody>,
) -> Result<HttpResponse> {
    let s = do_login(&state, &req, &body.username, body.password, "bearer").await?;
    Ok(HttpResponse::Ok().json(json!({"token": s.token, "expires_at": rfc3339(s.expires_at)})))
}

/// Ends the caller's session.
pub async fn end_session(state: &AppState, caller: &Caller) -> Result<()> {
    let id = caller.session.id;
    state
        .store
        .write(move |tx| store::sessions::delete(tx, id))
        .await?;
    Ok(())
}

async fn post_logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    end_session(&state, &caller).await?;
    let mut resp = HttpResponse::NoContent();
    if caller.via_cookie {
        let mut c = actix_web::cookie::Cookie::new(tokens::SESSION_COOKIE, "");
        c.set_path("/");
        c.set_secure(true);
        c.set_http_only(true);
        c.make_removal();
        resp.cookie(c);
    }
    Ok(resp.finish())
}

async fn get_me(caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({
        "username": caller.user.username,
        "display_name": caller.user.display_name,
        "role": caller.user.role,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn post_password(
    state: web::Data<AppState>,
    caller: Caller,
    Json(body): Json<PasswordBody>,
) -> Result<HttpResponse> {
    let now = state.now();
    let account_key = format!("user:{}", caller.user.username);
    if let Some(wait) = state.login_account_throttle.check(&[&account_key], now) {
        return Err(Error::too_many(
            format!("too many wrong passwords; wait {}", seconds(wait)),
            wait,
        ));
    }
    let (cur, stored) = (body.current_password, caller.user.password_hash.clone());
    if !blocking(move || password::verify(&cur, &stored)).await? {
        state.login_account_throttle.fail(&[&account_key], now);
        return Err(Error::forbidden(
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let household = state
        .store
        .read(store::household::get)
        .await?
        .map(|h| h.name)
        .unwrap_or_default();
    password::check_rule(&body.new_password, &caller.user.username, &household)
        .map_err(|e| Error::unprocessable("weak_password", e.0))?;
    let pw = body.new_password;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(Error::internal)?;
    let (uid, keep, name) = (
        caller.user.id,
        caller.session.id,
        caller.user.username.clone(),
    );
    let ended = state
        .store
        .write(move |tx| {
            store::users::set_password_hash(tx, uid, &hash)?;
            let n = store::sessions::delete_others(tx, uid, Some(keep))?;
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(name.clone()),
                    action: "password.change".into(),
                    subject: Some(name),
                    outcome: "success".into(),
                    detail: format!("{n} other sessions ended"),
                },
            )?;
            Ok(n)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"other_sessions_ended": ended})))
}

async fn get_sessions(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let uid = caller.user.id;
    let list = state
        .store
        .read(move |c| store::sessions::list_for_user(c, uid))
        .await?;
    let sessions: Vec<_> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "kind": s.kind,
                "created_at": rfc3339(s.created_at),
                "last_seen": rfc3339(s.last_seen),
                "expires_at": rfc3339(s.expires_at),
                "user_agent": s.user_agent,
                "client_ip": s.client_ip,
                "current": s.id == caller.session.id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions})))
}

async fn delete_session(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id: i64 = path.parse().map_err(|_| {
        Error::bad_request(
            "invalid_session_id",
            "a session id is a number from the sessions list",
        )
    })?;
    let uid = caller.user.id;
    let gone = state
        .store
        .write(move |tx| store::sessions::delete_for_user(tx, uid, id))
        .await?;
    if gone {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(Error::not_found("no such session of yours"))
    }
}

async fn get_household(state: web::Data<AppState>, _caller: Caller) -> Result<HttpResponse> {
    let h = state.store.read(store::household::get).await?;
    let h = h.ok_or_else(|| Error::not_found("the hub is not set up yet"))?;
    Ok(HttpResponse::Ok().json(json!({"name": h.name, "retention_days": h.retention_days})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HouseholdPatch {
    name: Option<String>,
    /// Days, or `null` for keep forever; absent leaves it unchanged.
    #[serde(default, deserialize_with = "double_option")]
    retention_days: Option<Option<u32>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<u32>>, D::Error> {
    Ok(Some(Option::<u32>::deserialize(d)?))
}

async fn patch_household(
    state: web::Data<AppState>,
    caller: Caller,
    Json(patch): Json<HouseholdPatch>,
) -> Result<HttpResponse> {
    caller.require(Role::Admin)?;
    let name = patch
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| Error::unprocessable("invalid_name", e.0))?;
    if let Some(Some(d)) = patch.retention_days {
        if !(1..=3650).contains(&d) {
            return Err(Error::unprocessable(
                "invalid_retention",
                "retention_days is 1 to 3650, or null to keep forever",
            ));
        }
    }
    let n2 = name.clone();
    state
        .store
        .write(move |tx| {
            if let Some(n) = &n2 {
                store::household::rename(tx, n.as_str())?;
            }
            if let Some(r) = patch.retention_days {
                store::household::set_retention(tx, r)?;
            }
            Ok(())
        })
        .await?;
    if let (Some(n), Some(d)) = (&name, &state.discovery) {
        if let Err(e) = d.rename(n.as_str()) {
            tracing::warn!(error = %e, "could not rename the mDNS advertisement");
        }
    }
    get_household(state, caller).await
}

/// A paired toy's JSON (API.md).
pub fn toy_json(state: &AppState, t: &store::toys::Toy, now: i64) -> serde_json::Value {
    let up = ToyId::parse(&t.toy_id)
        .ok()
        .and_then(|id| state.discovery.as_ref().map(|d| d.is_up(&id)))
        .unwrap_or(false);
    let online = up || t.last_seen.is_some_and(|s| now - s < 120);
    json!({
        "toy_id": t.toy_id,
        "name": t.name,
        "model": t.model,
        "online": online,
        "last_seen": t.last_seen.map(rfc3339),
        "battery": t.battery,
        "firmware": t.firmware,
        "child": t.child_name,
    })
}

/// A pending pairing's JSON (API.md).
pub fn pending_json(p: &crate::pairing::Pairing) -> serde_json::Value {
    json!({
        "pairing_id": p.id,
        "toy_id": p.request.toy_id,
        "name": p.request.name,
        "model": p.request.model,
        "created_at": rfc3339(p.created_at),
        "awaiting": if p.status == Status::AwaitingReveal { "reveal" } else { "confirmation" },
    })
}

/// The toys listing: discovered, pending, paired.
pub async fn toys_listing(state: &AppState) -> Result<serde_json::Value> {
    let now = state.now();
    let paired = state.store.read(store::toys::list_paired).await?;
    let paired_ids: std::collections::HashSet<&str> =
        paired.iter().map(|t| t.toy_id.as_str()).collect();
    let discovered: Vec<_> = state
        .discovery
        .as_ref()
        .map(|d| d.seen())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !paired_ids.contains(s.toy_id.as_str()))
        .map(|s| json!({"toy_id": s.toy_id, "name": s.name, "model": s.model, "fp": s.fp.to_hex(), "paired": s.paired}))
        .collect();
    let pending: Vec<_> = state
        .pairings
        .pending(now)
        .iter()
        .map(pending_json)
        .collect();
    let paired: Vec<_> = paired.iter().map(|t| toy_json(state, t, now)).collect();
    Ok(json!({"discovered": discovered, "pending": pending, "paired": paired}))
}

async fn get_toys(state: web::Data<AppState>, _caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(toys_listing(&state).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyPatch {
    name: Option<String>,
    child: Option<String>,
}

async fn patch_toy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(patch): Json<ToyPatch>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let toy_id = ToyId::parse(&path).map_err(|_| Error::not_found("no such toy"))?;
    let name = patch
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| Error::unprocessable("invalid_name", e.0))?;
    if patch.child.is_some() {
        return Err(Error::unprocessable(
            "not_supported",
            "assigning a child is not available yet",
        ));
    }
    let id = toy_id.to_string();
    let toy = state
        .store
        .write(move |tx| {
            if let Some(n) = &name {
                if !store::toys::rename(tx, &id, n.as_str())? {
                    return Ok(None);
                }
            }
            store::toys::by_toy_id(tx, &id).map(|t| t.filter(|t| t.removed_at.is_none()))
        })
        .await?
        .ok_or_else(|| Error::not_found("no such paired toy"))?;
    let j = toy_json(&state, &toy, state.now());
    state
        .events
        .publish("toy", json!({"change": "updated", "toy": j}));
    Ok(HttpResponse::Ok().json(j))
}

async fn delete_toy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let toy_id = ToyId::parse(&path).map_err(|_| Error::not_found("no such toy"))?;
    let now = state.now();
    let (id, actor) = (toy_id.to_string(), caller.user.username.clone());
    let removed = state
        .store
        .write(move |tx| {
            let row = store::toys::by_toy_id(tx, &id)?;
            let removed = store::toys::remove(tx, &id, now)?;
            if removed {
                store::audit::record(
                    tx,
                    &AuditEntry {
                        at: now,
                        actor: Some(actor),
                        action: "toy.remove".into(),
                        subject: Some(id.clone()),
                        outcome: "success".into(),
                        detail: "unpaired; its certificate is refused from now on".into(),
                    },
                )?;
            }
            Ok(row.filter(|_| removed))
        })
        .await?;
    let Some(row) = removed else {
        return Err(Error::not_found("no such paired toy"));
    };
    // A toy waiting in a long-poll learns at once that it was removed.
    state.events.wake_toy(row.id);
    state
        .events
        .publish("toy", json!({"change": "removed", "toy_id": toy_id}));
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
}

fn pair_error(e: PairError) -> Error {
    match e {
        PairError::NotFound => Error::not_found(
            "no such pairing: it expired or was replaced; ask the toy to start again",
        ),
        PairError::WrongState(msg) => Error::conflict("pairing_not_ready", msg),
        PairError::TooMany => Error::too_many("too many pairings are waiting", 60),
        PairError::CommitmentMismatch => Error::unprocessable(
            "commitment_mismatch",
            "the toy's nonce does not match its commitment",
        ),
        PairError::WrongCode { attempts_left } => {
            let msg = if attempts_left == 0 {
                "wrong code; that was the last attempt, so the pairing is rejected. Start pairing again on the toy".to_owned()
            } else {
                format!(
                    "wrong code; check the code the toy announced ({attempts_left} attempts left)"
                )
            };
            Error::unprocessable("wrong_code", msg)
                .with_extra("attempts_left", json!(attempts_left))
        }
    }
}

async fn confirm_pairing(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    Json(body): Json<ConfirmBody>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let code =
        PairingCode::parse(&body.code).map_err(|e| Error::unprocessable("invalid_code", e.0))?;
    let now = state.now();
    let pairing_id = path.into_inner();
    let actor = caller.user.username.clone();
    let approval = match state
        .pairings
        .confirm(&pairing_id, &code, state.pki.ca_der(), now)
    {
        Ok(a) => a,
        Err(e) => {
            if let PairError::WrongCode { attempts_left } = e {
                let toy = state
                    .pairings
                    .get(&pairing_id, now)
                    .map(|p| p.request.toy_id.to_string());
                audit(
                    &state,
                    AuditEntry {
                        at: now,
                        actor: Some(actor.clone()),
                        action: "pairing.confirm".into(),
                        subject: toy,
                        outcome: "failure".into(),
                        detail: if attempts_left == 0 {
                            "wrong code; third attempt, pairing rejected".into()
                        } else {
                            format!("wrong code; {attempts_left} attempts left")
                        },
                    },
                )
                .await?;
                state.events.publish(
                    "toy",
                    json!({"change": "pairing", "pairing_id": pairing_id}),
                );
            }
            return Err(pair_error(e));
        }
    };
    let req = approval.request.clone();
    let issued = state
        .pki
        .issue_toy_cert(&req.csr, &req.toy_id, state.clock.now());
    let (der, pem) = match issued {
        Ok(x) => x,
        Err(e) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(Error::internal(anyhow::Error::new(e)));
        }
    };
    let cert_hash = crate::pki::cert_sha256(&der);
    let (toy_id, name, model, fp) = (
        req.toy_id.to_string(),
        req.name.to_string(),
        req.model.clone(),
        req.csr.key_fp().to_hex(),
    );
    let stored = state
        .store
        .write(move |tx| {
            if store::toys::by_toy_id(tx, &toy_id)?.is_some_and(|t| t.removed_at.is_none()) {
                return Ok(false);
            }
            store::toys::upsert_paired(tx, &toy_id, &name, &model, &fp, &cert_hash, now)?;
            store::audit::record(
                tx,
                &AuditEntry {
                    at: now,
                    actor: Some(actor),
                    action: "pairing.confirm".into(),
                    subject: Some(toy_id.clone()),
                    outcome: "success".into(),
                    detail: format!("paired; key sha256 {fp}"),
                },
            )?;
            Ok(true)
        })
        .await;
    match stored {
        Ok(true) => {}
        Ok(false) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(Error::conflict(
                "already_paired",
                "a toy with this id is already paired; remove it first",
            ));
        }
        Err(e) => {
            state.pairings.abort_approval(&approval.id, now);
            return Err(e.into());
        }
    }
    state.pairings.finish_approval(&approval.id, pem, now);
    state.events.publish(
        "toy",
        json!({"change": "paired", "toy_id": req.toy_id, "pairing_id": approval.id}),
    );
    Ok(HttpResponse::Ok().json(json!({"toy_id": req.toy_id})))
}

async fn reject_pairing(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    caller.require(Role::Parent)?;
    let now = state.now();
    let toy = state.pairings.reject(&path, now).map_err(pair_error)?;
    audit(
        &state,
        AuditEntry {
            at: now,
            actor: Some(caller.user.username.clone()),
            action: "pairing.reject".into(),
            subject: Some(toy.to_string()),
            outcome: "failure".into(),
            detail: "a parent declined the pairing".into(),
        },
    )
    .await?;
    state.events.publish(
        "toy",
        json!({"change": "pairing", "pairing_id": path.into_inner()}),
    );
    Ok(HttpResponse::build(StatusCode::NO_CONTENT).finish())
}
