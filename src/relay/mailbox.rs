//! The mailbox: an S3-compatible bucket reached over HTTPS. This is the
//! only code in the hub that opens an outbound connection, and only to the
//! configured endpoint (no proxy, no redirects followed).
//!
//! Requests are signed with AWS Signature Version 4 by `rusty-s3` (sans-IO:
//! it only builds presigned URLs) and sent with `reqwest` over rustls with
//! the ring provider; the server is verified against the platform's roots
//! plus, for a self-hosted endpoint, the CA the admin gave. Signatures use
//! the real time of this machine, never the hub's injected clock: the
//! mailbox checks them against its own clock.
//!
//! Failures are classified in [`Failure`] so that the settings page can say
//! what to fix in words a parent understands.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::store::relay::Settings;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take (a clip of a few MiB on a slow uplink).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a presigned URL used by the hub itself lives.
const OWN_URL_LIFETIME: Duration = Duration::from_secs(300);
/// A clock difference beyond which signatures are refused by S3 servers.
const SKEW_LIMIT_SECS: i64 = 600;

/// Why a mailbox request failed, in the terms the settings page explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No connection (name not found, refused, timed out).
    Unreachable(String),
    /// TLS: the server's certificate is not trusted or does not name it.
    Certificate(String),
    /// The access key id is unknown or the secret does not match.
    WrongKey(String),
    /// The bucket does not exist.
    BucketMissing,
    /// This machine's clock and the mailbox's differ too much.
    ClockSkew,
    /// The key may not do this (its permissions).
    Denied(String),
    /// Anything else the mailbox answered.
    Unexpected(String),
}

impl Failure {
    /// The cause in one stable word (`cause` of the API's error body, next
    /// to the sentence of [`Failure::explain`]).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Certificate(_) => "certificate",
            Self::WrongKey(_) => "wrong_key",
            Self::BucketMissing => "bucket_missing",
            Self::ClockSkew => "clock_skew",
            Self::Denied(_) => "denied",
            Self::Unexpected(_) => "unexpected",
        }
    }

    /// A sentence a parent can act on, naming the endpoint.
    pub fn explain(&self, host: &str) -> String {
        match self {
            Self::Unreachable(why) => format!(
                "the mailbox at {host} cannot be reached ({why}); check the endpoint address and that the server is running"
            ),
            Self::Certificate(why) => format!(
                "the mailbox at {host} presented a certificate this hub does not trust ({why}); for a self-hosted server, paste its CA certificate"
            ),
            Self::WrongKey(why) => format!(
                "the mailbox at {host} refused the access key ({why}); check the access key id and the secret key"
            ),
            Self::BucketMissing => format!(
                "the mailbox at {host} has no such bucket; create it or correct the bucket name"
            ),
            Self::ClockSkew => format!(
                "the clock of this hub and the clock of the mailbox at {host} differ by more than 10 minutes; set the hub's time (NTP) and try again"
            ),
            Self::Denied(why) => format!(
                "the mailbox at {host} refused the request ({why}); the key needs GetObject, PutObject, DeleteObject and ListBucket on the prefix"
            ),
            Self::Unexpected(why) => format!("the mailbox at {host} answered unexpectedly: {why}"),
        }
    }
}

/// A configured mailbox, ready to sign and send requests.
pub struct Mailbox {
    bucket: Bucket,
    creds: Credentials,
    prefix: String,
    http: reqwest::Client,
    host: String,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Mailbox")
            .field("host", &self.host)
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The host requests for `settings` go to (the bucket's host when
/// virtual-hosted), as confirmations name it.
pub fn host_for(settings: &Settings) -> Option<String> {
    let endpoint = Url::parse(&settings.endpoint).ok()?;
    let style = if settings.path_style {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    let bucket = Bucket::new(
        endpoint,
        style,
        settings.bucket.clone(),
        settings.region.clone(),
    )
    .ok()?;
    bucket.base_url().host_str().map(str::to_owned)
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = match ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the CA certificate is not valid PEM: {e}"))?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("the CA certificate cannot be used: {e}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

impl Mailbox {
    /// A mailbox for checked `settings` and the secret key.
    pub fn new(settings: &Settings, secret: &str) -> Result<Self, String> {
        let endpoint = Url::parse(&settings.endpoint).map_err(|e| format!("endpoint: {e}"))?;
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint.clone(),
            style,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| format!("the endpoint and bucket do not make a URL: {e}"))?;
        // A plain-http mailbox (loopback or home network) never does TLS:
        // it needs no trust store, so a machine without one can still use it.
        let tls = if endpoint.scheme() == "https" {
            tls_config(settings.ca_cert.as_deref())?
        } else {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let host = bucket.base_url().host_str().unwrap_or_default().to_owned();
        Ok(Self {
            bucket,
            creds: Credentials::new(settings.access_key_id.clone(), secret.to_owned()),
            prefix: settings.prefix.clone(),
            http,
            host,
        })
    }

    /// The host the hub talks to (shown in confirmations and errors).
    pub fn host(&self) -> &str {
        &self.host
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// A presigned GET URL for `rel`, valid for `lifetime`.
    pub fn presign_get(&self, rel: &str, lifetime: Duration) -> Url {
        self.bucket
            .get_object(Some(&self.creds), &self.key(rel))
            .sign(lifetime)
    }

    /// A presigned PUT URL for `rel`, valid for `lifetime`.
    pub fn presign_put(&self, rel: &str, lifetime: Duration) -> Url {
        self.bucket
            .put_object(Some(&self.creds), &self.key(rel))
            .sign(lifetime)
    }

    /// Uploads `body` to `rel`.
    pub async fn put(&self, rel: &str, body: Vec<u8>, content_type: &str) -> Result<(), Failure> {
        let url = self.presign_put(rel, OWN_URL_LIFETIME);
        let r = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        expect_success(r).await.map(|_| ())
    }

    /// Deletes `rel`; an object already gone is no failure.
    pub async fn delete(&self, rel: &str) -> Result<(), Failure> {
        let url = self
            .bucket
            .delete_object(Some(&self.creds), &self.key(rel))
            .sign(OWN_URL_LIFETIME);
        let r = self.http.delete(url).send().await.map_err(classify)?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            // Some servers answer 404 for a missing key; the bucket must exist.
            let text = r.text().await.unwrap_or_default();
            return match s3_error(&text).0.as_deref() {
                Some("NoSuchBucket") => Err(Failure::BucketMissing),
                _ => Ok(()),
            };
        }
        expect_success(r).await.map(|_| ())
    }

    /// Fetches `url` (one of this mailbox's presigned URLs), at most `max`
    /// bytes; `Ok(None)` when the object does not exist, `Err` with
    /// `Unexpected` when it is larger than `max`.
    pub async fn fetch(&self, url: Url, max: usize) -> Result<Option<Vec<u8>>, Failure> {
        let r = self.http.get(url).send().await.map_err(classify)?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            let text = r.text().await.unwrap_or_default();
            return match s3_error(&text).0.as_deref() {
                Some("NoSuchBucket") => Err(Failure::BucketMissing),
                _ => Ok(None),
            };
        }
        let r = expect_success(r).await?;
        if r.content_length().is_some_and(|n| n > max as u64) {
            return Err(Failure::Unexpected(format!(
                "the object is larger than {max} bytes"
            )));
        }
        let mut out = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify)?;
            if out.len() + chunk.len() > max {
                return Err(Failure::Unexpected(format!(
                    "the object is larger than {max} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// Fetches `rel` (at most `max` bytes).
    pub async fn get(&self, rel: &str, max: usize) -> Result<Option<Vec<u8>>, Failure> {
        self.fetch(self.presign_get(rel, OWN_URL_LIFETIME), max)
            .await
    }

    /// The objects under `rel_prefix`: their keys relative to the prefix
    /// and their sizes (at most 1000, which is more than a share has).
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, Failure> {
        let mut action = ListObjectsV2::new(&self.bucket, Some(&self.creds));
        action.with_prefix(self.key(rel_prefix));
        let url = action.sign(OWN_URL_LIFETIME);
        let r = self.http.get(url).send().await.map_err(classify)?;
        let r = expect_success(r).await?;
        let text = r.text().await.map_err(classify)?;
        let parsed = ListObjectsV2::parse_response(&text)
            .map_err(|e| Failure::Unexpected(format!("the object list does not parse: {e}")))?;
        Ok(parsed
            .contents
            .into_iter()
            .filter_map(|c| {
                c.key
                    .strip_prefix(&self.prefix)
                    .map(|k| (k.to_owned(), c.size))
            })
            .collect())
    }

    /// The live check of the settings page: put a probe object, read it
    /// back through a presigned URL (as a relative's browser would), list
    /// the prefix, delete the probe.
    pub async fn check(&self) -> Result<(), Failure> {
        let rel = format!("probe-{}", hex::encode(rand::random::<[u8; 8]>()));
        let body = b"hearth relay probe".to_vec();
        self.put(&rel, body.clone(), "application/octet-stream")
            .await?;
        let got = self.get(&rel, 1024).await;
        let listed = self.list("probe-").await;
        let deleted = self.delete(&rel).await;
        match got? {
            Some(b) if b == body => {}
            Some(_) => {
                return Err(Failure::Unexpected(
                    "the probe object came back changed".into(),
                ));
            }
            None => {
                return Err(Failure::Unexpected(
                    "the probe object could not be read back".into(),
                ));
            }
        }
        listed?;
        deleted
    }
}

/// `(code, message)` of an S3 error body.
fn s3_error(text: &str) -> (Option<String>, Option<String>) {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].trim().to_owned())
    };
    (tag("Code"), tag("Message"))
}

/// The seconds between the mailbox's `Date` header and this machine's clock.
fn skew_secs(r: &reqwest::Response) -> Option<i64> {
    let date = r.headers().get(reqwest::header::DATE)?.to_str().ok()?;
    let t =
        time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822).ok()?;
    Some((t - time::OffsetDateTime::now_utc()).whole_seconds().abs())
}

async fn expect_success(r: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let skewed = skew_secs(&r).is_some_and(|s| s > SKEW_LIMIT_SECS);
    let text = r.text().await.unwrap_or_default();
    let (code, message) = s3_error(&text);
    let said = || {
        let mut s = format!("HTTP {}", status.as_u16());
        if let Some(c) = &code {
            s.push_str(&format!(", {c}"));
        }
        if let Some(m) = &message {
            s.push_str(&format!(": {}", m.chars().take(200).collect::<String>()));
        }
        s
    };
    let lower = message.as_deref().unwrap_or("").to_ascii_lowercase();
    Err(match code.as_deref() {
        Some("RequestTimeTooSkewed") => Failure::ClockSkew,
        _ if skewed => Failure::ClockSkew,
        Some("NoSuchBucket") => Failure::BucketMissing,
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidSignature") => {
            Failure::WrongKey(said())
        }
        // Garage says AccessDenied for an unknown key, with that in words.
        Some("AccessDenied" | "Forbidden")
            if lower.contains("no such key")
                || lower.contains("signature")
                || lower.contains("access key") =>
        {
            Failure::WrongKey(said())
        }
        Some("AccessDenied" | "Forbidden") => Failure::Denied(said()),
        _ if lower.contains("bucket")
            && (lower.contains("not found") || lower.contains("no such")) =>
        {
            Failure::BucketMissing
        }
        _ if status == reqwest::StatusCode::FORBIDDEN => Failure::Denied(said()),
        _ => Failure::Unexpected(said()),
    })
}

/// Classifies a transport error by walking its causes.
fn classify(e: reqwest::Error) -> Failure {
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let all = chain.join(": ");
    let lower = all.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        Failure::Certificate(all)
    } else {
        let last = chain.last().cloned().unwrap_or_else(|| e.to_string());
        Failure::Unreachable(if e.is_timeout() {
            "no answer in time".into()
        } else {
            last
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_are_read() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>Bucket not found: x</Message></Error>";
        assert_eq!(
            s3_error(body),
            (
                Some("NoSuchBucket".into()),
                Some("Bucket not found: x".into())
            )
        );
        assert_eq!(s3_error("nothing"), (None, None));
    }
}
