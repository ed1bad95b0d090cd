//! The relay against a real S3 server: Garage, started on loopback with a
//! throw-away configuration, layout and key (skipped with `skipped:` where
//! the `garage` binary is missing; `.ci/run` installs it).
//!
//! The link is followed as an independent client would: the player and the
//! objects are fetched by their presigned URLs with a plain HTTP client and
//! decrypted by an RFC 8188 implementation written here from the RFC with
//! `hkdf` and `aes-gcm` (not the hub's `relay::ece`); the clip is compared
//! with what the hub serves, the WAV copy read with `hound`; the mailbox's
//! contents are listed with the test's own signed requests.
//!
//! The player page itself runs in Chromium (`tests/browser/player.mjs`):
//! play, record a reply from the fake microphone, send, and the parent's
//! Sharing page shows it live.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::{Value, json};
use sha2::Digest;

use crate::harness::{
    ChildGuard, Hub, Parent, Served, Target, TestToy, eventually, recording_from, run_with_timeout,
};
use crate::messages::tone_wav;
use crate::skips::skip;

pub(crate) const BUCKET: &str = "hearth-test";

// ------------------------------------------------------------------ Garage

/// A Garage server on loopback with one bucket and one key allowed on it.
pub(crate) struct Garage {
    child: Option<ChildGuard>,
    host: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    pub(crate) s3_port: u16,
    pub(crate) key_id: String,
    pub(crate) secret: String,
}

/// A plain HTTP client for the mailbox on loopback (rustls with ring and
/// no roots: it never does TLS here).
pub(crate) fn plain() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client")
}

/// GET `url` with [`plain`].
pub(crate) async fn fetch(url: impl reqwest::IntoUrl) -> reqwest::Response {
    plain().get(url).send().await.expect("GET")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {name:?} in garage's output:\n{out}"))
}

impl Garage {
    /// Starts Garage, or prints `skipped:` and returns `None` when it is
    /// not installed.
    fn start() -> Option<Garage> {
        Self::start_at("127.0.0.1")
    }

    /// [`Garage::start`] with the S3 API on `host` (an address of this
    /// machine or network namespace); the other ports stay on loopback.
    pub(crate) fn start_at(host: &str) -> Option<Garage> {
        if !crate::harness::have("garage") {
            skip(
                "the garage S3 server is not installed",
                "cargo install garage --locked (.ci/run does it)",
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let text = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"lmdb\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"{host}:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            d = dir.path().display(),
            secret = hex::encode(crate::harness::rand_bytes()),
        );
        std::fs::write(&config, text).expect("garage.toml");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut g = Garage {
            child: None,
            host: host.to_owned(),
            dir,
            config,
            s3_port: s3,
            key_id: String::new(),
            secret: String::new(),
        };
        g.run_server();
        let node = g.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().expect("node id").to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        let key = g.cli(&["key", "create", "hearth-key"]);
        g.key_id = field(&key, "Key ID:");
        g.secret = field(&key, "Secret key:");
        g.cli(&["bucket", "create", BUCKET]);
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "hearth-key",
        ]);
        Some(g)
    }

    /// Starts (or starts again) the server and waits until it answers.
    fn run_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("garage.log")).expect("log");
        let child = std::process::Command::new("garage")
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("garage server");
        self.child = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run_with_timeout(
                std::process::Command::new("garage")
                    .arg("-c")
                    .arg(&self.config)
                    .arg("status"),
                30,
                None,
            );
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The S3 port answers once the layout is known; the first start
        // has none yet, later starts wait for it here.
        if !self.key_id.is_empty() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect((self.host.as_str(), self.s3_port)).is_err() {
                assert!(Instant::now() < deadline, "garage's S3 port did not open");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Stops the server (its data stays).
    fn kill(&mut self) {
        self.child = None;
    }

    /// Runs `garage -c CONFIG args…` and returns its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let out = run_with_timeout(
            std::process::Command::new("garage")
                .arg("-c")
                .arg(&self.config)
                .args(args),
            60,
            None,
        );
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.s3_port)
    }

    pub(crate) fn settings(&self) -> Value {
        json!({"endpoint": self.endpoint(), "region": "garage", "bucket": BUCKET,
               "path_style": true, "access_key_id": self.key_id,
               "secret_access_key": self.secret, "poll_seconds": 1})
    }

    /// Every object key in the bucket (the test's own signed request).
    pub(crate) async fn list(&self) -> Vec<String> {
        let bucket = Bucket::new(
            self.endpoint().parse().expect("url"),
            UrlStyle::Path,
            BUCKET,
            "garage",
        )
        .expect("bucket");
        let creds = Credentials::new(self.key_id.clone(), self.secret.clone());
        let url = bucket
            .list_objects_v2(Some(&creds))
            .sign(Duration::from_secs(60));
        let text = fetch(url).await.text().await.expect("text");
        rusty_s3::actions::ListObjectsV2::parse_response(&text)
            .unwrap_or_else(|e| panic!("list: {e}: {text}"))
            .contents
            .into_iter()
            .map(|c| c.key)
            .collect()
    }

    /// The raw bytes of `key`.
    async fn raw(&self, key: &str) -> Vec<u8> {
        let bucket = Bucket::new(
            self.endpoint().parse().expect("url"),
            UrlStyle::Path,
            BUCKET,
            "garage",
        )
        .expect("bucket");
        let creds = Credentials::new(self.key_id.clone(), self.secret.clone());
        let url = bucket
            .get_object(Some(&creds), key)
            .sign(Duration::from_secs(60));
        fetch(url).await.bytes().await.expect("bytes").to_vec()
    }
}

// ------------------------------------------- RFC 8188, written from the RFC

fn derive(k: &[u8], salt: &[u8]) -> (aes_gcm::Aes128Gcm, [u8; 12]) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), k);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    hk.expand(b"Content-Encoding: aes128gcm\x00", &mut cek)
        .expect("cek");
    hk.expand(b"Content-Encoding: nonce\x00", &mut nonce)
        .expect("nonce");
    (
        aes_gcm::Aes128Gcm::new_from_slice(&cek).expect("key"),
        nonce,
    )
}

/// The record nonce: the base XOR the record's sequence number (96 bits).
fn seq_nonce(base: &[u8; 12], seq: usize) -> [u8; 12] {
    let mut n = *base;
    let s = (seq as u128).to_be_bytes();
    for i in 0..12 {
        n[i] ^= s[4 + i];
    }
    n
}

/// Decrypts an `aes128gcm` body (RFC 8188 section 2).
pub(crate) fn rfc8188_decrypt(k: &[u8], body: &[u8]) -> Vec<u8> {
    let salt = &body[0..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().expect("rs")) as usize;
    let idlen = body[20] as usize;
    assert_eq!(idlen, 0, "RELAY.md: an empty key id");
    assert_eq!(rs, 4096, "RELAY.md: record size 4096");
    let (aead, base) = derive(k, salt);
    let records: Vec<&[u8]> = body[21 + idlen..].chunks(rs).collect();
    let mut out = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let mut p = aead
            .decrypt(&aes_gcm::Nonce::from(seq_nonce(&base, i)), *rec)
            .expect("a record decrypts");
        while p.last() == Some(&0) {
            p.pop();
        }
        let delim = p.pop().expect("delimiter");
        assert_eq!(delim, if i + 1 == records.len() { 2 } else { 1 });
        out.extend_from_slice(&p);
    }
    out
}

/// Encrypts as the player does: one salt, records of 4096 bytes.
pub(crate) fn rfc8188_encrypt(k: &[u8], plain: &[u8]) -> Vec<u8> {
    let salt: [u8; 16] = rand::random();
    let (aead, base) = derive(k, &salt);
    let mut out = salt.to_vec();
    out.extend_from_slice(&4096u32.to_be_bytes());
    out.push(0);
    let chunks: Vec<&[u8]> = plain.chunks(4096 - 17).collect();
    let n = chunks.len().max(1);
    for i in 0..n {
        let mut rec = chunks.get(i).copied().unwrap_or_default().to_vec();
        rec.push(if i + 1 == n { 2 } else { 1 });
        out.extend(
            aead.encrypt(&aes_gcm::Nonce::from(seq_nonce(&base, i)), rec.as_slice())
                .expect("seal"),
        );
    }
    out
}

// -------------------------------------------------------------- the link

/// A link taken apart as RELAY.md section 3 says.
pub(crate) struct Link {
    pub(crate) player: String,
    base: String,
    pub(crate) sid: String,
    pub(crate) k: Vec<u8>,
    pub(crate) m_query: String,
}

pub(crate) fn parse_link(link: &str) -> Link {
    let (player, frag) = link.split_once('#').expect("a fragment");
    let parts: Vec<&str> = frag.split('.').collect();
    assert_eq!(parts.len(), 4, "v1.SID.K.MQ");
    assert_eq!(parts[0], "v1");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let path_end = player.find('?').expect("a presigned query");
    let path = &player[..path_end];
    let p_at = path.rfind("p/").expect("p/HASH/index.html");
    assert!(path.ends_with("/index.html"));
    Link {
        player: player.to_owned(),
        base: path[..p_at].to_owned(),
        sid: parts[1].to_owned(),
        k: b64.decode(parts[2]).expect("K"),
        m_query: String::from_utf8(b64.decode(parts[3]).expect("MQ")).expect("utf-8"),
    }
}

impl Link {
    pub(crate) fn url(&self, name: &str, query: &str) -> String {
        format!("{}s/{}/{name}?{query}", self.base, self.sid)
    }

    pub(crate) async fn fetch(&self, name: &str, query: &str) -> reqwest::Response {
        fetch(self.url(name, query)).await
    }

    pub(crate) async fn open(&self, name: &str, query: &str) -> Vec<u8> {
        let r = self.fetch(name, query).await;
        assert_eq!(r.status(), 200, "GET {name}");
        assert_eq!(
            r.headers()["content-type"],
            "application/octet-stream",
            "{name}"
        );
        rfc8188_decrypt(&self.k, &r.bytes().await.expect("body"))
    }
}

// --------------------------------------------------------------- helpers

async fn paired_with_recording(hub: &Hub) -> (Parent, TestToy, String) {
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(hub, &parent).await;
    let id = recording_from(hub, &toy).await;
    (parent, toy, id)
}

pub(crate) async fn put_settings(parent: &Parent, body: Value) -> (u16, Value) {
    let r = parent
        .client
        .put(format!("{}/api/v1/relay", parent.base))
        .bearer_auth(&parent.token)
        .json(&body)
        .send()
        .await
        .expect("put");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn share(parent: &Parent, message: &str, body: Value) -> Value {
    let r = parent
        .post(&format!("/api/v1/messages/{message}/shares"), body)
        .await;
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "share: {v}");
    v
}

pub(crate) async fn share_state(parent: &Parent, sid: &str) -> Value {
    let v = parent.json("/api/v1/shares").await;
    v["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .find(|s| s["share_id"] == sid)
        .cloned()
        .expect("the share is listed")
}

/// Grandma's reply as the player sends it: `wav` encrypted with the link's
/// key, PUT to slot 1 by its presigned URL (`put` is its query).
pub(crate) async fn send_reply(link: &Link, put: &str, wav: &[u8]) {
    let r = plain()
        .put(link.url("r1", put))
        .body(rfc8188_encrypt(&link.k, wav))
        .send()
        .await
        .expect("put reply");
    assert!(r.status().is_success(), "{}", r.status());
}

/// The first reply awaiting approval, once the hub's poll has fetched one
/// (within `secs`).
pub(crate) async fn waiting_reply(parent: &Parent, secs: u64) -> Value {
    eventually(secs, "the reply awaiting approval", || async {
        let v = parent.json("/api/v1/replies").await;
        v["messages"].as_array().and_then(|l| l.first().cloned())
    })
    .await
}

fn actions(ledger: &[hearth::store::audit::AuditEntry]) -> Vec<&'static str> {
    ledger.iter().map(|e| e.action.as_str()).collect()
}

/// Signs "mum" in on a served hub; returns the bearer token.
async fn token(s: &Served) -> String {
    let v: Value = s
        .login("mum", crate::harness::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    v["token"].as_str().expect("token").to_owned()
}

// ------------------------------------------------------------------ tests

#[actix_web::test]
async fn relay_settings_are_checked_live_and_refused_in_parent_words() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let hub = Hub::start().await;
    let (parent, _toy, msg) = paired_with_recording(&hub).await;

    // Not configured: sharing is refused.
    let r = parent
        .post(
            &format!("/api/v1/messages/{msg}/shares"),
            json!({"contact": "Grandma"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "relay_not_configured");

    let with = |k: &str, val: Value| {
        let mut s = garage.settings();
        s[k] = val;
        s
    };
    let closed = free_port();
    let cases = [
        (
            with("secret_access_key", json!("0".repeat(64))),
            "access key",
            "wrong_key",
        ),
        (
            with("access_key_id", json!("GK0123456789abcdef01234567")),
            "access key",
            "wrong_key",
        ),
        (
            with("bucket", json!("no-such-bucket")),
            "no such bucket",
            "bucket_missing",
        ),
        (
            with("endpoint", json!(format!("http://127.0.0.1:{closed}"))),
            "cannot be reached",
            "unreachable",
        ),
    ];
    for (body, words, cause) in cases {
        let (s, v) = put_settings(&parent, body.clone()).await;
        assert_eq!(s, 502, "{body}: {v}");
        assert_eq!(v["error"]["code"], "relay_unreachable");
        assert_eq!(v["cause"], cause, "{v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(words), "{words:?} in {msg:?}");
        assert!(msg.contains("127.0.0.1"), "names the endpoint: {msg}");
        assert!(!msg.contains(&garage.secret));
    }
    // Plain http to a public address, and a prefix without its slash.
    let (s, v) = put_settings(&parent, with("endpoint", json!("http://203.0.113.9:3900"))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_relay_settings"))
    );
    let (s, _) = put_settings(&parent, with("prefix", json!("hearth"))).await;
    assert_eq!(s, 422);
    let v = parent.json("/api/v1/relay").await;
    assert_eq!(v["configured"], false, "nothing saved: {v}");
    assert!(!hub.data_dir().join("relay-secret").exists());

    // The right settings: saved, the secret in a 0600 file and never shown.
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");
    let v = parent.json("/api/v1/relay").await;
    assert_eq!(v["configured"], true);
    assert_eq!(v["bucket"], BUCKET);
    assert_eq!(v["prefix"], "hearth/");
    assert_eq!(v["access_key_id"], garage.key_id.as_str());
    assert!(!v.to_string().contains(&garage.secret), "never the secret");
    let path = hub.data_dir().join("relay-secret");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("secret file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), garage.secret);
    // The probe object is gone again.
    assert!(garage.list().await.is_empty(), "{:?}", garage.list().await);
    // `hearth relay check` does the same check from the command line.
    let out = run_with_timeout(
        std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["relay", "check", "--data-dir"])
            .arg(hub.data_dir())
            .env_remove("HEARTH_CONFIG"),
        60,
        None,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("works"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains(&garage.secret));
    let ledger = hub.ledger().await;
    let changes: Vec<_> = ledger
        .iter()
        .filter(|e| e.action == "relay_settings_changed")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(changes.first(), Some(&"success"));
    assert_eq!(changes.iter().filter(|o| **o == "failure").count(), 4);

    // Turning relay off forgets the settings and the secret.
    let r = parent.delete("/api/v1/relay").await;
    assert_eq!(r.status(), 204);
    assert_eq!(parent.json("/api/v1/relay").await["configured"], false);
    assert!(!path.exists());
}

/// A mailbox whose TLS certificate this hub does not trust: the HTTPS port
/// of a second, real hub (its own CA, unknown to the first). The check says
/// so in a parent's words, with the cause `certificate`, and saves nothing;
/// with that CA pasted in `ca_cert`, the handshake succeeds and the check
/// fails for another cause (a hub is no S3 server), so the advice works.
#[actix_web::test]
async fn an_untrusted_certificate_is_explained_as_such() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let other = Hub::start().await;
    let host = "localhost";
    let settings = json!({"endpoint": format!("https://{host}:{}", other.port), "region": "garage",
        "bucket": BUCKET, "path_style": true, "access_key_id": "GK0123456789abcdef01234567",
        "secret_access_key": "0".repeat(64)});
    let (s, v) = put_settings(&parent, settings.clone()).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "relay_unreachable");
    assert_eq!(v["cause"], "certificate", "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(
        msg.starts_with(&format!(
            "the mailbox at {host} presented a certificate this hub does not trust ("
        )),
        "{msg}"
    );
    assert!(
        msg.contains("for a self-hosted server, paste its CA certificate"),
        "{msg}"
    );
    assert!(msg.contains("UnknownIssuer"), "the TLS reason: {msg}");
    assert_eq!(parent.json("/api/v1/relay").await["configured"], false);
    let ledger = hub.ledger().await;
    let failed = ledger
        .iter()
        .find(|e| e.action == "relay_settings_changed")
        .expect("the failed check is in the ledger");
    assert_eq!(failed.outcome.as_str(), "failure");
    assert!(failed.detail.contains("certificate"), "{}", failed.detail);

    // The same endpoint with its CA: TLS works, the cause is another one.
    let mut with_ca = settings;
    with_ca["ca_cert"] = json!(other.ca_pem);
    let (s, v) = put_settings(&parent, with_ca).await;
    assert_eq!(s, 502, "{v}");
    assert_ne!(v["cause"], "certificate", "{v}");
    assert!(v["cause"].is_string(), "{v}");
}

#[actix_web::test]
async fn a_shared_recording_plays_from_the_mailbox_and_a_reply_waits_for_approval() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let hub = Hub::start().await;
    let (parent, toy, msg) = paired_with_recording(&hub).await;
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");

    let created = share(
        &parent,
        &msg,
        json!({"contact": "Grandma", "title": "Mia sings", "expires_in_hours": 24, "replies": 1}),
    )
    .await;
    let sid = created["share_id"].as_str().expect("sid").to_owned();
    assert!(created["qr_svg"].as_str().expect("qr").contains("<svg"));
    let link = parse_link(created["link"].as_str().expect("link"));
    assert_eq!(link.sid, sid);
    assert_eq!(link.k.len(), 16);

    // The player: one HTML file named by its hash, with its own CSP.
    let r = fetch(&link.player).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.bytes().await.expect("html");
    let hash = hex::encode(sha2::Sha256::digest(&html));
    assert!(
        link.player
            .contains(&format!("/p/{}/index.html?", &hash[..16]))
    );
    let html = String::from_utf8(html.to_vec()).expect("utf-8");
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("default-src 'none'"));
    assert!(
        !html.contains("Grandma"),
        "the player is the same for every share"
    );

    // The metadata, decrypted by this test's own RFC 8188 code.
    let m: Value = serde_json::from_slice(&link.open("m", &link.m_query).await).expect("m json");
    assert_eq!(m["v"], 1);
    assert_eq!(m["sid"], sid.as_str());
    assert_eq!(m["contact"], "Grandma");
    assert_eq!(m["title"], "Mia sings");
    assert_eq!(m["expires_at"], created["expires_at"]);
    assert_eq!(m["max_reply_ms"], 120_000);
    let replies = m["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["slot"], 1);

    // The clip: the Ogg Opus is the hub's own, the WAV is 16 kHz mono.
    let ogg = link
        .open("a", m["audio"]["ogg"].as_str().expect("ogg"))
        .await;
    let served = parent
        .get(&format!("/api/v1/messages/{msg}/audio"))
        .await
        .bytes()
        .await
        .expect("audio");
    assert_eq!(ogg, served.to_vec());
    let wav = link
        .open("w", m["audio"]["wav"].as_str().expect("wav"))
        .await;
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16_000, 16)
    );
    let secs = reader.duration() as f64 / 16_000.0;
    assert!((secs - 2.0).abs() < 0.1, "{secs} s");

    // Nothing in the mailbox is plain: no names, no audio headers.
    let keys = garage.list().await;
    for name in ["m", "a", "w"] {
        let key = format!("hearth/s/{sid}/{name}");
        assert!(keys.contains(&key), "{key} in {keys:?}");
        let raw = garage.raw(&key).await;
        for needle in [&b"Grandma"[..], b"Mia sings", b"OggS", b"RIFF", b"bear"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle),
                "{key} holds {:?} in clear",
                String::from_utf8_lossy(needle)
            );
        }
    }

    // A reply, encrypted as the player does, into slot 1.
    send_reply(
        &link,
        replies[0]["put"].as_str().expect("put"),
        &tone_wav(1.5, 16_000),
    )
    .await;
    let waiting = waiting_reply(&parent, 30).await;
    assert_eq!(waiting["direction"], "from_contact");
    assert_eq!(waiting["from"], "Grandma");
    assert_eq!(waiting["state"], "awaiting_approval");
    assert_eq!(waiting["toy_id"], "bear");
    let rid = waiting["id"].as_str().expect("id").to_owned();
    let d = waiting["duration_ms"].as_i64().expect("duration");
    assert!((1400..=1600).contains(&d), "{d} ms");
    // The parent can hear it; the toy has nothing yet.
    let r = parent.get(&format!("/api/v1/messages/{rid}/audio")).await;
    assert_eq!(r.status(), 200);
    assert!(
        toy.inbox(&hub).await.is_empty(),
        "nothing reaches a toy unapproved"
    );
    // The reply object is gone from the mailbox, the slot used.
    let r1 = format!("hearth/s/{sid}/r1");
    eventually(30, "the reply object deleted", || async {
        (!garage.list().await.contains(&r1)).then_some(())
    })
    .await;
    assert_eq!(share_state(&parent, &sid).await["replies_left"], 0);

    // Approved: the toy receives it.
    let r = parent
        .post(
            &format!("/api/v1/messages/{rid}/approve"),
            json!({"toy_id": "bear"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let got = toy.inbox(&hub).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["from"], "Grandma");
    let v = parent.json("/api/v1/replies").await;
    assert_eq!(v["messages"], json!([]));
    let r = parent
        .post(
            &format!("/api/v1/messages/{rid}/approve"),
            json!({"toy_id": "bear"}),
        )
        .await;
    assert_eq!(r.status(), 404, "approved once");

    // Stop sharing: every object goes, every URL stops working.
    let r = parent.delete(&format!("/api/v1/shares/{sid}")).await;
    assert_eq!(r.status(), 204);
    eventually(30, "the share ended", || async {
        (share_state(&parent, &sid).await["state"] == "ended").then_some(())
    })
    .await;
    assert_eq!(garage.list().await, Vec::<String>::new());
    for (name, q) in [
        ("m", link.m_query.clone()),
        ("a", m["audio"]["ogg"].as_str().expect("q").to_owned()),
        ("w", m["audio"]["wav"].as_str().expect("q").to_owned()),
    ] {
        let s = link.fetch(name, &q).await.status().as_u16();
        assert!(s == 403 || s == 404, "{name}: {s}");
    }
    let s = fetch(&link.player).await.status().as_u16();
    assert!(s == 403 || s == 404, "player: {s}");

    let ledger = hub.ledger().await;
    let acts = actions(&ledger);
    for a in [
        "share_created",
        "relay_upload",
        "reply_received",
        "reply_approved",
        "share_stopped",
        "relay_delete",
    ] {
        assert!(acts.contains(&a), "{a} in {acts:?}");
    }
    let uploads: Vec<_> = ledger
        .iter()
        .filter(|e| e.action == "relay_upload")
        .collect();
    assert_eq!(uploads.len(), 4, "player, a, w, m");
    assert!(
        uploads
            .iter()
            .all(|e| e.detail.contains(" bytes to 127.0.0.1"))
    );
}

#[actix_web::test]
async fn garbage_replies_are_deleted_and_recorded_and_expiry_deletes_everything() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let hub = Hub::start().await;
    let (parent, toy, msg) = paired_with_recording(&hub).await;
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");
    let created = share(
        &parent,
        &msg,
        json!({"contact": "Grandpa", "expires_in_hours": 1, "replies": 3}),
    )
    .await;
    let link = parse_link(created["link"].as_str().expect("link"));
    let m: Value = serde_json::from_slice(&link.open("m", &link.m_query).await).expect("m");
    let put = |slot: usize, body: Vec<u8>| {
        let url = link.url(
            &format!("r{}", slot),
            m["replies"][slot - 1]["put"].as_str().expect("put"),
        );
        async move {
            let r = plain().put(url).body(body).send().await.expect("put");
            assert!(r.status().is_success());
        }
    };
    // Random bytes; a WAV under another key; text under the right key.
    put(1, (0..5000).map(|_| rand::random::<u8>()).collect()).await;
    put(2, rfc8188_encrypt(&[9u8; 16], &tone_wav(1.0, 16_000))).await;
    put(3, rfc8188_encrypt(&link.k, b"hello, not audio")).await;
    eventually(30, "three rejected replies", || async {
        let n = hub
            .ledger()
            .await
            .iter()
            .filter(|e| e.action == "reply_rejected")
            .count();
        (n == 3).then_some(())
    })
    .await;
    let sid = &link.sid;
    eventually(30, "the garbage deleted", || async {
        let keys = garage.list().await;
        (!keys.iter().any(|k| k.contains(&format!("{sid}/r")))).then_some(())
    })
    .await;
    assert_eq!(parent.json("/api/v1/replies").await["messages"], json!([]));
    // Garbage uses no slot.
    assert_eq!(share_state(&parent, sid).await["replies_left"], 3);
    let _ = toy;

    // Expiry by the hub's clock: the share ends and its objects go.
    hub.clock.advance(time::Duration::hours(2));
    eventually(30, "the share expired and ended", || async {
        (share_state(&parent, sid).await["state"] == "ended").then_some(())
    })
    .await;
    assert_eq!(garage.list().await, Vec::<String>::new());
    assert!(actions(&hub.ledger().await).contains(&"share_expired"));
}

#[actix_web::test]
async fn a_hub_restarted_while_the_mailbox_is_down_finishes_the_deletes() {
    let Some(mut garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let code = std::fs::read_to_string(data.join("setup-code")).expect("setup code");
    let r = served
        .anon()
        .post(served.url("/api/v1/setup"))
        .json(&json!({"setup_code": code.trim(), "household": "Fernhill", "username": "mum", "password": crate::harness::PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 201);

    let parent = served.parent(&token(&served).await);
    let mut toy = TestToy::new("bear");
    toy.pair(&served, &parent).await;
    let msg = recording_from(&served, &toy).await;
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");
    let created = share(&parent, &msg, json!({"contact": "Grandma"})).await;
    let sid = created["share_id"].as_str().expect("sid").to_owned();
    assert!(!garage.list().await.is_empty());

    // The mailbox goes down; stopping still answers, the deletes wait.
    garage.kill();
    let r = parent.delete(&format!("/api/v1/shares/{sid}")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(share_state(&parent, &sid).await["state"], "stopping");
    let pending = parent.json("/api/v1/relay").await["pending_deletes"]
        .as_i64()
        .expect("pending");
    assert!(pending >= 4, "{pending} deletes pending");
    served.stop();

    // Both come back; the new hub finishes what the old one could not.
    garage.run_server();
    let served = Served::start(&data);
    let parent = served.parent(&token(&served).await);
    eventually(60, "the share ended after the restart", || async {
        (share_state(&parent, &sid).await["state"] == "ended").then_some(())
    })
    .await;
    assert_eq!(garage.list().await, Vec::<String>::new());
    // A share ends once its own objects are gone; the player page's delete
    // (not the share's own: other shares may use it) can still be between
    // the mailbox's answer and its removal from the queue (seen on a
    // loaded machine).
    eventually(60, "no delete pending", || async {
        (parent.json("/api/v1/relay").await["pending_deletes"] == 0).then_some(())
    })
    .await;
    served.stop();
}

/// The player in a real Chromium (`tests/browser/player.mjs`): the link
/// opens from the mailbox, the clip plays from a decrypted `blob:`, a reply
/// of about 3 s recorded from the fake microphone is sent, the parent's
/// Sharing page shows it live, and axe finds nothing on either page. The
/// hub's API then holds the reply awaiting approval, with the fake
/// microphone's sound in it.
#[actix_web::test]
async fn the_player_in_a_browser_plays_the_clip_and_sends_a_recorded_reply() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some((why, fix)) = crate::browser::prepare(&root).await {
        skip(&why, &fix);
        return;
    }
    let Some(garage) = Garage::start() else {
        return;
    };
    let (hub, parent, toy, link) = shared_with_grandma(&garage).await;

    let files = tempfile::tempdir().expect("tempdir");
    let wav = files.path().join("voice.wav");
    std::fs::write(&wav, crate::browser::speech_like_wav(48_000, 3.0)).expect("wav");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("tests/browser/player.mjs")
        .env("HUB_URL", hub.origin())
        .env("USERNAME", "mum")
        .env("PASSWORD", crate::harness::PASSWORD)
        .env("FAKE_WAV", &wav);
    run_player(&root, cmd, &link).await;
    assert_recorded_reply_waits(&hub, &parent, &toy, &link, 1000).await;
}

/// After a browser sent a recorded reply: the hub's own view holds one
/// reply from Grandma, waiting, about 3 s long, with the microphone's sound
/// in it (a quarter of the samples above `loud`), and the slot is used.
async fn assert_recorded_reply_waits(
    hub: &Hub,
    parent: &Parent,
    toy: &TestToy,
    link: &str,
    loud_above: i32,
) {
    let v = parent.json("/api/v1/replies").await;
    let list = v["messages"].as_array().expect("messages");
    assert_eq!(list.len(), 1, "{v}");
    let reply = &list[0];
    assert_eq!(reply["direction"], "from_contact");
    assert_eq!(reply["from"], "Grandma");
    assert_eq!(reply["state"], "awaiting_approval");
    assert_eq!(reply["toy_id"], toy.toy_id.as_str());
    let d = reply["duration_ms"].as_i64().expect("duration");
    assert!((2500..=4500).contains(&d), "{d} ms");
    // What the microphone heard reached the hub: not silence.
    let id = reply["id"].as_str().expect("id");
    let r = parent
        .get(&format!("/api/v1/messages/{id}/audio?format=wav"))
        .await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("wav");
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("a WAV");
    let samples: Vec<i32> = reader
        .samples::<i16>()
        .map(|s| i32::from(s.expect("sample")))
        .collect();
    let loud = samples.iter().filter(|s| s.abs() > loud_above).count();
    assert!(
        loud * 4 > samples.len(),
        "the microphone's sound is in the reply ({loud} of {} samples above {loud_above})",
        samples.len()
    );
    assert_eq!(
        share_state(parent, &link_sid(link)).await["replies_left"],
        0
    );
    let acts = actions(&hub.ledger().await).join(" ");
    assert!(acts.contains("reply_received"), "{acts}");
}

/// The player in Debian's Firefox ESR (`tests/browser/player-firefox.mjs`,
/// driven over WebDriver BiDi): the link opens, Firefox's WebCrypto decrypts
/// the metadata, and the clip plays to its end from a decrypted `blob:`.
/// Recording is not tested in Firefox: see the script's header and
/// docs/relay.md (no sound device here, so Firefox's Web Audio never runs).
#[actix_web::test]
async fn the_player_in_firefox_opens_the_link_and_plays_the_clip() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some((why, fix)) = crate::browser::prepare(&root).await {
        skip(&why, &fix);
        return;
    }
    let firefox = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    if !std::path::Path::new(&firefox).exists() {
        skip(
            &format!("{firefox} is not installed"),
            "sudo apt install firefox-esr (or set FIREFOX to a Firefox binary)",
        );
        return;
    }
    let Some(garage) = Garage::start() else {
        return;
    };
    let (_hub, _parent, _toy, link) = shared_with_grandma(&garage).await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.args([
        "--experimental-websocket",
        "tests/browser/player-firefox.mjs",
    ])
    .env("FIREFOX", &firefox)
    .env("NODE_NO_WARNINGS", "1");
    let stdout = run_player(&root, cmd, &link).await;
    assert!(
        stdout.contains("clip played to its end from a blob: URL"),
        "{stdout}"
    );
}

/// A hub with a paired toy whose recording is shared with Grandma ("Mia
/// sings", one reply) through `garage`: the hub, its parent, the toy, the
/// link.
async fn shared_with_grandma(garage: &Garage) -> (Hub, Parent, TestToy, String) {
    let hub = Hub::start().await;
    let (parent, toy, msg) = paired_with_recording(&hub).await;
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");
    let created = share(
        &parent,
        &msg,
        json!({"contact": "Grandma", "title": "Mia sings", "replies": 1}),
    )
    .await;
    let link = created["link"].as_str().expect("link").to_owned();
    (hub, parent, toy, link)
}

/// Runs a browser script `cmd` (node and its arguments) in the crate root
/// with `LINK` and `CONTACT` set, for 3 minutes at most; its output, once
/// it succeeded.
async fn run_player(
    root: &std::path::Path,
    mut cmd: tokio::process::Command,
    link: &str,
) -> String {
    cmd.current_dir(root)
        .env("LINK", link)
        .env("CONTACT", "Grandma")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the browser script finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn link_sid(link: &str) -> String {
    parse_link(link).sid
}
