//! HTTP plumbing shared by both surfaces (`web` and `toy_api`): the
//! route recorder, the LAN-only guard and the security headers that every
//! response carries.
//!
//! Routes are declared once through [`Routes`], which both registers them
//! with actix and records them with the access they need, so a test can
//! enumerate every route of the app and check that none is left open.

pub mod guard;
pub mod limits;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, web};

use crate::audio::AudioKind;
use crate::domain::IdempotencyKey;
use crate::error::{Code, Error};
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone on the LAN (login, setup, CA certificate, static assets, pairing).
    Public,
    /// A signed-in household member (API: bearer or cookie + CSRF).
    User,
    /// A signed-in household member, HTML page (redirects to login).
    Page,
    /// A paired toy's client certificate.
    Toy,
}

/// A route as recorded.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path pattern, e.g. `/api/v1/toys/{toy_id}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// Registers routes and records them.
pub struct Routes<'a> {
    cfg: Option<&'a mut web::ServiceConfig>,
    /// What was registered.
    pub list: Vec<RouteInfo>,
}

impl<'a> Routes<'a> {
    /// Registers with `cfg`.
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg: Some(cfg),
            list: Vec::new(),
        }
    }

    /// Only records (for [`route_table`]).
    pub fn recorder() -> Routes<'static> {
        Routes {
            cfg: None,
            list: Vec::new(),
        }
    }

    /// Adds one route.
    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, access: Access, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            // HTTP requires HEAD wherever GET is served (RFC 9110, 9.3.2):
            // the same handler answers, actix writes no body for a HEAD,
            // and [`head_without_body`] ends a streamed one at once.
            let route = if method == Method::GET {
                web::route().guard(
                    actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()),
                )
            } else {
                web::method(method.clone())
            };
            cfg.route(path, route.to(handler));
        }
        self.list.push(RouteInfo {
            method,
            path,
            access,
        });
    }
}

/// Which surface answers a path: the JSON APIs (`/api/`, `/toy/`) or the
/// parents' HTML pages (everything else). The one place this is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `{"error": …}` bodies.
    Json,
    /// The site's error page.
    Html,
}

impl Surface {
    /// The surface of `path`.
    pub fn of(path: &str) -> Self {
        if path.starts_with("/api/") || path.starts_with("/toy/") {
            Self::Json
        } else {
            Self::Html
        }
    }
}

/// How the pages draw an error, handed in by `app` as app data so that this
/// module needs nothing from `web`.
#[derive(Clone, Copy)]
pub struct HtmlErrors(pub fn(&Error) -> HttpResponse);

/// An error answered in the form of the surface of the request's path.
pub fn error_response(req: &HttpRequest, err: &Error) -> HttpResponse {
    match (Surface::of(req.path()), req.app_data::<HtmlErrors>()) {
        (Surface::Html, Some(html)) => (html.0)(err),
        _ => err.to_json_response(),
    }
}

/// The audio kind of a request's `Content-Type`, or `415`.
pub fn audio_kind(req: &HttpRequest) -> Result<AudioKind, Error> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    AudioKind::from_content_type(ct).ok_or_else(|| {
        Error::unsupported_media_type(format!(
            "content type {ct:?} is not accepted; send audio/wav (16-bit PCM) or audio/ogg (Ogg Opus)"
        ))
    })
}

/// The `Idempotency-Key` header, if any (`400` when malformed).
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, Error> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                Error::new(Code::InvalidIdempotencyKey, "Idempotency-Key must be ASCII")
            })?;
            IdempotencyKey::parse(s)
                .map(Some)
                .map_err(|e| Code::InvalidIdempotencyKey.invalid(e))
        }
    }
}

/// Whether a request for a message's audio takes it (`GET`) or only looks
/// (`HEAD`, which must change nothing).
pub fn fetch_of(req: &HttpRequest) -> crate::messaging::Fetch {
    if req.method() == Method::HEAD {
        crate::messaging::Fetch::Look
    } else {
        crate::messaging::Fetch::Take
    }
}

/// A request's headers in a map of their own size. actix-http gives every
/// request a header map with room for 16 names (about 6.7 KiB, kept while
/// the request lives); a toy's long-poll or a page's event stream holds
/// its request for minutes, so with 1000 toys waiting that room alone was
/// 6.5 MiB. The outermost middleware, so the request is not shared yet.
pub async fn compact_headers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    compact(req.headers_mut());
    next.call(req).await
}

/// Moves `headers` into a map sized for them when they fill less than half
/// of the room they have; names and values are unchanged, and so is the
/// order of a name's values.
fn compact(headers: &mut header::HeaderMap) {
    if headers.len() * 2 >= headers.capacity() {
        return;
    }
    let room = headers.len_keys();
    let old = std::mem::replace(headers, header::HeaderMap::with_capacity(room));
    for (name, value) in old.iter() {
        headers.append(name.clone(), value.clone());
    }
}

/// The answer to a `HEAD` with a streamed body (the events stream): the
/// same status and headers as the `GET`, and the stream ended at once, so
/// the connection is free again. (For a body of known size actix already
/// writes the headers only.)
pub async fn head_without_body(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let head = req.method() == Method::HEAD;
    let res = next.call(req).await?;
    if head && res.response().body().size() == actix_web::body::BodySize::Stream {
        return Ok(res.map_body(|_, _| actix_web::body::BoxBody::new(EndedStream)));
    }
    Ok(res.map_into_boxed_body())
}

/// A streamed body that has already ended.
struct EndedStream;

impl MessageBody for EndedStream {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Stream
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

/// The LAN-only guard as middleware.
pub async fn lan_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let allowed = match req.app_data::<web::Data<AppState>>() {
        Some(state) if state.config.allow_public_clients => true,
        Some(_) => match req.peer_addr() {
            Some(peer) => guard::is_local(peer.ip()),
            None => true,
        },
        None => true,
    };
    if !allowed {
        let peer = req
            .peer_addr()
            .map(|p| p.ip().to_string())
            .unwrap_or_default();
        tracing::warn!(client = %peer, path = %req.path(), "refused a client outside the home network");
        let err = Error::new(
            Code::OutsideHomeNetwork,
            "this hub only answers devices on its home network; set allow_public_clients = true in hearth.toml if you really mean to expose it",
        );
        let resp = error_response(req.request(), &err);
        let mut resp = req.into_response(resp.map_into_boxed_body());
        let path = resp.request().path().to_owned();
        add_security_headers(&path, resp.headers_mut());
        return Ok(resp);
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    let path = res.request().path().to_owned();
    add_security_headers(&path, res.headers_mut());
    Ok(res)
}

/// The Content Security Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; media-src 'self' blob:; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn add_security_headers(path: &str, h: &mut actix_web::http::header::HeaderMap) {
    let set =
        |h: &mut actix_web::http::header::HeaderMap, name: header::HeaderName, v: &'static str| {
            h.insert(name, HeaderValue::from_static(v));
        };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        "microphone=(self), camera=(), geolocation=()",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !path.starts_with("/static/") && !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
}

/// Reads a request body of at most `limit` bytes: a `Content-Length` over
/// the limit is refused before reading, a chunked body as soon as it
/// passes the limit. A body that does not arrive by [`body_deadline`] is
/// `408 body_timeout`.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, crate::error::Error> {
    use futures_util::StreamExt;
    let too_large = || {
        Error::too_large(format!(
            "the body is larger than the {} allowed here",
            human_size(limit)
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared {
        if len > limit {
            return Err(too_large());
        }
    }
    let deadline = body_deadline(declared.unwrap_or(limit));
    let read = async {
        let mut buf = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                Error::new(Code::BadBody, format!("the body could not be read: {e}"))
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            Code::BodyTimeout,
            format!(
                "the body did not arrive within {} s; send it again on a better connection",
                deadline.as_secs()
            ),
        )),
    }
}

/// Time allowed for any body before the rate counts.
pub const BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// The slowest a body may arrive, in bytes per second, after the grace.
pub const BODY_MIN_RATE: usize = 8 * 1024;

/// How long a body of `len` bytes may take to arrive: a slow body holds a
/// connection and a file descriptor, so it gets [`BODY_GRACE`] plus the
/// time at [`BODY_MIN_RATE`] (18 s for 64 KiB of JSON).
pub fn body_deadline(len: usize) -> std::time::Duration {
    BODY_GRACE + std::time::Duration::from_secs((len / BODY_MIN_RATE) as u64)
}

/// `16 MiB`, `16 KiB`…
pub fn human_size(n: usize) -> String {
    if n >= 1 << 30 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{} KiB", n >> 10)
    }
}

/// Largest JSON body of the APIs.
pub const JSON_LIMIT: usize = 64 * 1024;

/// Parses a JSON body, `400 invalid_json` with the parser's words when malformed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, crate::error::Error> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            Code::InvalidJson,
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

/// A JSON request body of at most `LIMIT` bytes (`415` without
/// `Content-Type: application/json`, `413` beyond the limit, `400` when
/// malformed). Put it after the authenticating extractor, so a request
/// without credentials is refused before its body is read.
pub struct Json<T, const LIMIT: usize = JSON_LIMIT>(pub T);

/// The request declares a JSON body: `Content-Type: application/json`,
/// with or without parameters such as `charset=utf-8`, in any case.
pub fn is_json(req: &actix_web::HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

impl<T: serde::de::DeserializeOwned + 'static, const LIMIT: usize> FromRequest for Json<T, LIMIT> {
    type Error = crate::error::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let req = req.clone();
        let payload = web::Payload::from_request(&req, payload);
        Box::pin(async move {
            // Refused before reading: a cross-site form can post
            // `text/plain` without a preflight, never `application/json`.
            if !is_json(&req) {
                return Err(Error::unsupported_media_type(
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            let payload = payload.await.map_err(|e| {
                Error::new(Code::BadBody, format!("the body could not be read: {e}"))
            })?;
            let body = read_body(&req, payload, LIMIT).await?;
            parse_json(&body).map(Json)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName};

    /// Every (name, value), by name (a hash map has no order of names), a
    /// name's values in their order.
    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[test]
    fn compact_keeps_every_header_in_a_map_of_their_size() {
        let mut h = HeaderMap::with_capacity(16);
        h.append(header::HOST, HeaderValue::from_static("hearth.local"));
        h.append(header::ACCEPT, HeaderValue::from_static("text/html"));
        h.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        let toy = HeaderName::from_static("x-toy");
        h.append(toy, HeaderValue::from_static("bear"));
        let before = pairs(&h);
        assert!(h.capacity() >= 16);
        compact(&mut h);
        assert_eq!(pairs(&h), before, "the same names and values");
        assert!(h.capacity() < 8, "room for 3 names: {}", h.capacity());
        assert_eq!(h.get_all(header::ACCEPT).count(), 2);
    }

    #[test]
    fn compact_leaves_a_map_that_is_at_least_half_full() {
        let mut h = HeaderMap::with_capacity(4);
        for i in 0..h.capacity() {
            let name = HeaderName::try_from(format!("x-{i}")).expect("name");
            h.append(name, HeaderValue::from_static("v"));
        }
        let (cap, before) = (h.capacity(), pairs(&h));
        compact(&mut h);
        assert_eq!((h.capacity(), pairs(&h)), (cap, before));
    }
}
