//! Errors on the parents' pages: the HTML form of [`crate::error::Error`]
//! (the site's error page, same status and `Retry-After` as the JSON form)
//! and [`PageError`], what a page handler answers when it does not render:
//! a redirect to sign in, or that error page.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

use crate::error::Error;

/// The HTML answer for an error. A 5xx logs its chain once and shows a request id.
pub fn html_response(e: &Error) -> HttpResponse {
    let status = e.status();
    let html = super::pages::render_error_page(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        &e.shown_message(),
    );
    e.response_builder()
        .content_type("text/html; charset=utf-8")
        .body(html)
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
