//! The parents' HTML pages (askama templates in `templates/`, one base
//! layout): setup, login, home, toys, a toy's conversation, account, and
//! the certificate help page. State changes on signed-in pages go through
//! `/api/v1` from `static/app.js` with the CSRF token of the page; only
//! login and setup are plain form posts.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api;
use super::caller::{PageCaller, check_form_origin, sign_in_location};
use super::errors::PageError;
use crate::accounts::{self, SetupForm};
use crate::auth::tokens::SESSION_COOKIE;
use crate::clock::rfc3339;
use crate::domain::SessionKind;
use crate::error::{Code, Error};
use crate::http::{Access, Routes};
use crate::messaging;
use crate::state::AppState;
use crate::store;
use crate::toys::{self, ToyStatus};

pub(super) type PageResult = Result<HttpResponse, PageError>;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/", Access::Page, home);
    r.add(Method::GET, "/setup", Access::Public, setup_page);
    r.add(Method::POST, "/setup", Access::Public, setup_post);
    r.add(Method::GET, "/login", Access::Public, login_page);
    r.add(Method::POST, "/login", Access::Public, login_post);
    r.add(Method::GET, "/toys", Access::Page, toys_page);
    r.add(Method::GET, "/toys/{toy_id}", Access::Page, toy_page);
    r.add(Method::GET, "/account", Access::Page, account_page);
    r.add(Method::GET, "/sharing", Access::Page, sharing_page);
    r.add(Method::GET, "/help/certificate", Access::Public, cert_help);
}

/// What every page's layout needs.
pub struct Layout {
    /// The page title.
    pub title: String,
    /// The household name, when known.
    pub household: String,
    /// The signed-in user's display name, when signed in.
    pub user: Option<String>,
    /// The CSRF token for scripts, when signed in.
    pub csrf: String,
    /// Which navigation entry is current.
    pub nav: &'static str,
    /// The signed-in member's role (`admin`, `parent`, `relative`), or empty.
    pub role: &'static str,
    /// How many children's recordings the signed-in member has not heard
    /// (the menu's count; live updates come from `static/app.js`).
    pub unread: i64,
}

pub(super) fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// A form page shown again with the error that refused it, keeping the
/// error's status and `Retry-After`.
pub(super) fn form_again(page: &impl Template, e: &Error) -> PageResult {
    let body = page.render().map_err(|err| {
        PageError::Error(Error::internal(anyhow::anyhow!("template failed: {err}")))
    })?;
    let mut resp = HttpResponse::build(e.status());
    if let Some(s) = e.retry_after {
        resp.insert_header((header::RETRY_AFTER, s.to_string()));
    }
    Ok(resp.content_type("text/html; charset=utf-8").body(body))
}

pub(super) fn render(t: &impl Template) -> PageResult {
    t.render()
        .map(html)
        .map_err(|e| PageError::Error(Error::internal(anyhow::anyhow!("template failed: {e}"))))
}

pub(super) async fn layout(
    state: &AppState,
    caller: Option<&PageCaller>,
    title: &str,
    nav: &'static str,
) -> Result<Layout, Error> {
    let household = accounts::household_name(state).await?;
    let unread = match caller {
        Some(c) => messaging::unread(state, &c.0.user).await?.total,
        None => 0,
    };
    Ok(Layout {
        title: title.to_owned(),
        household,
        user: caller.map(|c| c.0.user.display_name.clone()),
        csrf: caller
            .map(|c| c.0.session.csrf_token.clone())
            .unwrap_or_default(),
        nav,
        role: caller.map_or("", |c| c.0.user.role.as_str()),
        unread,
    })
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    l: Layout,
    explain: &'a str,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// What a parent reads on an error page: a headline and a sentence saying
/// what to do. The status, its reason and the hub's message (the words a
/// program or a helper needs) go behind "Details".
pub fn error_words(status: u16) -> (&'static str, &'static str) {
    match status {
        401 => ("Please sign in", "Sign in to see this page."),
        403 => (
            "This page is not open to you",
            "Your account cannot see this page. Ask whoever set up the hub if you need it.",
        ),
        404 => (
            "This page does not exist",
            "The link may be old, or what it showed was removed. Start again from the home page.",
        ),
        409 => (
            "That changed meanwhile",
            "Something changed at the same time. Reload the page and try again.",
        ),
        413 => (
            "That is too large",
            "What was sent is larger than the hub accepts.",
        ),
        429 => ("Too many tries", "Wait a moment, then try again."),
        503 => (
            "The hub is busy",
            "It cannot answer right now. Try again in a minute.",
        ),
        500..=599 => (
            "Something went wrong on the hub",
            "It is not your fault. Try again in a minute; if it keeps happening, the details below help whoever looks after the hub.",
        ),
        _ => (
            "That did not work",
            "The hub could not use what was sent. Go back and try again.",
        ),
    }
}

/// The HTML error page, inside `l` (the layout of the caller, or an
/// anonymous one): drawn by `errors::html_response` and again, with the
/// menu, by `errors::in_layout`.
pub fn render_error_page(l: Option<Layout>, status: u16, reason: &str, message: &str) -> String {
    let (title, explain) = error_words(status);
    let mut l = l.unwrap_or_else(|| Layout {
        title: String::new(),
        household: "Hearth".into(),
        user: None,
        csrf: String::new(),
        nav: "",
        role: "",
        unread: 0,
    });
    title.clone_into(&mut l.title);
    ErrorPage {
        l,
        explain,
        status,
        reason,
        message,
    }
    .render()
    .unwrap_or_else(|_| format!("{title}. {status} {reason}: {message}"))
}

/// A paired toy on the home and toys pages.
pub struct ToyView {
    /// Its id.
    pub toy_id: String,
    /// Its name.
    pub name: String,
    /// How it is shown: "Mia's Grizzly", or its name.
    pub title: String,
    /// The child's name, or empty.
    pub child: String,
    /// Online now.
    pub online: bool,
    /// Last call, RFC 3339.
    pub last_seen: String,
    /// Battery text.
    pub battery: String,
    /// Recordings from it the member has not heard.
    pub unread: i64,
    /// Its picture's wire name (`bear`).
    pub picture: &'static str,
    /// Its picture's words (`Bear`).
    pub picture_label: &'static str,
    /// Its picture's path.
    pub picture_src: String,
    /// "Mia’s bear needs charging: battery 12 %", or empty.
    pub battery_warning: String,
    /// Quiet hours switched on.
    pub quiet_on: bool,
    /// Quiet hours' start (`HH:MM`), or empty when never set.
    pub quiet_start: String,
    /// Quiet hours' end (`HH:MM`), or empty when never set.
    pub quiet_end: String,
    /// "… is in quiet hours until 07:00 …" while it is, or empty.
    pub quiet_note: String,
    /// While in quiet hours: when they end, RFC 3339, or empty.
    pub quiet_until: String,
}

/// One choice of the toy page's picture picker.
pub struct PictureChoice {
    /// Wire name.
    pub value: &'static str,
    /// Words.
    pub label: &'static str,
    /// Path of the drawing.
    pub src: String,
    /// The toy's picture now.
    pub checked: bool,
}

fn picture_choices(current: &str) -> Vec<PictureChoice> {
    crate::character::Picture::ALL
        .into_iter()
        .map(|p| PictureChoice {
            value: p.as_str(),
            label: p.label(),
            src: p.src(),
            checked: p.as_str() == current,
        })
        .collect()
}

/// The toys as shown to a member, with their unread counts.
async fn toy_views_for(
    state: &AppState,
    user: &store::users::User,
    toys: &[ToyStatus],
) -> Result<Vec<ToyView>, Error> {
    let unread = messaging::unread(state, user).await?;
    let mut views = toy_views(toys);
    for v in &mut views {
        v.unread = unread
            .toys
            .iter()
            .find(|(id, _)| id.as_str() == v.toy_id)
            .map_or(0, |(_, n)| *n);
    }
    Ok(views)
}

fn toy_views(toys: &[ToyStatus]) -> Vec<ToyView> {
    toys.iter()
        .map(|s| {
            let t = &s.toy;
            ToyView {
                toy_id: t.toy_id.to_string(),
                name: t.name.clone(),
                title: s.title(),
                child: t.child_name.clone().unwrap_or_default(),
                online: s.online,
                last_seen: t.last_seen.map(rfc3339).unwrap_or_default(),
                battery: t
                    .battery
                    .map(|b| format!("{b}%"))
                    .unwrap_or_else(|| "unknown".into()),
                unread: 0,
                picture: s.picture().as_str(),
                picture_label: s.picture().label(),
                picture_src: s.picture().src(),
                battery_warning: s.battery_warning().unwrap_or_default(),
                quiet_on: t.quiet.is_some_and(|q| q.on),
                quiet_start: t.quiet.map(|q| q.start.to_string()).unwrap_or_default(),
                quiet_end: t.quiet.map(|q| q.end.to_string()).unwrap_or_default(),
                quiet_note: s.quiet_note().unwrap_or_default(),
                quiet_until: s.quiet_until.map(rfc3339).unwrap_or_default(),
            }
        })
        .collect()
}

/// A message bubble.
pub struct MessageView {
    /// Public id.
    pub id: String,
    /// Toy id.
    pub toy_id: String,
    /// `to_toy` or `from_toy`.
    pub direction: &'static str,
    /// Sender name.
    pub from: String,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Seconds, one decimal.
    pub duration: String,
    /// State text.
    pub state: &'static str,
    /// A child's recording the member has not heard (the "new" badge).
    pub unheard: bool,
    /// Kept past retention.
    pub keep: bool,
    /// Peaks as comma-separated numbers for the canvas.
    pub peaks: String,
    /// When retention deletes it, RFC 3339, or empty.
    pub expires_at: String,
    /// A child's recording: its toy's picture (`/static/toy-*.svg`); empty
    /// for a message to a toy.
    pub picture_src: String,
}

impl MessageView {
    /// The empty bubble rendered into the page's `<template>`, which
    /// `static/app.js` clones and fills for messages that arrive live.
    fn blank() -> Self {
        Self {
            id: String::new(),
            toy_id: String::new(),
            direction: "",
            from: String::new(),
            created_at: String::new(),
            duration: String::new(),
            state: "",
            unheard: false,
            keep: false,
            peaks: String::new(),
            expires_at: String::new(),
            picture_src: String::new(),
        }
    }
}

/// A message's bubble; `picture` gives the picture of a toy by its id (for
/// a child's recording).
fn message_view(
    m: &store::messages::Message,
    days: Option<u32>,
    picture: impl Fn(&crate::domain::ToyId) -> crate::character::Picture,
) -> MessageView {
    MessageView {
        picture_src: if m.direction == crate::domain::Direction::FromToy {
            picture(&m.toy_id).src()
        } else {
            String::new()
        },
        id: m.public_id.clone(),
        toy_id: m.toy_id.to_string(),
        direction: m.direction.as_str(),
        from: m.sender_name.clone(),
        created_at: rfc3339(m.created_at),
        duration: format!("{:.1}", m.duration_ms as f64 / 1000.0),
        state: m.state.as_str(),
        unheard: m.heard_by_me == Some(false),
        keep: m.keep,
        peaks: m
            .peaks
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        expires_at: match (m.keep, days) {
            (false, Some(d)) => rfc3339(m.created_at + i64::from(d) * 86_400),
            _ => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    l: Layout,
    toys: Vec<ToyView>,
    new_recordings: Vec<MessageView>,
    blank: MessageView,
    pending: usize,
    checklist: Option<crate::onboarding::Checklist>,
}

async fn home(state: web::Data<AppState>, caller: PageCaller) -> PageResult {
    let l = layout(&state, Some(&caller), "Home", "home").await?;
    let toys = toys::visible(&state, &caller.0.user).await?;
    let (msgs, days) = messaging::new_recordings(&state, &caller.0.user).await?;
    let picture = |id: &crate::domain::ToyId| {
        toys.iter().find(|t| &t.toy.toy_id == id).map_or_else(
            || crate::character::Picture::default_for(id),
            |t| t.picture(),
        )
    };
    let new_recordings = msgs
        .iter()
        .map(|m| message_view(m, days, picture))
        .collect();
    // Pairings are news about toys a relative does not see.
    let pending = if caller.0.user.role >= crate::domain::Role::Parent {
        state.pairings.pending(state.now()).len()
    } else {
        0
    };
    render(&HomePage {
        l,
        toys: toy_views_for(&state, &caller.0.user, &toys).await?,
        new_recordings,
        blank: MessageView::blank(),
        pending,
        checklist: crate::onboarding::checklist(&state, &caller.0.user).await?,
    })
}

#[derive(Template)]
#[template(path = "toys.html")]
struct ToysPage {
    l: Layout,
    toys: Vec<ToyView>,
    removed: Vec<RemovedView>,
}

/// A removed toy whose messages are still here, on the toys page.
struct RemovedView {
    toy_id: String,
    name: String,
    removed_at: String,
}

async fn toys_page(state: web::Data<AppState>, caller: PageCaller) -> PageResult {
    let l = layout(&state, Some(&caller), "Toys", "toys").await?;
    let toys = toys::visible(&state, &caller.0.user).await?;
    let removed = toys::removed_with_messages(&state, &caller.0.user)
        .await?
        .into_iter()
        .map(|t| RemovedView {
            toy_id: toys::base_id(&t),
            name: t.name,
            removed_at: t.removed_at.map(rfc3339).unwrap_or_default(),
        })
        .collect();
    render(&ToysPage {
        l,
        toys: toy_views_for(&state, &caller.0.user, &toys).await?,
        removed,
    })
}

#[derive(Template)]
#[template(path = "toy.html")]
struct ToyPage {
    l: Layout,
    toy: ToyView,
    messages: Vec<MessageView>,
    blank: MessageView,
    pictures: Vec<PictureChoice>,
    time_zone: String,
}

async fn toy_page(
    state: web::Data<AppState>,
    caller: PageCaller,
    path: web::Path<String>,
) -> PageResult {
    let status = match toys::status(&state, &caller.0.user, &path).await {
        Ok(s) => s,
        // A removed toy's page explains, and lists what is left of its
        // conversation; a toy that never existed (or is not the caller's
        // to see) stays `404`.
        Err(e) if e.code == Code::NotFound => {
            return removed_toy_page(&state, &caller, &path, e).await;
        }
        Err(e) => return Err(e.into()),
    };
    let (msgs, days) = messaging::conversation(&state, &caller.0.user, &status.toy).await?;
    let l = layout(&state, Some(&caller), &status.title(), "toys").await?;
    let toy = toy_views_for(&state, &caller.0.user, std::slice::from_ref(&status))
        .await?
        .remove(0);
    render(&ToyPage {
        l,
        pictures: picture_choices(toy.picture),
        toy,
        messages: msgs
            .iter()
            .map(|m| message_view(m, days, |_| status.picture()))
            .collect(),
        blank: MessageView::blank(),
        time_zone: crate::character::zone_name(&crate::character::local_zone(), state.now()),
    })
}

#[derive(Template)]
#[template(path = "toy_removed.html")]
struct RemovedToyPage {
    l: Layout,
    toy_id: String,
    name: String,
    removed_at: String,
    messages: Vec<MessageView>,
    blank: MessageView,
}

async fn removed_toy_page(
    state: &AppState,
    caller: &PageCaller,
    toy_id: &str,
    not_paired: Error,
) -> PageResult {
    let Ok(removed) = toys::removed(state, &caller.0.user, toy_id).await else {
        return Err(not_paired.into());
    };
    let days = messaging::retention_days(state).await?;
    let title = format!("{} (removed)", removed.toy.name);
    let l = layout(state, Some(caller), &title, "toys").await?;
    render(&RemovedToyPage {
        l,
        toy_id: removed.toy_id,
        name: removed.toy.name.clone(),
        removed_at: removed.toy.removed_at.map(rfc3339).unwrap_or_default(),
        messages: removed
            .messages
            .iter()
            .map(|m| message_view(m, days, |_| toys::picture_of(&removed.toy)))
            .collect(),
        blank: MessageView::blank(),
    })
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    username: String,
    display_name: String,
    role: &'static str,
}

async fn account_page(state: web::Data<AppState>, caller: PageCaller) -> PageResult {
    let l = layout(&state, Some(&caller), "Account", "account").await?;
    render(&AccountPage {
        l,
        username: caller.0.user.username.clone(),
        display_name: caller.0.user.display_name.clone(),
        role: caller.0.user.role.as_str(),
    })
}

#[derive(Template)]
#[template(path = "sharing.html")]
struct SharingPage {
    l: Layout,
    is_admin: bool,
}

async fn sharing_page(state: web::Data<AppState>, caller: PageCaller) -> PageResult {
    accounts::require(&caller.0.user, crate::domain::Role::Parent)?;
    let l = layout(&state, Some(&caller), "Sharing outside home", "sharing").await?;
    render(&SharingPage {
        l,
        is_admin: caller.0.user.role == crate::domain::Role::Admin,
    })
}

#[derive(Template)]
#[template(path = "cert_help.html")]
struct CertHelpPage {
    l: Layout,
    fingerprint: String,
}

/// Public (a phone opens it before it trusts the hub), with the menu when
/// a member is signed in (the first-run checklist links here).
async fn cert_help(state: web::Data<AppState>, caller: Option<PageCaller>) -> PageResult {
    let l = layout(&state, caller.as_ref(), "Trust this hub", "").await?;
    let fp = state.pki.ca_sha256().to_hex();
    let fingerprint = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    render(&CertHelpPage { l, fingerprint })
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    l: Layout,
    error: String,
    /// What was typed, shown again after an error (never the password).
    setup_code: String,
    household: String,
    username: String,
}

async fn setup_page(state: web::Data<AppState>) -> PageResult {
    if accounts::is_set_up(&state).await? {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login"))
            .finish());
    }
    let l = layout(&state, None, "Set up Hearth", "").await?;
    render(&SetupPage {
        l,
        error: String::new(),
        setup_code: String::new(),
        household: String::new(),
        username: String::new(),
    })
}

async fn setup_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SetupForm>,
) -> PageResult {
    check_form_origin(&req)?;
    let form = form.into_inner();
    let (setup_code, household, username) = (
        form.setup_code.clone(),
        form.household.clone(),
        form.username.clone(),
    );
    match accounts::set_up(&state, &api::client(&req), form).await {
        Ok(_) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login?setup=done"))
            .finish()),
        Err(e) if e.status().is_client_error() && e.code != Code::AlreadySetUp => {
            let l = layout(&state, None, "Set up Hearth", "").await?;
            let page = SetupPage {
                l,
                error: e.message.clone(),
                setup_code,
                household,
                username,
            };
            form_again(&page, &e)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    error: String,
    notice: String,
    username: String,
}

#[derive(Deserialize)]
struct LoginQuery {
    setup: Option<String>,
    restored: Option<String>,
    joined: Option<String>,
}

async fn login_page(state: web::Data<AppState>, q: web::Query<LoginQuery>) -> PageResult {
    let to = sign_in_location(&state).await?;
    if to == "/setup" {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/setup"))
            .finish());
    }
    let l = layout(&state, None, "Sign in", "").await?;
    let notice = if q.setup.is_some() {
        "Your household is ready. Sign in with the account you just made.".into()
    } else if q.restored.is_some() {
        "Your household is back from its backup. Sign in with your account as it was in the backup."
            .into()
    } else if q.joined.is_some() {
        "Welcome to the household. Sign in with the account you just made.".into()
    } else {
        String::new()
    };
    render(&LoginPage {
        l,
        error: String::new(),
        notice,
        username: String::new(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> PageResult {
    check_form_origin(&req)?;
    let form = form.into_inner();
    let client = api::client(&req);
    match accounts::sign_in(
        &state,
        &client,
        &form.username,
        form.password,
        SessionKind::Cookie,
    )
    .await
    {
        Ok(s) => {
            let mut c = actix_web::cookie::Cookie::new(SESSION_COOKIE, s.token);
            c.set_path("/");
            c.set_secure(true);
            c.set_http_only(true);
            c.set_same_site(actix_web::cookie::SameSite::Strict);
            c.set_max_age(actix_web::cookie::time::Duration::seconds(
                s.expires_at - state.now(),
            ));
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/"))
                .cookie(c)
                .finish())
        }
        Err(e) if e.status().is_client_error() => {
            let l = layout(&state, None, "Sign in", "").await?;
            let page = LoginPage {
                l,
                error: e.message.clone(),
                notice: String::new(),
                username: form.username,
            };
            form_again(&page, &e)
        }
        Err(e) => Err(e.into()),
    }
}
