//! The one error type of the hub's HTTP surfaces, with stable snake_case
//! codes, mapped once to JSON (`/api`, `/toy`) and once to HTML (pages).
//!
//! A server-side failure (5xx) gets a request id: the full error chain is
//! logged once with that id and the person sees only the id, never the
//! internals.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

/// An error answered to a client.
#[derive(Debug)]
pub struct Error {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable snake_case code for programs.
    pub code: &'static str,
    /// A sentence a person can act on.
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
    /// Extra top-level fields of the JSON body (e.g. `attempts_left`).
    pub extra: Option<(&'static str, serde_json::Value)>,
    /// The cause of a 5xx, logged once and never shown.
    pub source: Option<anyhow::Error>,
}

/// Shorthand for results of request handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            extra: None,
            source: None,
        }
    }

    /// `400`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `401`: no or bad credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `403`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `409`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// `413`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// `415`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// `422`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// `429` with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// `507`.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the hub's storage is full; a parent must delete old messages or free disk space",
        )
    }

    /// `500` with a cause that is logged, not shown.
    pub fn internal(source: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on the hub",
        );
        e.source = Some(source);
        e
    }

    /// Adds a top-level field to the JSON body.
    pub fn with_extra(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra = Some((key, value));
        self
    }

    /// For a 5xx: logs the full chain once and returns the request id to show.
    fn log_once(&self) -> Option<String> {
        if !self.status.is_server_error() {
            return None;
        }
        let id = hex::encode(rand::random::<[u8; 6]>());
        match &self.source {
            Some(src) => {
                tracing::error!(request_id = %id, error = %format!("{src:#}"), "request failed")
            }
            None => tracing::error!(request_id = %id, message = %self.message, "request failed"),
        }
        Some(id)
    }

    fn shown_message(&self, request_id: Option<&str>) -> String {
        match request_id {
            Some(id) => format!("{} (request id {id})", self.message),
            None => self.message.clone(),
        }
    }

    fn base_response(&self) -> actix_web::HttpResponseBuilder {
        let mut b = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            b.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        b.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        b
    }

    /// The JSON form: `{"error": {"code", "message"}}` plus any extra field.
    pub fn to_json_response(&self) -> HttpResponse {
        let id = self.log_once();
        let mut body =
            json!({"error": {"code": self.code, "message": self.shown_message(id.as_deref())}});
        if let (Some((k, v)), Some(obj)) = (&self.extra, body.as_object_mut()) {
            obj.insert((*k).to_owned(), v.clone());
        }
        self.base_response().json(body)
    }

    /// The HTML form, rendered with the site's error page.
    pub fn to_html_response(&self) -> HttpResponse {
        let id = self.log_once();
        let html = crate::web::pages::render_error_page(
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error"),
            &self.shown_message(id.as_deref()),
        );
        self.base_response()
            .content_type("text/html; charset=utf-8")
            .body(html)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.to_json_response()
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => Self::storage_full(),
            other => Self::internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::domain::Invalid> for Error {
    fn from(e: crate::domain::Invalid) -> Self {
        Self::bad_request("invalid_input", e.0)
    }
}

/// The same error for page handlers: rendered as HTML.
#[derive(Debug)]
pub struct PageError(pub Error);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        self.0.to_html_response()
    }
}

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}
