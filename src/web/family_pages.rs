//! The family pages: Members (admins: members, their roles and toys,
//! invitations with their code, link and QR code), Join (anyone on the
//! home network with an invitation code) and Ledger (admins and parents:
//! filters, paging and a CSV link). Changes on the Members page go through
//! `/api/v1` from `static/app.js`; Join is a plain form post.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api;
use super::caller::{PageCaller, check_form_origin};
use super::pages::{Layout, PageResult, form_again, layout, render};
use crate::clock::rfc3339;
use crate::domain::Role;
use crate::family::{self, Actor, Ctx, InviteState, JoinForm};
use crate::http::{Access, Routes};
use crate::ledger::{self, LedgerQuery};
use crate::state::AppState;
use crate::store::audit::Action;
use crate::toys;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/members", Access::Page, members_page);
    r.add(Method::GET, "/join", Access::Public, join_page);
    r.add(Method::POST, "/join", Access::Public, join_post);
    r.add(Method::GET, "/ledger", Access::Page, ledger_page);
}

/// A toy as a choice (checkbox or option).
pub struct ToyChoice {
    /// Its id.
    pub toy_id: String,
    /// Its name.
    pub name: String,
}

/// A member's row on the Members page.
pub struct MemberView {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: &'static str,
    /// Granted toy ids (relatives).
    pub toys: Vec<String>,
    /// Granted toy names, for reading.
    pub toy_names: String,
    /// Last sign-in, RFC 3339, or empty.
    pub last_sign_in: String,
    /// This is the admin looking at the page.
    pub is_self: bool,
}

/// An invitation's row on the Members page.
pub struct InviteRow {
    /// Its id.
    pub id: String,
    /// Role.
    pub role: &'static str,
    /// Toy names.
    pub toys: String,
    /// `open`, `used`, `revoked`, `expired`.
    pub state: &'static str,
    /// Its end, RFC 3339.
    pub expires_at: String,
    /// Who used it.
    pub used_by: String,
    /// It can be revoked.
    pub open: bool,
    /// It can be re-issued.
    pub reissuable: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    l: Layout,
    members: Vec<MemberView>,
    invites: Vec<InviteRow>,
    toys: Vec<ToyChoice>,
}

fn names(ids: &[String], toys: &[ToyChoice]) -> String {
    let v: Vec<&str> = toys
        .iter()
        .filter(|t| ids.contains(&t.toy_id))
        .map(|t| t.name.as_str())
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

async fn members_page(
    state: web::Data<AppState>,
    caller: PageCaller,
    req: HttpRequest,
) -> PageResult {
    let c = api::client(&req);
    let by = Actor::Member(&caller.0.user, &c);
    let ctx = Ctx::of(&state);
    let list = family::members(&ctx, by).await?;
    let invites = family::invites(&ctx, by).await?;
    let toys: Vec<ToyChoice> = toys::paired(&state)
        .await?
        .into_iter()
        .map(|t| ToyChoice {
            toy_id: t.toy.toy_id.to_string(),
            name: t.toy.name,
        })
        .collect();
    let members = list
        .into_iter()
        .map(|m| {
            let ids: Vec<String> = m.toys.iter().map(ToString::to_string).collect();
            MemberView {
                toy_names: names(&ids, &toys),
                is_self: m.username == caller.0.user.username,
                username: m.username,
                role: m.role.as_str(),
                toys: ids,
                last_sign_in: m.last_sign_in.map(rfc3339).unwrap_or_default(),
            }
        })
        .collect();
    let invites = invites
        .into_iter()
        .map(|v| {
            let ids: Vec<String> = v.toys.iter().map(ToString::to_string).collect();
            InviteRow {
                id: v.invite.public_id.clone(),
                role: v.invite.role.as_str(),
                toys: if v.invite.role == Role::Relative {
                    names(&ids, &toys)
                } else {
                    "every toy".into()
                },
                state: match v.state {
                    InviteState::Open => "open",
                    InviteState::Used => "used",
                    InviteState::Revoked => "revoked",
                    InviteState::Expired => "expired",
                },
                expires_at: rfc3339(v.invite.expires_at),
                used_by: v.invite.used_by.clone().unwrap_or_default(),
                open: v.state == InviteState::Open,
                reissuable: v.state != InviteState::Used,
            }
        })
        .collect();
    let l = layout(&state, Some(&caller), "Members", "members").await?;
    render(&MembersPage {
        l,
        members,
        invites,
        toys,
    })
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    l: Layout,
    error: String,
    code: String,
    username: String,
}

#[derive(Deserialize)]
struct JoinQuery {
    code: Option<String>,
}

async fn join_page(state: web::Data<AppState>, q: web::Query<JoinQuery>) -> PageResult {
    let l = layout(&state, None, "Join the household", "").await?;
    let code = q
        .into_inner()
        .code
        .map(|c| crate::auth::setup::normalise(&c))
        .unwrap_or_default();
    render(&JoinPage {
        l,
        error: String::new(),
        code,
        username: String::new(),
    })
}

async fn join_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<JoinForm>,
) -> PageResult {
    check_form_origin(&req)?;
    let form = form.into_inner();
    let (code, username) = (form.code.clone(), form.username.clone());
    match family::join(&state, &api::client(&req), form).await {
        Ok(_) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login?joined=1"))
            .finish()),
        Err(e) if e.status().is_client_error() => {
            let l = layout(&state, None, "Join the household", "").await?;
            let page = JoinPage {
                l,
                error: e.message.clone(),
                code,
                username,
            };
            form_again(&page, &e)
        }
        Err(e) => Err(e.into()),
    }
}

/// A ledger row on the page.
pub struct EntryView {
    /// When, RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: &'static str,
    /// About what.
    pub target: String,
    /// Which toy.
    pub toy: String,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// From which address.
    pub client: String,
    /// More.
    pub detail: String,
}

/// An option of a filter.
pub struct Opt {
    /// Its value.
    pub value: String,
    /// What people read.
    pub label: String,
    /// The current choice.
    pub selected: bool,
}

fn opts(list: impl IntoIterator<Item = (String, String)>, current: &str) -> Vec<Opt> {
    list.into_iter()
        .map(|(value, label)| Opt {
            selected: value == current,
            value,
            label,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    l: Layout,
    entries: Vec<EntryView>,
    actions: Vec<Opt>,
    actors: Vec<Opt>,
    toys: Vec<Opt>,
    /// The query of the next (older) page, or empty.
    older: String,
    /// The query of the CSV link.
    csv: String,
}

/// `a=b&c=d` of the non-empty pairs, percent-encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn ledger_page(
    state: web::Data<AppState>,
    caller: PageCaller,
    q: web::Query<LedgerQuery>,
) -> PageResult {
    let q = q.into_inner();
    let (action, actor, toy) = (
        q.action.clone().unwrap_or_default(),
        q.actor.clone().unwrap_or_default(),
        q.toy.clone().unwrap_or_default(),
    );
    let limit = q
        .limit
        .clone()
        .unwrap_or_else(|| ledger::DEFAULT_LIMIT.to_string());
    let list = ledger::entries(&state.store, &caller.0.user, q).await?;
    let actors = ledger::actors(&state.store, &caller.0.user).await?;
    let toys = toys::paired(&state)
        .await?
        .into_iter()
        .map(|t| (t.toy.toy_id.to_string(), t.toy.name));
    let filters = [
        ("action", action.as_str()),
        ("actor", actor.as_str()),
        ("toy", toy.as_str()),
    ];
    let older = match list.last() {
        Some(last) if list.len().to_string() == limit => {
            let before = last.id.to_string();
            let mut p = filters.to_vec();
            p.push(("before", &before));
            query_string(&p)
        }
        _ => String::new(),
    };
    let entries = list
        .iter()
        .map(|s| {
            let e = &s.entry;
            EntryView {
                at: rfc3339(e.at),
                actor: e.actor.clone().unwrap_or_default(),
                action: e.action.as_str(),
                target: e.subject.clone().unwrap_or_default(),
                toy: e.toy.clone().unwrap_or_default(),
                outcome: e.outcome.as_str(),
                client: e.client.clone(),
                detail: e.detail.clone(),
            }
        })
        .collect();
    let l = layout(&state, Some(&caller), "Ledger", "ledger").await?;
    render(&LedgerPage {
        l,
        entries,
        actions: opts(
            Action::ALL
                .iter()
                .map(|a| (a.as_str().to_owned(), a.as_str().to_owned())),
            &action,
        ),
        actors: opts(actors.into_iter().map(|a| (a.clone(), a)), &actor),
        toys: opts(toys, &toy),
        csv: query_string(&filters),
        older,
    })
}
