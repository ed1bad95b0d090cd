//! The test kit: starts a real hub in-process on 127.0.0.1:0 with a
//! temporary data directory and a manual clock, and hands out clients: an
//! anonymous one that trusts the hub CA, a signed-in parent (bearer), a
//! browser-like cookie session, and toys with client certificates.
//!
//! It also holds the tests' own oracles, written from the specs rather than
//! borrowed from the hub: [`pairing_code`] (docs/toy-protocol.md section 3 with
//! `sha2` and `x509-parser`), and [`run_with_timeout`] / [`ChildGuard`] so
//! that no external command can hang the suite.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::app::Application;
use hearth::clock::ManualClock;
use hearth::config::Config;
use hearth::state::AppState;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::Digest;

/// A password that passes the rule.
pub const PASSWORD: &str = "plum violet kettle harbour";

/// A running hub.
pub struct Hub {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub state: actix_web::web::Data<AppState>,
    pub ca_pem: String,
}

/// Polls `f` until it returns `Some` or `secs` pass.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Hub {
    /// Starts a hub with the default test configuration.
    pub async fn start() -> Hub {
        Self::start_with(|_| {}).await
    }

    /// Starts a hub after `tweak` adjusts its configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, ManualClock::default(), tweak).await
    }

    /// Starts a hub on the data directory `dir/data`, which may hold an
    /// earlier hub's data (a restart), with `clock`.
    pub async fn start_in(
        dir: tempfile::TempDir,
        clock: ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Hub {
        let mut config = Config::development_defaults();
        config.data_dir = dir.path().join("data");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.mdns.enabled = false;
        tweak(&mut config);
        let app = Application::build_with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("the hub starts");
        let port = app.port();
        let state = app.state();
        actix_web::rt::spawn(app.run_until_stopped());
        let ca_pem = std::fs::read_to_string(dir.path().join("data/ca.crt")).expect("ca.crt");
        Hub {
            port,
            dir,
            clock,
            state,
            ca_pem,
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn tls(&self, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
        tls_config(&self.ca_pem, identity)
    }

    /// A client that trusts the hub and presents no certificate.
    pub fn anon(&self) -> reqwest::Client {
        client(self.tls(None))
    }

    /// Posts JSON anonymously (no credentials).
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.anon()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A client presenting a client certificate.
    pub fn with_cert(&self, cert_pem: &str, key_pem: &str) -> reqwest::Client {
        client(self.tls(Some((cert_pem, key_pem))))
    }

    /// The newest ledger (audit) entries, newest first.
    pub async fn ledger(&self) -> Vec<hearth::store::audit::AuditEntry> {
        self.state
            .store
            .read(|c| hearth::store::audit::recent(c, 50))
            .await
            .expect("ledger")
    }

    /// Signs in like a browser: returns (cookie header value, CSRF token).
    pub async fn browser_login(&self) -> (String, String) {
        let r = self
            .anon()
            .post(self.url("/login"))
            .header("origin", self.origin())
            .form(&[("username", "mum"), ("password", PASSWORD)])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 303);
        let set = r.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .to_owned();
        for attr in [
            "__Host-hearth_session=",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(set.contains(attr), "cookie lacks {attr}: {set}");
        }
        let cookie = set.split(';').next().expect("pair").to_owned();
        let page = self
            .anon()
            .get(self.url("/account"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        let marker = "name=\"csrf-token\" content=\"";
        let start = html.find(marker).expect("csrf meta") + marker.len();
        let csrf = html[start..start + 64].to_owned();
        (cookie, csrf)
    }

    /// Joins `username` with a fresh invitation for `body` (its role and
    /// toys) made by `admin`, and signs them in.
    pub async fn member(&self, admin: &Parent, body: Value, username: &str, pw: &str) -> Parent {
        let r = admin.post("/api/v1/invites", body).await;
        assert_eq!(r.status(), 201);
        let inv: Value = r.json().await.expect("json");
        let r = self
            .post_json(
                "/api/v1/join",
                &json!({"code": inv["code"], "username": username, "password": pw}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        Parent {
            client: self.anon(),
            token: self.login(username, pw).await,
            base: self.origin(),
        }
    }

    /// Runs `hearth user ...` against this hub's data directory with
    /// `stdin` as its input (two minutes at most).
    pub fn user_cmd(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let config = self.dir.path().join("cli.toml");
        std::fs::write(&config, "version = 1\n").expect("config");
        run_with_timeout(
            std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
                .arg("user")
                .args(args)
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(self.data_dir()),
            120,
            Some(stdin.as_bytes()),
        )
    }

    /// The setup code from the data directory.
    pub fn setup_code(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("setup-code"))
            .expect("setup-code file")
            .trim()
            .to_owned()
    }

    /// Runs setup: household "Fernhill", admin "mum".
    pub async fn setup(&self) {
        let r = self
            .anon()
            .post(self.url("/api/v1/setup"))
            .json(&json!({"setup_code": self.setup_code(), "household": "Fernhill", "username": "mum", "password": PASSWORD}))
            .send()
            .await
            .expect("setup request");
        assert_eq!(
            r.status(),
            201,
            "setup: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Signs in over the API and returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .anon()
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Setup plus a signed-in parent.
    pub async fn parent(&self) -> Parent {
        self.setup().await;
        let token = self.login("mum", PASSWORD).await;
        Parent {
            client: self.anon(),
            token,
            base: self.origin(),
        }
    }
}

/// Where a test toy talks to: an in-process [`Hub`] or a [`Served`] binary.
pub trait Target {
    /// The HTTPS port.
    fn port(&self) -> u16;
    /// The hub CA in PEM.
    fn ca_pem(&self) -> &str;
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }
    fn anon(&self) -> reqwest::Client {
        client(tls_config(self.ca_pem(), None))
    }
    fn with_cert(&self, cert_pem: &str, key_pem: &str) -> reqwest::Client {
        client(tls_config(self.ca_pem(), Some((cert_pem, key_pem))))
    }
}

impl Target for Hub {
    fn port(&self) -> u16 {
        self.port
    }
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// A rustls client configuration trusting `ca_pem`, optionally with a client identity.
pub fn tls_config(ca_pem: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
        .expect("add ca");
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert pem")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key pem"),
            )
            .expect("client auth"),
    }
}

/// How long a test client keeps an idle connection for reuse: well under
/// the hub's keep-alive (15 s, `http::limits::KEEP_ALIVE`), so a request is
/// never sent on a connection the hub is closing at that moment (which
/// fails with `IncompleteMessage` when a slow step, such as Argon2 in a
/// debug build on a loaded machine, kept the client idle that long).
pub const CLIENT_IDLE: Duration = Duration::from_secs(5);

pub fn client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(CLIENT_IDLE)
        .build()
        .expect("client")
}

/// An anonymous client whose connections come from the loopback address
/// `127.0.0.N`, so one test can act as several devices: the hub caps open
/// connections and handshakes per address (`http::limits`).
pub fn client_from(ca_pem: &str, n: u8) -> reqwest::Client {
    client_from_keeping(ca_pem, n, CLIENT_IDLE)
}

/// [`client_from`] keeping an idle connection open for `idle`.
pub fn client_from_keeping(ca_pem: &str, n: u8, idle: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(ca_pem, None))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, n]))
        .pool_idle_timeout(idle)
        .build()
        .expect("client")
}

/// A signed-in parent using a bearer token.
pub struct Parent {
    pub client: reqwest::Client,
    pub token: String,
    pub base: String,
}

impl Parent {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .patch(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }
}

/// A toy speaking the pairing protocol by hand (so every edge case can be provoked).
pub struct TestToy {
    pub toy_id: String,
    pub key_pem: String,
    pub csr_pem: String,
    pub nonce: [u8; 32],
    pub pairing_id: String,
    pub hub_nonce: [u8; 32],
    pub ca_pem: String,
    pub cert_pem: Option<String>,
}

impl TestToy {
    pub fn new(toy_id: &str) -> TestToy {
        // The key and CSR come from rcgen directly, not from the crate.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let csr_pem = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let key_pem = key.serialize_pem();
        TestToy {
            toy_id: toy_id.into(),
            key_pem,
            csr_pem,
            nonce: rand_bytes(),
            pairing_id: String::new(),
            hub_nonce: [0; 32],
            ca_pem: String::new(),
            cert_pem: None,
        }
    }

    pub fn request_body(&self) -> Value {
        json!({"toy_id": self.toy_id, "name": "Bear", "model": "test toy", "csr": self.csr_pem,
               "commitment": hex::encode(sha2::Sha256::digest(self.nonce))})
    }

    /// Step 1; returns the status.
    pub async fn request(&mut self, hub: &impl Target) -> u16 {
        let r = hub
            .anon()
            .post(hub.url("/toy/v1/pair"))
            .json(&self.request_body())
            .send()
            .await
            .expect("pair");
        let status = r.status().as_u16();
        if status == 201 {
            let v: Value = r.json().await.expect("json");
            self.pairing_id = v["pairing_id"].as_str().expect("id").into();
            let mut n = [0u8; 32];
            hex::decode_to_slice(v["hub_nonce"].as_str().expect("nonce"), &mut n).expect("hex");
            self.hub_nonce = n;
            self.ca_pem = v["ca_cert"].as_str().expect("ca").into();
            assert_eq!(v["expires_in"], 600);
        }
        status
    }

    /// Step 2; returns the status.
    pub async fn reveal(&self, hub: &impl Target) -> u16 {
        hub.anon()
            .post(hub.url(&format!("/toy/v1/pair/{}/reveal", self.pairing_id)))
            .json(&json!({"toy_nonce": hex::encode(self.nonce)}))
            .send()
            .await
            .expect("reveal")
            .status()
            .as_u16()
    }

    /// The code both sides compute, by the tests' own implementation.
    pub fn code(&self) -> String {
        pairing_code(&self.ca_pem, &self.csr_pem, &self.nonce, &self.hub_nonce)
    }

    /// Step 4.
    pub async fn poll(&mut self, hub: &impl Target) -> (u16, Value) {
        let r = hub
            .anon()
            .get(hub.url(&format!("/toy/v1/pair/{}", self.pairing_id)))
            .send()
            .await
            .expect("poll");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if v["status"] == "approved" {
            self.cert_pem = v["client_cert"].as_str().map(str::to_owned);
        }
        (status, v)
    }

    /// The whole pairing, confirmed by `parent`.
    pub async fn pair(&mut self, hub: &impl Target, parent: &Parent) {
        assert_eq!(self.request(hub).await, 201);
        assert_eq!(self.reveal(hub).await, 200);
        let r = parent
            .post(
                &format!("/api/v1/pairings/{}/confirm", self.pairing_id),
                json!({"code": self.code()}),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "confirm: {}",
            r.text().await.unwrap_or_default()
        );
        let (s, v) = self.poll(hub).await;
        assert_eq!((s, v["status"].as_str()), (200, Some("approved")));
    }

    /// The messages in this toy's inbox (`GET /toy/v1/inbox`).
    pub async fn inbox(&self, hub: &impl Target) -> Vec<Value> {
        let v: Value = self
            .client(hub)
            .get(hub.url("/toy/v1/inbox"))
            .send()
            .await
            .expect("inbox")
            .json()
            .await
            .expect("json");
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// A client presenting this toy's certificate.
    pub fn client(&self, hub: &impl Target) -> reqwest::Client {
        hub.with_cert(self.cert_pem.as_deref().expect("paired"), &self.key_pem)
    }
}

pub fn rand_bytes() -> [u8; 32] {
    rand::random()
}

/// The SubjectPublicKeyInfo DER bytes exactly as they stand inside a PEM
/// CSR, found with `x509-parser` (not the hub's `check_csr`).
pub fn csr_spki_der(csr_pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).expect("CSR PEM");
    assert_eq!(pem.label, "CERTIFICATE REQUEST");
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .expect("CSR DER");
    csr.certification_request_info.subject_pki.raw.to_vec()
}

/// docs/toy-protocol.md section 3, step 3, written independently of the hub:
/// SHA-256 over "hearth-pair-v1" || CA DER || toy SPKI DER || toy nonce ||
/// hub nonce; the first four bytes big-endian, mod 10^6, six digits.
pub fn pairing_code_from_parts(
    ca_der: &[u8],
    spki_der: &[u8],
    toy_nonce: &[u8; 32],
    hub_nonce: &[u8; 32],
) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"hearth-pair-v1");
    h.update(ca_der);
    h.update(spki_der);
    h.update(toy_nonce);
    h.update(hub_nonce);
    let d = h.finalize();
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000;
    format!("{n:06}")
}

/// The pairing code for a CA and CSR in PEM (see [`pairing_code_from_parts`]).
pub fn pairing_code(
    ca_pem: &str,
    csr_pem: &str,
    toy_nonce: &[u8; 32],
    hub_nonce: &[u8; 32],
) -> String {
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("CA PEM");
    assert_eq!(ca.label, "CERTIFICATE");
    pairing_code_from_parts(&ca.contents, &csr_spki_der(csr_pem), toy_nonce, hub_nonce)
}

#[test]
fn independent_pairing_code_matches_the_published_vector() {
    let ca: Vec<u8> = (0x00..=0x0f).collect();
    let key: Vec<u8> = (0x64..=0x83).collect();
    assert_eq!(
        pairing_code_from_parts(&ca, &key, &[0x11; 32], &[0x22; 32]),
        "880298"
    );
}

/// Kills and reaps a child process when dropped, so a test that panics
/// never leaves a `hearth serve` running.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `cmd` (stdout and stderr captured, stdin null unless `input` is
/// given) and returns its output; kills it and panics after `secs`.
pub fn run_with_timeout(
    cmd: &mut std::process::Command,
    secs: u64,
    input: Option<&[u8]>,
) -> std::process::Output {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let what = format!("{:?}", cmd.get_program());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = ChildGuard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    );
    if let (Some(bytes), Some(mut stdin)) = (input, child.0.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(
        child
            .0
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .0
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        match child.0.try_wait().expect("wait") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => panic!("{what} did not finish within {secs} s"),
        }
    };
    std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// True when `program` can be run (for `skipped:` messages).
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null())
        .spawn()
        .map(|mut c| {
            let _ = c.kill();
            let _ = c.wait();
        })
        .is_ok()
}

/// The real `hearth serve` binary on 127.0.0.1 with `--no-mdns`, for tests
/// that restart the hub on the same data directory. It is stopped with
/// SIGINT by [`Served::stop`], and killed if dropped while running.
pub struct Served {
    pub port: u16,
    pub ca_pem: String,
    pub log: String,
    child: ChildGuard,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Target for Served {
    fn port(&self) -> u16 {
        self.port
    }
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

impl Served {
    /// Starts the hub on `data` (made if missing) and waits up to 60 s for it
    /// to serve.
    pub fn start(data: &std::path::Path) -> Served {
        Self::start_with(data, "")
    }

    /// [`Served::start`] with `extra` appended to the configuration file.
    pub fn start_with(data: &std::path::Path, extra: &str) -> Served {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let config = data.with_extension("toml");
        std::fs::write(&config, format!("version = 1\n{extra}")).expect("config");
        let mut child = ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(data)
                .args(["--listen", "127.0.0.1:0", "--no-mdns"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn hearth"),
        );
        let stderr = child.0.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            port: 0,
            ca_pem: String::new(),
            log: String::new(),
            child,
            lines,
        };
        let line = served.wait_line(60, |l| l.contains("hearth is serving"));
        served.port = line
            .rsplit("port=")
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        served.ca_pem = std::fs::read_to_string(data.join("ca.crt")).expect("ca.crt");
        served
    }

    /// Waits up to `secs` for a log line matching `pred`.
    pub fn wait_line(&mut self, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.next_line(deadline) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("hearth serve: {e:?}; its log:\n{}", self.log),
            }
        }
    }

    /// The next log line before `deadline`, also kept in `log`.
    fn next_line(
        &mut self,
        deadline: Instant,
    ) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        let l = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
        self.log.push_str(&l);
        self.log.push('\n');
        Ok(l)
    }

    /// Stops the hub with SIGINT and waits up to 20 s for it to exit.
    pub fn stop(mut self) -> String {
        let kill = run_with_timeout(
            std::process::Command::new("kill")
                .arg("-INT")
                .arg(self.child.0.id().to_string()),
            10,
            None,
        );
        assert!(kill.status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.next_line(deadline) {
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("hearth serve did not stop: {e:?}; its log:\n{}", self.log),
            }
        }
        let status = self.child.0.wait().expect("wait");
        assert!(
            status.success(),
            "hearth serve exited with {status}:\n{}",
            self.log
        );
        std::mem::take(&mut self.log)
    }

    /// Signs in over the API; returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.anon()
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// A [`Parent`] with `token`.
    pub fn parent(&self, token: &str) -> Parent {
        Parent {
            client: self.anon(),
            token: token.to_owned(),
            base: format!("https://localhost:{}", self.port),
        }
    }
}

/// The toy uploads a 2-second recording; returns the message id.
pub(crate) async fn recording_from(hub: &impl Target, toy: &TestToy) -> String {
    let r = toy
        .client(hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .body(crate::messages::tone_wav(2.0, 16_000))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

/// Dad's password in [`family`].
pub const DAD_PW: &str = "juniper otter lighthouse";
/// Gran's password in [`family`].
pub const GRAN_PW: &str = "saffron tugboat meadow";

/// A household on a fresh hub: Mum (the admin), Dad (a parent), Gran (a
/// relative granted `gran_toy`) and `toys` paired by Mum, in that order.
pub struct Family {
    pub hub: Hub,
    pub mum: Parent,
    pub dad: Parent,
    pub gran: Parent,
    pub toys: Vec<TestToy>,
}

/// Sets up a [`Family`].
pub async fn family(toys: &[&str], gran_toy: &str) -> Family {
    let hub = Hub::start().await;
    let mum = hub.parent().await;
    let mut paired = Vec::new();
    for id in toys {
        let mut toy = TestToy::new(id);
        toy.pair(&hub, &mum).await;
        paired.push(toy);
    }
    let dad = hub
        .member(&mum, json!({"role": "parent"}), "dad", DAD_PW)
        .await;
    let gran = hub
        .member(
            &mum,
            json!({"role": "relative", "toys": [gran_toy]}),
            "gran",
            GRAN_PW,
        )
        .await;
    Family {
        hub,
        mum,
        dad,
        gran,
        toys: paired,
    }
}
