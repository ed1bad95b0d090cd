//! The relay (RELAY.md): the one door out of the home. A parent shares one
//! message with one named contact for a limited time; the hub encrypts the
//! clip with a fresh link secret (RFC 8188, [`ece`]), uploads ciphertext and
//! a static player page to the S3-compatible mailbox the family chose
//! ([`mailbox`], the only code that opens outbound connections), and hands
//! back a link whose fragment carries the key. While a share lives, the hub
//! looks for replies, decrypts and validates them and keeps them awaiting a
//! parent's approval; nothing reaches a toy before that. Stopping a share,
//! its expiry and turning relay off delete every object, retrying failed
//! deletes (they survive restarts in the database).
//!
//! Use cases only: typed input, one transaction per act with its ledger
//! entry, typed outcomes; nothing here knows HTTP.

pub mod ece;
pub mod mailbox;
pub mod player;

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::audio::{self, AudioKind};
use crate::clock::rfc3339;
use crate::datadir::{DataDir, DataFile};
use crate::domain::{Direction, Role};
use crate::error::{Code, Error, Result};
use crate::events::PageEvent;
use crate::messaging::Receipt;
use crate::state::AppState;
use crate::store::audit::{self, Action, AuditEntry, Outcome};
use crate::store::relay::{Reply, Settings, Share, ShareState};
use crate::store::{self, users::User};

pub use mailbox::{Failure, Mailbox};

/// The largest reply the hub downloads.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// The longest a share lives (the SigV4 limit for presigned URLs).
pub const MAX_LIFETIME_HOURS: u32 = 168;
/// A share's lifetime when none is asked for.
pub const DEFAULT_LIFETIME_HOURS: u32 = 72;
/// The longest reply the player records.
pub const MAX_REPLY_MS: u64 = 120_000;
/// Seconds between two looks for replies when none is configured.
pub const DEFAULT_POLL_SECONDS: u32 = 30;
/// The longest a failed delete waits before its next try.
const MAX_DELETE_BACKOFF_SECS: i64 = 3600;

// ---------------------------------------------------------------- settings

/// The settings an admin submits.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsForm {
    /// `https://…`, or `http://` for a loopback or private address.
    pub endpoint: String,
    /// The region (`garage`, `us-east-1`, `auto`, …).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The prefix (default `hearth/`), ending with `/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Path-style URLs (Garage, MinIO).
    #[serde(default)]
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret; may be left out to keep the stored one for the same key id.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// PEM CA of a self-hosted endpoint.
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// Seconds between two looks for replies (1 to 3600, default 30).
    #[serde(default)]
    pub poll_seconds: Option<u32>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(Code::InvalidRelaySettings, msg)
}

/// Whether `host` is a loopback or private address (or `localhost`), where
/// plain `http://` is allowed.
fn private_host(host: &url::Host<&str>) -> bool {
    use std::net::IpAddr;
    let ip = match host {
        url::Host::Domain(d) => return d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(v4) => IpAddr::V4(*v4),
        url::Host::Ipv6(v6) => IpAddr::V6(*v6),
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_graphic())
}

/// Checks a form: the settings to store and the secret, if given.
pub fn check_form(form: SettingsForm) -> Result<(Settings, Option<String>)> {
    let endpoint = reqwest::Url::parse(form.endpoint.trim()).map_err(|e| {
        bad(format!(
            "the endpoint is not a URL ({e}); write e.g. https://s3.example.org"
        ))
    })?;
    let host = endpoint
        .host()
        .ok_or_else(|| bad("the endpoint has no host name"))?;
    match endpoint.scheme() {
        "https" => {}
        "http" if private_host(&host) => {}
        "http" => {
            return Err(bad(
                "the endpoint must use https:// (plain http:// only for a mailbox inside the home or on this machine)",
            ));
        }
        _ => return Err(bad("the endpoint must start with https://")),
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(bad("put the keys in their own fields, not in the endpoint"));
    }
    if endpoint.query().is_some() || endpoint.fragment().is_some() {
        return Err(bad("the endpoint takes no query or fragment"));
    }
    let region = form.region.trim().to_owned();
    if !printable(&region, 64) {
        return Err(bad("the region is required (e.g. us-east-1, garage, auto)"));
    }
    let bucket = form.bucket.trim().to_owned();
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        return Err(bad(
            "the bucket name has 3 to 63 characters: lower-case letters, digits, dots and hyphens",
        ));
    }
    let prefix = form.prefix.unwrap_or_else(|| "hearth/".into());
    let prefix_ok = prefix.len() <= 200
        && prefix.ends_with('/')
        && !prefix.starts_with('/')
        && !prefix.contains("//")
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c));
    if !prefix_ok {
        return Err(bad(
            "the prefix ends with / and has only letters, digits, /, -, _ and . (default hearth/)",
        ));
    }
    let access_key_id = form.access_key_id.trim().to_owned();
    if !printable(&access_key_id, 128) {
        return Err(bad("the access key id is required"));
    }
    let secret = match form.secret_access_key {
        Some(s) if printable(&s, 256) => Some(s),
        Some(_) => return Err(bad("the secret access key has 1 to 256 visible characters")),
        None => None,
    };
    let ca_cert = match form.ca_cert.map(|c| c.trim().to_owned()) {
        Some(c) if c.is_empty() => None,
        Some(c) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let n = CertificateDer::pem_slice_iter(c.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad("the CA certificate is not PEM"))?
                .len();
            if n == 0 || c.len() > 64 * 1024 {
                return Err(bad(
                    "the CA certificate must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)",
                ));
            }
            Some(c)
        }
        None => None,
    };
    let poll_seconds = form.poll_seconds.unwrap_or(DEFAULT_POLL_SECONDS);
    if !(1..=3600).contains(&poll_seconds) {
        return Err(bad("poll_seconds is from 1 to 3600"));
    }
    Ok((
        Settings {
            endpoint: endpoint.as_str().trim_end_matches('/').to_owned(),
            region,
            bucket,
            prefix,
            path_style: form.path_style,
            access_key_id,
            ca_cert,
            poll_seconds,
        },
        secret,
    ))
}

/// The settings' JSON (never the secret): everything for an admin; for a
/// parent only whether relay is on and the host a shared clip goes to.
pub fn settings_json(s: Option<&Settings>, pending_deletes: i64, admin: bool) -> serde_json::Value {
    let host = s.and_then(mailbox::host_for);
    match s {
        None => json!({"configured": false, "pending_deletes": pending_deletes}),
        Some(_) if !admin => json!({"configured": true, "host": host}),
        Some(s) => json!({
            "configured": true,
            "host": host,
            "endpoint": s.endpoint,
            "region": s.region,
            "bucket": s.bucket,
            "prefix": s.prefix,
            "path_style": s.path_style,
            "access_key_id": s.access_key_id,
            "ca_cert": s.ca_cert,
            "poll_seconds": s.poll_seconds,
            "pending_deletes": pending_deletes,
        }),
    }
}

fn secret_path(state: &AppState) -> std::path::PathBuf {
    DataDir::new(&state.config.data_dir).path(DataFile::RelaySecret)
}

async fn read_secret(path: std::path::PathBuf) -> Result<Option<String>> {
    match tokio::fs::read_to_string(&path).await {
        Ok(s) => Ok(Some(s.trim_end_matches('\n').to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::internal(anyhow::anyhow!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// `502 relay_unreachable` with the sentence for a parent and the cause in
/// one word (`"cause": "certificate"`, …) beside the error.
fn relay_error(host: &str, f: &Failure) -> Error {
    Error::new(Code::RelayUnreachable, f.explain(host)).with_extra("cause", json!(f.cause()))
}

/// The saved settings and secret, if relay is on.
async fn saved(state: &AppState) -> Result<Option<(Settings, String)>> {
    let Some(settings) = state.store.read(store::relay::settings).await? else {
        return Ok(None);
    };
    let secret = read_secret(secret_path(state)).await?.ok_or_else(|| {
        Error::new(
            Code::RelayNotConfigured,
            "the relay mailbox's secret key is missing from the data directory; an admin must enter the relay settings again",
        )
    })?;
    Ok(Some((settings, secret)))
}

/// The configured mailbox, if relay is on.
async fn configured(state: &AppState) -> Result<Option<(Settings, Mailbox)>> {
    let Some((settings, secret)) = saved(state).await? else {
        return Ok(None);
    };
    let mb =
        Mailbox::new(&settings, &secret).map_err(|e| Error::new(Code::RelayNotConfigured, e))?;
    Ok(Some((settings, mb)))
}

/// The settings and the number of objects still to delete (parents and
/// admins; [`settings_json`] shows a parent only the host).
pub async fn settings(state: &AppState, by: &User) -> Result<(Option<Settings>, i64)> {
    crate::accounts::require(by, Role::Parent)?;
    Ok(state
        .store
        .read(|c| {
            Ok((
                store::relay::settings(c)?,
                store::relay::pending_deletes(c)?,
            ))
        })
        .await?)
}

fn entry(
    now: i64,
    actor: &str,
    action: Action,
    subject: Option<&str>,
    outcome: Outcome,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Some(actor.to_owned()),
        action,
        subject: subject.map(str::to_owned),
        toy: None,
        client: String::new(),
        outcome,
        detail,
    }
}

/// An admin sets the mailbox: checked live (put, presigned get, list,
/// delete of a probe) before anything is saved.
pub async fn configure(state: &AppState, by: &User, form: SettingsForm) -> Result<Settings> {
    crate::accounts::require(by, Role::Admin)?;
    let (settings, secret) = check_form(form)?;
    let (old, busy) = state
        .store
        .read(|c| {
            let busy = store::relay::shares_in(c, ShareState::Live)?.len()
                + store::relay::shares_in(c, ShareState::Stopping)?.len();
            Ok((store::relay::settings(c)?, busy))
        })
        .await?;
    let secret = match secret {
        Some(s) => s,
        None => match (&old, read_secret(secret_path(state)).await?) {
            (Some(o), Some(s)) if o.access_key_id == settings.access_key_id => s,
            _ => return Err(bad("the secret access key is required")),
        },
    };
    if let Some(o) = &old {
        let moved = o.endpoint != settings.endpoint
            || o.bucket != settings.bucket
            || o.prefix != settings.prefix;
        if moved && busy > 0 {
            return Err(Error::new(
                Code::SharesLive,
                "shares still use the current mailbox: stop them (and let their objects be deleted) before moving relay elsewhere",
            ));
        }
    }
    let mb = Mailbox::new(&settings, &secret).map_err(bad)?;
    let now = state.now();
    let actor = by.username.clone();
    if let Err(f) = mb.check().await {
        let msg = f.explain(mb.host());
        let detail = format!("check of {} failed: {msg}", mb.host());
        let a = actor.clone();
        state
            .store
            .write(move |tx| {
                audit::record(
                    tx,
                    &entry(
                        now,
                        &a,
                        Action::RelaySettingsChanged,
                        None,
                        Outcome::Failure,
                        detail,
                    ),
                )
            })
            .await?;
        return Err(relay_error(mb.host(), &f));
    }
    let path = secret_path(state);
    let s = secret.clone();
    tokio::task::spawn_blocking(move || crate::datadir::write_private_file(&path, s.as_bytes()))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("secret writer: {e}")))?
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot write the relay secret: {e}")))?;
    let saved = settings.clone();
    let detail = format!(
        "mailbox {} bucket {} prefix {} (key {})",
        mb.host(),
        settings.bucket,
        settings.prefix,
        settings.access_key_id
    );
    state
        .store
        .write(move |tx| {
            store::relay::save_settings(tx, &saved, now)?;
            audit::record(
                tx,
                &entry(
                    now,
                    &actor,
                    Action::RelaySettingsChanged,
                    None,
                    Outcome::Success,
                    detail,
                ),
            )
        })
        .await?;
    Ok(settings)
}

/// What `hearth relay check` reports: the stored settings checked live.
pub async fn check_stored(
    store: &store::Store,
    data_dir: &std::path::Path,
) -> anyhow::Result<String> {
    let settings = store.read(store::relay::settings).await?.ok_or_else(|| {
        anyhow::anyhow!("relay is not configured (Settings → Relay, or PUT /api/v1/relay)")
    })?;
    let path = DataDir::new(data_dir).path(DataFile::RelaySecret);
    let secret = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the relay secret {}: {e}", path.display()))?;
    let mb = Mailbox::new(&settings, secret.trim_end_matches('\n')).map_err(anyhow::Error::msg)?;
    mb.check()
        .await
        .map_err(|f| anyhow::anyhow!(f.explain(mb.host())))?;
    Ok(format!(
        "the mailbox at {} works: bucket {}, prefix {} (put, presigned get, list and delete of a probe object)",
        mb.host(),
        settings.bucket,
        settings.prefix
    ))
}

/// An admin turns relay off: every share is stopped and its objects are
/// deleted first; the settings and the secret go only once nothing is left
/// in the mailbox.
pub async fn turn_off(state: &AppState, by: &User) -> Result<()> {
    crate::accounts::require(by, Role::Admin)?;
    let Some((_, mb)) = configured(state).await? else {
        return Ok(());
    };
    let now = state.now();
    let live = state
        .store
        .read(|c| store::relay::shares_in(c, ShareState::Live))
        .await?;
    for s in live {
        end_share(
            state,
            &s,
            now,
            &by.username,
            Action::ShareStopped,
            "relay turned off",
        )
        .await?;
    }
    run_deletes(state, &mb, None).await?;
    let left = state.store.read(store::relay::pending_deletes).await?;
    if left > 0 {
        return Err(Error::new(
            Code::RelayUnreachable,
            format!(
                "every share is stopped, but {left} object(s) could not be deleted from the mailbox at {} yet; relay stays set up until they are gone: try again when the mailbox is reachable",
                mb.host()
            ),
        ));
    }
    let actor = by.username.clone();
    let host = mb.host().to_owned();
    state
        .store
        .write(move |tx| {
            store::relay::clear_settings(tx)?;
            audit::record(
                tx,
                &entry(
                    now,
                    &actor,
                    Action::RelaySettingsChanged,
                    None,
                    Outcome::Success,
                    format!("relay turned off (mailbox {host})"),
                ),
            )
        })
        .await?;
    match tokio::fs::remove_file(secret_path(state)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::internal(anyhow::anyhow!(
            "cannot remove the relay secret: {e}"
        ))),
    }
}

// ------------------------------------------------------------------ shares

/// What a parent asks for when sharing.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareForm {
    /// Who the link is for ("Grandma").
    pub contact: String,
    /// What the player shows as the title.
    #[serde(default)]
    pub title: Option<String>,
    /// 1 to 168 (default 72).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
    /// Reply slots, 0 to 3 (default 1).
    #[serde(default)]
    pub replies: Option<u8>,
}

/// A new share, as the parent is told.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    /// SID.
    pub share_id: String,
    /// The link to hand to the contact.
    pub link: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// The mailbox host the clip went to.
    pub host: String,
    /// The link as a QR code (SVG), drawn on the hub.
    pub qr_svg: String,
}

fn clean_text(s: &str, what: &str, max: usize) -> Result<String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(Error::new(
            Code::InvalidShare,
            format!("{what} has 1 to {max} characters, no control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// The object keys (relative to the prefix) of a share.
fn share_key(sid: &str, name: &str) -> String {
    format!("s/{sid}/{name}")
}

/// The query string of a presigned URL.
fn query_of(url: &reqwest::Url) -> String {
    url.query().unwrap_or_default().to_owned()
}

/// The link as an SVG QR code.
pub fn qr_svg(link: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::L) {
        Ok(code) => code
            .render::<svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

/// A parent shares a message: the clip (Ogg Opus and a 16 kHz WAV copy)
/// and its metadata are encrypted with a new link secret and uploaded with
/// the player; the answer carries the link.
pub async fn share(
    state: &AppState,
    by: &User,
    message_id: &str,
    form: ShareForm,
) -> Result<Created> {
    crate::accounts::require(by, Role::Parent)?;
    let contact = clean_text(&form.contact, "the contact's name", 64)?;
    let title = match form.title.as_deref() {
        Some(t) if !t.trim().is_empty() => clean_text(t, "the title", 100)?,
        _ => "A voice message".to_owned(),
    };
    let hours = form.expires_in_hours.unwrap_or(DEFAULT_LIFETIME_HOURS);
    if !(1..=MAX_LIFETIME_HOURS).contains(&hours) {
        return Err(Error::new(
            Code::InvalidShare,
            "expires_in_hours is from 1 to 168 (7 days)",
        ));
    }
    let replies = form.replies.unwrap_or(1);
    if replies > 3 {
        return Err(Error::new(Code::InvalidShare, "replies is from 0 to 3"));
    }
    let id = message_id.to_owned();
    let found = state
        .store
        .read(move |c| Ok(store::messages::get(c, &id)?.zip(store::messages::audio(c, &id)?)))
        .await?;
    let (msg, ogg) = found.ok_or_else(|| Error::not_found("no such message"))?;
    let Some((_, mb)) = configured(state).await? else {
        return Err(Error::new(
            Code::RelayNotConfigured,
            "sharing outside the home needs a relay mailbox: an admin sets one up under Settings → Relay",
        ));
    };
    let now = state.now();
    let expires_at = now + i64::from(hours) * 3600;
    let lifetime = Duration::from_secs(u64::from(hours) * 3600);
    let sid = hex::encode(rand::random::<[u8; 16]>());
    let k: [u8; 16] = rand::random();
    let page = player::page();
    let player_key = page.key.clone();

    let (ogg_len, duration_ms) = (ogg.len(), msg.duration_ms);
    let ogg_for_wav = ogg.clone();
    let wav = tokio::task::spawn_blocking(move || audio::ogg_to_wav_16k(&ogg_for_wav))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("audio worker failed: {e}")))?
        .map_err(|e| Error::internal(anyhow::anyhow!("stored audio could not be decoded: {e}")))?;

    let a_url = mb.presign_get(&share_key(&sid, "a"), lifetime);
    let w_url = mb.presign_get(&share_key(&sid, "w"), lifetime);
    let m_url = mb.presign_get(&share_key(&sid, "m"), lifetime);
    let player_url = mb.presign_get(&player_key, lifetime);
    let reply_slots: Vec<_> = (1..=replies)
        .map(|n| {
            json!({"slot": n, "put": query_of(&mb.presign_put(&share_key(&sid, &format!("r{n}")), lifetime))})
        })
        .collect();
    let meta = json!({
        "v": 1,
        "sid": sid,
        "contact": contact,
        "title": title,
        "duration_ms": duration_ms,
        "created_at": rfc3339(now),
        "expires_at": rfc3339(expires_at),
        "audio": {"ogg": query_of(&a_url), "wav": query_of(&w_url)},
        "replies": reply_slots,
        "max_reply_ms": MAX_REPLY_MS,
    });
    let meta = serde_json::to_vec(&meta)
        .map_err(|e| Error::internal(anyhow::anyhow!("share metadata: {e}")))?;

    // One clip at a time in memory: each copy is encrypted, sent and dropped.
    let mut uploads: Vec<(String, usize)> = Vec::new();
    let result: std::result::Result<(), Failure> = async {
        mb.put(
            &player_key,
            page.html.clone().into_bytes(),
            "text/html; charset=utf-8",
        )
        .await?;
        uploads.push((player_key.clone(), page.html.len()));
        for (name, plain) in [("a", ogg), ("w", wav), ("m", meta)] {
            let sealed = tokio::task::spawn_blocking(move || ece::encrypt(&k, &plain))
                .await
                .map_err(|e| Failure::Unexpected(format!("encryption worker failed: {e}")))?;
            let len = sealed.len();
            let key = share_key(&sid, name);
            mb.put(&key, sealed, "application/octet-stream").await?;
            uploads.push((key, len));
        }
        Ok(())
    }
    .await;
    let actor = by.username.clone();
    let host = mb.host().to_owned();
    if let Err(f) = result {
        // Whatever reached the mailbox is deleted again (and retried).
        let (sid2, actor2, host2, msg_id) = (
            sid.clone(),
            actor.clone(),
            host.clone(),
            msg.public_id.clone(),
        );
        let why = f.explain(&host);
        let detail = format!("sharing with the mailbox {host2} failed: {why}");
        state
            .store
            .write(move |tx| {
                for n in ["m", "a", "w"] {
                    store::relay::queue_delete(tx, &share_key(&sid2, n), Some(&sid2), now)?;
                }
                audit::record(
                    tx,
                    &entry(
                        now,
                        &actor2,
                        Action::ShareCreated,
                        Some(&msg_id),
                        Outcome::Failure,
                        detail,
                    ),
                )
            })
            .await?;
        run_deletes(state, &mb, Some(now)).await?;
        return Err(relay_error(&host, &f));
    }
    let share = Share {
        share_id: sid.clone(),
        message_id: msg.public_id.clone(),
        toy: Some(msg.toy),
        contact: contact.clone(),
        title,
        created_by: actor.clone(),
        created_at: now,
        expires_at,
        replies_allowed: replies,
        slots_used: 0,
        link_key: Some(k),
        player_key: player_key.clone(),
        state: ShareState::Live,
        ended_at: None,
    };
    let detail = format!(
        "shared with {contact} through {host} until {} ({} reply slot(s)); clip {ogg_len} bytes",
        rfc3339(expires_at),
        replies
    );
    let (sid2, host2) = (sid.clone(), host.clone());
    state
        .store
        .write(move |tx| {
            store::relay::unqueue_delete(tx, &share.player_key)?;
            store::relay::insert_share(tx, &share)?;
            audit::record(
                tx,
                &entry(
                    now,
                    &actor,
                    Action::ShareCreated,
                    Some(&sid2),
                    Outcome::Success,
                    detail,
                ),
            )?;
            for (key, len) in &uploads {
                audit::record(
                    tx,
                    &entry(
                        now,
                        &actor,
                        Action::RelayUpload,
                        Some(&sid2),
                        Outcome::Success,
                        format!("{key}: {len} bytes to {host2}"),
                    ),
                )?;
            }
            Ok(())
        })
        .await?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let link = format!(
        "{player_url}#v1.{sid}.{}.{}",
        b64.encode(k),
        b64.encode(query_of(&m_url))
    );
    crate::messaging::publish(state, message_id).await?;
    Ok(Created {
        share_id: sid,
        qr_svg: qr_svg(&link),
        link,
        expires_at: rfc3339(expires_at),
        host,
    })
}

/// A share's JSON, as in `docs/api.md`.
pub fn share_json(s: &Share) -> serde_json::Value {
    json!({
        "share_id": s.share_id,
        "message_id": s.message_id,
        "contact": s.contact,
        "title": s.title,
        "created_by": s.created_by,
        "created_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at),
        "ended_at": s.ended_at.map(rfc3339),
        "replies_left": if s.state == ShareState::Live { s.replies_left() } else { 0 },
        "state": s.state,
    })
}

/// Every share, newest first (parents and admins).
pub async fn shares(state: &AppState, by: &User) -> Result<Vec<Share>> {
    crate::accounts::require(by, Role::Parent)?;
    Ok(state.store.read(|c| store::relay::shares(c, 500)).await?)
}

/// The live shares of one message (for its bubble).
pub async fn live_shares_of(state: &AppState, message_id: &str) -> Result<Vec<Share>> {
    let id = message_id.to_owned();
    Ok(state
        .store
        .read(move |c| store::relay::live_shares_of(c, &id))
        .await?)
}

/// Ends a live share: its key is forgotten and every object queued for
/// deletion, with its ledger entry, in one transaction.
async fn end_share(
    state: &AppState,
    s: &Share,
    now: i64,
    actor: &str,
    action: Action,
    reason: &str,
) -> Result<bool> {
    let (sid, player_key, actor, reason, contact) = (
        s.share_id.clone(),
        s.player_key.clone(),
        actor.to_owned(),
        reason.to_owned(),
        s.contact.clone(),
    );
    let ended = state
        .store
        .write(move |tx| {
            if !store::relay::end_share(tx, &sid, now, &reason)? {
                return Ok(false);
            }
            for n in ["m", "a", "w", "r1", "r2", "r3"] {
                store::relay::queue_delete(tx, &share_key(&sid, n), Some(&sid), now)?;
            }
            if !store::relay::player_in_use(tx, &player_key, &sid)? {
                store::relay::queue_delete(tx, &player_key, None, now)?;
            }
            audit::record(
                tx,
                &entry(
                    now,
                    &actor,
                    action,
                    Some(&sid),
                    Outcome::Success,
                    format!("share with {contact} ended: {reason}"),
                ),
            )?;
            Ok(true)
        })
        .await?;
    if ended {
        crate::messaging::publish(state, &s.message_id).await?;
    }
    Ok(ended)
}

/// A parent stops a share: its link stops working once its objects are
/// deleted (now, or retried until they are).
pub async fn stop(state: &AppState, by: &User, share_id: &str) -> Result<()> {
    crate::accounts::require(by, Role::Parent)?;
    let id = share_id.to_owned();
    let s = state
        .store
        .read(move |c| store::relay::share(c, &id))
        .await?
        .ok_or_else(|| Error::not_found("no such share"))?;
    if s.state == ShareState::Live {
        end_share(
            state,
            &s,
            state.now(),
            &by.username,
            Action::ShareStopped,
            "stopped by a parent",
        )
        .await?;
    }
    match configured(state).await {
        Ok(Some((_, mb))) => run_deletes(state, &mb, None).await,
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!("relay deletes wait: {e}");
            Ok(())
        }
    }
}

/// Tries the queued deletes (those due at `now`, or all for `None`); a
/// failure waits longer before each next try.
async fn run_deletes(state: &AppState, mb: &Mailbox, now: Option<i64>) -> Result<()> {
    let due = state
        .store
        .read(move |c| store::relay::due_deletes(c, now))
        .await?;
    for d in due {
        let res = mb.delete(&d.object_key).await;
        let t = state.now();
        let key = d.object_key.clone();
        match res {
            Ok(()) => {
                let host = mb.host().to_owned();
                state
                    .store
                    .write(move |tx| {
                        store::relay::unqueue_delete(tx, &key)?;
                        audit::record(
                            tx,
                            &AuditEntry {
                                at: t,
                                actor: Some(audit::SYSTEM.to_owned()),
                                action: Action::RelayDelete,
                                subject: d.share_id.clone(),
                                toy: None,
                                client: String::new(),
                                outcome: Outcome::Success,
                                detail: format!("{key} deleted from {host}"),
                            },
                        )?;
                        store::relay::finish_stopped(tx).map(|_| ())
                    })
                    .await?;
            }
            Err(f) => {
                let wait = (5i64 << d.attempts.min(12)).min(MAX_DELETE_BACKOFF_SECS);
                let why = f.explain(mb.host());
                tracing::warn!(object = %d.object_key, "a relay delete failed; retried in {wait} s: {why}");
                state
                    .store
                    .write(move |tx| store::relay::delete_failed(tx, &key, t + wait, &why))
                    .await?;
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- replies

/// A reply's JSON: a message `from_contact`, `awaiting_approval`.
pub fn reply_json(r: &Reply, toy_id: Option<&str>) -> serde_json::Value {
    json!({
        "id": r.public_id,
        "toy_id": toy_id,
        "direction": "from_contact",
        "from": r.contact,
        "created_at": rfc3339(r.created_at),
        "duration_ms": r.duration_ms,
        "state": "awaiting_approval",
        "keep": false,
        "bytes": r.size,
        "peaks": r.peaks,
        "expires_at": null,
        "share_id": r.share_id,
    })
}

async fn toy_id_of(state: &AppState, r: &Reply) -> Result<Option<String>> {
    let Some(row) = r.toy else { return Ok(None) };
    let toys = state.store.read(store::toys::list_paired).await?;
    Ok(toys
        .into_iter()
        .find(|t| t.id == row)
        .map(|t| t.toy_id.to_string()))
}

/// Replies awaiting approval, oldest first, as JSON.
pub async fn replies(state: &AppState, by: &User) -> Result<Vec<serde_json::Value>> {
    crate::accounts::require(by, Role::Parent)?;
    let list = state.store.read(store::relay::replies).await?;
    let mut out = Vec::with_capacity(list.len());
    for r in &list {
        out.push(reply_json(r, toy_id_of(state, r).await?.as_deref()));
    }
    Ok(out)
}

/// A reply's audio for a parent to hear before approving, if `id` is a reply.
pub async fn reply_audio(state: &AppState, by: &User, id: &str) -> Result<Option<Vec<u8>>> {
    crate::accounts::require(by, Role::Parent)?;
    let id = id.to_owned();
    Ok(state
        .store
        .read(move |c| store::relay::reply(c, &id))
        .await?
        .map(|(_, audio)| audio))
}

/// A parent approves a reply to a toy: it becomes a message queued for the
/// toy, and the reply is gone.
pub async fn approve(state: &AppState, by: &User, reply_id: &str, toy_id: &str) -> Result<Receipt> {
    crate::accounts::require(by, Role::Parent)?;
    let toy = crate::toys::paired_toy(state, toy_id).await?;
    let pid = hex::encode(rand::random::<[u8; 16]>());
    let (toy_row, toy_name, now) = (toy.id, toy.name.clone(), state.now());
    let message = pid.clone();
    let reply = take_reply(
        state,
        by,
        reply_id,
        Action::ReplyApproved,
        move |tx, reply, ogg| {
            store::messages::insert(
                tx,
                &store::messages::NewMessage {
                    public_id: &message,
                    toy: toy_row,
                    direction: Direction::ToToy,
                    sender_user: None,
                    sender_name: &reply.contact,
                    now,
                    duration_ms: reply.duration_ms,
                    peaks: &reply.peaks,
                    audio: ogg,
                },
            )?;
            Ok(format!(
                "reply from {} approved for {toy_name}",
                reply.contact
            ))
        },
    )
    .await?;
    state.events.wake_toy(toy.id);
    let receipt = Receipt {
        id: pid,
        duration_ms: reply.duration_ms.max(0) as u64,
    };
    crate::messaging::publish(state, &receipt.id).await?;
    Ok(receipt)
}

/// A parent discards a reply.
pub async fn discard(state: &AppState, by: &User, reply_id: &str) -> Result<()> {
    crate::accounts::require(by, Role::Parent)?;
    take_reply(
        state,
        by,
        reply_id,
        Action::ReplyDiscarded,
        |_, reply, _| Ok(format!("reply from {} discarded", reply.contact)),
    )
    .await
    .map(|_| ())
}

/// Takes the reply `reply_id` off the waiting list in one transaction:
/// `then` runs on it (approving stores it for a toy) and returns the
/// ledger's words for `action`; the parents' pages then drop it. Not
/// found when no such reply waits (also when another parent took it first).
async fn take_reply(
    state: &AppState,
    by: &User,
    reply_id: &str,
    action: Action,
    then: impl FnOnce(&rusqlite::Transaction<'_>, &Reply, &[u8]) -> store::StoreResult<String>
    + Send
    + 'static,
) -> Result<Reply> {
    let (id, actor, now) = (reply_id.to_owned(), by.username.clone(), state.now());
    let taken = state
        .store
        .write(move |tx| {
            let Some((reply, audio)) = store::relay::reply(tx, &id)? else {
                return Ok(None);
            };
            store::relay::delete_reply(tx, &id)?;
            let detail = then(tx, &reply, &audio)?;
            audit::record(
                tx,
                &entry(
                    now,
                    &actor,
                    action,
                    Some(&reply.share_id),
                    Outcome::Success,
                    detail,
                ),
            )?;
            Ok(Some(reply))
        })
        .await?
        .ok_or_else(|| Error::not_found("no such reply awaiting approval"))?;
    state.events.publish(PageEvent::MessageDeleted {
        id: reply_id.to_owned(),
        toy_id: None,
    });
    Ok(taken)
}

/// Whether `id` names a reply awaiting approval.
pub async fn is_reply(state: &AppState, id: &str) -> Result<bool> {
    let id = id.to_owned();
    Ok(state
        .store
        .read(move |c| store::relay::reply(c, &id))
        .await?
        .is_some())
}

/// Decrypts and validates one reply body: the clip to store, or why not.
fn open_reply(k: &[u8; 16], body: &[u8]) -> std::result::Result<audio::Clip, String> {
    let plain = ece::decrypt(k, body).map_err(|e| e.to_string())?;
    let kind = if plain.starts_with(b"RIFF") {
        AudioKind::Wav
    } else if plain.starts_with(b"OggS") {
        AudioKind::OggOpus
    } else {
        return Err("it is neither WAV nor Ogg Opus".into());
    };
    // Towards a toy: the same chain as a parent's recording (limiter).
    audio::ingest(kind, &plain).map_err(|e| e.to_string())
}

fn reject_entry(now: i64, sid: &str, key: &str, why: &str) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Some(audit::SYSTEM.to_owned()),
        action: Action::ReplyRejected,
        subject: Some(sid.to_owned()),
        toy: None,
        client: String::new(),
        outcome: Outcome::Failure,
        detail: format!("{key} deleted: {why}"),
    }
}

/// Looks for replies of one live share.
async fn poll_share(state: &AppState, mb: &Mailbox, s: &Share) -> Result<()> {
    let Some(k) = s.link_key else { return Ok(()) };
    let found = match mb.list(&share_key(&s.share_id, "r")).await {
        Ok(f) => f,
        Err(f) => {
            tracing::warn!("cannot look for replies: {}", f.explain(mb.host()));
            return Ok(());
        }
    };
    for (key, size) in found {
        let now = state.now();
        let slot = key
            .strip_prefix(&share_key(&s.share_id, "r"))
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| (1..=s.replies_allowed).contains(n));
        let outcome: std::result::Result<(u8, audio::Clip), String> = async {
            let slot = slot.ok_or_else(|| "not a reply slot of this share".to_owned())?;
            if s.slots_used & (1 << (slot - 1)) != 0 {
                return Err(format!("reply slot {slot} was used already"));
            }
            if size > MAX_REPLY_BYTES as u64 {
                return Err(format!(
                    "{size} bytes, more than the {MAX_REPLY_BYTES} allowed"
                ));
            }
            let body = mb
                .get(&key, MAX_REPLY_BYTES)
                .await
                .map_err(|f| f.explain(mb.host()))?
                .ok_or_else(|| "it vanished".to_owned())?;
            let clip = tokio::task::spawn_blocking(move || open_reply(&k, &body))
                .await
                .map_err(|e| format!("worker failed: {e}"))??;
            Ok((slot, clip))
        }
        .await;
        let (sid, key2) = (s.share_id.clone(), key.clone());
        match outcome {
            Ok((slot, clip)) => {
                let reply = Reply {
                    public_id: hex::encode(rand::random::<[u8; 16]>()),
                    share_id: s.share_id.clone(),
                    toy: s.toy,
                    contact: s.contact.clone(),
                    slot,
                    created_at: now,
                    duration_ms: clip.duration_ms as i64,
                    size: clip.ogg.len() as i64,
                    peaks: clip.peaks.clone(),
                };
                let r2 = reply.clone();
                let detail = format!(
                    "reply from {} through slot {slot}: {size} bytes, {} ms, awaiting approval",
                    s.contact, clip.duration_ms
                );
                state
                    .store
                    .write(move |tx| {
                        store::relay::insert_reply(tx, &r2, &clip.ogg)?;
                        store::relay::use_slot(tx, &sid, slot)?;
                        store::relay::queue_delete(tx, &key2, Some(&sid), now)?;
                        audit::record(
                            tx,
                            &AuditEntry {
                                at: now,
                                actor: Some(audit::SYSTEM.to_owned()),
                                action: Action::ReplyReceived,
                                subject: Some(sid.clone()),
                                toy: None,
                                client: String::new(),
                                outcome: Outcome::Success,
                                detail,
                            },
                        )
                    })
                    .await?;
                let toy_id = toy_id_of(state, &reply).await?;
                state
                    .events
                    .publish(PageEvent::Message(reply_json(&reply, toy_id.as_deref())));
            }
            Err(why) => {
                tracing::warn!(object = %key, "a reply was refused: {why}");
                state
                    .store
                    .write(move |tx| {
                        store::relay::queue_delete(tx, &key2, Some(&sid), now)?;
                        audit::record(tx, &reject_entry(now, &sid, &key2, &why))
                    })
                    .await?;
            }
        }
    }
    Ok(())
}

/// The relay's background work, kept between rounds: when replies were
/// last looked for.
#[derive(Default)]
pub struct Worker {
    last_poll: Option<std::time::Instant>,
    /// The mailbox of the last round, kept while its settings and secret
    /// stay the same (building one loads the platform's roots).
    cached: Option<(Settings, String, std::sync::Arc<Mailbox>)>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Worker")
            .field("last_poll", &self.last_poll)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// One round: expire shares past their end (by the hub's clock), try
    /// due deletes, and every `poll_seconds` look for replies of live
    /// shares with free slots. Nothing happens while relay is off.
    pub async fn tick(&mut self, state: &AppState) -> Result<()> {
        // Most rounds have nothing to do: one read, no HTTP client built.
        let (on, live, pending) = state
            .store
            .read(|c| {
                Ok((
                    store::relay::settings(c)?.is_some(),
                    store::relay::shares_in(c, ShareState::Live)?,
                    store::relay::pending_deletes(c)?,
                ))
            })
            .await?;
        if !on || (live.is_empty() && pending == 0) {
            return Ok(());
        }
        let Some((settings, secret)) = saved(state).await? else {
            return Ok(());
        };
        let mb = match &self.cached {
            Some((s, k, mb)) if *s == settings && *k == secret => mb.clone(),
            _ => {
                let mb = std::sync::Arc::new(
                    Mailbox::new(&settings, &secret)
                        .map_err(|e| Error::new(Code::RelayNotConfigured, e))?,
                );
                self.cached = Some((settings.clone(), secret, mb.clone()));
                mb
            }
        };
        let now = state.now();
        for s in live.iter().filter(|s| s.expires_at <= now) {
            end_share(
                state,
                s,
                now,
                audit::SYSTEM,
                Action::ShareExpired,
                "expired",
            )
            .await?;
        }
        run_deletes(state, &mb, Some(now)).await?;
        let due = self
            .last_poll
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(u64::from(settings.poll_seconds)));
        if due {
            self.last_poll = Some(std::time::Instant::now());
            for s in live
                .iter()
                .filter(|s| s.expires_at > now && s.replies_left() > 0)
            {
                poll_share(state, &mb, s).await?;
            }
            // Deletes of the replies just fetched, at once.
            run_deletes(state, &mb, Some(state.now())).await?;
        }
        Ok(())
    }
}
