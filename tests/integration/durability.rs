//! Abuse and durability, mostly against real `hearth` processes: parallel
//! password guesses (throttle and memory), pairing hijacks and floods,
//! SIGKILL during uploads, a full disk.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Hub, PASSWORD, TestToy};
use crate::proc_hub::ProcHub;

/// A two-thread runtime for tests that drive a [`ProcHub`].
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// How far above its pre-flood figure the hub's resident memory may stay
/// once a flood is over: less than half of one Argon2 working memory
/// (19 MiB), so a kept working memory fails it.
pub(crate) const RSS_MARGIN_KIB: u64 = 8 * 1024;

/// Polls the hub's `VmRSS` until it is within [`RSS_MARGIN_KIB`] of
/// `before_kib`, for up to `within`; returns the last figure and whether it
/// got there.
pub(crate) fn rss_returns(hub: &ProcHub, before_kib: u64, within: Duration) -> (u64, bool) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let now = hub.status_kib("VmRSS").expect("VmRSS of the hub");
        if now <= before_kib + RSS_MARGIN_KIB {
            return (now, true);
        }
        if std::time::Instant::now() >= deadline {
            return (now, false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 60 parallel wrong passwords for one account: all but a handful are
/// answered 429 (the throttle slot is taken before the Argon2 work), the
/// hub's peak resident memory stays under 100 MiB (at most two Argon2
/// computations at once), and its memory returns after the flood: within
/// [`RSS_MARGIN_KIB`] of the figure before it, within 10 s.
#[test]
fn parallel_wrong_passwords_are_throttled_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(String::new()));
    let hub = ProcHub::start(&dir.path().join("data"), Arc::clone(&log))
        .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")));
    let rt = runtime();
    rt.block_on(hub.setup());
    // Setup hashed the parent's password (one Argon2 computation), so a
    // working memory kept after use is already in this figure.
    let before_kib = hub.status_kib("VmRSS").expect("VmRSS of the hub");
    let statuses = rt.block_on(async {
        // From ten loopback addresses, so that the per-address connection
        // caps (`http::limits`) do not hide the throttle under test.
        let tasks: Vec<_> = (0..60u8)
            .map(|i| {
                let c = crate::harness::client_from(&hub.ca_pem, 10 + i % 10);
                let url = hub.url("/api/v1/login");
                tokio::spawn(async move {
                    let body =
                        json!({"username": "mum", "password": format!("wrong guess number {i}")});
                    c.post(url)
                        .json(&body)
                        .send()
                        .await
                        .expect("login")
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.expect("task"));
        }
        statuses
    });
    let peak_kib = hub.status_kib("VmHWM").expect("VmHWM of the hub");
    let threads = hub.status_kib("Threads").unwrap_or(0);
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(
        count(401) + count(429) + count(503),
        60,
        "only 401, 429 or 503: {statuses:?}"
    );
    assert!(
        count(429) >= 50,
        "all but a handful are throttled: {} x 401, {} x 429, {} x 503",
        count(401),
        count(429),
        count(503)
    );
    assert!(
        peak_kib < 100 * 1024,
        "peak RSS {} MiB (threads now: {threads})",
        peak_kib / 1024
    );
    let (after_kib, returned) = rss_returns(&hub, before_kib, Duration::from_secs(10));
    eprintln!(
        "60 parallel wrong passwords: {} x 401, {} x 429; RSS before {} KiB, peak {} KiB, after {} KiB",
        count(401),
        count(429),
        before_kib,
        peak_kib,
        after_kib
    );
    assert!(
        returned,
        "memory did not return after the flood: RSS {before_kib} KiB before, {after_kib} KiB 10 s after (margin {RSS_MARGIN_KIB} KiB)"
    );
}

/// The password rule's dictionaries (zxcvbn builds 5.5 MiB of them on
/// first use, BENCHMARKS.md (g)) never stay in the hub: `hearth serve`
/// asks a short-lived copy of itself. A refused setup that only ran the
/// rule leaves the hub's anonymous memory within 2 MiB of its figure
/// before; the rule still refuses a common password and accepts a good one.
#[test]
fn the_password_rule_leaves_no_dictionaries_in_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(String::new()));
    let data = dir.path().join("data");
    let hub = ProcHub::start(&data, Arc::clone(&log))
        .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")));
    let rt = runtime();
    let code = std::fs::read_to_string(data.join("setup-code")).expect("setup-code");
    let setup = |password: &str| {
        let body = json!({"setup_code": code.trim(), "household": "Fernhill",
                          "username": "mum", "password": password});
        rt.block_on(async {
            let r = hub
                .anon()
                .post(hub.url("/api/v1/setup"))
                .json(&body)
                .send()
                .await
                .expect("setup");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        })
    };
    // A first refusal that stops before the rule (a short password) warms
    // up TLS, HTTP and the JSON path.
    let (status, _) = setup("short");
    assert_eq!(status, 422);
    let before = hub.status_kib("RssAnon").expect("RssAnon of the hub");
    let (status, body) = setup("qwertyuiop123456");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "weak_password", "{body}");
    let after = hub.status_kib("RssAnon").expect("RssAnon of the hub");
    eprintln!("the password rule: RssAnon {before} KiB before, {after} KiB after");
    assert!(
        after < before + 2 * 1024,
        "checking one password kept {} KiB in the hub ({before} -> {after} KiB)",
        after.saturating_sub(before)
    );
    let (status, body) = setup(PASSWORD);
    assert_eq!(status, 201, "a good password is accepted: {body}");
    // The copy's own answer, as the hub reads it.
    for (password, answer) in [("qwertyuiop123456", "common"), (PASSWORD, "fine")] {
        let out = crate::harness::run_with_timeout(
            std::process::Command::new(env!("CARGO_BIN_EXE_hearth")).arg("check-password"),
            60,
            Some(password.as_bytes()),
        );
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{answer}\n"));
    }
    let log = log.lock().expect("log").clone();
    assert!(
        !log.contains("password checker"),
        "the checker answered every time: {log}"
    );
}

/// The same race on `POST /api/v1/me/password`: parallel wrong current
/// passwords from a signed-in session get 403 only for the free guesses.
#[actix_web::test]
async fn parallel_wrong_current_passwords_are_throttled() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    // From ten loopback addresses, below the per-address connection caps.
    let tasks: Vec<_> = (0..30u8)
        .map(|i| {
            let (c, url, token) = (
                crate::harness::client_from(&hub.ca_pem, 10 + i % 10),
                hub.url("/api/v1/me/password"),
                parent.token.clone(),
            );
            actix_web::rt::spawn(async move {
                let body = json!({"current_password": format!("not it {i}"), "new_password": "copper lantern meadow fig"});
                c.post(url).bearer_auth(token).json(&body).send().await.expect("req").status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let wrong = statuses.iter().filter(|s| **s == 403).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(wrong + throttled, 30, "{statuses:?}");
    assert!(
        wrong <= 5,
        "only the free guesses are checked: {statuses:?}"
    );
    // A right password afterwards is refused until the block ends, then works.
    hub.clock.advance(time::Duration::hours(1));
    let r = parent
        .post(
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": "copper lantern meadow fig"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// A different key never replaces a pending pairing; the same key does.
#[actix_web::test]
async fn another_key_cannot_replace_a_pending_pairing() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut real = TestToy::new("bear-3f2a");
    assert_eq!(real.request(&hub).await, 201);
    let r = hub
        .post_json("/toy/v1/pair", &TestToy::new("bear-3f2a").request_body())
        .await;
    assert_eq!(r.status(), 409, "another key is refused");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "pairing_in_progress");
    // The real pairing goes on and completes.
    assert_eq!(real.reveal(&hub).await, 200);
    let first_id = real.pairing_id.clone();
    // The same toy (same key) restarting replaces its own pairing.
    real.nonce = crate::harness::rand_bytes();
    assert_eq!(real.request(&hub).await, 201);
    assert_ne!(real.pairing_id, first_id);
    let old = hub
        .anon()
        .get(hub.url(&format!("/toy/v1/pair/{first_id}")))
        .send()
        .await
        .expect("poll");
    assert_eq!(old.status(), 404);
    assert_eq!(real.reveal(&hub).await, 200);
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", real.pairing_id),
            json!({"code": real.code()}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(real.poll(&hub).await.1["status"], "approved");
}

/// The host's own non-loopback IPv4 address, to reach a hub listening on
/// all addresses from an address that is not loopback.
fn own_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// One device cannot fill the pending slots nor the disk: per address at
/// most 2 pending pairings and 6 requests per 10 minutes (`429` with
/// `Retry-After`), and at most 10 audit rows per window, the rest summed up.
#[actix_web::test]
async fn one_address_cannot_flood_pairing_nor_the_audit_log() {
    let Some(ip) = own_address() else {
        eprintln!("skipped: this machine has no non-loopback IPv4 address");
        return;
    };
    let hub = Hub::start_with(|c| {
        c.listen = "0.0.0.0:0".parse().expect("addr");
        c.allow_public_clients = true;
    })
    .await;
    let parent = hub.parent().await;
    let device = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::harness::tls_config(&hub.ca_pem, None))
        .resolve("localhost", SocketAddr::new(ip, hub.port))
        .build()
        .expect("client");
    let pair = |id: String| {
        let (c, url) = (device.clone(), hub.url("/toy/v1/pair"));
        async move {
            c.post(url)
                .json(&TestToy::new(&id).request_body())
                .send()
                .await
                .expect("pair")
        }
    };
    assert_eq!(pair("junk-0".into()).await.status(), 201);
    assert_eq!(pair("junk-1".into()).await.status(), 201);
    let r = pair("junk-2".into()).await;
    assert_eq!(r.status(), 429, "a third pending pairing from one address");
    assert!(r.headers().contains_key("retry-after"));
    // A real toy elsewhere still gets a slot.
    let mut real = TestToy::new("bear");
    real.pair(&hub, &parent).await;
    // A loop of requests: all refused, and the audit log barely grows.
    let before = audit_rows(&hub).await;
    for i in 3..203 {
        let r = pair(format!("junk-{i}")).await;
        assert_eq!(r.status(), 429);
    }
    let r = pair("junk-late".into()).await;
    let wait: i64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(wait > 60, "the request limit holds for the window: {wait}");
    let during = audit_rows(&hub).await;
    assert!(
        during - before <= 10,
        "{} audit rows for 201 refused requests",
        during - before
    );
    // The next window records again and sums up what was skipped.
    hub.clock.advance(time::Duration::seconds(wait + 1));
    let r = pair("junk-next".into()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let entries = hub
        .state
        .store
        .read(|c| hearth::store::audit::recent(c, 5))
        .await
        .expect("audit");
    assert!(
        entries[0].detail.contains("not recorded one by one"),
        "{:?}",
        entries[0]
    );
}

async fn audit_rows(hub: &Hub) -> usize {
    hub.state
        .store
        .read(|c| hearth::store::audit::recent(c, 100_000))
        .await
        .expect("audit")
        .len()
}

/// A removed toy's id paired again with another key starts with an empty
/// inbox, and parents see that the key changed.
#[actix_web::test]
async fn repaired_id_with_another_key_starts_afresh() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut old = TestToy::new("bear");
    old.pair(&hub, &parent).await;
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(crate::messages::tone_wav(1.0, 16_000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(parent.delete("/api/v1/toys/bear").await.status(), 204);
    let toys = parent.json("/api/v1/toys").await;
    assert!(toys["paired"].as_array().expect("list").is_empty());
    let mut new = TestToy::new("bear");
    new.pair(&hub, &parent).await;
    let inbox = new.inbox(&hub).await;
    assert_eq!(
        inbox.len(),
        0,
        "the new key does not inherit the old inbox: {inbox:?}"
    );
    let toys = parent.json("/api/v1/toys").await;
    assert_eq!(toys["paired"][0]["toy_id"], "bear");
    assert_eq!(toys["paired"][0]["key_changed"], true, "{toys}");
}

/// Pairs a toy with a hub process through the protocol; returns it paired.
async fn pair_with_process(hub: &ProcHub, token: &str, id: &str) -> TestToy {
    let mut t = TestToy::new(id);
    let c = hub.anon();
    let v: Value = c
        .post(hub.url("/toy/v1/pair"))
        .json(&t.request_body())
        .send()
        .await
        .expect("pair")
        .json()
        .await
        .expect("json");
    t.pairing_id = v["pairing_id"].as_str().expect("pairing_id").into();
    hex::decode_to_slice(v["hub_nonce"].as_str().expect("nonce"), &mut t.hub_nonce).expect("hex");
    t.ca_pem = v["ca_cert"].as_str().expect("ca").into();
    let r = c
        .post(hub.url(&format!("/toy/v1/pair/{}/reveal", t.pairing_id)))
        .json(&json!({"toy_nonce": hex::encode(t.nonce)}))
        .send()
        .await
        .expect("reveal");
    assert_eq!(r.status(), 200);
    let r = c
        .post(hub.url(&format!("/api/v1/pairings/{}/confirm", t.pairing_id)))
        .bearer_auth(token)
        .json(&json!({"code": t.code()}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let v: Value = c
        .get(hub.url(&format!("/toy/v1/pair/{}", t.pairing_id)))
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("json");
    t.cert_pem = Some(v["client_cert"].as_str().expect("cert").into());
    t
}

/// One upload: who sends it (a toy id, or `parent` to toy `t0`), its
/// Idempotency-Key, and the message id once a 2xx acknowledged it.
#[derive(Clone, Debug)]
struct Sent {
    who: String,
    key: String,
    id: Option<String>,
}

/// Sends one upload to the hub on `port`; `Err` when the connection failed
/// (the hub died), `Ok(id)` for a 2xx.
async fn upload(
    hub_port: u16,
    client: &reqwest::Client,
    token: &str,
    s: &Sent,
    wav: Vec<u8>,
) -> Result<String, String> {
    let url = if s.who == "parent" {
        format!("https://localhost:{hub_port}/api/v1/toys/t0/messages")
    } else {
        format!("https://localhost:{hub_port}/toy/v1/recordings")
    };
    let mut req = client
        .post(url)
        .header("content-type", "audio/wav")
        .header("idempotency-key", &s.key)
        .body(wav);
    if s.who == "parent" {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.map_err(|e| format!("{e}"))?;
    let status = r.status().as_u16();
    let body = r.text().await.map_err(|e| format!("{e}"))?;
    assert!(
        status == 200 || status == 201,
        "{} got {status}: {body}",
        s.who
    );
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["id"].as_str().expect("id").to_owned())
}

/// Every message id of a toy, as the parent lists them (all pages).
async fn all_ids(hub: &ProcHub, token: &str, toy: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before = String::new();
    loop {
        let v: Value = hub
            .anon()
            .get(hub.url(&format!("/api/v1/messages?toy={toy}&limit=200{before}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let page: Vec<String> = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_owned())
            .collect();
        let Some(last) = page.last().cloned() else {
            return ids;
        };
        ids.extend(page);
        before = format!("&before={last}");
    }
}

fn integrity_ok(data: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(data.join("hearth.db")).expect("open the database");
    c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

/// Three toys and a parent upload at once; the hub is SIGKILLed at a
/// random moment four times and restarted on the same directory. Every
/// upload that got its 2xx is there and decodes, retries with the same
/// Idempotency-Key store nothing twice, and the database stays intact.
#[test]
fn acknowledged_uploads_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = Arc::new(Mutex::new(String::new()));
    let start = |log: &Arc<Mutex<String>>| {
        ProcHub::start(&data, Arc::clone(log))
            .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")))
    };
    let rt = runtime();
    let mut hub = start(&log);
    let (token, toys) = rt.block_on(async {
        hub.setup().await;
        let token = hub.login().await;
        let mut toys = Vec::new();
        for i in 0..3 {
            toys.push(pair_with_process(&hub, &token, &format!("t{i}")).await);
        }
        (token, toys)
    });
    let wav = crate::messages::tone_wav(0.5, 16_000);
    let mut sent: Vec<Sent> = Vec::new();
    for round in 0..4 {
        let kill_after = Duration::from_millis(rand::random_range(300..1500));
        let port = hub.port;
        let senders: Vec<(String, reqwest::Client)> = toys
            .iter()
            .map(|t| {
                (
                    t.toy_id.clone(),
                    hub.with_cert(t.cert_pem.as_deref().expect("paired"), &t.key_pem),
                )
            })
            .chain(std::iter::once(("parent".to_owned(), hub.anon())))
            .collect();
        let round_sent = rt.block_on(async {
            let tasks: Vec<_> = senders
                .into_iter()
                .map(|(who, client)| {
                    let (token, wav) = (token.clone(), wav.clone());
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        for n in 0.. {
                            let mut s = Sent {
                                who: who.clone(),
                                key: format!("r{round}-{who}-{n}"),
                                id: None,
                            };
                            let result = upload(port, &client, &token, &s, wav.clone()).await;
                            let died = result.is_err();
                            s.id = result.ok();
                            mine.push(s);
                            if died {
                                break;
                            }
                        }
                        mine
                    })
                })
                .collect();
            // The crash comes at a random moment while uploads run.
            tokio::time::sleep(kill_after).await;
            let _ = hub.child.kill();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("sender"));
            }
            all
        });
        let _ = hub.child.wait();
        assert_eq!(integrity_ok(&data), "ok", "after crash {round}");
        sent.extend(round_sent);
        hub = start(&log);
        // Retry what was not acknowledged, with the same key.
        rt.block_on(async {
            for s in sent.iter_mut().filter(|s| s.id.is_none()) {
                let client = match toys.iter().find(|t| t.toy_id == s.who) {
                    Some(t) => hub.with_cert(t.cert_pem.as_deref().expect("paired"), &t.key_pem),
                    None => hub.anon(),
                };
                let id = upload(hub.port, &client, &token, s, wav.clone())
                    .await
                    .expect("a retry after the restart is answered");
                s.id = Some(id);
            }
        });
    }
    let acked = sent.len();
    assert!(acked >= 8, "the test made uploads: {acked}");
    rt.block_on(async {
        // Retrying acknowledged uploads returns the same message.
        for s in sent.iter().step_by(3) {
            let client = match toys.iter().find(|t| t.toy_id == s.who) {
                Some(t) => hub.with_cert(t.cert_pem.as_deref().expect("paired"), &t.key_pem),
                None => hub.anon(),
            };
            let again = upload(hub.port, &client, &token, s, wav.clone())
                .await
                .expect("retry");
            assert_eq!(
                Some(again),
                s.id,
                "{} {}: same key, same message",
                s.who,
                s.key
            );
        }
        let mut stored = Vec::new();
        for t in &toys {
            stored.extend(all_ids(&hub, &token, &t.toy_id).await);
        }
        let unique: std::collections::HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "no message is listed twice");
        assert_eq!(
            stored.len(),
            sent.len(),
            "one stored message per Idempotency-Key, none lost"
        );
        for s in &sent {
            let id = s.id.as_ref().expect("acknowledged");
            assert!(unique.contains(id), "{} {} ({id}) is stored", s.who, s.key);
            let r = hub
                .anon()
                .get(hub.url(&format!("/api/v1/messages/{id}/audio")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("audio");
            assert_eq!(r.status(), 200);
            let ogg = r.bytes().await.expect("bytes");
            hearth::audio::ogg_to_wav(&ogg).expect("the stored audio decodes");
        }
    });
    hub.kill();
    assert_eq!(integrity_ok(&data), "ok");
    eprintln!("{acked} uploads acknowledged across 4 crashes, all present, no duplicates");
}

/// A tmpfs mounted for one test (needs root); unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_owned()))
    }

    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        s.blocks_available() as u64 * s.fragment_size() as u64
    }

    /// Writes a file of `bytes` (or until the disk is full); returns what fit.
    fn fill(&self, name: &str, bytes: u64) -> u64 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.0.join(name))
            .expect("filler");
        let chunk = vec![0x5au8; 64 << 10];
        let mut done = 0u64;
        while done < bytes {
            let n = (bytes - done).min(chunk.len() as u64) as usize;
            match f.write(&chunk[..n]) {
                Ok(0) | Err(_) => break,
                Ok(w) => done += w as u64,
            }
        }
        let _ = f.sync_all();
        done
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A toy or the parent, as a client of a hub process.
struct Clients {
    toy: reqwest::Client,
    parent: reqwest::Client,
    token: String,
}

impl Clients {
    fn of(hub: &ProcHub, toy: &TestToy, token: &str) -> Clients {
        Clients {
            toy: hub.with_cert(toy.cert_pem.as_deref().expect("paired"), &toy.key_pem),
            parent: hub.anon(),
            token: token.to_owned(),
        }
    }

    async fn record(&self, hub: &ProcHub, secs: f64) -> reqwest::Response {
        self.toy
            .post(hub.url("/toy/v1/recordings"))
            .header("content-type", "audio/wav")
            .body(crate::messages::tone_wav(secs, 16_000))
            .send()
            .await
            .expect("recording")
    }

    async fn send(&self, hub: &ProcHub, secs: f64) -> reqwest::Response {
        self.parent
            .post(hub.url("/api/v1/toys/t0/messages"))
            .bearer_auth(&self.token)
            .header("content-type", "audio/wav")
            .body(crate::messages::tone_wav(secs, 16_000))
            .send()
            .await
            .expect("message")
    }

    /// Everything a full disk must leave working: listing, playing and
    /// downloading for parents and toys, and signing in.
    async fn reads_work(&self, hub: &ProcHub, ids: &[String], to_toy: &[String]) {
        let r = hub
            .anon()
            .post(hub.url("/api/v1/login"))
            .json(&json!({"username": "mum", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(
            r.status(),
            200,
            "sign-in: {}",
            r.text().await.unwrap_or_default()
        );
        let listed = all_ids(hub, &self.token, "t0").await;
        for id in ids {
            assert!(listed.contains(id), "{id} is listed");
            let r = self
                .parent
                .get(hub.url(&format!("/api/v1/messages/{id}/audio")))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("play");
            assert_eq!(
                r.status(),
                200,
                "a parent plays {id}: {}",
                r.text().await.unwrap_or_default()
            );
            hearth::audio::ogg_to_wav(&r.bytes().await.expect("bytes")).expect("decodes");
        }
        let r = self
            .toy
            .get(hub.url("/toy/v1/inbox"))
            .send()
            .await
            .expect("inbox");
        assert_eq!(r.status(), 200, "the toy lists its inbox");
        for id in to_toy {
            let r = self
                .toy
                .get(hub.url(&format!("/toy/v1/messages/{id}/audio")))
                .send()
                .await
                .expect("download");
            assert_eq!(
                r.status(),
                200,
                "the toy downloads {id}: {}",
                r.text().await.unwrap_or_default()
            );
            hearth::audio::ogg_to_wav(&r.bytes().await.expect("bytes")).expect("decodes");
        }
    }
}

async fn id_of(r: reqwest::Response) -> String {
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_owned()
}

/// The data directory on a small tmpfs: uploads get 507 with the error
/// body, everything else keeps working, deleting frees space, the hub
/// starts on a full disk, uploads resume when space returns, and nothing
/// acknowledged is lost.
#[test]
fn a_full_disk_is_lived_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = match Tmpfs::mount(&dir.path().join("fs"), 32) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    let data = fs.0.join("data");
    let log = Arc::new(Mutex::new(String::new()));
    let start = || {
        ProcHub::start(&data, Arc::clone(&log))
            .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")))
    };
    let rt = runtime();
    let mut hub = start();
    let (token, toy) = rt.block_on(async {
        hub.setup().await;
        let token = hub.login().await;
        (token.clone(), pair_with_process(&hub, &token, "t0").await)
    });
    let mut c = Clients::of(&hub, &toy, &token);
    let (mut kept, mut to_toy) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..3 {
            let id = id_of(c.send(&hub, 1.0).await).await;
            to_toy.push(id.clone());
            kept.push(id);
            kept.push(id_of(c.record(&hub, 2.0).await).await);
        }
    });
    // Something else fills the disk to just above the upload floor.
    let floor = hearth::store::space::FLOOR_BYTES;
    let filled = fs.fill("filler", fs.free().saturating_sub(floor + (256 << 10)));
    assert!(filled > 0, "the filler wrote");
    let mut recent = Vec::new();
    rt.block_on(async {
        let mut refused = None;
        for _ in 0..40 {
            let r = c.record(&hub, 5.0).await;
            if r.status() == 507 {
                refused = Some(r.json::<Value>().await.expect("json"));
                break;
            }
            recent.push(id_of(r).await);
        }
        let body = refused.expect("uploads are refused before the disk is full");
        assert_eq!(body["error"]["code"], "storage_full", "{body}");
        assert_eq!(
            c.send(&hub, 5.0).await.status(),
            507,
            "parents' uploads too"
        );
        c.reads_work(&hub, &kept, &to_toy).await;
        // Deleting messages frees space: uploads work again.
        let mut uploaded = false;
        let mut deletable: Vec<String> = recent.drain(..).chain(kept.drain(..3)).collect();
        while let Some(id) = deletable.pop() {
            let r = c
                .parent
                .delete(hub.url(&format!("/api/v1/messages/{id}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("delete");
            assert_eq!(
                r.status(),
                204,
                "delete on a full disk: {}",
                r.text().await.unwrap_or_default()
            );
            to_toy.retain(|t| *t != id);
            let r = c.record(&hub, 1.0).await;
            if r.status() == 201 {
                kept.push(id_of(r).await);
                uploaded = true;
                break;
            }
            assert_eq!(r.status(), 507);
        }
        kept.extend(deletable);
        assert!(uploaded, "after deletes an upload is stored again");
    });
    // The hub stops, the disk fills to the last byte, the hub starts.
    hub.kill();
    fs.fill("filler", u64::MAX);
    assert!(
        fs.free() < 64 << 10,
        "the disk is full: {} bytes free",
        fs.free()
    );
    log.lock().expect("log").clear();
    hub = start();
    c = Clients::of(&hub, &toy, &token);
    assert!(
        log.lock().expect("log").contains("free space"),
        "the log says what to do"
    );
    rt.block_on(async {
        c.reads_work(&hub, &kept, &to_toy).await;
        assert_eq!(c.record(&hub, 1.0).await.status(), 507);
    });
    // Space comes back: uploads work again, no restart.
    std::fs::remove_file(fs.0.join("filler")).expect("rm filler");
    rt.block_on(async {
        kept.push(id_of(c.record(&hub, 1.0).await).await);
        c.reads_work(&hub, &kept, &to_toy).await;
    });
    hub.kill();
    assert_eq!(integrity_ok(&data), "ok");
}
