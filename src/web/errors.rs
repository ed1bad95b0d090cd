//! Errors on the parents' pages: the HTML form of [`crate::error::Error`]
//! (the site's error page, same status and `Retry-After` as the JSON form)
//! and [`PageError`], what a page handler answers when it does not render:
//! a redirect to sign in, or that error page.
//!
//! The error page reads as a page of the site: a plain headline ("This
//! page does not exist") and what to do, with the status and the hub's
//! message behind "Details". [`html_response`] cannot know who asked (an
//! error is drawn without its request), so it draws the page without a
//! menu and marks the answer; the [`in_layout`] middleware then draws it
//! again inside the caller's own layout, menu and unread count included.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpResponse, ResponseError, web};

use super::caller::{Caller, PageCaller};
use crate::error::Error;
use crate::http::Surface;
use crate::state::AppState;

/// What an HTML error page showed, kept in the answer's extensions so that
/// [`in_layout`] can draw it again.
#[derive(Debug, Clone)]
struct Shown {
    status: StatusCode,
    message: String,
}

/// The HTML answer for an error. A 5xx logs its chain once and shows a request id.
pub fn html_response(e: &Error) -> HttpResponse {
    let status = e.status();
    let message = e.shown_message();
    let html = super::pages::render_error_page(None, status.as_u16(), reason(status), &message);
    let mut resp = e
        .response_builder()
        .content_type("text/html; charset=utf-8")
        .body(html);
    resp.extensions_mut().insert(Shown { status, message });
    resp
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// Draws an HTML error page again inside the caller's layout: the menu when
/// signed in, the household's name either way. Should that fail (say the
/// store is what failed), the page drawn first stays.
pub async fn in_layout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?.map_into_boxed_body();
    let shown = res.response().extensions().get::<Shown>().cloned();
    let Some(shown) = shown else {
        return Ok(res);
    };
    if Surface::of(res.request().path()) != Surface::Html {
        return Ok(res);
    }
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res);
    };
    let caller = Caller::from_request(res.request(), &mut Payload::None)
        .await
        .ok()
        .map(PageCaller);
    let Ok(l) = super::pages::layout(&state, caller.as_ref(), "", "").await else {
        return Ok(res);
    };
    let html = super::pages::render_error_page(
        Some(l),
        shown.status.as_u16(),
        reason(shown.status),
        &shown.message,
    );
    Ok(res.map_body(|_, _| BoxBody::new(html)))
}

/// Why a page did not render.
#[derive(Debug)]
pub enum PageError {
    /// Go to the login page (or setup, before the first admin exists).
    Redirect(String),
    /// Anything else, as an HTML error page.
    Error(Error),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redirect(to) => write!(f, "redirect to {to}"),
            Self::Error(e) => e.fmt(f),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect(_) => StatusCode::SEE_OTHER,
            Self::Error(e) => e.status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Redirect(to) => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to.as_str()))
                .finish(),
            Self::Error(e) => html_response(e),
        }
    }
}

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self::Error(e.into())
    }
}
