//! Abuse and durability, mostly against real `hearth` processes: parallel
//! password guesses (throttle and memory), pairing hijacks and floods,
//! SIGKILL during uploads, a full disk.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::harness::{Hub, PASSWORD, TestToy};
use crate::proc_hub::ProcHub;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// 60 parallel wrong passwords for one account: all but a handful are
/// answered 429 (the throttle slot is taken before the Argon2 work), and
/// the hub's peak resident memory stays under 100 MiB (at most two Argon2
/// computations at once).
#[test]
fn parallel_wrong_passwords_are_throttled_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(String::new()));
    let hub = ProcHub::start(&dir.path().join("data"), Arc::clone(&log))
        .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")));
    let rt = runtime();
    let statuses = rt.block_on(async {
        hub.setup().await;
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
    eprintln!(
        "60 parallel wrong passwords: {} x 401, {} x 429; peak RSS {} MiB",
        count(401),
        count(429),
        peak_kib / 1024
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
    let inbox: Value = new
        .client(&hub)
        .get(hub.url("/toy/v1/inbox"))
        .send()
        .await
        .expect("inbox")
        .json()
        .await
        .expect("json");
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(0),
        "the new key does not inherit the old inbox: {inbox}"
    );
    let toys = parent.json("/api/v1/toys").await;
    assert_eq!(toys["paired"][0]["toy_id"], "bear");
    assert_eq!(toys["paired"][0]["key_changed"], true, "{toys}");
}
