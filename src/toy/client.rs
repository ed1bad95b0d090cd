//! HTTP to the hub: where it is ([`HubAddress`]), how its answers and
//! failures become [`ToyError`]s, and the paired toy API ([`ToyClient`],
//! `docs/toy-protocol.md` section 4).
//!
//! The toy connects to the address mDNS gave (or `--hub`) while TLS checks
//! the host name (the SRV target or `--hub-name`): reqwest's `resolve`
//! override pins the name to that address. Every answer body is read with a
//! size cap, since a hub (or an impostor during pairing) could send anything.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::ToyState;
use super::{ToyError, tls};
use crate::discovery::HubRecord;
use crate::domain::{Hex32, IdempotencyKey};

/// The toy API path of protocol version 1.
pub const DEFAULT_API: &str = "/toy/v1";
/// Largest JSON answer read.
const JSON_LIMIT: usize = 256 * 1024;
/// Largest audio body read (the hub stores at most 16 MiB per message).
const AUDIO_LIMIT: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the hub is and what name its certificate must carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubAddress {
    /// The name TLS checks against the hub's leaf (SRV target, `--hub-name`,
    /// or the `--hub` host); also the URL host.
    pub host: String,
    /// Addresses to connect to; empty means resolve `host` the usual way.
    pub addrs: Vec<IpAddr>,
    /// HTTPS port.
    pub port: u16,
    /// The TXT `api` path, `/toy/v1` by default.
    pub api: String,
    /// TXT `ca` when the hub was found by mDNS: pairing checks the CA against it.
    #[serde(skip)]
    pub ca_sha256: Option<Hex32>,
    /// The local address to connect from; `None` lets the system choose.
    /// For a device with several networks, and for the hub benchmark, which
    /// plays a thousand toys from one machine, each from its own loopback
    /// address (the hub caps connections per client address).
    #[serde(skip)]
    pub local_addr: Option<IpAddr>,
}

impl HubAddress {
    /// The hub of an mDNS record.
    pub fn from_record(r: &HubRecord) -> Self {
        Self {
            host: r.host.trim_end_matches('.').to_owned(),
            addrs: r.addrs.clone(),
            port: r.port,
            api: clean_api(&r.api),
            ca_sha256: Some(r.ca_sha256),
            local_addr: None,
        }
    }

    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6). `name`, when given, is the
    /// name TLS checks (and the host used in URLs); the connection still
    /// goes to `HOST`.
    pub fn parse(hub: &str, name: Option<&str>) -> Result<Self, ToyError> {
        let bad = || {
            ToyError::Local(format!(
                "--hub {hub:?} is not HOST:PORT (e.g. 192.168.1.20:8443 or hearth.local:8443)"
            ))
        };
        let (host, addrs, port) = match hub.parse::<SocketAddr>() {
            Ok(sa) => (sa.ip().to_string(), vec![sa.ip()], sa.port()),
            Err(_) => {
                let (h, p) = hub.rsplit_once(':').ok_or_else(bad)?;
                let port = p.parse::<u16>().map_err(|_| bad())?;
                if h.is_empty() || h.contains(['/', '@', '[', ']', ' ']) {
                    return Err(bad());
                }
                (h.trim_end_matches('.').to_owned(), Vec::new(), port)
            }
        };
        let host = match name {
            Some(n) if !n.trim().is_empty() => n.trim().trim_end_matches('.').to_owned(),
            _ => host,
        };
        let a = Self {
            host,
            addrs,
            port,
            api: DEFAULT_API.into(),
            ca_sha256: None,
            local_addr: None,
        };
        a.base_url()?;
        Ok(a)
    }

    /// `https://host:port{api}`.
    pub(super) fn base_url(&self) -> Result<Url, ToyError> {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        Url::parse(&format!("https://{host}:{}{}", self.port, self.api)).map_err(|e| {
            ToyError::Local(format!(
                "the hub address {host}:{} is not usable: {e}",
                self.port
            ))
        })
    }

    /// An HTTP client that talks to this hub with the given TLS configuration.
    pub(super) fn http_client(
        &self,
        tls: rustls::ClientConfig,
    ) -> Result<reqwest::Client, ToyError> {
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hearth-toy/", env!("CARGO_PKG_VERSION")))
            .local_address(self.local_addr);
        if self.host.parse::<IpAddr>().is_err() && !self.addrs.is_empty() {
            let addrs: Vec<SocketAddr> = self
                .addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.port))
                .collect();
            b = b.resolve_to_addrs(&self.host, &addrs);
        }
        b.build()
            .map_err(|e| ToyError::Local(format!("cannot build the HTTP client: {}", chain(&e))))
    }
}

/// An mDNS `api` value we are willing to put in a URL; anything odd falls
/// back to the protocol's default.
fn clean_api(api: &str) -> String {
    let api = api.trim_end_matches('/');
    let ok = api.starts_with('/')
        && api.len() <= 64
        && api
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if ok {
        api.to_owned()
    } else {
        DEFAULT_API.to_owned()
    }
}

/// Appends path segments (each percent-encoded) to the base URL.
pub(super) fn url_with(base: &Url, segments: &[&str]) -> Result<Url, ToyError> {
    let mut u = base.clone();
    u.path_segments_mut()
        .map_err(|_| ToyError::Local("the hub URL cannot take a path".into()))?
        .extend(segments);
    Ok(u)
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The first rustls error in an error's causes. `io::Error` hides its inner
/// error from `source()` (and transports nest them), so each one is opened
/// explicitly.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            return find_rustls(inner);
        }
        cur = c.source();
    }
    None
}

/// Maps a transport failure. A TLS alert about our certificate means the
/// hub does not know it: the protocol says treat it like `401`.
pub(super) fn classify(e: reqwest::Error) -> ToyError {
    use rustls::AlertDescription as A;
    match find_rustls(&e) {
        Some(rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::CertificateRequired),
        )) => ToyError::NotPaired(format!(
            "the hub refused the toy's certificate (TLS alert {a:?})"
        )),
        Some(rustls::Error::InvalidCertificate(why)) => ToyError::HubIdentity(format!("{why:?}")),
        _ if e.is_decode() => ToyError::Protocol(chain(&e)),
        _ => ToyError::Network(chain(&e)),
    }
}

/// Keeps printable characters of hub-supplied text and cuts it, so it
/// cannot smuggle terminal escapes into the toy's output.
pub(crate) fn printable(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Reads a body up to `limit` bytes.
pub(super) async fn read_capped(mut resp: Response, limit: usize) -> Result<Vec<u8>, ToyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ToyError::Protocol(format!(
            "the answer is larger than {limit} bytes"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if out.len() + chunk.len() > limit {
            return Err(ToyError::Protocol(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Turns a non-2xx answer into an error; `removed_on_403` is set on the
/// endpoints that need a client certificate.
pub(super) async fn check(resp: Response, removed_on_403: bool) -> Result<Response, ToyError> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body = read_capped(resp, JSON_LIMIT).await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (
            printable(&b.error.code, 64),
            printable(&b.error.message, 400),
        ),
        Err(_) => (format!("http_{status}"), format!("HTTP status {status}")),
    };
    Err(match status {
        401 if removed_on_403 => ToyError::NotPaired(message),
        403 if removed_on_403 => ToyError::Removed,
        _ => ToyError::Hub {
            status,
            code,
            message,
        },
    })
}

/// Reads a JSON answer.
pub(super) async fn json<T: DeserializeOwned>(resp: Response) -> Result<T, ToyError> {
    let body = read_capped(resp, JSON_LIMIT).await?;
    serde_json::from_slice(&body).map_err(|e| ToyError::Protocol(format!("unexpected JSON: {e}")))
}

/// `GET {api}/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WhoAmI {
    /// The toy id the hub knows.
    pub toy_id: String,
    /// The toy's name on the hub (parents may rename it).
    #[serde(default)]
    pub name: String,
    /// The child's display name, if a parent set one.
    #[serde(default)]
    pub child: Option<String>,
}

/// One message of `GET {api}/inbox`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct InboxMessage {
    /// Opaque id.
    pub id: String,
    /// The sender's display name.
    #[serde(default)]
    pub from: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// Length of the audio.
    #[serde(default)]
    pub duration_ms: u64,
    /// Size of the audio body.
    #[serde(default)]
    pub bytes: u64,
    /// Path of the audio.
    #[serde(default)]
    pub audio: String,
}

#[derive(Deserialize)]
struct Inbox {
    messages: Vec<InboxMessage>,
}

/// The hub's answer to a stored recording.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Recording {
    /// Opaque id.
    pub id: String,
    /// Length of the audio.
    #[serde(default)]
    pub duration_ms: u64,
}

/// How often and how patiently an upload is retried after network errors.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// Longest pause.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A paired toy's connection to its hub: pinned CA, name check, client certificate.
#[derive(Clone, Debug)]
pub struct ToyClient {
    http: reqwest::Client,
    base: Url,
    retry: Retry,
}

impl ToyClient {
    /// A client for `hub` with the toy's credentials; [`ToyError::NotPaired`]
    /// when it holds none.
    pub fn new(state: &ToyState, hub: &HubAddress) -> Result<Self, ToyError> {
        let creds = state
            .credentials()
            .ok_or_else(|| ToyError::NotPaired("the toy holds no client certificate yet".into()))?;
        let config = tls::paired_config(creds, state.key_pem())?;
        Ok(Self {
            http: hub.http_client(config)?,
            base: hub.base_url()?,
            retry: Retry::default(),
        })
    }

    /// Sets the upload retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, ToyError> {
        let resp = req.send().await.map_err(classify)?;
        check(resp, true).await
    }

    /// `GET {api}/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, ToyError> {
        let url = url_with(&self.base, &["whoami"])?;
        json(
            self.send(self.http.get(url).timeout(REQUEST_TIMEOUT))
                .await?,
        )
        .await
    }

    /// `POST {api}/status`.
    pub async fn status(
        &self,
        battery: Option<u8>,
        firmware: Option<&str>,
    ) -> Result<(), ToyError> {
        let url = url_with(&self.base, &["status"])?;
        let mut body = serde_json::Map::new();
        if let Some(b) = battery {
            body.insert("battery".into(), b.min(100).into());
        }
        if let Some(f) = firmware {
            body.insert("firmware".into(), f.into());
        }
        self.send(self.http.post(url).json(&body).timeout(REQUEST_TIMEOUT))
            .await?;
        Ok(())
    }

    /// `GET {api}/inbox?wait=N`: waits up to `wait` seconds (at most 60)
    /// for a message when there is none.
    pub async fn inbox(&self, wait: u64) -> Result<Vec<InboxMessage>, ToyError> {
        let wait = wait.min(60);
        let mut url = url_with(&self.base, &["inbox"])?;
        url.query_pairs_mut().append_pair("wait", &wait.to_string());
        let req = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT + Duration::from_secs(wait));
        let inbox: Inbox = json(self.send(req).await?).await?;
        Ok(inbox.messages)
    }

    /// `GET {api}/messages/{id}/audio`: the Ogg Opus bytes.
    pub async fn fetch_audio(&self, id: &str) -> Result<Vec<u8>, ToyError> {
        let url = url_with(&self.base, &["messages", id, "audio"])?;
        let resp = self
            .send(self.http.get(url).timeout(TRANSFER_TIMEOUT))
            .await?;
        read_capped(resp, AUDIO_LIMIT).await
    }

    /// `POST {api}/messages/{id}/played`.
    pub async fn played(&self, id: &str) -> Result<(), ToyError> {
        let url = url_with(&self.base, &["messages", id, "played"])?;
        self.send(self.http.post(url).timeout(REQUEST_TIMEOUT))
            .await?;
        Ok(())
    }

    /// `POST {api}/recordings` with an idempotency key. Network failures are
    /// retried with the same key (so a recording the hub stored before the
    /// connection broke is not stored twice), per [`Retry`].
    pub async fn upload_recording(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        key: &IdempotencyKey,
    ) -> Result<Recording, ToyError> {
        let url = url_with(&self.base, &["recordings"])?;
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let req = self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header("Idempotency-Key", key.as_str())
                .body(bytes.clone())
                .timeout(TRANSFER_TIMEOUT);
            let result = match self.send(req).await {
                Ok(resp) => json::<Recording>(resp).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.retry.attempts.max(1) => {
                    tracing::info!(attempt, error = %e, "upload failed; retrying with the same idempotency key");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// The content type of an audio file from its first bytes: `audio/wav` for
/// RIFF/WAVE, `audio/ogg` for an Ogg stream, `None` otherwise.
pub fn sniff_audio(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        Some("audio/wav")
    } else if bytes.starts_with(b"OggS") {
        Some("audio/ogg")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_arguments_parse() {
        let a = HubAddress::parse("127.0.0.1:8443", Some("localhost")).expect("parse");
        assert_eq!(a.host, "localhost");
        assert_eq!(a.addrs, vec!["127.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(
            a.base_url().expect("url").as_str(),
            "https://localhost:8443/toy/v1"
        );
        let b = HubAddress::parse("[fe80::1]:443", None).expect("parse");
        assert_eq!(
            b.base_url().expect("url").as_str(),
            "https://[fe80::1]/toy/v1"
        );
        let c = HubAddress::parse("hearth.local.:8443", None).expect("parse");
        assert_eq!(c.host, "hearth.local");
        assert!(c.addrs.is_empty());
        for bad in ["", "hearth.local", "x:99999", ":80", "a/b:1", "user@h:1"] {
            assert!(HubAddress::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_from_the_hub_are_encoded_as_one_segment() {
        let base = Url::parse("https://h:1/toy/v1").expect("url");
        let u = url_with(&base, &["messages", "../../x?y#z", "audio"]).expect("url");
        assert_eq!(u.path(), "/toy/v1/messages/..%2F..%2Fx%3Fy%23z/audio");
        assert_eq!(u.query(), None);
    }

    #[test]
    fn odd_api_paths_fall_back_to_the_default() {
        assert_eq!(clean_api("/toy/v1/"), "/toy/v1");
        assert_eq!(clean_api("toy"), DEFAULT_API);
        assert_eq!(clean_api("/a?b"), DEFAULT_API);
    }

    #[test]
    fn audio_is_sniffed_from_its_header() {
        assert_eq!(sniff_audio(b"RIFF\0\0\0\0WAVEfmt "), Some("audio/wav"));
        assert_eq!(sniff_audio(b"OggS\0\x02"), Some("audio/ogg"));
        assert_eq!(sniff_audio(b"ID3"), None);
        assert_eq!(sniff_audio(b""), None);
    }

    #[test]
    fn hub_text_loses_control_characters() {
        assert_eq!(printable("Mum\x1b[2J\n", 10), "Mum[2J");
    }
}
