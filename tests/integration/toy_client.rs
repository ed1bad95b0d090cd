//! The reference toy against the real hub: the library toy (`hearth::toy`)
//! pairs, talks the toy API and is refused once removed; the real
//! `hearth-toy` binary pairs, reports its status, receives a message and
//! stops when a parent removes it. The parent's side goes through
//! `/api/v1` exactly as the web UI's scripts do.
//!
//! Helpers are local to this file on purpose (the shared harness is written
//! in parallel); no sleeps: every wait is a poll with a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hearth::app::Application;
use hearth::clock::SystemClock;
use hearth::config::Config;
use hearth::domain::{Hex32, IdempotencyKey};
use hearth::toy::{HubAddress, PairOptions, PairingFailure, ToyClient, ToyError, ToyState, pair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(30);

/// A hub running in this process, with a logged-in admin.
struct TestHub {
    port: u16,
    _data: tempfile::TempDir,
    http: reqwest::Client,
    token: String,
}

impl TestHub {
    async fn start() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = Config::development_defaults();
        config.data_dir = data.path().to_owned();
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.mdns.enabled = false;
        let app = Application::build_with_clock(config, Arc::new(SystemClock))
            .await
            .expect("hub builds");
        let port = app.port();
        actix_web::rt::spawn(app.run_until_stopped());
        let http = parent_client(data.path(), port);
        let mut hub = Self {
            port,
            _data: data,
            http,
            token: String::new(),
        };
        let code =
            std::fs::read_to_string(hub._data.path().join("setup-code")).expect("setup code");
        let (status, _) = hub
            .call(
                "POST",
                "/api/v1/setup",
                Some(json!({"setup_code": code.trim(), "household": "Fern House",
                            "username": "mum", "password": "quiet-otter-lantern-1987"})),
            )
            .await;
        assert_eq!(status, 201, "setup");
        let (status, body) = hub
            .call(
                "POST",
                "/api/v1/login",
                Some(json!({"username": "mum", "password": "quiet-otter-lantern-1987"})),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        hub.token = body["token"].as_str().expect("token").to_owned();
        hub
    }

    fn direct(&self) -> HubAddress {
        HubAddress::parse(&format!("127.0.0.1:{}", self.port), Some("localhost")).expect("address")
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("https://localhost:{}{path}", self.port);
        let mut req = self.http.request(method.parse().expect("method"), url);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("parent request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn toys(&self) -> Value {
        let (status, body) = self.call("GET", "/api/v1/toys", None).await;
        assert_eq!(status, 200);
        body
    }

    /// Waits for the pending pairing, checks it, and types the code.
    async fn confirm(&self, expected_pairing: Option<&str>, code: &str) -> String {
        let pending = poll(|| async {
            let toys = self.toys().await;
            toys["pending"]
                .as_array()
                .and_then(|p| p.iter().find(|x| x["awaiting"] == "confirmation").cloned())
        })
        .await;
        let id = pending["pairing_id"]
            .as_str()
            .expect("pairing id")
            .to_owned();
        if let Some(e) = expected_pairing {
            assert_eq!(id, e);
        }
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/pairings/{id}/confirm"),
                Some(json!({"code": code})),
            )
            .await;
        assert_eq!(status, 200, "confirm: {body}");
        body["toy_id"].as_str().expect("toy id").to_owned()
    }

    async fn send_message(&self, toy_id: &str) -> String {
        let resp = self
            .http
            .post(format!(
                "https://localhost:{}/api/v1/toys/{toy_id}/messages",
                self.port
            ))
            .bearer_auth(&self.token)
            .header("content-type", "audio/wav")
            .body(wav_second())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 201);
        let v: Value = resp.json().await.expect("json");
        v["id"].as_str().expect("id").to_owned()
    }
}

/// A parent's HTTP client that trusts the hub CA from its data directory.
fn parent_client(data: &Path, port: u16) -> reqwest::Client {
    let ca = CertificateDer::from_pem_file(data.join("ca.crt")).expect("ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .no_proxy()
        .build()
        .expect("client")
}

/// One second of a 440 Hz tone, 16 kHz mono 16-bit WAV.
fn wav_second() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).expect("wav");
        for i in 0..16_000 {
            let t = i as f32 / 16_000.0;
            w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
                .expect("sample");
        }
        w.finalize().expect("finalize");
    }
    cur.into_inner()
}

/// Polls `f` until it gives `Some`, or panics after [`DEADLINE`].
async fn poll<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn library_toy_pairs_talks_and_is_refused_once_removed() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = ToyState::open(dir.path()).expect("state");
    let addr = hub.direct();

    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = PairOptions::default();
    let pairing = pair(&mut state, &addr, &opts, move |ready| {
        let _ = tx.send((ready.pairing_id.clone(), ready.code.as_str().to_owned()));
    });
    let parent = async {
        let (pairing_id, code) = rx.await.expect("code announced");
        assert_eq!(code.len(), 6);
        hub.confirm(Some(&pairing_id), &code).await
    };
    let (paired, toy_id) = tokio::join!(pairing, parent);
    paired.expect("paired");
    assert_eq!(toy_id, state.toy_id().as_str());
    assert!(state.is_paired());
    // The credentials survive a restart.
    let state = ToyState::open(dir.path()).expect("reopen");
    assert!(state.is_paired());

    let client = ToyClient::new(&state, &addr).expect("client");
    let me = client.whoami().await.expect("whoami");
    assert_eq!(me.toy_id, toy_id);

    client
        .status(Some(55), Some("test 1"))
        .await
        .expect("status");
    let toys = hub.toys().await;
    assert_eq!(toys["paired"][0]["battery"], 55);

    assert!(client.inbox(0).await.expect("inbox").is_empty());
    let msg_id = hub.send_message(&toy_id).await;
    let inbox = client.inbox(5).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].id, msg_id);
    assert!(!client.fetch_audio(&msg_id).await.expect("audio").is_empty());
    client.played(&msg_id).await.expect("played");
    assert!(client.inbox(0).await.expect("inbox").is_empty());
    // Another id is not this toy's: a typed hub error, not a panic.
    assert!(matches!(
        client.fetch_audio("../../whoami").await,
        Err(ToyError::Hub { status: 404, .. })
    ));

    let key = IdempotencyKey::parse("rec-test-1").expect("key");
    let first = client
        .upload_recording(wav_second(), "audio/wav", &key)
        .await
        .expect("upload");
    let again = client
        .upload_recording(wav_second(), "audio/wav", &key)
        .await
        .expect("upload again");
    assert_eq!(
        first.id, again.id,
        "a retry with the same key stores nothing new"
    );

    let (status, _) = hub
        .call("DELETE", &format!("/api/v1/toys/{toy_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        matches!(client.whoami().await, Err(ToyError::Removed)),
        "removed toy"
    );
    assert!(matches!(client.inbox(0).await, Err(ToyError::Removed)));
}

#[actix_web::test]
async fn pairing_stops_when_the_ca_differs_from_the_mdns_record() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = ToyState::open(dir.path()).expect("state");
    let mut addr = hub.direct();
    addr.ca_sha256 = Some(Hex32([7; 32]));
    let r = pair(&mut state, &addr, &PairOptions::default(), |_| {
        panic!("no code may be announced")
    })
    .await;
    assert!(
        matches!(r, Err(ToyError::Pairing(PairingFailure::CaMismatch))),
        "{r:?}"
    );
    assert!(!state.is_paired());
}

#[actix_web::test]
async fn a_toy_with_no_certificate_is_not_paired_and_a_foreign_ca_is_refused() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = ToyState::open(dir.path()).expect("state");
    assert!(matches!(
        ToyClient::new(&state, &hub.direct()),
        Err(ToyError::NotPaired(_))
    ));

    // A toy that pinned another hub's CA refuses this hub.
    let other = TestHub::start().await;
    let mut state = ToyState::open(dir.path()).expect("state");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (other_addr, opts) = (other.direct(), PairOptions::default());
    let pairing = pair(&mut state, &other_addr, &opts, move |r| {
        let _ = tx.send(r.code.as_str().to_owned());
    });
    let parent = async { other.confirm(None, &rx.await.expect("code")).await };
    let (paired, _) = tokio::join!(pairing, parent);
    paired.expect("paired");
    let client = ToyClient::new(&state, &hub.direct()).expect("client");
    let r = client.whoami().await;
    assert!(matches!(r, Err(ToyError::HubIdentity(_))), "{r:?}");

    // A certificate this hub did not issue ends in a TLS alert (or 401):
    // either way the toy is "not paired".
    let creds = hearth::toy::Credentials {
        ca_pem: std::fs::read_to_string(hub._data.path().join("ca.crt")).expect("ca"),
        cert_pem: state.credentials().expect("paired").cert_pem.clone(),
    };
    state.set_paired(creds, hub.direct()).expect("store");
    let client = ToyClient::new(&state, &hub.direct()).expect("client");
    let r = client.whoami().await;
    assert!(matches!(r, Err(ToyError::NotPaired(_))), "{r:?}");
}

struct Child {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

impl Child {
    fn spawn(state: &Path, port: u16) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-toy"))
            .args([
                "--no-mdns",
                "--hub",
                &format!("127.0.0.1:{port}"),
                "--hub-name",
                "localhost",
            ])
            .args(["--battery", "77", "--name", "Test Bear", "--state"])
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("hearth-toy starts");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    async fn line_starting(&mut self, prefix: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                self.seen.push(line.clone());
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.to_owned());
                }
            }
            None
        };
        match tokio::time::timeout(DEADLINE, read).await {
            Ok(Some(rest)) => rest,
            _ => panic!("no line starting {prefix:?}; saw {:#?}", self.seen),
        }
    }
}

#[actix_web::test]
async fn the_binary_pairs_reports_status_receives_and_stops_when_removed() {
    let hub = TestHub::start().await;
    let state: PathBuf = tempfile::tempdir().expect("tempdir").keep();
    let mut toy = Child::spawn(&state, hub.port);

    let code = toy.line_starting("pairing code: ").await;
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code:?}"
    );
    let toy_id = hub.confirm(None, &code).await;
    toy.line_starting("paired with the hub").await;
    toy.line_starting("status sent (battery 77%)").await;
    let listed = poll(|| async {
        let toys = hub.toys().await;
        (toys["paired"][0]["battery"] == 77).then_some(toys)
    })
    .await;
    assert_eq!(listed["paired"][0]["toy_id"], toy_id.as_str());
    assert_eq!(listed["paired"][0]["name"], "Test Bear");

    let msg_id = hub.send_message(&toy_id).await;
    let rest = toy
        .line_starting(&format!("received message {msg_id}: "))
        .await;
    assert!(Path::new(&rest).starts_with(&state), "{rest}");
    assert!(!std::fs::read(&rest).expect("saved audio").is_empty());
    poll(|| async {
        let (_, v) = hub
            .call("GET", &format!("/api/v1/messages?toy={toy_id}"), None)
            .await;
        (v["messages"][0]["state"] == "played").then_some(())
    })
    .await;

    let (status, _) = hub
        .call("DELETE", &format!("/api/v1/toys/{toy_id}"), None)
        .await;
    assert_eq!(status, 204);
    toy.line_starting("error: this toy was removed").await;
    let exit = tokio::time::timeout(DEADLINE, toy.child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(exit.code(), Some(3));

    // Started again, a paired toy keeps its identity and needs no new pairing.
    let _ = std::fs::remove_dir_all(&state);
}
