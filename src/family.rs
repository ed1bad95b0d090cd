//! Use cases of family members: who sees which toys ([`Scope`]: parents
//! and admins every toy, a relative only the toys granted to them),
//! invitations (one-time codes `NNNN-NNNN`, 72 hours, stored by their
//! SHA-256), joining with one, the members list, changing a member's role
//! or toys, and removing a member.
//!
//! A removed or demoted member's sessions are deleted and their open event
//! streams end at once; a relative whose toys change keeps their sessions,
//! but their streams end so that the page reconnects with the new toys.
//! The last admin can be neither demoted nor removed. Every act writes its
//! ledger entry in its own transaction. The command line reaches the same
//! functions through [`Ctx`] without a running hub (then streams end within
//! a keep-alive period, when they find their session gone). Nothing here
//! knows HTTP.

use std::collections::HashSet;

use crate::accounts::{self, Client, Guess};
use crate::auth::{password, setup, tokens};
use crate::domain::{Role, ToyId, ToyRowId, Username};
use crate::error::{Code, Error, Result};
use crate::events::{Events, StreamsOf};
use crate::state::AppState;
use crate::store::audit::{self, Action, AuditEntry, Outcome};
use crate::store::members::{self, Invite, NewInvite};
use crate::store::toys::Toy;
use crate::store::users::User;
use crate::store::{self, Store};

/// How long an invitation can be used.
pub const INVITE_HOURS: i64 = 72;

/// Which toys a member sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every toy (parents and admins).
    All,
    /// Only these toys (a relative's grants): row ids.
    Only(HashSet<ToyRowId>),
}

impl Scope {
    /// The member sees this toy.
    pub fn sees(&self, toy: ToyRowId) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(&toy),
        }
    }

    /// The member sees every toy (and pairings, and discovered toys).
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

/// The toys `user` sees.
pub async fn scope(store: &Store, user: &User) -> Result<Scope> {
    if user.role >= Role::Parent {
        return Ok(Scope::All);
    }
    let uid = user.id;
    let toys = store.read(move |c| members::granted_toys(c, uid)).await?;
    Ok(Scope::Only(toys.into_iter().collect()))
}

/// The paired toy `toy_id` when `user` may see it; `404` otherwise, the
/// same answer as for a toy that does not exist, so a relative cannot
/// learn that other toys exist.
pub async fn visible_toy(state: &AppState, user: &User, toy_id: &str) -> Result<Toy> {
    let toy = crate::toys::paired_toy(state, toy_id).await?;
    if scope(&state.store, user).await?.sees(toy.id) {
        Ok(toy)
    } else {
        Err(Error::not_found("no such paired toy"))
    }
}

/// What the family use cases run against: the store, the hub's notifier
/// when the hub runs in this process, and the time.
pub struct Ctx<'a> {
    /// The database.
    pub store: &'a Store,
    /// Open pages' notifier (`None` from the command line).
    pub events: Option<&'a Events>,
    /// Now, Unix seconds.
    pub now: i64,
}

impl<'a> Ctx<'a> {
    /// The context of a running hub.
    pub fn of(state: &'a AppState) -> Self {
        Self {
            store: &state.store,
            events: Some(&state.events),
            now: state.now(),
        }
    }
}

/// Who acts on the members: a signed-in admin, or the command line (which
/// runs as the hub's owner on the Pi itself).
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    /// A member, from a client address.
    Member(&'a User, &'a Client),
    /// `hearth user …`.
    CommandLine,
}

impl Actor<'_> {
    fn name(&self) -> String {
        match self {
            Self::Member(u, _) => u.username.clone(),
            Self::CommandLine => audit::SYSTEM.to_owned(),
        }
    }

    fn client(&self) -> String {
        match self {
            Self::Member(_, c) => c.ip.clone(),
            Self::CommandLine => String::new(),
        }
    }

    fn require_admin(&self) -> Result<()> {
        match self {
            Self::Member(u, _) => accounts::require(u, Role::Admin),
            Self::CommandLine => Ok(()),
        }
    }

    fn entry(&self, now: i64, action: Action, subject: &str, detail: String) -> AuditEntry {
        let mut e = AuditEntry::new(now, Some(self.name()), action, Outcome::Success);
        e.subject = Some(subject.to_owned());
        e.client = self.client();
        e.detail = detail;
        e
    }
}

/// A member as the members list shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Login name.
    pub username: String,
    /// Name shown on messages.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// The toys granted (relatives only; empty for others).
    pub toys: Vec<ToyId>,
    /// When the account was made.
    pub created_at: i64,
    /// The last sign-in, if any.
    pub last_sign_in: Option<i64>,
}

/// Every member with role, granted toys and last sign-in (admins).
pub async fn members(ctx: &Ctx<'_>, by: Actor<'_>) -> Result<Vec<Member>> {
    by.require_admin()?;
    let rows = ctx
        .store
        .read(|c| {
            let toys = store::toys::list_paired(c)?;
            let mut out = Vec::new();
            for m in members::list(c)? {
                let granted: HashSet<ToyRowId> = if m.role == Role::Relative {
                    members::granted_toys(c, m.id)?.into_iter().collect()
                } else {
                    HashSet::new()
                };
                let toys = toys
                    .iter()
                    .filter(|t| granted.contains(&t.id))
                    .map(|t| t.toy_id.clone())
                    .collect();
                out.push(Member {
                    username: m.username,
                    display_name: m.display_name,
                    role: m.role,
                    toys,
                    created_at: m.created_at,
                    last_sign_in: m.last_sign_in,
                });
            }
            Ok(out)
        })
        .await?;
    Ok(rows)
}

/// The row ids of paired toys named by id; `422 invalid_toys` naming the
/// first that is not paired.
async fn toy_rows(store: &Store, ids: &[String]) -> Result<Vec<ToyRowId>> {
    let paired = store.read(store::toys::list_paired).await?;
    ids.iter()
        .map(|id| {
            paired
                .iter()
                .find(|t| t.toy_id.as_str() == id)
                .map(|t| t.id)
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidToys,
                        format!("{id:?} is not a paired toy; choose toys from the toys list"),
                    )
                })
        })
        .collect()
}

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).map_err(|e| Code::InvalidRole.invalid(e))
}

/// Toys are granted to relatives only.
fn check_toys_for(role: Role, toys: &[String]) -> Result<()> {
    if role != Role::Relative && !toys.is_empty() {
        return Err(Error::new(
            Code::InvalidToys,
            "toys are chosen for relatives only; parents and admins see every toy",
        ));
    }
    Ok(())
}

/// A new invitation: its code is shown once, here, and never stored.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// Its id (to list, revoke or re-issue it).
    pub invite_id: String,
    /// The one-time code `NNNN-NNNN`.
    pub code: String,
    /// The join page with the code filled in.
    pub url: String,
    /// Its end (Unix seconds).
    pub expires_at: i64,
    /// A QR code of `url`, as SVG.
    pub qr_svg: String,
}

/// What an admin asks for: a role (`parent` or `relative`) and, for a
/// relative, the toys they will see.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// `parent` or `relative`.
    pub role: String,
    /// Toy ids (relatives only).
    #[serde(default)]
    pub toys: Vec<String>,
}

/// An admin invites a parent or a relative. `base_url` is where the hub
/// was reached (`https://host:port`); the join link is `base_url/join?code=…`.
pub async fn invite(
    ctx: &Ctx<'_>,
    by: Actor<'_>,
    req: InviteRequest,
    base_url: &str,
) -> Result<Invitation> {
    by.require_admin()?;
    let role = parse_role(&req.role)?;
    if role == Role::Admin {
        return Err(Error::new(
            Code::InvalidRole,
            "invite a parent or a relative; an admin can make a member an admin afterwards",
        ));
    }
    check_toys_for(role, &req.toys)?;
    let toys = toy_rows(ctx.store, &req.toys).await?;
    create_invite(ctx, by, role, toys, base_url).await
}

async fn create_invite(
    ctx: &Ctx<'_>,
    by: Actor<'_>,
    role: Role,
    toys: Vec<ToyRowId>,
    base_url: &str,
) -> Result<Invitation> {
    let now = ctx.now;
    let code = setup::new_code();
    let invite_id = hex::encode(rand::random::<[u8; 8]>());
    let expires_at = now + INVITE_HOURS * 3600;
    let hash = tokens::token_hash(&code);
    let (pid, creator) = (invite_id.clone(), by.name());
    let detail = format!(
        "invitation for a {} ({} toys), valid {INVITE_HOURS} hours",
        role.as_str(),
        toys.len()
    );
    let mut entry = by.entry(now, Action::InviteCreated, &invite_id, detail);
    entry.toy = None;
    ctx.store
        .write(move |tx| {
            members::insert_invite(
                tx,
                &NewInvite {
                    public_id: &pid,
                    code_hash: &hash,
                    role,
                    created_by: &creator,
                    now,
                    expires_at,
                    toys: &toys,
                },
            )?;
            audit::record(tx, &entry)
        })
        .await?;
    let url = format!("{}/join?code={code}", base_url.trim_end_matches('/'));
    let qr_svg = crate::qr::svg(&url, "QR code of the join link")
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot draw the QR code: {e}")))?;
    Ok(Invitation {
        invite_id,
        code,
        url,
        expires_at,
        qr_svg,
    })
}

/// Where an invitation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    /// It can be used.
    Open,
    /// Someone joined with it.
    Used,
    /// An admin revoked it.
    Revoked,
    /// Its 72 hours are over.
    Expired,
}

/// An invitation as admins see it (never its code).
#[derive(Debug, Clone)]
pub struct InviteView {
    /// Its row.
    pub invite: Invite,
    /// The toys it grants.
    pub toys: Vec<ToyId>,
    /// Its state now.
    pub state: InviteState,
}

fn invite_state(i: &Invite, now: i64) -> InviteState {
    if i.used_at.is_some() {
        InviteState::Used
    } else if i.revoked_at.is_some() {
        InviteState::Revoked
    } else if i.expires_at <= now {
        InviteState::Expired
    } else {
        InviteState::Open
    }
}

/// Invitations of the last 30 days, newest first (admins).
pub async fn invites(ctx: &Ctx<'_>, by: Actor<'_>) -> Result<Vec<InviteView>> {
    by.require_admin()?;
    let since = ctx.now - 30 * 86_400;
    let (list, paired) = ctx
        .store
        .read(move |c| Ok((members::invites(c, since)?, store::toys::list_paired(c)?)))
        .await?;
    Ok(list
        .into_iter()
        .map(|i| InviteView {
            toys: paired
                .iter()
                .filter(|t| i.toys.contains(&t.id))
                .map(|t| t.toy_id.clone())
                .collect(),
            state: invite_state(&i, ctx.now),
            invite: i,
        })
        .collect())
}

/// An admin revokes an open invitation (`404` for an unknown one, `409`
/// once it was used or revoked).
pub async fn revoke(ctx: &Ctx<'_>, by: Actor<'_>, invite_id: &str) -> Result<()> {
    by.require_admin()?;
    let (id, now) = (invite_id.to_owned(), ctx.now);
    let entry = by.entry(
        now,
        Action::InviteRevoked,
        invite_id,
        "the code no longer works".into(),
    );
    let found = ctx
        .store
        .write(move |tx| {
            let Some(_) = members::invite_by_id(tx, &id)? else {
                return Ok(None);
            };
            let revoked = members::revoke_invite(tx, &id, now)?;
            if revoked {
                audit::record(tx, &entry)?;
            }
            Ok(Some(revoked))
        })
        .await?;
    match found {
        None => Err(Error::not_found("no such invitation")),
        Some(false) => Err(Error::new(
            Code::InvalidInvite,
            "this invitation was already used or revoked",
        )),
        Some(true) => Ok(()),
    }
}

/// An admin re-issues an invitation: the old code stops working (when it
/// still worked) and a new one with the same role and toys is made.
pub async fn reissue(
    ctx: &Ctx<'_>,
    by: Actor<'_>,
    invite_id: &str,
    base_url: &str,
) -> Result<Invitation> {
    by.require_admin()?;
    let id = invite_id.to_owned();
    let old = ctx
        .store
        .read(move |c| members::invite_by_id(c, &id))
        .await?
        .ok_or_else(|| Error::not_found("no such invitation"))?;
    if old.used_at.is_some() {
        return Err(Error::new(
            Code::InvalidInvite,
            "this invitation was used; invite again instead",
        ));
    }
    if invite_state(&old, ctx.now) == InviteState::Open {
        revoke(ctx, by, invite_id).await?;
    }
    create_invite(ctx, by, old.role, old.toys, base_url).await
}

/// What the join page sends.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinForm {
    /// The invitation code.
    pub code: String,
    /// The new member's username.
    pub username: String,
    /// Their password.
    pub password: String,
}

/// Someone joins with an invitation code: throttled like setup (every
/// wrong code blocks its address and the join form, growing), the same
/// password rule; the code works once. Returns the new member's name and role.
pub async fn join(state: &AppState, client: &Client, form: JoinForm) -> Result<(Username, Role)> {
    let now = state.now();
    let throttle = &state.accounts.join;
    let (all_key, addr_key) = ("join".to_owned(), Guess::Address(&client.ip).key());
    let keys = [all_key.as_str(), addr_key.as_str()];
    if let Some(wait) = throttle.check(&keys, now) {
        return Err(Error::too_many(
            format!(
                "too many wrong invitation codes; wait {}",
                accounts::seconds(wait)
            ),
            wait,
        ));
    }
    let given = setup::normalise(&form.code);
    let hash = tokens::token_hash(&given);
    let invite = if given.is_empty() {
        None
    } else {
        state
            .store
            .read(move |c| members::invite_by_code(c, &hash))
            .await?
    };
    let Some(invite) = invite.filter(|i| invite_state(i, now) == InviteState::Open) else {
        throttle.fail(&keys, now);
        let mut e = AuditEntry::new(now, None, Action::JoinFailed, Outcome::Failure);
        e.client = client.ip.clone();
        e.detail = "unknown, used, revoked or expired invitation code".into();
        accounts::record_capped(state, e).await?;
        return Err(Error::new(
            Code::InvalidInvite,
            "this invitation code does not work: it is wrong, used, revoked or older than 72 hours; ask an admin for a new one",
        ));
    };
    let username = Username::parse(&form.username).map_err(|e| Code::InvalidUsername.invalid(e))?;
    let household = accounts::household_name(state).await?;
    accounts::check_password(&form.password, username.as_str(), &household).await?;
    let pw = form.password;
    let hash = accounts::blocking(move || password::hash(&pw))
        .await?
        .map_err(Error::internal)?;
    let (un, ip, role) = (username.to_string(), client.ip.clone(), invite.role);
    let outcome = state
        .store
        .write(move |tx| {
            let Some(uid) = store::users::insert(tx, &un, &un, role, &hash, now)? else {
                return Ok(Err(Code::UsernameTaken));
            };
            if !members::use_invite(tx, invite.rowid, &un, now)? {
                // Used by someone else meanwhile: nothing of this join stays.
                members::delete_user(tx, uid)?;
                return Ok(Err(Code::InvalidInvite));
            }
            members::set_granted_toys(tx, uid, &invite.toys)?;
            let mut e = AuditEntry::new(
                now,
                Some(un.clone()),
                Action::MemberJoined,
                Outcome::Success,
            );
            e.subject = Some(invite.public_id.clone());
            e.client = ip;
            e.detail = format!(
                "joined as {} ({} toys) with an invitation from {}",
                role.as_str(),
                invite.toys.len(),
                invite.created_by
            );
            audit::record(tx, &e)?;
            Ok(Ok(()))
        })
        .await?;
    match outcome {
        Ok(()) => {
            throttle.succeed(&addr_key);
            tracing::info!(username = %username, role = role.as_str(), "a member joined");
            Ok((username, role))
        }
        Err(Code::UsernameTaken) => Err(Error::new(
            Code::UsernameTaken,
            format!("the username {username} is taken; choose another"),
        )),
        Err(_) => Err(Error::new(
            Code::InvalidInvite,
            "this invitation code was just used; ask an admin for a new one",
        )),
    }
}

/// A change to a member: absent fields stay.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    /// `admin`, `parent` or `relative`.
    pub role: Option<String>,
    /// The toys of a relative.
    pub toys: Option<Vec<String>>,
}

fn last_admin() -> Error {
    Error::new(
        Code::LastAdmin,
        "this is the household's last admin; make another member an admin first",
    )
}

async fn member_row(store: &Store, username: &str) -> Result<User> {
    let name = username.to_owned();
    store
        .read(move |c| store::users::by_username(c, &name))
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no member {username}")))
}

/// An admin changes a member's role or a relative's toys. A demoted
/// member's sessions and streams end at once; a relative whose toys change
/// keeps their sessions, but their streams end (the page reconnects with
/// the new toys). The last admin cannot be demoted (`409`).
pub async fn change_member(
    ctx: &Ctx<'_>,
    by: Actor<'_>,
    username: &str,
    change: MemberChange,
) -> Result<Member> {
    by.require_admin()?;
    let user = member_row(ctx.store, username).await?;
    let role = change.role.as_deref().map(parse_role).transpose()?;
    let new_role = role.unwrap_or(user.role);
    if let Some(t) = &change.toys {
        check_toys_for(new_role, t)?;
    }
    let toys = match &change.toys {
        Some(t) => Some(toy_rows(ctx.store, t).await?),
        None => None,
    };
    let demoted = new_role < user.role;
    let (uid, now, old_role) = (user.id, ctx.now, user.role);
    let mut detail = Vec::new();
    if new_role != old_role {
        detail.push(format!(
            "role {} → {}",
            old_role.as_str(),
            new_role.as_str()
        ));
    }
    if let Some(t) = &toys {
        detail.push(format!("{} toys granted", t.len()));
    }
    let entry = by.entry(now, Action::MemberChanged, username, detail.join("; "));
    let done = ctx
        .store
        .write(move |tx| {
            if old_role == Role::Admin && new_role != Role::Admin && members::admin_count(tx)? <= 1
            {
                return Ok(false);
            }
            if new_role != old_role {
                members::set_role(tx, uid, new_role)?;
            }
            if new_role != Role::Relative {
                members::set_granted_toys(tx, uid, &[])?;
            } else if let Some(t) = &toys {
                members::set_granted_toys(tx, uid, t)?;
            }
            if demoted {
                store::sessions::delete_others(tx, uid, None)?;
            }
            audit::record(tx, &entry)?;
            Ok(true)
        })
        .await?;
    if !done {
        return Err(last_admin());
    }
    if let Some(ev) = ctx.events {
        if demoted || change.toys.is_some() || new_role != old_role {
            ev.streams().end(StreamsOf::User(uid, None));
        }
    }
    members(ctx, by)
        .await?
        .into_iter()
        .find(|m| m.username == username)
        .ok_or_else(|| Error::not_found(format!("there is no member {username}")))
}

/// An admin removes a member: their account, sessions and grants go at
/// once, and their event streams end. The last admin cannot be removed.
pub async fn remove_member(ctx: &Ctx<'_>, by: Actor<'_>, username: &str) -> Result<()> {
    by.require_admin()?;
    let user = member_row(ctx.store, username).await?;
    let (uid, role, now) = (user.id, user.role, ctx.now);
    let entry = by.entry(
        now,
        Action::MemberRemoved,
        username,
        format!("was {}", role.as_str()),
    );
    let done = ctx
        .store
        .write(move |tx| {
            if role == Role::Admin && members::admin_count(tx)? <= 1 {
                return Ok(false);
            }
            members::delete_user(tx, uid)?;
            audit::record(tx, &entry)?;
            Ok(true)
        })
        .await?;
    if !done {
        return Err(last_admin());
    }
    if let Some(ev) = ctx.events {
        ev.streams().end(StreamsOf::User(uid, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .write_blocking(|tx| {
                store::household::create(tx, "Home", 0)?;
                store::users::insert(tx, "mum", "Mum", Role::Admin, "x", 0)?;
                store::users::insert(tx, "gran", "Gran", Role::Relative, "x", 0)?;
                Ok(())
            })
            .expect("seed");
        (dir, store)
    }

    #[tokio::test]
    async fn the_last_admin_stays_and_the_command_line_leaves_entries() {
        let (_dir, store) = seeded();
        let ctx = Ctx {
            store: &store,
            events: None,
            now: 100,
        };
        let demote = MemberChange {
            role: Some("parent".into()),
            toys: None,
        };
        let err = change_member(&ctx, Actor::CommandLine, "mum", demote.clone())
            .await
            .expect_err("last admin");
        assert_eq!(err.code, Code::LastAdmin);
        let err = remove_member(&ctx, Actor::CommandLine, "mum")
            .await
            .expect_err("last admin");
        assert_eq!(err.code, Code::LastAdmin);
        let promote = MemberChange {
            role: Some("admin".into()),
            toys: None,
        };
        change_member(&ctx, Actor::CommandLine, "gran", promote)
            .await
            .expect("promoted");
        let m = change_member(&ctx, Actor::CommandLine, "mum", demote)
            .await
            .expect("another admin exists now");
        assert_eq!(m.role, Role::Parent);
        remove_member(&ctx, Actor::CommandLine, "mum")
            .await
            .expect("removed");
        let ledger = store.read(|c| audit::recent(c, 10)).await.expect("ledger");
        let got: Vec<_> = ledger
            .iter()
            .map(|e| (e.action, e.actor.as_deref(), e.subject.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Action::MemberRemoved, Some("system"), Some("mum")),
                (Action::MemberChanged, Some("system"), Some("mum")),
                (Action::MemberChanged, Some("system"), Some("gran")),
            ]
        );
    }

    /// An invitation for `role` with `toys`, by the command line.
    fn request(role: &str, toys: &[&str]) -> InviteRequest {
        InviteRequest {
            role: role.into(),
            toys: toys.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn toys_are_for_relatives_and_must_be_paired() {
        let (_dir, store) = seeded();
        let ctx = Ctx {
            store: &store,
            events: None,
            now: 100,
        };
        for (role, toys, why, code) in [
            (
                "parent",
                &["bear"][..],
                "toys for a parent",
                Code::InvalidToys,
            ),
            ("relative", &["bear"][..], "not paired", Code::InvalidToys),
            ("admin", &[][..], "no admin invitations", Code::InvalidRole),
        ] {
            let err = invite(&ctx, Actor::CommandLine, request(role, toys), "https://h")
                .await
                .expect_err(why);
            assert_eq!(err.code, code, "{why}");
        }
        let req = request("relative", &[]);
        let inv = invite(&ctx, Actor::CommandLine, req, "https://h/")
            .await
            .expect("invited");
        assert_eq!(inv.url, format!("https://h/join?code={}", inv.code));
        assert_eq!(inv.expires_at, 100 + 72 * 3600);
        let listed = invites(&ctx, Actor::CommandLine).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, InviteState::Open);
        let again = reissue(&ctx, Actor::CommandLine, &inv.invite_id, "https://h")
            .await
            .expect("reissued");
        assert_ne!(again.code, inv.code);
        let listed = invites(&ctx, Actor::CommandLine).await.expect("list");
        assert_eq!(
            listed.iter().map(|v| v.state).collect::<Vec<_>>(),
            vec![InviteState::Open, InviteState::Revoked]
        );
        let stored: Vec<u8> = store
            .read(|c| Ok(c.query_row("SELECT code_hash FROM invites LIMIT 1", [], |r| r.get(0))?))
            .await
            .expect("hash");
        assert_eq!(stored.len(), 32, "only the SHA-256 of the code is stored");
    }
}
