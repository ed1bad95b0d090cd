//! Abuse and durability, mostly against real `hearth` processes: parallel
//! password guesses (throttle and memory), pairing hijacks and floods,
//! SIGKILL during uploads, a full disk.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::harness::{Hub, PASSWORD};
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
        let c = hub.anon();
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let (c, url) = (c.clone(), hub.url("/api/v1/login"));
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
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (c, url, token) = (
                parent.client.clone(),
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
