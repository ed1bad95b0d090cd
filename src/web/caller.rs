//! Who is calling: the [`Caller`] extractor authenticates a household
//! member by bearer token (`Authorization: Bearer …`) or by the session
//! cookie, checks the session's idle and absolute lifetimes, and for
//! cookie-authenticated state changes checks the CSRF token and the origin.
//! [`PageCaller`] does the same for HTML pages and sends the browser to the
//! login (or setup) page instead of answering `401`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, web};

use super::errors::PageError;
use crate::accounts;
use crate::auth::tokens::{self, SESSION_COOKIE};
use crate::domain::{Role, SessionKind};
use crate::error::{Code, Error};
use crate::state::AppState;
use crate::store::{sessions::Session, users::User};

/// A signed-in household member.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their account.
    pub user: User,
    /// Their session.
    pub session: Session,
    /// True when authenticated by the browser cookie (CSRF applies).
    pub via_cookie: bool,
}

impl Caller {
    /// Refuses with `403` unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        crate::accounts::require(&self.user, role)
    }
}

/// The header carrying the CSRF token from scripts.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim().to_owned())
}

/// True when the request's `Origin` (or, lacking it, `Referer`) is this
/// hub, or when a same-origin `Sec-Fetch-Site` vouches for it.
pub fn same_origin(req: &HttpRequest) -> bool {
    // The Host header itself: `connection_info()` would prefer
    // `X-Forwarded-Host`, which any client can set.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ours = format!("https://{host}");
    if let Some(site) = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        // Under `Referrer-Policy: no-referrer` browsers send `Origin: null`
        // even on same-origin posts; `Sec-Fetch-Site` (which pages cannot
        // forge) then tells whether it really came from this hub.
        if origin == "null" {
            return req
                .headers()
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                == Some("same-origin");
        }
        return origin == ours;
    }
    if let Some(referer) = req
        .headers()
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
    {
        return referer == ours || referer.starts_with(&format!("{ours}/"));
    }
    // No Origin and no Referer: not a browser form post from another site
    // (browsers send Origin on every cross-site POST).
    true
}

/// Refuses a state change that a page of another site sent (`403
/// csrf_check_failed`): the one origin check of the plain form posts
/// (setup, sign-in, join) and of the restore upload on the setup page,
/// which carry no session and so no CSRF token.
pub fn check_form_origin(req: &HttpRequest) -> Result<(), Error> {
    if same_origin(req) {
        Ok(())
    } else {
        Err(Error::new(
            Code::CsrfCheckFailed,
            "this form did not come from this hub",
        ))
    }
}

async fn authenticate(req: HttpRequest, csrf_form_token: Option<String>) -> Result<Caller, Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("app state missing")))?;
    let (token, via_cookie) = match bearer(&req) {
        Some(t) => (t, false),
        None => match req.cookie(SESSION_COOKIE) {
            Some(c) => (c.value().to_owned(), true),
            None => {
                return Err(Error::unauthorized(
                    "sign in first: send a bearer token or the session cookie",
                ));
            }
        },
    };
    let kind = if via_cookie {
        SessionKind::Cookie
    } else {
        SessionKind::Bearer
    };
    let (user, session) = accounts::session(&state, &token, kind).await?;
    if via_cookie && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(csrf_form_token)
            .unwrap_or_default();
        if !tokens::tokens_equal(&sent, &session.csrf_token) || !same_origin(&req) {
            return Err(Error::new(
                Code::CsrfCheckFailed,
                "this request did not come from a Hearth page; reload the page and try again",
            ));
        }
    }
    accounts::session_used(&state, &session).await?;
    Ok(Caller {
        user,
        session,
        via_cookie,
    })
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(authenticate(req, None))
    }
}

/// A signed-in member on an HTML page; otherwise a redirect to sign in.
#[derive(Debug, Clone)]
pub struct PageCaller(pub Caller);

/// Where someone not signed in should go.
pub async fn sign_in_location(state: &AppState) -> Result<String, Error> {
    let setup_done = accounts::is_set_up(state).await?;
    Ok(if setup_done {
        "/login".into()
    } else {
        "/setup".into()
    })
}

impl FromRequest for PageCaller {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match authenticate(req.clone(), None).await {
                Ok(c) => Ok(PageCaller(c)),
                Err(e) if e.code == Code::Unauthorized => {
                    let state =
                        req.app_data::<web::Data<AppState>>()
                            .cloned()
                            .ok_or_else(|| {
                                PageError::Error(Error::internal(anyhow::anyhow!(
                                    "app state missing"
                                )))
                            })?;
                    let to = sign_in_location(&state).await.map_err(PageError::Error)?;
                    Err(PageError::Redirect(to))
                }
                Err(e) => Err(PageError::Error(e)),
            }
        })
    }
}
