//! "Your data" end to end: the streamed export (unpacked by `unzip`, every
//! clip read by `opusinfo` and decoded by `opusdec`, `messages.json`
//! parsed, the offline player opened from `file://` in Chromium), deleting
//! one toy's messages, encrypted backups (opened by the real `age` tool
//! and by Hearth's check, wrong passphrase and damaged file refused) and a
//! restore with the real binary into a fresh directory, where a toy paired
//! before the backup still authenticates with its client certificate.
//!
//! Oracles independent of the hub: `unzip`, `opusinfo`/`opusdec`
//! (opus-tools), `age` (Debian's Go implementation, through a pty made by
//! `script`), `tar`, and Python's `sqlite3` module.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::{Hub, PASSWORD, Parent, Served, Target, TestToy, have, run_with_timeout};
use crate::messages::tone_wav;

const PASSPHRASE: &str = "otter lantern meadow quartz";

async fn send(hub: &Hub, parent: &Parent, toy: &str, secs: f64) -> Value {
    let r = parent
        .client
        .post(hub.url(&format!("/api/v1/toys/{toy}/messages")))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(tone_wav(secs, 16_000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

async fn record(hub: &Hub, toy: &TestToy, secs: f64) -> Value {
    let r = toy
        .client(hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .body(tone_wav(secs, 16_000))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

/// A hub with two toys and four messages (one each way for the bear, two
/// to the fox).
pub(crate) async fn household() -> (Hub, Parent, TestToy, TestToy) {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut bear = TestToy::new("bear-1");
    bear.pair(&hub, &parent).await;
    let mut fox = TestToy::new("fox-2");
    fox.pair(&hub, &parent).await;
    let r = parent
        .patch("/api/v1/toys/fox-2", json!({"name": "Fox / Ünïcode"}))
        .await;
    assert_eq!(r.status(), 200);
    send(&hub, &parent, "bear-1", 1.0).await;
    hub.clock.advance(time::Duration::seconds(61));
    record(&hub, &bear, 1.5).await;
    send(&hub, &parent, "fox-2", 2.0).await;
    send(&hub, &parent, "fox-2", 0.5).await;
    (hub, parent, bear, fox)
}

/// Adds an account with `role` directly through the accounts use case.
async fn add_user(hub: &Hub, name: &str, role: hearth::domain::Role) -> String {
    hearth::accounts::add_user(
        &hub.state.store,
        hub.state.now(),
        hearth::store::audit::SYSTEM,
        &hearth::domain::Username::parse(name).expect("username"),
        &hearth::domain::DisplayName::parse(name).expect("display name"),
        role,
        PASSWORD.into(),
    )
    .await
    .expect("add user");
    hub.login(name, PASSWORD).await
}

fn tool(program: &str, package: &str) -> bool {
    if have(program) {
        return true;
    }
    crate::skips::skip(
        &format!("the your-data checks need {program}"),
        &format!("sudo apt install {package}"),
    );
    false
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[actix_web::test]
async fn export_streams_a_zip_that_unzips_decodes_and_plays_offline() {
    let (hub, parent, _bear, _fox) = household().await;

    // Admins only.
    let token = add_user(&hub, "dad", hearth::domain::Role::Parent).await;
    let dad = hub.anon();
    let r = dad
        .get(hub.url("/api/v1/export"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);

    let r = parent.get("/api/v1/export").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    // Streamed: no length is known before the body is made.
    assert!(
        r.headers().get("content-length").is_none(),
        "{:?}",
        r.headers()
    );
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.contains("hearth-export-"), "{disposition}");
    let body = r.bytes().await.expect("body");
    let ledger = hub.ledger().await;
    assert_eq!(ledger[0].action, "export_created");
    assert_eq!(ledger[0].detail, "4 messages");

    if !tool("unzip", "unzip") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let zip = dir.path().join("export.zip");
    std::fs::write(&zip, &body).expect("write");
    let out_dir = dir.path().join("out");
    let out = run_with_timeout(
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&out_dir),
        60,
        None,
    );
    assert!(
        out.status.success(),
        "unzip: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = files_under(&out_dir);
    let clips: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ogg"))
        .collect();
    assert_eq!(clips.len(), 4, "{files:?}");
    for name in ["messages.json", "ledger.csv", "index.html"] {
        assert!(out_dir.join(name).is_file(), "{name} in {files:?}");
    }
    assert!(
        out_dir.join("messages/Bear").is_dir() && out_dir.join("messages/Fox _ Ünïcode").is_dir(),
        "a folder per toy, names made safe: {files:?}"
    );

    let list: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("messages.json")).expect("read"))
            .expect("messages.json parses");
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(list["household"], "Fernhill");
    let mut directions: Vec<&str> = messages
        .iter()
        .map(|m| m["direction"].as_str().expect("direction"))
        .collect();
    directions.sort_unstable();
    assert_eq!(directions, ["from_toy", "to_toy", "to_toy", "to_toy"]);
    let want_ms = [1000, 1500, 2000, 500];
    for (m, want) in messages.iter().zip(want_ms) {
        let file = out_dir.join(m["file"].as_str().expect("file"));
        assert!(file.is_file(), "{file:?}");
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        // Readable: date, direction, who.
        match m["direction"].as_str() {
            Some("to_toy") => assert!(name.contains(" to ") && name.contains("from mum"), "{name}"),
            _ => assert!(name.contains("from Bear"), "{name}"),
        }
        assert!(name.starts_with("20") && name.contains("UTC"), "{name}");
        let ogg = std::fs::read(&file).expect("read clip");
        if let Some(ms) = crate::messages::opusinfo_ms(&ogg) {
            assert!(
                (ms - want).abs() <= 30,
                "{name}: opusinfo {ms} ms, sent {want}"
            );
        }
        if tool("opusdec", "opus-tools") {
            let wav = dir.path().join("decoded.wav");
            let out = run_with_timeout(
                Command::new("opusdec").arg("--quiet").arg(&file).arg(&wav),
                60,
                None,
            );
            assert!(
                out.status.success(),
                "opusdec {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r = hound::WavReader::open(&wav).expect("opusdec wrote a WAV");
            let secs = r.duration() as f64 / f64::from(r.spec().sample_rate);
            assert!(
                (secs * 1000.0 - want as f64).abs() < 50.0,
                "{name}: {secs} s"
            );
        }
    }

    let csv = std::fs::read_to_string(out_dir.join("ledger.csv")).expect("ledger.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,actor,action,target,toy,outcome,client,detail")
    );
    assert!(csv.contains(",setup,"), "{csv}");
    assert!(
        csv.contains(",mum,export_created,,,success,,4 messages"),
        "{csv}"
    );

    let index = std::fs::read_to_string(out_dir.join("index.html")).expect("index.html");
    assert_eq!(index.matches("<audio ").count(), 4);
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "no network in the player"
    );
    assert!(
        index.contains("src=\"messages/Fox%20_%20%C3%9Cn%C3%AFcode/"),
        "{index}"
    );

    player_plays_from_file_url(&out_dir.join("index.html")).await;
}

/// Opens the unpacked `index.html` from `file://` in Chromium with the
/// network cut off and plays the first clip to its end
/// (`tests/browser/offline-player.mjs`).
async fn player_plays_from_file_url(index: &Path) {
    let Some(root) = crate::browser::ready().await else {
        return;
    };
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("tests/browser/offline-player.mjs")
        .current_dir(&root)
        .env("INDEX_HTML", index)
        .env("EXPECT_CLIPS", "4")
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the player test finishes within 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "offline-player.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("played "), "{stdout}");
}

#[actix_web::test]
async fn deleting_one_toys_messages_leaves_the_others() {
    let (hub, parent, _bear, _fox) = household().await;
    let token = add_user(&hub, "dad", hearth::domain::Role::Parent).await;
    let r = hub
        .anon()
        .delete(hub.url("/api/v1/toys/fox-2/messages"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403, "admins only");
    let r = parent.delete("/api/v1/toys/wolf-9/messages").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_found");

    let r = parent.delete("/api/v1/toys/fox-2/messages").await;
    assert_eq!(r.status(), 204);
    let fox = parent.json("/api/v1/messages?toy=fox-2").await;
    assert_eq!(fox["messages"].as_array().map(Vec::len), Some(0));
    let bear = parent.json("/api/v1/messages?toy=bear-1").await;
    assert_eq!(bear["messages"].as_array().map(Vec::len), Some(2));
    let ledger = hub.ledger().await;
    assert_eq!(ledger[0].action, "toy_messages_deleted");
    assert_eq!(ledger[0].subject.as_deref(), Some("fox-2"));
    assert_eq!(ledger[0].detail, "2 messages deleted");
    // The toy stays paired.
    let toys = parent.json("/api/v1/toys").await;
    assert_eq!(toys["paired"].as_array().map(Vec::len), Some(2));
}

/// Runs `age -d` (Debian's `age`) on `file` with `passphrase` typed into
/// the pty `script` makes (age reads passphrases only from a terminal).
fn age_decrypt(file: &Path, out: &Path, passphrase: &str) -> std::process::Output {
    let cmd = format!("age -d -o '{}' '{}'", out.display(), file.display());
    let input = format!("{passphrase}\n");
    run_with_timeout(
        Command::new("script").args(["-qfec", &cmd, "/dev/null"]),
        120,
        Some(input.as_bytes()),
    )
}

/// The first column of the first row Python's sqlite3 module finds for `sql` in `db`.
fn python_query(db: &Path, sql: &str) -> String {
    let out = run_with_timeout(
        Command::new("python3").args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])",
            &db.to_string_lossy(),
            sql,
        ]),
        30,
        None,
    );
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn python_count(db: &Path, table: &str) -> i64 {
    python_query(db, &format!("SELECT COUNT(*) FROM {table}"))
        .parse()
        .expect("a count")
}

async fn check_upload(hub: &Hub, parent: &Parent, body: Vec<u8>, passphrase: &str) -> (u16, Value) {
    let r = parent
        .client
        .post(hub.url("/api/v1/backups/check"))
        .bearer_auth(&parent.token)
        .header("content-type", "application/octet-stream")
        .header("x-backup-passphrase", passphrase.replace(' ', "%20"))
        .body(body)
        .send()
        .await
        .expect("check");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn backup_opens_with_age_checks_and_restores_with_toys_still_paired() {
    let (hub, parent, bear, _fox) = household().await;
    let r = parent
        .post("/api/v1/backups", json!({"passphrase": "short"}))
        .await;
    assert_eq!(r.status(), 422, "a short passphrase is refused");
    let r = parent
        .post("/api/v1/backups", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let backup = r.bytes().await.expect("body").to_vec();
    assert!(
        backup.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "age, passphrase"
    );
    assert_eq!(hub.ledger().await[0].action, "backup_created");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hearth.age");
    std::fs::write(&file, &backup).expect("write");
    // No scratch copy of the database is left in the data directory.
    let leftovers: Vec<_> = std::fs::read_dir(hub.data_dir())
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".scratch"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The real age tool opens it; tar and Python's sqlite3 read what is inside.
    if tool("age", "age") && tool("script", "bsdutils") && tool("python3", "python3") {
        let tar = dir.path().join("hearth.tar");
        let out = age_decrypt(&file, &tar, "not the passphrase at all");
        assert!(!out.status.success(), "age refuses a wrong passphrase");
        let out = age_decrypt(&file, &tar, PASSPHRASE);
        assert!(
            out.status.success(),
            "age -d: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let unpacked = dir.path().join("unpacked");
        std::fs::create_dir(&unpacked).expect("mkdir");
        let out = run_with_timeout(
            Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&unpacked),
            60,
            None,
        );
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inner = unpacked.join("hearth-backup");
        for f in [
            "manifest.json",
            "hearth.db",
            "ca.key",
            "ca.crt",
            "server.key",
            "server.crt",
        ] {
            assert!(inner.join(f).is_file(), "{f} in the backup");
        }
        assert_eq!(
            std::fs::read(inner.join("ca.key")).expect("key"),
            std::fs::read(hub.data_dir().join("ca.key")).expect("key"),
            "the CA key is in the backup"
        );
        assert_eq!(python_count(&inner.join("hearth.db"), "messages"), 4);
        assert_eq!(python_count(&inner.join("hearth.db"), "users"), 1);
    }

    // Hearth's own check: good, wrong passphrase, damaged.
    let (s, v) = check_upload(&hub, &parent, backup.clone(), PASSPHRASE).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["messages"].as_i64(), v["toys"].as_i64()),
        (Some(4), Some(2)),
        "{v}"
    );
    assert_eq!(hub.ledger().await[0].action, "backup_checked");
    let (s, v) = check_upload(&hub, &parent, backup.clone(), "not the passphrase at all").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("wrong_passphrase")),
        "{v}"
    );
    let mut damaged = backup.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let (s, v) = check_upload(&hub, &parent, damaged.clone(), PASSPHRASE).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_backup")),
        "{v}"
    );
    let (s, v) = check_upload(&hub, &parent, b"not an age file".to_vec(), PASSPHRASE).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_backup")),
        "{v}"
    );
    // Nothing of the hub changed.
    let all = parent.json("/api/v1/messages").await;
    assert_eq!(all["messages"].as_array().map(Vec::len), Some(4));

    // Restore with the real binary: refused into a non-empty directory,
    // refused with a wrong passphrase or a damaged file (leaving nothing),
    // then done into a fresh one.
    let restore = |target: &Path, file: &Path, passphrase: &str| {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .arg("restore")
                .arg(file)
                .arg("--data-dir")
                .arg(target),
            120,
            Some(format!("{passphrase}\n").as_bytes()),
        )
    };
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("something"), b"x").expect("write");
    let out = restore(&busy, &file, PASSPHRASE);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{out:?}"
    );
    let target = dir.path().join("restored");
    let out = restore(&target, &file, "not the passphrase at all");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("passphrase does not open"),
        "{out:?}"
    );
    assert!(!target.exists(), "a failed restore leaves nothing behind");
    let bad = dir.path().join("damaged.age");
    std::fs::write(&bad, &damaged).expect("write");
    let out = restore(&target, &bad, PASSPHRASE);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{out:?}"
    );
    assert!(!target.exists(), "a failed restore leaves nothing behind");
    let out = restore(&target, &file, PASSPHRASE);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The restored hub: same CA, same accounts, same messages, and the bear
    // paired before the backup still gets in with its certificate.
    let served = Served::start(&target);
    assert_eq!(served.ca_pem, hub.ca_pem, "the same CA");
    let r = served.login("mum", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.expect("json");
    let mum = served.parent(token["token"].as_str().expect("token"));
    let all = mum.json("/api/v1/messages").await;
    assert_eq!(all["messages"].as_array().map(Vec::len), Some(4));
    let r = served
        .with_cert(bear.cert_pem.as_deref().expect("paired"), &bear.key_pem)
        .get(served.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(
        r.status(),
        200,
        "the toy authenticates with the restored hub"
    );
    if have("python3") {
        let restored = python_query(
            &target.join("hearth.db"),
            "SELECT count(*) FROM audit WHERE action = 'restore_done'",
        );
        assert_eq!(restored, "1", "the ledger records the restore");
    }
    let log = served.stop();
    assert!(!log.contains(PASSPHRASE));
}

#[actix_web::test]
async fn scheduled_backups_keep_the_newest_and_open_with_their_passphrase() {
    use std::os::unix::fs::PermissionsExt;
    let outside = tempfile::tempdir().expect("tempdir");
    let usb = outside.path().join("usb");
    std::fs::create_dir(&usb).expect("mkdir");
    let pass_file = outside.path().join("backup-passphrase");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).expect("write");
    std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (dir, pf) = (usb.clone(), pass_file.clone());
    let hub = Hub::start_with(move |c| {
        c.backups.directory = Some(dir);
        c.backups.passphrase_file = Some(pf);
        c.backups.keep = 3;
    })
    .await;
    let backups = |usb: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(usb)
            .expect("usb")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // A backup being written is not one yet.
            .filter(|n| !n.ends_with(".partial"))
            .collect();
        v.sort();
        v
    };
    // The job makes the first one at start.
    crate::harness::eventually(60, "the first scheduled backup", || async {
        (backups(&usb).len() == 1).then_some(())
    })
    .await;
    let parent = hub.parent().await;
    // Not due yet: nothing new.
    assert_eq!(
        hearth::data::backup::scheduled(&hub.state)
            .await
            .expect("run"),
        None
    );
    // Due, and asked twice at once: one backup, and no error for the
    // other (they used to race for the same file name).
    hub.clock.advance(time::Duration::hours(25));
    let (a, b) = futures_util::join!(
        hearth::data::backup::scheduled(&hub.state),
        hearth::data::backup::scheduled(&hub.state)
    );
    let (a, b) = (a.expect("first run"), b.expect("second run"));
    assert!(
        a.is_some() != b.is_some(),
        "exactly one backup: {a:?} {b:?}"
    );
    assert_eq!(backups(&usb).len(), 2);
    let mut made = Vec::new();
    for _ in 0..4 {
        hub.clock.advance(time::Duration::hours(25));
        let f = hearth::data::backup::scheduled(&hub.state)
            .await
            .expect("a scheduled backup")
            .expect("due");
        made.push(f.file_name().expect("name").to_string_lossy().into_owned());
    }
    let left = backups(&usb);
    assert_eq!(left, made[1..], "the newest 3 kept, older ones deleted");
    let newest = std::fs::read(usb.join(&made[3])).expect("read");
    let (s, v) = check_upload(&hub, &parent, newest, PASSPHRASE).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["household"], "Fernhill");

    // A passphrase file others can read is refused, and says so.
    std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    hub.clock.advance(time::Duration::hours(25));
    let err = hearth::data::backup::scheduled(&hub.state)
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    assert_eq!(backups(&usb), left, "nothing written or deleted");
}

/// The server's chain as served on `port`, through a real TLS handshake
/// that trusts only `ca_pem`; the handshake's error otherwise.
pub(crate) async fn served_chain(
    port: u16,
    ca_pem: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let config = std::sync::Arc::new(crate::harness::tls_config(ca_pem, None));
    tokio::task::spawn_blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut sock =
            std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        Ok(conn
            .peer_certificates()
            .ok_or("no certificate served")?
            .iter()
            .map(|c| c.clone().into_owned())
            .collect())
    })
    .await
    .expect("handshake thread")
}

/// Where the files under `dir` hold any of `keys` (PEM files of P-256
/// PKCS#8 keys): the whole file, or any 40-character run of its base64
/// body past the first 48 characters, which encode the 36-byte header
/// every such key shares (a key copied in part counts too).
fn key_bits_found(dir: &Path, keys: &[Vec<u8>]) -> Vec<String> {
    let mut patterns = Vec::new();
    for k in keys {
        patterns.push(k.clone());
        let text = String::from_utf8_lossy(k);
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let line = text.lines().nth(1).map_or(64, str::len);
        // Runs that cross a line break are not stored as such: skipped.
        for at in (48..body.len().saturating_sub(40)).step_by(20) {
            if at / line == (at + 39) / line {
                patterns.push(body.as_bytes()[at..at + 40].to_vec());
            }
        }
    }
    find_patterns(dir, &patterns)
}

/// Every place in the files under `dir` where one of `patterns` occurs.
fn find_patterns(dir: &Path, patterns: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for (i, p) in patterns.iter().enumerate() {
            if bytes.windows(p.len()).any(|w| w == p.as_slice()) {
                found.push(format!("pattern {i} in {}", f.display()));
            }
        }
    }
    found
}

#[actix_web::test]
async fn deleting_the_household_leaves_no_audio_behind_and_serves_setup_again() {
    let (mut hub, parent, bear, _fox) = household().await;
    // What the hub serves and holds before: its chain (through a real
    // handshake), its CA, and its key files.
    let old_ca_pem = hub.ca_pem.clone();
    let old_chain = served_chain(hub.port, &old_ca_pem)
        .await
        .expect("the old CA verifies the served certificate");
    let old_keys: Vec<Vec<u8>> = ["ca.key", "server.key"]
        .iter()
        .map(|f| std::fs::read(hub.data_dir().join(f)).expect("key file"))
        .collect();
    assert!(
        key_bits_found(&hub.data_dir(), &old_keys).len() >= 2,
        "positive control: the scan sees the stored keys"
    );
    // Known audio bytes: 48 bytes from the middle of every stored clip, as
    // the hub serves them (they are stored as they are served).
    let list = parent.json("/api/v1/messages").await;
    let mut patterns = Vec::new();
    for m in list["messages"].as_array().expect("messages") {
        let id = m["id"].as_str().expect("id");
        let ogg = parent
            .get(&format!("/api/v1/messages/{id}/audio"))
            .await
            .bytes()
            .await
            .expect("audio");
        let mid = ogg.len() / 2;
        patterns.push(ogg[mid..mid + 48].to_vec());
    }
    assert_eq!(patterns.len(), 4);
    // Positive control: the scan finds them while they are stored.
    let before = find_patterns(&hub.data_dir(), &patterns);
    assert!(
        before.len() >= 4,
        "the scan must see stored clips: {before:?}"
    );

    let erase = |confirm: &str, password: &str| {
        parent
            .client
            .delete(hub.url("/api/v1/household"))
            .bearer_auth(&parent.token)
            .json(&json!({"confirm": confirm, "password": password}))
            .send()
    };
    let r = erase("fernhill", PASSWORD).await.expect("request");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "confirmation_mismatch");
    let r = erase("Fernhill", "not my password at all")
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "wrong_password");
    let token = add_user(&hub, "dad", hearth::domain::Role::Parent).await;
    let r = hub
        .anon()
        .delete(hub.url("/api/v1/household"))
        .bearer_auth(&token)
        .json(&json!({"confirm": "Fernhill", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403, "admins only");
    let still = parent.json("/api/v1/messages").await;
    assert_eq!(
        still["messages"].as_array().map(Vec::len),
        Some(4),
        "refusals change nothing"
    );
    let old_code = std::fs::metadata(hub.data_dir().join("setup-code")).is_ok();
    assert!(!old_code, "no setup code while set up");

    let r = erase("Fernhill", PASSWORD).await.expect("request");
    assert_eq!(r.status(), 202, "{:?}", r.text().await);

    // New keys, live: the served certificate chains to a new CA, which the
    // old CA does not vouch for, and the old key files' bytes are gone.
    let new_ca_pem = std::fs::read_to_string(hub.data_dir().join("ca.crt")).expect("ca.crt");
    assert_ne!(new_ca_pem, old_ca_pem, "a new CA certificate");
    let err = served_chain(hub.port, &old_ca_pem)
        .await
        .expect_err("the old CA must not verify what is served now");
    assert!(err.contains("certificate"), "{err}");
    let new_chain = served_chain(hub.port, &new_ca_pem)
        .await
        .expect("the new CA verifies the served certificate");
    let key_of = |pem: &str| {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let (_, c) = X509Certificate::from_der(der.as_ref()).expect("ca");
        c.public_key().raw.to_vec()
    };
    let (old_ca_key, new_ca_key) = (key_of(&old_ca_pem), key_of(&new_ca_pem));
    assert_ne!(old_ca_key, new_ca_key, "the issuer's key differs");
    let signed_by = |leaf: &CertificateDer<'_>, ca_pem: &str| {
        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("pem");
        let (_, ca) = X509Certificate::from_der(der.as_ref()).expect("ca");
        let (_, l) = X509Certificate::from_der(leaf.as_ref()).expect("leaf");
        l.verify_signature(Some(ca.public_key())).is_ok()
    };
    assert!(signed_by(&old_chain[0], &old_ca_pem), "oracle sanity");
    assert!(
        !signed_by(&new_chain[0], &old_ca_pem),
        "old CA key, new leaf"
    );
    assert!(signed_by(&new_chain[0], &new_ca_pem));
    assert_ne!(old_chain[0], new_chain[0], "a new server certificate");
    let left = key_bits_found(&hub.data_dir(), &old_keys);
    assert!(left.is_empty(), "old key material left behind: {left:?}");
    hub.ca_pem = new_ca_pem;

    // No clip's bytes anywhere in the data directory: database, WAL, or
    // anything else.
    let after = find_patterns(&hub.data_dir(), &patterns);
    assert!(after.is_empty(), "audio left behind: {after:?}");
    let wal = hub.data_dir().join("hearth.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "the WAL is emptied"
    );
    if have("python3") {
        let db = hub.data_dir().join("hearth.db");
        for table in [
            "messages",
            "toys",
            "users",
            "sessions",
            "household",
            "idempotency",
        ] {
            assert_eq!(python_count(&db, table), 0, "{table}");
        }
        assert_eq!(
            python_query(&db, "PRAGMA freelist_count"),
            "0",
            "no free pages left"
        );
        assert_eq!(
            python_query(&db, "SELECT group_concat(action) FROM audit"),
            "household_deleted"
        );
    }

    // The old session and the toy are gone; setup is served again, live,
    // with a new code.
    // A new connection: the scan above may outlast the keep-alive of the old one.
    let r = hub
        .anon()
        .get(hub.url("/api/v1/messages"))
        .bearer_auth(&parent.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401, "the old session is gone");
    // The bear's certificate is from the old CA: the handshake refuses it,
    // or (were it accepted) the hub knows no such toy.
    match bear
        .client(&hub)
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
    {
        Err(_) => {}
        Ok(r) => assert!(r.status() == 401 || r.status() == 403, "{}", r.status()),
    }
    let r = hub
        .anon()
        .get(hub.url("/setup"))
        .send()
        .await
        .expect("setup page");
    assert_eq!(r.status(), 200);
    let code = hub.setup_code();
    assert_eq!(code.len(), 9);
    let r = hub
        .anon()
        .post(hub.url("/api/v1/setup"))
        .json(&json!({"setup_code": code, "household": "Newhome", "username": "gran", "password": PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(
        r.status(),
        201,
        "the new setup code works without a restart"
    );
}
