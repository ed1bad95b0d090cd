//! Parts of the contract that had no test: restarts on the same data
//! directory, the retention scheduler and "keep forever", the event stream
//! (toy changes, deleted messages, keep-alive, the end at logout), online
//! and offline after two minutes, session expiry, message states that never
//! go backwards, list paging and order, and role checks. Everything goes
//! through HTTP or the binaries; the clock is the harness's manual one.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Hub, PASSWORD, Parent, Served, Target, TestToy, run_with_timeout};
use crate::messages::tone_wav;

/// Rows in the idempotency table, read from the real SQLite file.
fn idempotency_rows(hub: &Hub) -> i64 {
    let c = rusqlite::Connection::open(hub.data_dir().join("hearth.db")).expect("open the db");
    c.query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .expect("count")
}

async fn upload(hub: &Hub, toy: &TestToy, key: &str) -> u16 {
    toy.client(hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .header("idempotency-key", key)
        .body(tone_wav(1.0, 16_000))
        .send()
        .await
        .expect("upload")
        .status()
        .as_u16()
}

#[actix_web::test]
async fn idempotency_keys_are_forgotten_even_when_messages_are_kept_forever() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let r = parent
        .patch("/api/v1/household", json!({"retention_days": null}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upload(&hub, &toy, "rec-1").await, 201);
    assert_eq!(
        upload(&hub, &toy, "rec-1").await,
        200,
        "a retry is replayed"
    );
    assert_eq!(idempotency_rows(&hub), 1);
    // A day and an hour later the key is forgotten by the sweep, although
    // no message ever expires.
    hub.clock.advance(time::Duration::hours(25));
    hearth::messaging::retention_sweep(&hub.state)
        .await
        .expect("sweep");
    assert_eq!(
        idempotency_rows(&hub),
        0,
        "keys older than 24 hours are purged under keep forever too"
    );
    // Keep forever: 40 days on, the sweep deletes nothing.
    hub.clock.advance(time::Duration::days(40));
    let deleted = hearth::messaging::retention_sweep(&hub.state)
        .await
        .expect("sweep");
    assert_eq!(deleted, 0, "nothing expires under keep forever");
    let parent = Parent {
        token: hub.login("mum", PASSWORD).await,
        ..parent
    };
    let list = parent.json("/api/v1/messages").await;
    assert_eq!(list["messages"].as_array().expect("list").len(), 1);
    assert!(list["messages"][0]["expires_at"].is_null(), "{list}");
}

/// Runs `hearth user add NAME --role ROLE` on the hub's data directory.
pub async fn add_user(hub: &Hub, name: &str, role: &str, password: &str) {
    let config = hub.dir.path().join("cli.toml");
    std::fs::write(&config, "version = 1\n").expect("config");
    let (data, name, role, input) = (
        hub.data_dir(),
        name.to_owned(),
        role.to_owned(),
        format!("{password}\n"),
    );
    let out = actix_web::rt::task::spawn_blocking(move || {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .args(["user", "add", &name, "--role", &role, "--config"])
                .arg(&config)
                .arg("--data-dir")
                .arg(&data),
            120,
            Some(input.as_bytes()),
        )
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn parents_and_relatives_get_403_where_their_role_may_not() {
    let hub = Hub::start().await;
    let admin = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &admin).await;
    let r = admin
        .post("/api/v1/toys/bear/messages", json!({}))
        .await
        .status();
    assert_eq!(r, 415, "the admin reaches the handler");
    add_user(&hub, "dad", "parent", "juniper otter lighthouse").await;
    add_user(&hub, "nan", "relative", "saffron tugboat meadow").await;
    let as_user = |token: String| Parent {
        client: hub.anon(),
        token,
        base: hub.origin(),
    };
    let dad = as_user(hub.login("dad", "juniper otter lighthouse").await);
    let nan = as_user(hub.login("nan", "saffron tugboat meadow").await);
    assert_eq!(dad.json("/api/v1/me").await["role"], "parent");
    assert_eq!(nan.json("/api/v1/me").await["role"], "relative");

    // Admin only: a parent is refused, and nothing changes.
    let r = dad
        .patch("/api/v1/household", json!({"name": "Dad's House"}))
        .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert_eq!(admin.json("/api/v1/household").await["name"], "Fernhill");
    // A parent may use toys and messages.
    assert_eq!(dad.get("/api/v1/messages").await.status(), 200);
    let r = dad
        .patch("/api/v1/toys/bear", json!({"name": "Teddy"}))
        .await;
    assert_eq!(r.status(), 200);

    // Message and toy endpoints need the parent or admin role.
    let wav = |p: &Parent| {
        p.client
            .post(format!("{}/api/v1/toys/bear/messages", p.base))
            .bearer_auth(&p.token)
            .header("content-type", "audio/wav")
            .body(tone_wav(1.0, 8000))
            .send()
    };
    // A relative granted no toy: the bear does not exist for her (404, not
    // 403, so she cannot learn that it does), and her message list is empty.
    assert_eq!(wav(&nan).await.expect("req").status(), 404);
    let list = nan.json("/api/v1/messages").await;
    assert_eq!(list["messages"], json!([]), "{list}");
    assert_eq!(
        nan.patch("/api/v1/toys/bear", json!({"name": "Nan's"}))
            .await
            .status(),
        403
    );
    assert_eq!(nan.delete("/api/v1/toys/bear").await.status(), 403);
    assert_eq!(
        nan.patch("/api/v1/household", json!({"retention_days": 7}))
            .await
            .status(),
        403
    );
    // Nothing a refused call tried happened.
    let toys = admin.json("/api/v1/toys").await;
    assert_eq!(toys["paired"][0]["name"], "Teddy");
    let list = admin.json("/api/v1/messages").await;
    assert!(list["messages"].as_array().expect("list").is_empty());
    assert_eq!(admin.json("/api/v1/household").await["retention_days"], 30);
}

async fn send(hub: &Hub, parent: &Parent, secs: f64) -> String {
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(tone_wav(secs, 8000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

#[actix_web::test]
async fn message_lists_are_newest_first_and_page_with_before() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(&hub, &parent, 1.0 + f64::from(i) * 0.1).await);
        hub.clock.advance(time::Duration::seconds(1));
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(ids(&parent.json("/api/v1/messages").await), newest_first);
    let page1 = ids(&parent.json("/api/v1/messages?limit=2").await);
    assert_eq!(page1, newest_first[..2]);
    let page2 = ids(&parent
        .json(&format!("/api/v1/messages?limit=2&before={}", page1[1]))
        .await);
    assert_eq!(page2, newest_first[2..4]);
    let page3 = ids(&parent
        .json(&format!("/api/v1/messages?limit=2&before={}", page2[1]))
        .await);
    assert_eq!(page3, newest_first[4..]);
    let end = ids(&parent
        .json(&format!("/api/v1/messages?limit=2&before={}", page3[0]))
        .await);
    assert!(end.is_empty());
    for bad in ["limit=0", "limit=201", "limit=x"] {
        let r = parent.get(&format!("/api/v1/messages?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        ids(&parent.json("/api/v1/messages?limit=200").await).len(),
        5
    );
}

#[actix_web::test]
async fn message_states_never_go_backwards() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let c = toy.client(&hub);
    let state = |id: String| {
        let p = &parent;
        async move {
            let list = p.json("/api/v1/messages").await;
            list["messages"]
                .as_array()
                .expect("list")
                .iter()
                .find(|m| m["id"] == id.as_str())
                .map(|m| m["state"].as_str().unwrap_or_default().to_owned())
                .expect("listed")
        }
    };
    let id = send(&hub, &parent, 1.0).await;
    assert_eq!(state(id.clone()).await, "queued");
    // Played before it was ever downloaded: straight to played.
    let played = |id: &str| {
        c.post(hub.url(&format!("/toy/v1/messages/{id}/played")))
            .send()
    };
    assert_eq!(played(&id).await.expect("req").status(), 204);
    assert_eq!(state(id.clone()).await, "played");
    // Downloading it again does not bring it back to delivered.
    let r = c
        .get(hub.url(&format!("/toy/v1/messages/{id}/audio")))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    assert_eq!(state(id.clone()).await, "played");
    // Keeping it changes nothing about its state.
    let r = parent
        .patch(&format!("/api/v1/messages/{id}"), json!({"keep": true}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(state(id.clone()).await, "played");
    // A recording: received, heard when a parent opens it, heard after.
    let r = c
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .body(tone_wav(1.0, 8000))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let rec = v["id"].as_str().expect("id").to_owned();
    assert_eq!(state(rec.clone()).await, "received");
    for _ in 0..2 {
        let r = parent.get(&format!("/api/v1/messages/{rec}/audio")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(state(rec.clone()).await, "heard");
    }
    // A toy cannot mark a recording as played (it is not its inbox).
    assert_eq!(played(&rec).await.expect("req").status(), 404);
    assert_eq!(state(rec.clone()).await, "heard");
}

#[actix_web::test]
async fn sessions_end_after_the_idle_and_the_absolute_limit() {
    let hub = Hub::start().await;
    hub.setup().await;
    let me = |token: &str| {
        hub.anon()
            .get(hub.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
    };
    // Idle: 7 days without use.
    let idle = hub.login("mum", PASSWORD).await;
    hub.clock
        .advance(time::Duration::days(7) - time::Duration::seconds(5));
    let active = hub.login("mum", PASSWORD).await;
    assert_eq!(
        me(&idle).await.expect("req").status(),
        200,
        "just within 7 days"
    );
    hub.clock
        .advance(time::Duration::days(7) - time::Duration::seconds(5));
    assert_eq!(me(&active).await.expect("req").status(), 200);
    hub.clock.advance(time::Duration::seconds(10));
    // `idle` was used at 7 days - 5 s, so now it is 7 days + 5 s idle.
    assert_eq!(
        me(&idle).await.expect("req").status(),
        401,
        "idle for 7 days"
    );
    // Absolute: 30 days even when used every few days.
    let busy = hub.login("mum", PASSWORD).await;
    for days in [6, 6, 6, 6, 5] {
        hub.clock.advance(time::Duration::days(days));
        assert_eq!(me(&busy).await.expect("req").status(), 200);
    }
    // 29 days old; one more day and a second.
    hub.clock
        .advance(time::Duration::days(1) + time::Duration::seconds(1));
    assert_eq!(
        me(&busy).await.expect("req").status(),
        401,
        "no session outlives 30 days"
    );
}

#[actix_web::test]
async fn toys_are_online_for_two_minutes_after_their_last_request() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let c = toy.client(&hub);
    let whoami = || c.get(hub.url("/toy/v1/whoami")).send();
    assert_eq!(whoami().await.expect("req").status(), 200);
    let online = || async { parent.json("/api/v1/toys").await["paired"][0]["online"].clone() };
    assert_eq!(online().await, true);
    hub.clock.advance(time::Duration::seconds(119));
    assert_eq!(online().await, true, "seen 119 s ago");
    hub.clock.advance(time::Duration::seconds(2));
    assert_eq!(online().await, false, "seen 121 s ago");
    assert_eq!(whoami().await.expect("req").status(), 200);
    assert_eq!(online().await, true, "seen again");
}

/// An open `GET /api/v1/events` stream, read event by event.
pub struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>>>>,
    buf: String,
    pub seen: String,
}

impl Events {
    pub async fn open(hub: &Hub, token: &str) -> Events {
        let r = hub
            .anon()
            .get(hub.url("/api/v1/events"))
            .bearer_auth(token)
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        Events {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
            seen: String::new(),
        }
    }

    /// The next block (up to a blank line), or `None` when the stream ended.
    pub async fn next_block(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block = self.buf[..i].to_owned();
                self.buf.drain(..i + 2);
                self.seen.push_str(&block);
                self.seen.push('\n');
                return Some(block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => panic!("no event in time; so far:\n{}", self.seen),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Reads until `until`; returns how many keep-alive comments came.
    async fn keep_alives_until(&mut self, until: Instant) -> usize {
        let mut n = 0;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                self.seen.push_str(&block);
                n += usize::from(block.starts_with(": keep-alive"));
                continue;
            }
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return n,
                Ok(None) | Ok(Some(Err(_))) => panic!("the stream ended:\n{}", self.seen),
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Waits up to `secs` for an event of `kind` whose data matches `pred`.
    pub async fn event(&mut self, secs: u64, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let Some(block) = self.next_block(deadline).await else {
                panic!("the stream ended; it sent:\n{}", self.seen)
            };
            let mut k = "";
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    k = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).expect("event data is JSON");
                }
            }
            if k == kind && pred(&data) {
                return data;
            }
        }
    }
}

#[actix_web::test]
async fn event_stream_tells_toy_changes_deletes_keeps_alive_and_ends_at_logout() {
    let started = Instant::now();
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut ev = Events::open(&hub, &parent.token).await;
    let change = |c: &'static str| move |d: &Value| d["change"] == c;
    let mut toy = TestToy::new("bear");
    assert_eq!(toy.request(&hub).await, 201);
    let d = ev.event(10, "toy", change("pairing")).await;
    assert_eq!(d["toy_id"], "bear");
    assert_eq!(toy.reveal(&hub).await, 200);
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": toy.code()}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let d = ev.event(10, "toy", change("paired")).await;
    assert_eq!(d["toy_id"], "bear");
    assert_eq!(toy.poll(&hub).await.0, 200);
    let c = toy.client(&hub);
    let r = c
        .post(hub.url("/toy/v1/status"))
        .json(&json!({"battery": 50}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 204);
    ev.event(10, "toy", change("status")).await;
    let r = parent
        .patch("/api/v1/toys/bear", json!({"name": "Teddy"}))
        .await;
    assert_eq!(r.status(), 200);
    ev.event(10, "toy", change("updated")).await;
    // The online tracker runs every 30 s from the start: let its second
    // round see the toy online, meanwhile the quiet stream sends keep-alive
    // comments (every 15 s).
    let keep_alives = ev
        .keep_alives_until(started + Duration::from_secs(34))
        .await;
    assert!(keep_alives >= 1, "a quiet stream keeps alive:\n{}", ev.seen);
    // Two minutes without a request: offline; then a request brings it
    // back online.
    hub.clock.advance(time::Duration::seconds(121));
    let d = ev.event(45, "toy", change("offline")).await;
    assert_eq!(d["toy_id"], "bear");
    let r = c.get(hub.url("/toy/v1/whoami")).send().await.expect("req");
    assert_eq!(r.status(), 200);
    let d = ev.event(10, "toy", change("online")).await;
    assert_eq!(d["toy_id"], "bear");
    // A deleted message.
    let id = send(&hub, &parent, 1.0).await;
    ev.event(10, "message", |d| {
        d["id"] == id.as_str() && d["state"] == "queued"
    })
    .await;
    assert_eq!(
        parent
            .delete(&format!("/api/v1/messages/{id}"))
            .await
            .status(),
        204
    );
    ev.event(10, "message", |d| {
        d["id"] == id.as_str() && d["deleted"] == true
    })
    .await;
    // A removed toy.
    assert_eq!(parent.delete("/api/v1/toys/bear").await.status(), 204);
    let d = ev.event(10, "toy", change("removed")).await;
    assert_eq!(d["toy_id"], "bear");
    // Logout: the stream ends (at the next quiet check, within 15 s).
    assert_eq!(parent.post("/api/v1/logout", json!({})).await.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(25);
    while ev.next_block(deadline).await.is_some() {}
}

#[actix_web::test]
async fn a_restarted_hub_keeps_toys_sessions_keys_and_its_setup_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d2 = data.clone();
    let hub = actix_web::rt::task::spawn_blocking(move || Served::start(&d2))
        .await
        .expect("join");
    let code = std::fs::read_to_string(data.join("setup-code")).expect("setup-code");
    let code = code.trim().to_owned();
    let setup = json!({"setup_code": code, "household": "Fernhill", "username": "mum", "password": PASSWORD});
    let r = hub
        .anon()
        .post(hub.url("/api/v1/setup"))
        .json(&setup)
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 201);
    let v: Value = hub.login("mum", PASSWORD).await.json().await.expect("json");
    let token = v["token"].as_str().expect("token").to_owned();
    let parent = hub.parent(&token);
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let rec = |hub: &Served, toy: &TestToy| {
        toy.client(hub)
            .post(hub.url("/toy/v1/recordings"))
            .header("content-type", "audio/wav")
            .header("idempotency-key", "before-restart")
            .body(tone_wav(1.0, 16_000))
            .send()
    };
    let first = rec(&hub, &toy).await.expect("upload");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let (ca, leaf) = (
        std::fs::read(data.join("ca.crt")).expect("ca"),
        std::fs::read(data.join("server.crt")).expect("leaf"),
    );
    let log = actix_web::rt::task::spawn_blocking(move || hub.stop())
        .await
        .expect("join");
    assert!(log.contains(&code), "the first start printed the code");

    // Restarted with a new host name.
    let d2 = data.clone();
    let hub = actix_web::rt::task::spawn_blocking(move || {
        Served::start_with(&d2, "[mdns]\nhost_name = \"kitchen-hub.local\"\n")
    })
    .await
    .expect("join");
    assert!(
        !hub.log.contains("setup code"),
        "no new setup code once an admin exists:\n{}",
        hub.log
    );
    assert!(!data.join("setup-code").exists());
    let r = hub
        .anon()
        .post(hub.url("/api/v1/setup"))
        .json(&setup)
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 409, "the used setup code stays used");
    assert_eq!(
        std::fs::read(data.join("ca.crt")).expect("ca"),
        ca,
        "same CA"
    );
    let new_leaf = std::fs::read(data.join("server.crt")).expect("leaf");
    assert_ne!(new_leaf, leaf, "a new server certificate for the new name");
    {
        use x509_parser::prelude::FromDer;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&new_leaf).expect("pem");
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(&pem.contents).expect("der");
        let san = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("kitchen-hub.local")),
            "{names:?}"
        );
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca).expect("pem");
        let (_, ca_cert) =
            x509_parser::certificate::X509Certificate::from_der(&ca_pem.contents).expect("der");
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
    }
    // The session and the toy's certificate still work.
    let parent = hub.parent(&token);
    assert_eq!(parent.json("/api/v1/me").await["username"], "mum");
    let who = toy
        .client(&hub)
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(who.status(), 200);
    // The idempotency key is remembered across the restart.
    let again = rec(&hub, &toy).await.expect("upload");
    assert_eq!(again.status(), 200, "replayed, not stored twice");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again, first);
    let list = parent.json("/api/v1/messages").await;
    assert_eq!(list["messages"].as_array().expect("list").len(), 1);
    actix_web::rt::task::spawn_blocking(move || hub.stop())
        .await
        .expect("join");

    // The retention scheduler: a hub started 31 days later sweeps on its
    // first round, without anyone calling it.
    let clock = hearth::clock::ManualClock::default();
    clock.advance(time::Duration::days(31));
    let hub = Hub::start_in(dir, clock, |c| {
        c.mdns.host_name = "kitchen-hub.local".into();
    })
    .await;
    let parent = Parent {
        client: hub.anon(),
        token: hub.login("mum", PASSWORD).await,
        base: hub.origin(),
    };
    crate::harness::eventually(20, "the scheduled retention sweep", || async {
        let list = parent.json("/api/v1/messages").await;
        list["messages"]
            .as_array()
            .is_some_and(|m| m.is_empty())
            .then_some(())
    })
    .await;
}
