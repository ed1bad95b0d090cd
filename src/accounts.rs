//! Use cases of household accounts: first-run setup, signing in and out,
//! changing a password, sessions, users and the household itself.
//!
//! This module owns the guess throttles and the setup code ([`Accounts`]).
//! Each act opens its own transaction and writes its ledger entry; callers
//! (the parents' pages and API, the command line) only parse and render, so `hearth
//! user passwd` and the account page change a password through
//! [`set_password`] and leave the same entry. Nothing here knows HTTP.

use std::sync::Mutex;

use crate::auth::throttle::{RowQuota, Throttle};
use crate::auth::{password, setup, tokens};
use crate::datadir::DataDir;
use crate::domain::{DisplayName, Role, SessionId, SessionKind, UserId, Username};
use crate::error::{Code, Error, Result};
use crate::events::{Events, StreamsOf};
use crate::state::AppState;
use crate::store::audit::{self, Action, AuditEntry, Outcome};
use crate::store::household::Household;
use crate::store::sessions::Session;
use crate::store::users::User;
use crate::store::{self, Store};

/// The throttles of guesses and the setup code, shared by every request.
pub struct Accounts {
    /// Sign-in failures per account (5 free).
    login_account: Throttle,
    /// Sign-in failures per source address (20 free: a family shares one).
    login_addr: Throttle,
    /// Wrong setup codes (every one blocks, growing).
    setup: Throttle,
    /// The setup code while setup is not done.
    setup_code: Mutex<Option<String>>,
    /// Wrong invitation codes (like the setup code: every one blocks, growing).
    pub(crate) join: Throttle,
    /// Ledger rows of failed sign-ins and joins per source address.
    pub(crate) failure_rows: RowQuota,
}

/// Ledger rows of failed guesses one address may cause per window.
pub const FAILURE_ROWS_PER_WINDOW: u32 = 10;
/// The window of [`FAILURE_ROWS_PER_WINDOW`], in seconds.
pub const FAILURE_ROWS_WINDOW: i64 = 600;

impl Accounts {
    /// Fresh throttles; `setup_code` is the code of a hub without an admin.
    pub fn new(setup_code: Option<String>) -> Self {
        Self {
            login_account: Throttle::new(5),
            login_addr: Throttle::new(20),
            setup: Throttle::new(1),
            setup_code: Mutex::new(setup_code),
            join: Throttle::new(1),
            failure_rows: RowQuota::new(FAILURE_ROWS_PER_WINDOW, FAILURE_ROWS_WINDOW),
        }
    }
}

/// Makes or removes the setup code at start: a hub with an admin has none;
/// one without keeps the code of its file across restarts.
pub fn setup_code_at_start(dir: &DataDir, has_admin: bool) -> std::io::Result<Option<String>> {
    if has_admin {
        let _ = setup::remove(dir.root());
        Ok(None)
    } else {
        setup::load_or_create(dir.root()).map(Some)
    }
}

/// Who is asking, as the surface saw it (for throttling and the sessions list).
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The source address as text.
    pub ip: String,
    /// What the client called itself (at most 200 characters).
    pub user_agent: String,
}

/// `1 second`, `5 seconds`.
pub(crate) fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

/// Runs argon2 off the async threads, on the bounded password workers
/// (`auth::work`); `503 busy` with `Retry-After` when too many checks are
/// waiting.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    crate::auth::work::run(f).await.map_err(|_| {
        let mut e = Error::new(
            Code::Busy,
            "the hub is busy checking other passwords; try again in a moment",
        );
        e.retry_after = Some(crate::auth::work::RETRY_AFTER_SECS);
        e
    })
}

fn already_set_up() -> Error {
    Error::new(
        Code::AlreadySetUp,
        "this hub is already set up; sign in instead",
    )
}

/// What first-run setup needs.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupForm {
    /// The one-time code.
    pub setup_code: String,
    /// Household name.
    pub household: String,
    /// First admin's username.
    pub username: String,
    /// First admin's password.
    pub password: String,
}

/// First-run setup: checks the code (throttled), makes the household and
/// its first admin, forgets the code. Returns the admin's username.
pub async fn set_up(state: &AppState, client: &Client, form: SetupForm) -> Result<Username> {
    let now = state.now();
    let accounts = &state.accounts;
    if is_set_up(state).await? {
        return Err(already_set_up());
    }
    let (code_key, addr_key) = (Guess::SetupCode.key(), Guess::Address(&client.ip).key());
    let keys = [code_key.as_str(), addr_key.as_str()];
    if let Some(wait) = accounts.setup.check(&keys, now) {
        return Err(Error::too_many(
            format!("too many wrong setup codes; wait {}", seconds(wait)),
            wait,
        ));
    }
    let expected = accounts
        .setup_code
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default();
    let given = setup::normalise(&form.setup_code);
    if expected.is_empty() || !tokens::tokens_equal(&given, &expected) {
        accounts.setup.fail(&keys, now);
        tracing::warn!(client = %client.ip, "wrong setup code");
        return Err(Error::new(
            Code::WrongSetupCode,
            "that setup code is wrong; read it from the hub's log or its setup-code file",
        ));
    }
    let household = DisplayName::parse(&form.household)
        .map_err(|e| Error::new(Code::InvalidHousehold, format!("household name: {e}")))?;
    let username = Username::parse(&form.username).map_err(|e| Code::InvalidUsername.invalid(e))?;
    password::check_rule(&form.password, username.as_str(), household.as_str())
        .map_err(|e| Code::WeakPassword.invalid(e))?;
    let pw = form.password;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(Error::internal)?;
    let (hh, un, ip) = (
        household.to_string(),
        username.to_string(),
        client.ip.clone(),
    );
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
            let mut e = AuditEntry::new(now, Some(un.clone()), Action::Setup, Outcome::Success);
            e.client = ip.clone();
            e.detail = format!("household {hh:?} created");
            audit::record(tx, &e)?;
            Ok(true)
        })
        .await?;
    if !created {
        return Err(already_set_up());
    }
    if let Ok(mut g) = accounts.setup_code.lock() {
        *g = None;
    }
    if let Err(e) = setup::remove(&state.config.data_dir) {
        tracing::warn!(error = %e, "could not remove the setup-code file");
    }
    if let Some(d) = &state.discovery {
        let _ = d.rename(household.as_str());
    }
    tracing::info!(username = %username, "setup done; the first admin exists");
    Ok(username)
}

/// A new session.
pub struct NewSession {
    /// The secret token.
    pub token: String,
    /// Absolute end (Unix seconds).
    pub expires_at: i64,
}

/// What a throttle counts wrong guesses of.
pub(crate) enum Guess<'a> {
    /// Passwords of one account.
    Account(&'a str),
    /// Anything from one source address.
    Address(&'a str),
    /// The setup code, whoever guesses.
    SetupCode,
}

impl Guess<'_> {
    /// The throttle's key.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Account(username) => format!("user:{username}"),
            Self::Address(ip) => format!("addr:{ip}"),
            Self::SetupCode => "setup".into(),
        }
    }
}

/// Checks credentials with throttling (per account and per address) and
/// opens a session of `kind`; rehashes a password stored with old parameters.
pub async fn sign_in(
    state: &AppState,
    client: &Client,
    username: &str,
    pw: String,
    kind: SessionKind,
) -> Result<NewSession> {
    let now = state.now();
    let accounts = &state.accounts;
    let ip = client.ip.clone();
    let name = Username::parse(username)
        .map(|u| u.to_string())
        .unwrap_or_default();
    let account_key = Guess::Account(&name).key();
    let addr_key = Guess::Address(&ip).key();
    // The guess is charged before any await, so parallel guesses cannot all
    // pass; a right one is cleared or refunded below.
    let reserved = crate::auth::throttle::reserve_all(
        &[
            (&accounts.login_account, &[&account_key]),
            (&accounts.login_addr, &[&addr_key]),
        ],
        now,
    );
    if let Err(wait) = reserved {
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
        tracing::info!(client = %ip, username = %name, "failed sign-in");
        let mut e = AuditEntry::new(now, None, Action::SignInFailed, Outcome::Failure);
        e.subject = Some(name.clone()).filter(|n| !n.is_empty());
        e.detail = "wrong username or password".into();
        e.client = ip.clone();
        record_capped(state, e).await?;
        return Err(Error::unauthorized("wrong username or password"));
    };
    accounts.login_account.succeed(&account_key);
    accounts.login_addr.refund(&[&addr_key]);
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
    let (hash, ua, uid, uname) = (
        tokens::token_hash(&token),
        client.user_agent.clone(),
        user.id,
        user.username.clone(),
    );
    state
        .store
        .write(move |tx| {
            let session = store::sessions::NewSession {
                token_hash: &hash,
                user_id: uid,
                kind,
                csrf_token: &csrf,
                now,
                expires_at,
                user_agent: &ua,
                client_ip: &ip,
            };
            let id = store::sessions::insert(tx, &session)?;
            if let Some(h) = rehash {
                store::users::set_password_hash(tx, uid, &h)?;
            }
            store::members::set_last_sign_in(tx, uid, now)?;
            let mut e = AuditEntry::new(now, Some(uname), Action::SignIn, Outcome::Success);
            e.client = ip.clone();
            e.detail = format!("{} session", kind.as_str());
            audit::record(tx, &e)?;
            Ok(id)
        })
        .await?;
    tracing::info!(username = %user.username, kind = kind.as_str(), "signed in");
    Ok(NewSession { token, expires_at })
}

/// The live session of `token`, opened the way it is presented (`kind`),
/// with its member: `401` when unknown, presented the other way, past its
/// absolute end or idle for too long.
pub async fn session(state: &AppState, token: &str, kind: SessionKind) -> Result<(User, Session)> {
    let now = state.now();
    let idle = (state.config.sessions.idle_minutes * 60) as i64;
    let hash = tokens::token_hash(token);
    let found = state
        .store
        .read(move |c| {
            let Some(s) = store::sessions::by_token_hash(c, &hash)? else {
                return Ok(None);
            };
            let u = store::users::by_id(c, s.user_id)?;
            Ok(u.map(|u| (u, s)))
        })
        .await?;
    let ended = || Error::unauthorized("this session has ended; sign in again");
    let (user, session) = found.ok_or_else(ended)?;
    if session.kind != kind || session.expires_at <= now || session.last_seen + idle <= now {
        return Err(ended());
    }
    Ok((user, session))
}

/// Records that a session was used, at most once a minute to spare the SD card.
pub async fn session_used(state: &AppState, session: &Session) -> Result<()> {
    let now = state.now();
    if now - session.last_seen >= 60 {
        let id = session.id;
        // Best effort: a full disk must not lock parents out.
        if let Err(e) = state
            .store
            .write(move |tx| store::sessions::touch(tx, id, now))
            .await
        {
            tracing::warn!("cannot record session use: {e}");
        }
    }
    Ok(())
}

/// Records a failed guess of an unauthenticated client within its
/// address's quota ([`FAILURE_ROWS_PER_WINDOW`]); the rows skipped before
/// are summed up in the next one written.
pub(crate) async fn record_capped(state: &AppState, mut e: AuditEntry) -> Result<()> {
    let Some(skipped) = state.accounts.failure_rows.take(&e.client, e.at) else {
        return Ok(());
    };
    if skipped > 0 {
        e.detail = format!(
            "{} ({skipped} earlier failures from this address were not recorded one by one)",
            e.detail
        );
    }
    state.store.write(move |tx| audit::record(tx, &e)).await?;
    Ok(())
}

/// The session `id` of `user_id` still exists (an event stream ends with it).
pub async fn session_alive(state: &AppState, user_id: UserId, id: SessionId) -> Result<bool> {
    Ok(state
        .store
        .read(move |c| {
            Ok(store::sessions::list_for_user(c, user_id)?
                .iter()
                .any(|s| s.id == id))
        })
        .await?)
}

/// The first admin exists.
pub async fn is_set_up(state: &AppState) -> Result<bool> {
    Ok(state.store.read(store::users::any_admin).await?)
}

/// The household's name, or `Hearth` before setup.
pub async fn household_name(state: &AppState) -> Result<String> {
    Ok(state
        .store
        .read(store::household::get)
        .await?
        .map(|h| h.name)
        .unwrap_or_else(|| "Hearth".into()))
}

/// Ends one session (signing out), and its event streams with it.
pub async fn sign_out(state: &AppState, session: &Session) -> Result<()> {
    let id = session.id;
    state
        .store
        .write(move |tx| store::sessions::delete(tx, id))
        .await?;
    state.events.streams().end(StreamsOf::Session(id));
    Ok(())
}

/// A password change asked for by the member: the current password and the new one.
pub struct PasswordChange {
    /// What they typed as their current password.
    pub current: String,
    /// The new password.
    pub new: String,
}

/// A signed-in member changes their own password: the current one is
/// checked (throttled like a sign-in), then [`set_password`] keeps only the
/// session in use. Returns how many other sessions ended.
pub async fn change_password(
    state: &AppState,
    user: &User,
    session: &Session,
    change: PasswordChange,
) -> Result<usize> {
    let PasswordChange { current, new } = change;
    let (key, now) = (Guess::Account(&user.username).key(), state.now());
    let throttle = &state.accounts.login_account;
    // Charged before the check, like a sign-in; refunded when right.
    if let Err(wait) = throttle.reserve(&[&key], now) {
        return Err(Error::too_many(
            format!("too many wrong passwords; wait {}", seconds(wait)),
            wait,
        ));
    }
    let stored = user.password_hash.clone();
    if !blocking(move || password::verify(&current, &stored)).await? {
        return Err(Error::new(
            Code::WrongPassword,
            "the current password is wrong",
        ));
    }
    throttle.refund(&[&key]);
    set_password(
        &state.store,
        Some(&state.events),
        now,
        &user.username,
        user,
        new,
        Some(session.id),
    )
    .await
}

/// Sets `user`'s password after the password rule, ends their sessions
/// except `keep`, and records `password_changed` by `actor`, in one
/// transaction; their event streams (but `keep`'s) end at once when the hub
/// runs in this process (`events`); otherwise (the command line) within a
/// keep-alive period, when the stream finds its session gone. The one way a
/// password changes (account page and command line).
pub async fn set_password(
    store: &Store,
    events: Option<&Events>,
    now: i64,
    actor: &str,
    user: &User,
    new: String,
    keep: Option<SessionId>,
) -> Result<usize> {
    let household = store
        .read(store::household::get)
        .await?
        .map(|h| h.name)
        .unwrap_or_default();
    password::check_rule(&new, &user.username, &household)
        .map_err(|e| Code::WeakPassword.invalid(e))?;
    let hash = blocking(move || password::hash(&new))
        .await?
        .map_err(Error::internal)?;
    let (uid, name, actor) = (user.id, user.username.clone(), actor.to_owned());
    let ended = store
        .write(move |tx| {
            store::users::set_password_hash(tx, uid, &hash)?;
            let n = store::sessions::delete_others(tx, uid, keep)?;
            let mut e =
                AuditEntry::new(now, Some(actor), Action::PasswordChanged, Outcome::Success);
            e.subject = Some(name);
            e.detail = format!("{n} other sessions ended");
            audit::record(tx, &e)?;
            Ok(n)
        })
        .await?;
    if let Some(ev) = events {
        ev.streams().end(StreamsOf::User(uid, keep));
    }
    Ok(ended)
}

/// Adds a household member (the command line's `user add`), recorded as
/// `member_added` by `actor`.
pub async fn add_user(
    store: &Store,
    now: i64,
    actor: &str,
    username: &Username,
    display: &DisplayName,
    role: Role,
    pw: String,
) -> Result<()> {
    let household = store
        .read(store::household::get)
        .await?
        .map(|h| h.name)
        .unwrap_or_default();
    password::check_rule(&pw, username.as_str(), &household)
        .map_err(|e| Code::WeakPassword.invalid(e))?;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(Error::internal)?;
    let (un, dn, actor) = (username.to_string(), display.to_string(), actor.to_owned());
    let id = store
        .write(move |tx| {
            let id = store::users::insert(tx, &un, &dn, role, &hash, now)?;
            if id.is_some() {
                let mut e =
                    AuditEntry::new(now, Some(actor), Action::MemberAdded, Outcome::Success);
                e.subject = Some(un.clone());
                e.detail = format!("added as {}", role.as_str());
                audit::record(tx, &e)?;
            }
            Ok(id)
        })
        .await?;
    if id.is_none() {
        return Err(Error::new(
            Code::InvalidUsername,
            format!("the username {username} is taken"),
        ));
    }
    Ok(())
}

/// A member by username.
pub async fn user(store: &Store, username: &Username) -> Result<User> {
    let name = username.to_string();
    store
        .read(move |c| store::users::by_username(c, &name))
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no user {username}")))
}

/// Every member.
pub async fn users(store: &Store) -> Result<Vec<User>> {
    Ok(store.read(store::users::list).await?)
}

/// A member's sessions, newest first.
pub async fn sessions(state: &AppState, user: &User) -> Result<Vec<Session>> {
    let uid = user.id;
    Ok(state
        .store
        .read(move |c| store::sessions::list_for_user(c, uid))
        .await?)
}

/// Ends one of a member's own sessions.
pub async fn end_session(state: &AppState, user: &User, id: SessionId) -> Result<()> {
    let uid = user.id;
    let gone = state
        .store
        .write(move |tx| store::sessions::delete_for_user(tx, uid, id))
        .await?;
    if gone {
        Ok(())
    } else {
        Err(Error::not_found("no such session of yours"))
    }
}

/// Forgets sessions past their absolute end or idle limit; their event
/// streams end at once.
pub async fn purge_sessions(state: &AppState) -> Result<usize> {
    let (now, idle) = (
        state.now(),
        (state.config.sessions.idle_minutes * 60) as i64,
    );
    let gone = state
        .store
        .write(move |tx| store::sessions::purge_expired(tx, now, idle))
        .await?;
    for id in &gone {
        state.events.streams().end(StreamsOf::Session(*id));
    }
    Ok(gone.len())
}

/// The household.
pub async fn household(state: &AppState) -> Result<Household> {
    state
        .store
        .read(store::household::get)
        .await?
        .ok_or_else(|| Error::not_found("the hub is not set up yet"))
}

/// A change to the household: absent fields stay.
#[derive(Debug, Default)]
pub struct HouseholdChange {
    /// A new name.
    pub name: Option<String>,
    /// Days, or `Some(None)` for keep forever.
    pub retention_days: Option<Option<u32>>,
}

/// An admin renames the household (and its mDNS instance) or sets retention.
pub async fn change_household(
    state: &AppState,
    by: &User,
    change: HouseholdChange,
) -> Result<Household> {
    require(by, Role::Admin)?;
    let name = change
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| Code::InvalidName.invalid(e))?;
    if let Some(Some(d)) = change.retention_days {
        if !(1..=3650).contains(&d) {
            return Err(Error::new(
                Code::InvalidRetention,
                "retention_days is 1 to 3650, or null to keep forever",
            ));
        }
    }
    let (n2, retention) = (name.clone(), change.retention_days);
    let mut details = Vec::new();
    if let Some(n) = &name {
        details.push(format!("name {:?}", n.as_str()));
    }
    match retention {
        Some(Some(d)) => details.push(format!("messages kept {d} days")),
        Some(None) => details.push("messages kept forever".into()),
        None => {}
    }
    let mut entry = AuditEntry::new(
        state.now(),
        Some(by.username.clone()),
        Action::SettingsChanged,
        Outcome::Success,
    );
    entry.detail = details.join("; ");
    state
        .store
        .write(move |tx| {
            if let Some(n) = &n2 {
                store::household::rename(tx, n.as_str())?;
            }
            if let Some(r) = retention {
                store::household::set_retention(tx, r)?;
            }
            if !entry.detail.is_empty() {
                audit::record(tx, &entry)?;
            }
            Ok(())
        })
        .await?;
    if let (Some(n), Some(d)) = (&name, &state.discovery) {
        if let Err(e) = d.rename(n.as_str()) {
            tracing::warn!(error = %e, "could not rename the mDNS advertisement");
        }
    }
    household(state).await
}

/// Refuses unless `user` has at least `role`.
pub fn require(user: &User, role: Role) -> Result<()> {
    if user.role >= role {
        Ok(())
    } else {
        Err(Error::new(
            Code::Forbidden,
            format!(
                "this needs the {} role; ask a household admin",
                role.as_str()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_user(dir: &std::path::Path) -> (Store, User) {
        let store = Store::open(dir).expect("open");
        let hash = password::hash("saffron tugboat meadow").expect("hash");
        let user = store
            .write_blocking(|tx| {
                store::household::create(tx, "Home", 0)?;
                store::users::insert(tx, "dad", "Dad", Role::Parent, &hash, 0)?;
                store::sessions::insert(
                    tx,
                    &store::sessions::NewSession {
                        token_hash: b"h1",
                        user_id: UserId(1),
                        kind: SessionKind::Bearer,
                        csrf_token: "c",
                        now: 0,
                        expires_at: 100,
                        user_agent: "",
                        client_ip: "",
                    },
                )?;
                store::users::by_username(tx, "dad")
            })
            .expect("seed")
            .expect("user");
        (store, user)
    }

    #[tokio::test]
    async fn a_command_line_password_change_leaves_the_ledger_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, user) = store_with_user(dir.path());
        let ended = set_password(
            &store,
            None,
            42,
            audit::SYSTEM,
            &user,
            "copper lantern orchard".into(),
            None,
        )
        .await
        .expect("changed");
        assert_eq!(ended, 1, "the one session ended");
        let entries = store.read(|c| audit::recent(c, 10)).await.expect("ledger");
        let e = entries.first().expect("an entry");
        assert_eq!(e.action, Action::PasswordChanged);
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!(e.at, 42);
        assert_eq!(e.actor.as_deref(), Some("system"));
        assert_eq!(e.subject.as_deref(), Some("dad"));
        assert_eq!(e.detail, "1 other sessions ended");
        let stored = user_by(&store, "dad").await;
        assert!(password::verify(
            "copper lantern orchard",
            &stored.password_hash
        ));
    }

    #[tokio::test]
    async fn a_weak_password_changes_nothing_and_records_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, user) = store_with_user(dir.path());
        let err = set_password(&store, None, 1, "dad", &user, "password1234".into(), None)
            .await
            .expect_err("refused");
        assert_eq!(err.code, Code::WeakPassword);
        assert!(
            store
                .read(|c| audit::recent(c, 10))
                .await
                .expect("ledger")
                .is_empty()
        );
        let stored = user_by(&store, "dad").await;
        assert!(password::verify(
            "saffron tugboat meadow",
            &stored.password_hash
        ));
    }

    async fn user_by(store: &Store, name: &str) -> User {
        user(store, &Username::parse(name).expect("name"))
            .await
            .expect("user")
    }

    #[test]
    fn roles_are_required_in_order() {
        let u = User {
            id: UserId(1),
            username: "gran".into(),
            display_name: "Gran".into(),
            role: Role::Relative,
            password_hash: String::new(),
        };
        assert_eq!(
            require(&u, Role::Parent).expect_err("refused").code,
            Code::Forbidden
        );
        assert!(require(&u, Role::Relative).is_ok());
    }
}
