//! The test kit: starts a real hub in-process on 127.0.0.1:0 with a
//! temporary data directory and a manual clock, and hands out clients: an
//! anonymous one that trusts the hub CA, a signed-in parent (bearer), a
//! browser-like cookie session, and toys with client certificates.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::app::Application;
use hearth::clock::ManualClock;
use hearth::config::Config;
use hearth::domain::{Hex32, PairingCode};
use hearth::state::AppState;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

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
        let mut config = Config::development_defaults();
        config.data_dir = dir.path().join("data");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.mdns.enabled = false;
        tweak(&mut config);
        let clock = ManualClock::default();
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

pub fn client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
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
        let (key_pem, csr_pem) = hearth::pki::make_toy_key_and_csr(toy_id).expect("csr");
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
               "commitment": Hex32::sha256(&self.nonce).to_hex()})
    }

    /// Step 1; returns the status.
    pub async fn request(&mut self, hub: &Hub) -> u16 {
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
    pub async fn reveal(&self, hub: &Hub) -> u16 {
        hub.anon()
            .post(hub.url(&format!("/toy/v1/pair/{}/reveal", self.pairing_id)))
            .json(&json!({"toy_nonce": hex::encode(self.nonce)}))
            .send()
            .await
            .expect("reveal")
            .status()
            .as_u16()
    }

    /// The code both sides compute.
    pub fn code(&self) -> String {
        let ca_der = CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("ca");
        let csr = hearth::pki::check_csr(&self.csr_pem).expect("csr");
        PairingCode::compute(ca_der.as_ref(), &csr.spki_der, &self.nonce, &self.hub_nonce)
            .as_str()
            .to_owned()
    }

    /// Step 4.
    pub async fn poll(&mut self, hub: &Hub) -> (u16, Value) {
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
    pub async fn pair(&mut self, hub: &Hub, parent: &Parent) {
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

    /// A client presenting this toy's certificate.
    pub fn client(&self, hub: &Hub) -> reqwest::Client {
        hub.with_cert(self.cert_pem.as_deref().expect("paired"), &self.key_pem)
    }
}

pub fn rand_bytes() -> [u8; 32] {
    rand::random()
}
