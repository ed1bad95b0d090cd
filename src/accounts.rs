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

/// How long a setup code works: after this, the hub makes a new one and
/// logs it (a code copied from an old log or backup stops working).
pub const SETUP_CODE_LIFETIME_SECS: i64 = 24 * 3600;
/// Wrong setup codes, from any address, after which the code is replaced:
/// whatever many addresses guess, a code sees at most this many guesses,
/// and the parent, who reads the newest code in the log, is never locked out.
pub const SETUP_CODE_MAX_WRONG: u32 = 10;
/// Wrong setup codes one address may send before its growing waits begin.
const SETUP_FREE_PER_ADDRESS: u32 = 5;
/// Wrong setup codes one IPv6 /64 may send before its growing waits begin:
/// a device that takes many addresses of its prefix gets this many, not
/// `SETUP_FREE_PER_ADDRESS` per address; its neighbours on the same home
/// /64 are throttled only after this many.
const SETUP_FREE_PER_NETWORK: u32 = 25;
/// Failed sign-ins from one address before its growing waits begin.
const LOGIN_FREE_PER_ADDRESS: u32 = 20;
/// Failed sign-ins from one IPv6 /64 before its growing waits begin.
const LOGIN_FREE_PER_NETWORK: u32 = 100;

/// The throttles of guesses and the setup code, shared by every request.
pub struct Accounts {
    /// Sign-in failures per account (5 free).
    login_account: Throttle,
    /// Sign-in failures per source address (20 free: a family shares one).
    login_addr: Throttle,
    /// Sign-in failures per IPv6 /64 (100 free), so a device with a prefix
    /// does not get 2^64 fresh addresses' worth of guesses.
    login_net: Throttle,
    /// Wrong setup codes per source address. There is no global block: one
    /// device's guesses never block another's setup.
    setup_addr: Throttle,
    /// Wrong setup codes per IPv6 /64 (25 free).
    setup_net: Throttle,
    /// The setup code while setup is not done.
    setup_code: Mutex<Option<LiveCode>>,
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
    /// Fresh throttles; `setup_code` is the code of a hub without an admin,
    /// with the Unix time it was made.
    pub fn new(setup_code: Option<(String, i64)>) -> Self {
        Self {
            login_account: Throttle::new(5),
            login_addr: Throttle::new(LOGIN_FREE_PER_ADDRESS),
            login_net: Throttle::new(LOGIN_FREE_PER_NETWORK),
            setup_addr: Throttle::new(SETUP_FREE_PER_ADDRESS),
            setup_net: Throttle::new(SETUP_FREE_PER_NETWORK),
            setup_code: Mutex::new(setup_code.map(|(code, issued_at)| LiveCode {
                code,
                issued_at,
                wrong: 0,
            })),
            join: Throttle::new(1),
            failure_rows: RowQuota::new(FAILURE_ROWS_PER_WINDOW, FAILURE_ROWS_WINDOW),
        }
    }

    /// Checks a typed (normalised) setup code against the live one at
    /// `now`, replacing the live code when it expired or saw its last wrong
    /// guess; the new code is returned with the reason, to be written and
    /// logged by the caller.
    fn check_setup_code(&self, given: &str, now: i64) -> (CodeVerdict, Option<(String, Replaced)>) {
        let mut guard = match self.setup_code.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.as_mut() {
            None => (CodeVerdict::Wrong, None),
            Some(live) => live.check(given, now),
        }
    }

    /// Replaces the live setup code when it has expired at `now`.
    fn expire_setup_code(&self, now: i64) -> Option<(String, Replaced)> {
        let mut guard = match self.setup_code.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let live = guard.as_mut()?;
        live.expired(now).then(|| {
            *live = LiveCode::fresh(now);
            (live.code.clone(), Replaced::Expired)
        })
    }
}

/// The live setup code and the wrong guesses it has seen.
#[derive(Debug)]
struct LiveCode {
    code: String,
    issued_at: i64,
    wrong: u32,
}

/// What a typed setup code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeVerdict {
    /// The live code.
    Right,
    /// Not the live code (or no code is live).
    Wrong,
    /// The code that was live until its lifetime ended.
    Expired,
}

/// Why a setup code was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaced {
    /// It lived [`SETUP_CODE_LIFETIME_SECS`].
    Expired,
    /// It saw [`SETUP_CODE_MAX_WRONG`] wrong guesses.
    TooManyWrong,
}

impl Replaced {
    fn describe(self) -> String {
        match self {
            Self::Expired => format!(
                "the previous one expired after {} hours",
                SETUP_CODE_LIFETIME_SECS / 3600
            ),
            Self::TooManyWrong => {
                format!("the previous one got {SETUP_CODE_MAX_WRONG} wrong guesses")
            }
        }
    }
}

impl LiveCode {
    fn fresh(now: i64) -> Self {
        Self {
            code: setup::new_code(),
            issued_at: now,
            wrong: 0,
        }
    }

    fn expired(&self, now: i64) -> bool {
        now - self.issued_at >= SETUP_CODE_LIFETIME_SECS
    }

    fn check(&mut self, given: &str, now: i64) -> (CodeVerdict, Option<(String, Replaced)>) {
        if self.expired(now) {
            let old = std::mem::replace(self, Self::fresh(now));
            let verdict = if tokens::tokens_equal(given, &old.code) {
                CodeVerdict::Expired
            } else {
                CodeVerdict::Wrong
            };
            return (verdict, Some((self.code.clone(), Replaced::Expired)));
        }
        if !given.is_empty() && tokens::tokens_equal(given, &self.code) {
            return (CodeVerdict::Right, None);
        }
        self.wrong += 1;
        if self.wrong >= SETUP_CODE_MAX_WRONG {
            *self = Self::fresh(now);
            return (
                CodeVerdict::Wrong,
                Some((self.code.clone(), Replaced::TooManyWrong)),
            );
        }
        (CodeVerdict::Wrong, None)
    }
}

/// Makes or removes the setup code at start: a hub with an admin has none;
/// one without keeps the code of its file across restarts while it is
/// younger than [`SETUP_CODE_LIFETIME_SECS`] (its age read from the file's
/// modification time), else makes a new one. Returns the code and when it
/// was made.
pub fn setup_code_at_start(
    dir: &DataDir,
    has_admin: bool,
    now: i64,
) -> std::io::Result<Option<(String, i64)>> {
    if has_admin {
        let _ = setup::remove(dir.root());
        return Ok(None);
    }
    let (code, age) = setup::load_or_create(dir.root())?;
    if age >= SETUP_CODE_LIFETIME_SECS {
        let code = setup::replace(dir.root())?;
        return Ok(Some((code, now)));
    }
    Ok(Some((code, now - age)))
}

/// Writes a replaced setup code to its file and logs it, where the admin
/// reads it (the journal), on a `setup code: ` line like the first one.
async fn announce_setup_code(state: &AppState, code: String, why: Replaced) {
    let dir = state.config.data_dir.clone();
    let line = format!("{code}\n");
    let written = tokio::task::spawn_blocking(move || {
        crate::datadir::write_private_file(&setup::code_path(&dir), line.as_bytes())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!("could not write the new setup code to the setup-code file");
    }
    tracing::warn!(
        "a new setup code was made: {}; the old one no longer works",
        why.describe()
    );
    tracing::info!("setup code: {code}");
}

/// Replaces the setup code when it has expired (called by the background
/// jobs, so the newest line in the log is always the live code).
pub async fn renew_setup_code(state: &AppState) {
    if let Some((code, why)) = state.accounts.expire_setup_code(state.now()) {
        announce_setup_code(state, code, why).await;
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
/// The password rule (`auth::password::check_rule`) off the async
/// threads, as it may ask a separate process; a broken rule is
/// [`Code::WeakPassword`].
pub(crate) async fn check_password(password: &str, username: &str, household: &str) -> Result<()> {
    let (pw, un, hh) = (
        password.to_owned(),
        username.to_owned(),
        household.to_owned(),
    );
    blocking(move || password::check_rule(&pw, &un, &hh))
        .await?
        .map_err(|e| Code::WeakPassword.invalid(e))
}

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

/// Checks a setup code typed at first-run setup (or with a restore on the
/// setup page), throttled per address and network: `409` once an admin
/// exists, `429` while the address waits, `403` for a wrong or expired
/// code. A right code clears the address's wrong guesses; the code stays
/// live until setup (or a restore) is done.
pub async fn check_setup_code(state: &AppState, client: &Client, code: &str) -> Result<()> {
    let now = state.now();
    let accounts = &state.accounts;
    if is_set_up(state).await? {
        return Err(already_set_up());
    }
    // One device's wrong codes block only its own address; the code itself
    // is replaced after SETUP_CODE_MAX_WRONG wrong guesses from anywhere.
    let (addr_key, net_key) = (
        Guess::Address(&client.ip).key(),
        Guess::Network(&client.ip).key(),
    );
    let reserved = crate::auth::throttle::reserve_all(
        &[
            (&accounts.setup_addr, &[&addr_key]),
            (&accounts.setup_net, &[&net_key]),
        ],
        now,
    );
    if let Err(wait) = reserved {
        return Err(Error::too_many(
            format!("too many wrong setup codes; wait {}", seconds(wait)),
            wait,
        ));
    }
    let given = setup::normalise(code);
    let (verdict, replaced) = accounts.check_setup_code(&given, now);
    if let Some((code, why)) = replaced {
        announce_setup_code(state, code, why).await;
    }
    match verdict {
        // Knowing the code is all setup asks: the address is cleared.
        CodeVerdict::Right => {
            accounts.setup_addr.succeed(&addr_key);
            accounts.setup_net.refund(&[&net_key]);
        }
        CodeVerdict::Wrong => {
            tracing::warn!(client = %client.ip, "wrong setup code");
            return Err(Error::new(
                Code::WrongSetupCode,
                "that setup code is wrong; read the newest one from the hub's log (journalctl -u hearth) or its setup-code file",
            ));
        }
        CodeVerdict::Expired => {
            return Err(Error::new(
                Code::SetupCodeExpired,
                format!(
                    "that setup code has expired (a code works for {} hours); the hub has made a new one: read it from its log (journalctl -u hearth) or its setup-code file",
                    SETUP_CODE_LIFETIME_SECS / 3600
                ),
            ));
        }
    }
    Ok(())
}

/// First-run setup: checks the code (throttled), makes the household and
/// its first admin, forgets the code. Returns the admin's username.
pub async fn set_up(state: &AppState, client: &Client, form: SetupForm) -> Result<Username> {
    let now = state.now();
    check_setup_code(state, client, &form.setup_code).await?;
    let household = DisplayName::parse(&form.household)
        .map_err(|e| Error::new(Code::InvalidHousehold, format!("household name: {e}")))?;
    let username = Username::parse(&form.username).map_err(|e| Code::InvalidUsername.invalid(e))?;
    check_password(&form.password, username.as_str(), household.as_str()).await?;
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
    setup_done(state, household.as_str());
    tracing::info!(username = %username, "setup done; the first admin exists");
    Ok(username)
}

/// The hub has its household (made at setup, or restored from a backup):
/// the setup code stops working and its file goes, and mDNS takes the
/// household's name.
pub(crate) fn setup_done(state: &AppState, household: &str) {
    if let Ok(mut g) = state.accounts.setup_code.lock() {
        *g = None;
    }
    if let Err(e) = setup::remove(&state.config.data_dir) {
        tracing::warn!(error = %e, "could not remove the setup-code file");
    }
    if let Some(d) = &state.discovery {
        let _ = d.rename(household);
    }
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
    /// Anything from one source address (an IPv4-mapped one as the IPv4).
    Address(&'a str),
    /// Anything from one network: an IPv6 address's /64 (an IPv4 address
    /// is its own network).
    Network(&'a str),
}

impl Guess<'_> {
    /// The throttle's key.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Account(username) => format!("user:{username}"),
            Self::Address(ip) => format!("addr:{}", crate::auth::throttle::full_address(ip)),
            Self::Network(ip) => format!("net:{}", crate::auth::throttle::address_bucket(ip)),
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
    let net_key = Guess::Network(&ip).key();
    // The guess is charged before any await, so parallel guesses cannot all
    // pass; a right one is cleared or refunded below.
    let reserved = crate::auth::throttle::reserve_all(
        &[
            (&accounts.login_account, &[&account_key]),
            (&accounts.login_addr, &[&addr_key]),
            (&accounts.login_net, &[&net_key]),
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
    accounts.login_net.refund(&[&net_key]);
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
    confirm_password(state, user, current).await?;
    let now = state.now();
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

/// Checks `user`'s own password before a grave act (changing it, deleting
/// the household), throttled like a sign-in: `403 wrong_password`.
pub async fn confirm_password(state: &AppState, user: &User, given: String) -> Result<()> {
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
    if !blocking(move || password::verify(&given, &stored)).await? {
        return Err(Error::new(
            Code::WrongPassword,
            "the current password is wrong",
        ));
    }
    throttle.refund(&[&key]);
    Ok(())
}

/// Back to first-run setup after the household was deleted: a new setup
/// code, written to its file and printed in the log as at a first start,
/// and live at once (no restart).
pub fn start_over(state: &AppState) -> Result<String> {
    let dir = &state.config.data_dir;
    setup::remove(dir).map_err(|e| Error::internal(e.into()))?;
    // The second value is the code's age (0 for the new one made here).
    let (code, age) = setup::load_or_create(dir).map_err(|e| Error::internal(e.into()))?;
    if let Ok(mut g) = state.accounts.setup_code.lock() {
        *g = Some(LiveCode {
            code: code.clone(),
            issued_at: state.now() - age,
            wrong: 0,
        });
    }
    tracing::info!("setup code: {code}");
    Ok(code)
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
    check_password(&new, &user.username, &household).await?;
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
    check_password(&pw, username.as_str(), &household).await?;
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

/// A member changes the name shown for them on messages and in the menu
/// (1 to 64 characters; it starts as the username). Their messages show
/// the new name at once, those sent before too. Not in the ledger: it is a
/// label, not an act on the household. Returns the member as changed.
pub async fn set_display_name(state: &AppState, by: &User, name: &str) -> Result<User> {
    let name = DisplayName::parse(name).map_err(|e| Code::InvalidName.invalid(e))?;
    let uid = by.id;
    state
        .store
        .write(move |tx| store::users::set_display_name(tx, uid, name.as_str()))
        .await?;
    state
        .store
        .read(move |c| store::users::by_id(c, uid))
        .await?
        .ok_or_else(|| Error::not_found("no such member"))
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

    #[test]
    fn guesses_count_per_address_and_per_ipv6_slash_64() {
        let key = |g: Guess<'_>| g.key();
        assert_eq!(
            key(Guess::Address("2001:db8:1:2::1")),
            "addr:2001:db8:1:2::1"
        );
        assert_ne!(
            key(Guess::Address("2001:db8:1:2::1")),
            key(Guess::Address("2001:db8:1:2::2"))
        );
        assert_eq!(
            key(Guess::Network("2001:db8:1:2::1")),
            "net:2001:db8:1:2::/64"
        );
        assert_eq!(
            key(Guess::Network("2001:db8:1:2:a:b:c:d")),
            key(Guess::Network("2001:db8:1:2::1")),
            "every address of a /64 shares one network key"
        );
        assert_eq!(
            key(Guess::Address("::ffff:192.168.1.5")),
            "addr:192.168.1.5"
        );
        assert_eq!(key(Guess::Network("192.168.1.5")), "net:192.168.1.5");
        assert_eq!(key(Guess::Account("mum")), "user:mum");
    }

    #[test]
    fn a_setup_code_is_replaced_after_its_lifetime_and_its_last_wrong_guess() {
        let accounts = Accounts::new(Some(("1234-5678".into(), 1000)));
        let check = |given: &str, now| accounts.check_setup_code(given, now);
        for n in 1..SETUP_CODE_MAX_WRONG {
            assert_eq!(check("0000-0000", 1000), (CodeVerdict::Wrong, None), "{n}");
        }
        assert_eq!(check("1234-5678", 1000), (CodeVerdict::Right, None));
        let (verdict, replaced) = check("", 1000);
        assert_eq!(verdict, CodeVerdict::Wrong, "an empty code is wrong");
        assert_eq!(replaced.map(|r| r.1), Some(Replaced::TooManyWrong));
        // The tenth wrong guess (an empty code counts) replaced the code.
        let live = || {
            accounts
                .setup_code
                .lock()
                .map(|g| g.as_ref().map(|l| (l.code.clone(), l.issued_at, l.wrong)))
                .ok()
                .flatten()
                .expect("a live code")
        };
        let (code, issued, wrong) = live();
        assert_ne!(code, "1234-5678");
        assert_eq!((issued, wrong), (1000, 0));
        assert_eq!(
            check("1234-5678", 1001),
            (CodeVerdict::Wrong, None),
            "the old code is dead"
        );
        let (verdict, replaced) = check(&code, 1000 + SETUP_CODE_LIFETIME_SECS - 1);
        assert_eq!(
            (verdict, replaced),
            (CodeVerdict::Right, None),
            "alive to its last second"
        );
        let (verdict, replaced) = check(&code, 1000 + SETUP_CODE_LIFETIME_SECS);
        assert_eq!(verdict, CodeVerdict::Expired);
        let (new, why) = replaced.expect("replaced");
        assert_eq!(why, Replaced::Expired);
        assert_ne!(new, code);
        assert_eq!(live(), (new.clone(), 1000 + SETUP_CODE_LIFETIME_SECS, 0));
        // A wrong code at expiry is wrong, and the code is replaced too.
        let (verdict, replaced) = check("0000-0001", 1000 + 2 * SETUP_CODE_LIFETIME_SECS);
        assert_eq!(verdict, CodeVerdict::Wrong);
        let (newest, why) = replaced.expect("replaced at expiry");
        assert_eq!(why, Replaced::Expired);
        assert_ne!(newest, new);
        // The background renewal replaces only an expired code.
        let at = live().1;
        assert_eq!(
            accounts.expire_setup_code(at + SETUP_CODE_LIFETIME_SECS - 1),
            None
        );
        let (renewed, why) = accounts
            .expire_setup_code(at + SETUP_CODE_LIFETIME_SECS)
            .expect("renewed");
        assert_eq!((live().0, why), (renewed, Replaced::Expired));
        // No code once setup is done: everything is wrong.
        let done = Accounts::new(None);
        assert_eq!(
            done.check_setup_code("1234-5678", 0),
            (CodeVerdict::Wrong, None)
        );
        assert_eq!(done.expire_setup_code(i64::MAX), None);
    }

    #[test]
    fn the_setup_code_file_is_kept_while_young_and_replaced_when_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        let (code, at) = setup_code_at_start(&data, false, 5000)
            .expect("start")
            .expect("a code");
        assert!((4990..=5000).contains(&at), "a new code is made now: {at}");
        let again = setup_code_at_start(&data, false, 5000).expect("restart");
        assert_eq!(
            again.map(|c| c.0),
            Some(code.clone()),
            "a restart keeps the code"
        );
        let path = setup::code_path(dir.path());
        let old = std::time::SystemTime::now()
            - std::time::Duration::from_secs(SETUP_CODE_LIFETIME_SECS as u64 + 60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("age the file");
        let (newer, at) = setup_code_at_start(&data, false, 9000)
            .expect("restart")
            .expect("a code");
        assert_ne!(
            newer, code,
            "a code older than its lifetime is replaced at start"
        );
        assert_eq!(at, 9000);
        let file = std::fs::read_to_string(&path).expect("file");
        assert_eq!(file, format!("{newer}\n"));
        assert_eq!(setup_code_at_start(&data, true, 9000).expect("admin"), None);
        assert!(!path.exists(), "an admin exists: no code file");
    }

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
