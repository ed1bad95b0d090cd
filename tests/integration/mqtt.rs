//! Home Assistant over MQTT against a real Mosquitto broker that the test
//! starts on a loopback port with a password file (once with TLS, with a
//! test CA made by rcgen). What arrives is read with `mosquitto_sub` (hex
//! payloads, retain flag), never with the hub's own client; the hub's id
//! in the topics is computed here from its CA (SHA-256, first 12 hex).
//! Skipped through `skips::skip` when Mosquitto is not installed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth::clock::ManualClock;
use serde_json::{Value, json};
use sha2::Digest;

use crate::harness::{
    ChildGuard, Hub, Served, Target, TestToy, eventually, have, run_with_timeout,
};

const USER: &str = "hearth";
const PASS: &str = "broker secret 42";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn missing_mosquitto() -> bool {
    for tool in [
        "mosquitto",
        "mosquitto_sub",
        "mosquitto_pub",
        "mosquitto_passwd",
    ] {
        if !have(tool) {
            crate::skips::skip(
                &format!("the MQTT tests need {tool} (a real broker and its clients)"),
                "sudo apt install mosquitto mosquitto-clients",
            );
            return true;
        }
    }
    false
}

/// The test CA and a broker certificate for `localhost` and 127.0.0.1.
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "MQTT test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    TestPki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A Mosquitto broker on 127.0.0.1 with a password file.
struct Broker {
    port: u16,
    dir: PathBuf,
    tls: bool,
    child: Option<ChildGuard>,
}

impl Broker {
    fn start(dir: &Path, pki: Option<&TestPki>) -> Broker {
        let port = free_port();
        let passwd = dir.join("passwd");
        let out = run_with_timeout(
            Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(&passwd)
                .args([USER, PASS]),
            20,
            None,
        );
        assert!(out.status.success(), "mosquitto_passwd: {out:?}");
        let mut conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\nlog_dest stderr\nuser root\n",
            passwd.display()
        );
        if let Some(p) = pki {
            for (name, text) in [
                ("ca.pem", &p.ca_pem),
                ("server.pem", &p.cert_pem),
                ("server.key", &p.key_pem),
            ] {
                std::fs::write(dir.join(name), text).expect("write");
            }
            conf.push_str(&format!(
                "certfile {}\nkeyfile {}\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ));
        }
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
        let mut b = Broker {
            port,
            dir: dir.to_owned(),
            tls: pki.is_some(),
            child: None,
        };
        b.resume();
        b
    }

    /// Starts (again) on the same port; retained messages are gone
    /// (no persistence), so whatever arrives was published again.
    fn resume(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        self.child = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "mosquitto did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client_args(&self) -> Vec<String> {
        let mut a = vec![
            "-p".to_owned(),
            self.port.to_string(),
            "-u".into(),
            USER.into(),
            "-P".into(),
            PASS.into(),
        ];
        if self.tls {
            a.extend([
                "-h".into(),
                "localhost".into(),
                "--cafile".into(),
                self.dir.join("ca.pem").display().to_string(),
            ]);
        } else {
            a.extend(["-h".into(), "127.0.0.1".into()]);
        }
        a
    }

    fn mqtt_config(&self) -> hearth::config::MqttConfig {
        hearth::config::MqttConfig {
            enabled: true,
            host: if self.tls { "localhost" } else { "127.0.0.1" }.into(),
            port: self.port,
            tls: self.tls,
            ca_file: self.tls.then(|| self.dir.join("ca.pem")),
            username: USER.into(),
            ..Default::default()
        }
    }

    /// The retained message of `topic` now (a fresh subscriber), if any.
    fn retained(&self, topic: &str) -> Option<Vec<u8>> {
        let out = run_with_timeout(
            Command::new("mosquitto_sub")
                .args(self.client_args())
                .args([
                    "-t",
                    topic,
                    "--retained-only",
                    "-C",
                    "1",
                    "-W",
                    "2",
                    "-F",
                    "%x",
                ]),
            20,
            None,
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !line.is_empty()).then(|| hex::decode(line).expect("hex"))
    }

    fn publish(&self, topic: &str, payload: &str) {
        let out = run_with_timeout(
            Command::new("mosquitto_pub")
                .args(self.client_args())
                .args(["-t", topic, "-m", payload]),
            20,
            None,
        );
        assert!(out.status.success(), "mosquitto_pub: {out:?}");
    }
}

/// One message as `mosquitto_sub` printed it.
#[derive(Debug, Clone)]
struct Msg {
    retained: bool,
    topic: String,
    payload: Vec<u8>,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// `mosquitto_sub -t '#'` collecting every message.
struct Sub {
    _child: ChildGuard,
}

impl Sub {
    fn start(broker: &Broker, seen: Arc<Mutex<Vec<Msg>>>) -> Sub {
        let mut child = ChildGuard(
            Command::new("mosquitto_sub")
                .args(broker.client_args())
                .args(["-t", "#", "-F", "%r\t%t\t%x"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto_sub starts"),
        );
        let out = child.0.stdout.take().expect("stdout");
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut f = line.splitn(3, '\t');
                let (Some(r), Some(t), Some(x)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let payload = hex::decode(x.trim()).expect("hex payload");
                sink.lock().expect("lock").push(Msg {
                    retained: r == "1",
                    topic: t.to_owned(),
                    payload,
                });
            }
        });
        Sub { _child: child }
    }
}

fn all(seen: &Arc<Mutex<Vec<Msg>>>) -> Vec<Msg> {
    seen.lock().expect("lock").clone()
}

/// Waits for a message on `topic` after the first `from` that `pred` accepts.
async fn wait_msg(
    seen: &Arc<Mutex<Vec<Msg>>>,
    from: usize,
    topic: &str,
    pred: impl Fn(&Msg) -> bool,
) -> Msg {
    eventually(30, topic, || {
        let found = all(seen)
            .into_iter()
            .skip(from)
            .find(|m| m.topic == topic && pred(m));
        async move { found }
    })
    .await
}

/// The hub's id as the test derives it from the hub's CA certificate.
fn hub_id(ca_pem: &str) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
    hex::encode(sha2::Sha256::digest(der.as_ref()))[..12].to_owned()
}

/// A hub whose data directory holds the broker password before it starts.
async fn hub_for(broker: &Broker) -> Hub {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .expect("data dir");
    let pw = data.join("mqtt-password");
    std::fs::write(&pw, PASS).expect("password");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let cfg = broker.mqtt_config();
    Hub::start_in(dir, ManualClock::default(), move |c| c.mqtt = cfg).await
}

async fn pair_bear(hub: &Hub) -> (crate::harness::Parent, TestToy) {
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(hub, &parent).await;
    (parent, toy)
}

#[actix_web::test]
async fn home_assistant_sees_toys_events_removal_and_a_broker_restart() {
    if missing_mosquitto() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start(tmp.path(), None);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _sub = Sub::start(&broker, seen.clone());
    let hub = hub_for(&broker).await;
    let id = hub_id(&hub.ca_pem);
    let hub_cfg = format!("homeassistant/device/hearth_{id}/config");
    let toy_cfg = format!("homeassistant/device/hearth_{id}_bear/config");

    // The hub appears with its availability.
    let c = wait_msg(&seen, 0, &hub_cfg, |m| !m.payload.is_empty()).await;
    assert!(c.retained || broker.retained(&hub_cfg).is_some());
    assert_eq!(c.json()["device"]["identifiers"][0], format!("hearth_{id}"));
    wait_msg(&seen, 0, "hearth/status", |m| m.payload == b"online").await;
    assert_eq!(
        broker.retained("hearth/status").as_deref(),
        Some(&b"online"[..])
    );

    // A paired toy appears: its device, via the hub, with its entities.
    let (parent, toy) = pair_bear(&hub).await;
    let c = wait_msg(&seen, 0, &toy_cfg, |m| !m.payload.is_empty())
        .await
        .json();
    assert_eq!(c["device"]["via_device"], format!("hearth_{id}"));
    assert_eq!(c["device"]["name"], "Bear");
    let cmps = &c["components"];
    assert_eq!(cmps["online"]["platform"], "binary_sensor");
    assert_eq!(cmps["battery"]["device_class"], "battery");
    assert_eq!(cmps["last_seen"]["device_class"], "timestamp");
    assert_eq!(cmps["unheard"]["platform"], "sensor");
    assert_eq!(cmps["event"]["platform"], "event");
    assert_eq!(
        cmps["event"]["event_types"],
        json!(["new_recording", "message_played", "reply_awaiting_approval"])
    );
    assert!(
        broker.retained(&toy_cfg).is_some(),
        "the config is retained"
    );
    wait_msg(&seen, 0, "hearth/toy/bear/state", |m| {
        m.json()["unheard"] == 0
    })
    .await;

    // A recording: one new_recording event, and the count goes up.
    let wav = crate::messages::tone_wav(1.0, 16_000);
    let r = toy
        .client(&hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .header("idempotency-key", "rec-1")
        .body(wav.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let message_id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ev = wait_msg(&seen, 0, "hearth/toy/bear/event", |_| true).await;
    assert_eq!(ev.json(), json!({"event_type": "new_recording"}));
    assert!(!ev.retained);
    wait_msg(&seen, 0, "hearth/toy/bear/state", |m| {
        m.json()["unheard"] == 1
    })
    .await;
    // Keeping it changes the message again (a second `event: message`),
    // and a later change (battery) is published after anything these
    // caused; by then still exactly one event.
    let r = parent
        .patch(
            &format!("/api/v1/messages/{message_id}"),
            json!({"keep": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mark = all(&seen).len();
    let r = toy
        .client(&hub)
        .post(hub.url("/toy/v1/status"))
        .json(&json!({"battery": 57}))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), 204);
    wait_msg(&seen, mark, "hearth/toy/bear/state", |m| {
        m.json()["battery"] == 57
    })
    .await;
    let events: Vec<Msg> = all(&seen)
        .into_iter()
        .filter(|m| m.topic == "hearth/toy/bear/event")
        .collect();
    assert_eq!(events.len(), 1, "exactly one new_recording: {events:?}");

    // A parent's message, played by the toy: one `message_played`.
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(crate::messages::tone_wav(0.5, 16_000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let sent = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = toy
        .client(&hub)
        .post(hub.url(&format!("/toy/v1/messages/{sent}/played")))
        .send()
        .await
        .expect("played");
    assert!(r.status().is_success(), "{}", r.status());
    let ev = wait_msg(&seen, mark, "hearth/toy/bear/event", |m| {
        m.json()["event_type"] == "message_played"
    })
    .await;
    assert_eq!(ev.json(), json!({"event_type": "message_played"}));

    // The admin's view and test button.
    let o = parent.json("/api/v1/mqtt").await;
    assert_eq!(
        (o["link"].as_str(), o["password_set"].as_bool()),
        (Some("connected"), Some(true)),
        "{o}"
    );
    assert!(o.get("password").is_none());
    let r = parent.post("/api/v1/mqtt/check", json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["ok"], true, "{v}");

    // Home Assistant restarts and says `online`: the hub publishes again.
    let mark = all(&seen).len();
    broker.publish("homeassistant/status", "online");
    wait_msg(&seen, mark, &toy_cfg, |m| !m.payload.is_empty()).await;

    // The broker goes away: the hub answers at once, and stores a recording.
    broker.stop();
    let started = Instant::now();
    let toys = parent.json("/api/v1/toys").await;
    assert_eq!(toys["paired"][0]["toy_id"], "bear");
    assert!(
        // Well under the 10 s a connection attempt may take.
        started.elapsed() < Duration::from_secs(5),
        "the API waited {:?} while the broker was down",
        started.elapsed()
    );
    let r = toy
        .client(&hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .header("idempotency-key", "rec-2")
        .body(crate::messages::tone_wav(0.5, 16_000))
        .send()
        .await
        .expect("upload while the broker is down");
    assert_eq!(r.status(), 201);
    assert!(started.elapsed() < Duration::from_secs(10));
    let v: Value = parent
        .post("/api/v1/mqtt/check", json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach")),
        "{v}"
    );

    // It comes back empty (no persistence): the hub publishes everything again.
    broker.resume();
    let seen2 = Arc::new(Mutex::new(Vec::new()));
    let sub2 = Sub::start(&broker, seen2.clone());
    wait_msg(&seen2, 0, &hub_cfg, |m| !m.payload.is_empty()).await;
    wait_msg(&seen2, 0, &toy_cfg, |m| !m.payload.is_empty()).await;
    wait_msg(&seen2, 0, "hearth/toy/bear/state", |m| {
        m.json()["unheard"] == 2
    })
    .await;
    wait_msg(&seen2, 0, "hearth/status", |m| m.payload == b"online").await;

    // Unpaired: the empty retained config removes the toy's entities.
    let mark = all(&seen2).len();
    assert_eq!(parent.delete("/api/v1/toys/bear").await.status(), 204);
    wait_msg(&seen2, mark, &toy_cfg, |m| m.payload.is_empty()).await;
    assert_eq!(
        broker.retained(&toy_cfg),
        None,
        "no retained config is left"
    );
    assert!(broker.retained(&hub_cfg).is_some(), "the hub stays");
    drop(sub2);

    // Nothing published carries audio, a message id or a member's name.
    let stored_ogg = hub
        .state
        .store
        .read({
            let id = message_id.clone();
            move |c| hearth::store::messages::audio(c, &id)
        })
        .await
        .expect("read")
        .expect("audio");
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("the message id", message_id.as_bytes().to_vec()),
        ("the sent message's id", sent.as_bytes().to_vec()),
        ("the Ogg magic", b"OggS".to_vec()),
        ("the stored audio", stored_ogg[100..132].to_vec()),
        ("the uploaded WAV", wav[1000..1032].to_vec()),
        ("the RIFF magic", b"RIFF".to_vec()),
        ("the parent's name", b"mum".to_vec()),
        ("the household", b"Fernhill".to_vec()),
    ];
    let msgs: Vec<Msg> = all(&seen).into_iter().chain(all(&seen2)).collect();
    assert!(msgs.len() > 10, "the scan has something to scan");
    // Positive control: the scan finds a needle placed in a payload.
    let control = [msgs[0].payload.clone(), message_id.as_bytes().to_vec()].concat();
    assert!(contains(&control, message_id.as_bytes()));
    for m in &msgs {
        for (what, needle) in &needles {
            assert!(
                !contains(&m.payload, needle) && !contains(m.topic.as_bytes(), needle),
                "{} carries {what}: {:?}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[actix_web::test]
async fn over_tls_with_a_test_ca_and_checked_by_the_command_line() {
    if missing_mosquitto() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = test_pki();
    let broker = Broker::start(tmp.path(), Some(&pki));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _sub = Sub::start(&broker, seen.clone());
    let hub = hub_for(&broker).await;
    let id = hub_id(&hub.ca_pem);
    let _ = pair_bear(&hub).await;
    let toy_cfg = format!("homeassistant/device/hearth_{id}_bear/config");
    let c = wait_msg(&seen, 0, &toy_cfg, |m| !m.payload.is_empty())
        .await
        .json();
    assert_eq!(c["device"]["via_device"], format!("hearth_{id}"));
    wait_msg(&seen, 0, "hearth/status", |m| m.payload == b"online").await;

    // `hearth mqtt check` with the same settings, then a wrong password,
    // then a CA that did not sign the broker's certificate.
    let check = |data: &Path, ca: &Path| {
        let out = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .args(["--data-dir"])
                .arg(data)
                .args(["mqtt", "check"])
                .env("HEARTH_MQTT_ENABLED", "true")
                .env("HEARTH_MQTT_HOST", "localhost")
                .env("HEARTH_MQTT_PORT", broker.port.to_string())
                .env("HEARTH_MQTT_TLS", "true")
                .env("HEARTH_MQTT_CA_FILE", ca)
                .env("HEARTH_MQTT_USERNAME", USER),
            30,
            None,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let ca = tmp.path().join("ca.pem");
    let (code, text) = check(&hub.data_dir(), &ca);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("over TLS"), "{text}");
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("mqtt-password"), "wrong").expect("write");
    let (code, text) = check(other.path(), &ca);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("refused the connection") && text.contains("hearth mqtt set-password"),
        "{text}"
    );
    let foreign = other.path().join("foreign.pem");
    std::fs::write(&foreign, test_pki().ca_pem).expect("write");
    let (code, text) = check(&hub.data_dir(), &foreign);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
}

#[actix_web::test]
async fn a_broker_outside_the_home_network_is_refused() {
    // No broker needed: the address is refused before any connection.
    for host in ["8.8.8.8", "203.0.113.7", "2001:db8::1"] {
        let out = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .args(["--data-dir", "/nonexistent-hearth-dir", "mqtt", "check"])
                .env("HEARTH_MQTT_ENABLED", "true")
                .env("HEARTH_MQTT_HOST", host),
            30,
            None,
        );
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{host}: {text}");
        assert!(
            text.contains("not on the home network") && text.contains(host),
            "{host}: {text}"
        );
    }
    // The running hub refuses it too, says why, and serves on.
    let hub = Hub::start_with(|c| {
        c.mqtt.enabled = true;
        c.mqtt.host = "203.0.113.7".into();
    })
    .await;
    let why = eventually(10, "the publisher's refusal", || {
        let s = hub.state.mqtt.state();
        async move {
            match s {
                hearth::mqtt::LinkState::Failed(w) => Some(w),
                _ => None,
            }
        }
    })
    .await;
    assert!(why.contains("not on the home network"), "{why}");
    let parent = hub.parent().await;
    assert_eq!(parent.get("/api/v1/toys").await.status(), 200);
    let o = parent.json("/api/v1/mqtt").await;
    assert_eq!(o["link"], "failed");
    assert_eq!(o["password_set"], false);

    // The admin stores a password: 0600 in the data directory, in the
    // ledger, never echoed.
    let r = parent
        .client
        .put(hub.url("/api/v1/mqtt/password"))
        .bearer_auth(&parent.token)
        .json(&json!({"password": "s3cret broker pass"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 204);
    let file = hub.data_dir().join("mqtt-password");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "s3cret broker pass"
    );
    let o = parent.json("/api/v1/mqtt").await;
    assert_eq!(o["password_set"], true);
    assert!(!o.to_string().contains("s3cret"));
    let entry = hub
        .ledger()
        .await
        .into_iter()
        .find(|e| e.action.as_str() == "mqtt_password_set")
        .expect("ledger entry");
    assert_eq!(entry.actor.as_deref(), Some("mum"));
    assert!(!entry.detail.contains("s3cret"));
    let r = parent
        .client
        .put(hub.url("/api/v1/mqtt/password"))
        .bearer_auth(&parent.token)
        .json(&json!({"password": "two\nlines"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "s3cret broker pass"
    );
}

/// Setup and sign-in on a served hub.
async fn served_parent(served: &Served, data: &Path) -> crate::harness::Parent {
    let code = std::fs::read_to_string(data.join("setup-code")).expect("setup code");
    let r = served
        .anon()
        .post(served.url("/api/v1/setup"))
        .json(&json!({"setup_code": code.trim(), "household": "Fernhill",
                      "username": "mum", "password": crate::harness::PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 201);
    let v: Value = served
        .login("mum", crate::harness::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    served.parent(v["token"].as_str().expect("token"))
}

#[actix_web::test]
async fn the_served_hub_says_offline_and_clears_toys_unpaired_while_mqtt_was_off() {
    if missing_mosquitto() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(tmp.path(), None);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(data.join("mqtt-password"), PASS).expect("password");
    let section = format!(
        "[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{USER}\"\n",
        broker.port
    );

    // The real binary publishes the toy, and says `offline` when stopped.
    let served = Served::start_with(&data, &section);
    let parent = served_parent(&served, &data).await;
    let mut toy = TestToy::new("bear");
    toy.pair(&served, &parent).await;
    let toy_cfg = format!(
        "homeassistant/device/hearth_{}_bear/config",
        hub_id(&served.ca_pem)
    );
    eventually(30, "the toy's retained config", || {
        let r = broker.retained(&toy_cfg);
        async move { r }
    })
    .await;
    assert_eq!(
        broker.retained("hearth/status").as_deref(),
        Some(&b"online"[..])
    );
    served.stop();
    assert_eq!(
        broker.retained("hearth/status").as_deref(),
        Some(&b"offline"[..])
    );

    // MQTT off: the toy is unpaired; its config stays on the broker.
    let served = Served::start(&data);
    let token: Value = served
        .login("mum", crate::harness::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let parent = served.parent(token["token"].as_str().expect("token"));
    assert_eq!(parent.delete("/api/v1/toys/bear").await.status(), 204);
    served.stop();
    assert!(broker.retained(&toy_cfg).is_some());

    // MQTT on again: the hub removes what it left behind.
    let served = Served::start_with(&data, &section);
    eventually(30, "the stale config removed", || {
        let gone = broker.retained(&toy_cfg).is_none()
            && broker.retained("hearth/status").as_deref() == Some(&b"online"[..]);
        async move { gone.then_some(()) }
    })
    .await;
    served.stop();
}
