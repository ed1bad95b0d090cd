//! Restore from a backup on the first-run setup page
//! (`POST /api/v1/setup/restore`), end to end over real TLS: a backup made
//! by one hub is restored into a second, unconfigured hub while it runs;
//! then the old account signs in, the old messages are listed and their
//! audio is served byte for byte as before, the served chain is the old
//! hub's CA (a real handshake), and a toy paired before the backup gets in
//! with its certificate. Refusals (wrong code, throttled device, another
//! site's page, wrong passphrase, not a backup, cut short, made by a newer
//! Hearth) change nothing: the hub stays unconfigured with its own CA and
//! is set up normally afterwards.

use std::io::Write;

use serde_json::{Value, json};

use crate::harness::{Hub, PASSWORD, client, client_from, tls_config};
use crate::yourdata::{household, served_chain};

const PASSPHRASE: &str = "heron copper willow anthem";

/// Posts a restore; returns status, JSON body and `Retry-After`.
async fn restore(
    c: &reqwest::Client,
    hub: &Hub,
    code: &str,
    passphrase: &str,
    body: Vec<u8>,
) -> (u16, Value, Option<String>) {
    let r = c
        .post(hub.url("/api/v1/setup/restore"))
        .header("content-type", "application/octet-stream")
        .header("x-setup-code", code)
        .header("x-backup-passphrase", passphrase.replace(' ', "%20"))
        .body(body)
        .send()
        .await
        .expect("restore request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

/// A code that is not `code`.
fn wrong_for(code: &str) -> &'static str {
    if code == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    }
}

/// A Hearth backup, as far as its manifest goes, of a database from a
/// newer Hearth: encrypted like a real one with the age format, made here
/// with the `age` and `tar` crates.
fn backup_from_a_newer_hearth(passphrase: &str) -> Vec<u8> {
    let manifest = serde_json::to_vec(&json!({
        "format": "hearth-backup-1",
        "hearth_version": "99.0.0",
        "created_at": "2030-01-01T00:00:00Z",
        "household": "Fernhill",
        "schema_version": 99,
        "files": [],
    }))
    .expect("json");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "hearth-backup/manifest.json", manifest.as_slice())
        .expect("tar");
    let plain = tar.into_inner().expect("tar");
    let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
        passphrase.to_owned(),
    ));
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).expect("age");
    w.write_all(&plain).expect("age");
    w.finish().expect("age");
    out
}

/// The hub is still waiting for setup: the setup page is served, the
/// setup code file holds `code`, and it serves the chain of `ca_pem`.
async fn still_unconfigured(hub: &Hub, code: &str) {
    let r = hub.anon().get(hub.url("/setup")).send().await.expect("get");
    assert_eq!(r.status(), 200, "the setup page is still served");
    assert_eq!(hub.setup_code(), code, "the setup code is unchanged");
    served_chain(hub.port, &hub.ca_pem)
        .await
        .expect("the hub's own CA still verifies what it serves");
    assert_eq!(
        std::fs::read_to_string(hub.data_dir().join("ca.crt")).expect("ca.crt"),
        hub.ca_pem,
        "ca.crt is untouched"
    );
    let scratch: Vec<_> = std::fs::read_dir(hub.data_dir())
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".scratch"))
        .map(|e| e.file_name())
        .collect();
    assert!(scratch.is_empty(), "nothing left behind: {scratch:?}");
}

#[actix_web::test]
async fn refused_restores_change_nothing_and_setup_still_works() {
    let (_old, parent, _bear, _fox) = household().await;
    let r = parent
        .post("/api/v1/backups", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(r.status(), 200);
    let backup = r.bytes().await.expect("backup").to_vec();

    let hub = Hub::start().await;
    let code = hub.setup_code();

    // A wrong code: 403 like setup, and the body is not needed to say so;
    // from one device five times, then 429 with Retry-After, on setup too
    // (one throttle), and even for the right code.
    let device = client_from(&hub.ca_pem, 2);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (s, v, _) = restore(&device, &hub, wrong_for(&code), PASSPHRASE, backup.clone()).await;
        if s == 403 {
            assert_eq!(v["error"]["code"], "wrong_setup_code", "{v}");
        }
        seen.push(s);
    }
    assert_eq!(seen, [403, 403, 403, 403, 403, 429]);
    let (s, v, retry) = restore(&device, &hub, &code, PASSPHRASE, backup.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("too_many_requests"))
    );
    assert!(retry.is_some(), "429 says when to retry");
    let r = device
        .post(hub.url("/api/v1/setup"))
        .json(&json!({"setup_code": code, "household": "X", "username": "x", "password": PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 429, "setup and restore share the throttle");
    still_unconfigured(&hub, &code).await;

    // Another site's page cannot post a restore, even with the right code.
    let r = hub
        .anon()
        .post(hub.url("/api/v1/setup/restore"))
        .header("origin", "https://evil.example")
        .header("x-setup-code", &code)
        .header("x-backup-passphrase", PASSPHRASE.replace(' ', "%20"))
        .body(backup.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "csrf_check_failed");

    // The right code with a bad backup or passphrase: precise errors.
    let anon = hub.anon();
    let (s, v, _) = restore(
        &anon,
        &hub,
        &code,
        "not the passphrase at all",
        backup.clone(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("wrong_passphrase")),
        "{v}"
    );
    let (s, v, _) = restore(
        &anon,
        &hub,
        &code,
        PASSPHRASE,
        b"PK\x03\x04 a zip, not a backup".to_vec(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_backup")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not a Hearth backup") && msg.contains("age"),
        "{msg}"
    );
    let cut = backup[..backup.len() * 2 / 3].to_vec();
    let (s, v, _) = restore(&anon, &hub, &code, PASSPHRASE, cut).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_backup")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("damaged or incomplete"), "{msg}");
    let newer = backup_from_a_newer_hearth(PASSPHRASE);
    let (s, v, _) = restore(&anon, &hub, &code, PASSPHRASE, newer).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("backup_too_new")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("newer Hearth") && msg.contains("99"), "{msg}");
    let r = anon
        .post(hub.url("/api/v1/setup/restore"))
        .header("x-setup-code", &code)
        .body(backup.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "no passphrase");
    still_unconfigured(&hub, &code).await;
    assert!(
        hub.ledger().await.is_empty(),
        "no ledger entry: nothing happened"
    );

    // Setup works as if nothing had been tried.
    hub.setup().await;
    assert!(!hub.login("mum", PASSWORD).await.is_empty());
    let (s, v, _) = restore(&anon, &hub, &code, PASSPHRASE, backup).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_set_up")),
        "{v}"
    );
}

#[actix_web::test]
async fn a_backup_restored_at_setup_serves_the_old_household_live() {
    let (old, parent, bear, _fox) = household().await;
    let r = parent
        .post("/api/v1/backups", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(r.status(), 200);
    let backup = r.bytes().await.expect("backup").to_vec();
    // What the old hub serves: every message and its audio, byte for byte.
    let listed = parent.json("/api/v1/messages").await;
    let mut before = Vec::new();
    for m in listed["messages"].as_array().expect("messages") {
        let id = m["id"].as_str().expect("id").to_owned();
        let r = parent.get(&format!("/api/v1/messages/{id}/audio")).await;
        assert_eq!(r.status(), 200);
        before.push((id, r.bytes().await.expect("audio").to_vec()));
    }
    assert_eq!(before.len(), 4);
    let old_ca = old.ca_pem.clone();
    let old_chain = served_chain(old.port, &old_ca).await.expect("old chain");

    let hub = Hub::start().await;
    let first_ca = hub.ca_pem.clone();
    assert_ne!(
        first_ca, old_ca,
        "a new hub has its own CA until the restore"
    );
    let code = hub.setup_code();
    let (s, v, _) = restore(&hub.anon(), &hub, &code, PASSPHRASE, backup.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (
            v["household"].as_str(),
            v["users"].as_i64(),
            v["toys"].as_i64(),
            v["messages"].as_i64()
        ),
        (Some("Fernhill"), Some(1), Some(2), Some(4)),
        "{v}"
    );

    // Live, without a restart: the restored CA serves the chain (a new
    // handshake trusting only the old hub's CA succeeds, one trusting the
    // hub's first CA fails), and the key files are the backup's.
    let chain = served_chain(hub.port, &old_ca)
        .await
        .expect("the restored CA verifies what is served now");
    assert_eq!(
        chain[1], old_chain[1],
        "the old hub's CA certificate is served"
    );
    let err = served_chain(hub.port, &first_ca)
        .await
        .expect_err("the hub's first CA is gone");
    assert!(err.contains("certificate"), "{err}");
    for f in ["ca.key", "ca.crt"] {
        assert_eq!(
            std::fs::read(hub.data_dir().join(f)).expect("restored"),
            std::fs::read(old.data_dir().join(f)).expect("old"),
            "{f} is the backup's"
        );
    }
    assert!(
        !hub.data_dir().join("setup-code").exists(),
        "the setup code is retired"
    );
    let scratch: Vec<_> = std::fs::read_dir(hub.data_dir())
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".scratch"))
        .map(|e| e.file_name())
        .collect();
    assert!(
        scratch.is_empty(),
        "the unpacked backup (a copy of every recording) is removed: {scratch:?}"
    );
    let entries = hub.ledger().await;
    assert_eq!(entries[0].action, "restore_done", "{entries:?}");
    assert_eq!(entries[0].outcome, "success");
    assert_eq!(entries[0].client, "127.0.0.1");

    // The old account signs in; the old messages are listed, their audio
    // identical.
    let trusting_old = client(tls_config(&old_ca, None));
    let r = trusting_old
        .post(hub.url("/api/v1/login"))
        .json(&json!({"username": "mum", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200, "the restored account signs in");
    let token = r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = trusting_old
        .get(hub.url("/api/v1/messages"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("messages");
    assert_eq!(r.status(), 200);
    let now: Value = r.json().await.expect("json");
    let ids: Vec<&str> = now["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    let old_ids: Vec<&str> = before.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, old_ids, "the same messages, in the same order");
    for (id, audio) in &before {
        let r = trusting_old
            .get(hub.url(&format!("/api/v1/messages/{id}/audio")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("audio");
        assert_eq!(r.status(), 200);
        let got = r.bytes().await.expect("audio");
        assert!(
            got.as_ref() == audio.as_slice(),
            "message {id}: the audio differs"
        );
    }

    // The bear, paired with the old hub before the backup, gets in with its
    // certificate; with the hub's first CA it could not have.
    let bear_client = client(tls_config(
        &old_ca,
        Some((bear.cert_pem.as_deref().expect("paired"), &bear.key_pem)),
    ));
    let r = bear_client
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(
        r.status(),
        200,
        "the toy authenticates with the restored hub"
    );
    let who: Value = r.json().await.expect("json");
    assert_eq!(who["toy_id"], "bear-1", "{who}");

    // Setup is over: the setup page sends to sign in, and neither setup
    // nor a second restore is accepted.
    let r = trusting_old
        .get(hub.url("/setup"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);
    let r = trusting_old
        .post(hub.url("/api/v1/setup"))
        .json(&json!({"setup_code": code, "household": "X", "username": "x", "password": PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 409);
    let r = trusting_old
        .post(hub.url("/api/v1/setup/restore"))
        .header("x-setup-code", &code)
        .header("x-backup-passphrase", PASSPHRASE.replace(' ', "%20"))
        .body(backup)
        .send()
        .await
        .expect("restore");
    assert_eq!(r.status(), 409, "a second restore is refused");
}
