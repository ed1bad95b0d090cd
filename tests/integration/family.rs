//! What a family sees, across two network namespaces joined by a veth
//! pair: the real `hearth` binary in A, the real `hearth-toy` in B (plus a
//! source of malformed toy records). The toy finds the hub by mDNS and is
//! listed as found, says its code, a parent confirms it through the API,
//! a parent's message plays on the toy, and once removed the toy is locked
//! out at once.
//!
//! The parent's side runs inside namespace A too: the test re-executes
//! itself there ([`netns_child`], role `parent`) for each API call, with the
//! call in `HEARTH_TEST_CALL`; the child prints one line `RESULT <json>`.
//!
//! A second mDNS implementation, Python's `zeroconf` (from PyPI) run in
//! namespace B, shows that the hub interoperates beyond `mdns-sd`: it finds
//! the hub's record (and again under the household's new name after a
//! rename through the API), and the hub lists the toy record it publishes.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::PASSWORD;
use crate::netns::{NetnsPair, Proc, role, self_test_command};

const CHILD: &str = "family::netns_child";

/// Runs one parent API call inside namespace A; returns its JSON result.
fn parent_call(pair: &NetnsPair, data: &std::path::Path, call: &str) -> Value {
    let mut cmd = self_test_command(CHILD, "parent");
    cmd.env("HEARTH_TEST_CALL", call)
        .env("HEARTH_TEST_DATA", data);
    let line = NetnsPair::result_in(pair.ns_a(), &cmd, &format!("from `{call}`"));
    serde_json::from_str(&line).expect("RESULT is JSON")
}

/// Polls a parent call until `pred` holds.
fn parent_until(
    pair: &NetnsPair,
    data: &std::path::Path,
    call: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let v = parent_call(pair, data, call);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last answer: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn family_pairs_a_toy_and_talks_across_two_namespaces() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hub");
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!("version = 1\nlisten = \"0.0.0.0:8443\"\n[mdns]\nhost_name = \"hearth.local\"\ninterfaces = [\"{}\"]\n", pair.if_a()),
    )
    .expect("config");
    let mut hub_cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    hub_cmd
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data);
    let _hub = Proc::new("hub", pair.spawn_in_a(&mut hub_cmd).expect("hub starts"));
    let setup = parent_call(&pair, &data, "setup");
    assert_eq!(setup["status"], 201, "{setup}");
    zeroconf_interop(&pair, &data);

    // Malformed toy records from B must never be listed nor break anything.
    let mut garbage_cmd = self_test_command("discovery::netns_child", "garbage");
    garbage_cmd.env("HEARTH_TEST_IFACE", pair.if_b());
    let mut garbage = Proc::new(
        "garbage",
        pair.spawn_in_b(&mut garbage_cmd).expect("garbage starts"),
    );
    garbage.wait_for("READY", |l| l == "READY");

    let state = dir.path().join("toy");
    let mut toy_cmd = Command::new(env!("CARGO_BIN_EXE_hearth-toy"));
    toy_cmd
        .arg("--state")
        .arg(&state)
        .args(["--name", "Bear", "--battery", "64"]);
    let mut toy = Proc::new("toy", pair.spawn_in_b(&mut toy_cmd).expect("toy starts"));
    let first = toy.wait_for("the toy's id", |l| l.starts_with("toy "));
    let toy_id = first.split_whitespace().nth(1).expect("id").to_owned();

    // The hub lists it as found on the network (and none of the bad records).
    let listing = parent_until(&pair, &data, "toys", "the toy to be discovered", |v| {
        v["body"]["discovered"]
            .as_array()
            .is_some_and(|d| d.iter().any(|t| t["toy_id"] == toy_id.as_str()))
    });
    let found = listing["body"]["discovered"].as_array().expect("list");
    assert!(
        found
            .iter()
            .all(|t| !t["toy_id"].as_str().unwrap_or("").starts_with("bad")),
        "{listing}"
    );
    assert!(found.iter().any(|t| t["name"] == "Bear"));

    // It found the hub by mDNS, says its code; the parent types it.
    let code_line = toy.wait_for("the pairing code", |l| l.starts_with("pairing code: "));
    let code = code_line
        .trim_start_matches("pairing code: ")
        .trim()
        .to_owned();
    let confirmed = parent_call(&pair, &data, &format!("confirm {code}"));
    assert_eq!(confirmed["status"], 200, "{confirmed}");
    toy.wait_for("the toy to be paired", |l| {
        l.starts_with("paired with the hub at hearth.local")
    });
    toy.saw_or_wait_for("a status report", |l| {
        l.contains("status sent (battery 64%)")
    });
    let listing = parent_until(
        &pair,
        &data,
        "toys",
        "the toy to be paired and online",
        |v| {
            v["body"]["paired"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|t| t["toy_id"] == toy_id.as_str() && t["online"] == true)
            })
        },
    );
    assert_eq!(listing["body"]["paired"][0]["battery"], 64);

    // A parent's message plays on the toy.
    let sent = parent_call(&pair, &data, &format!("send {toy_id}"));
    assert_eq!(sent["status"], 201, "{sent}");
    let id = sent["body"]["id"].as_str().expect("id").to_owned();
    let got = toy.wait_for("the message", |l| l.starts_with("received message "));
    assert!(got.contains(&id), "{got}");
    let path = got.rsplit(": ").next().expect("path").trim().to_owned();
    let ogg = std::fs::read(&path).expect("the toy saved the audio");
    assert!(ogg.starts_with(b"OggS"));
    parent_until(
        &pair,
        &data,
        &format!("messages {toy_id}"),
        "the message to be played",
        |v| v["body"]["messages"][0]["state"] == "played",
    );

    // Removed: locked out at once.
    let removed = parent_call(&pair, &data, &format!("remove {toy_id}"));
    assert_eq!(removed["status"], 204, "{removed}");
    let status = toy.finish();
    assert_eq!(status.code(), Some(3), "the toy stops: it was removed");
    garbage.send("quit");
}

/// The parent's API calls, run inside namespace A.
#[test]
#[ignore = "a child process of family_pairs_a_toy_and_talks_across_two_namespaces"]
fn netns_child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "parent");
    let call = std::env::var("HEARTH_TEST_CALL").expect("call");
    let data = std::path::PathBuf::from(std::env::var("HEARTH_TEST_DATA").expect("data"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(parent_role(&call, &data));
    println!("RESULT {result}");
}

async fn parent_role(call: &str, data: &std::path::Path) -> Value {
    // The hub may still be starting: wait for its CA and its port.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ca = loop {
        if let Ok(ca) = std::fs::read_to_string(data.join("ca.crt")) {
            if std::net::TcpStream::connect("127.0.0.1:8443").is_ok() {
                break ca;
            }
        }
        assert!(Instant::now() < deadline, "the hub did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let c = crate::harness::client(crate::harness::tls_config(&ca, None));
    let url = |p: &str| format!("https://hearth.local:8443{p}");
    let c = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::harness::tls_config(&ca, None))
        .resolve("hearth.local", "127.0.0.1:8443".parse().expect("addr"))
        .build()
        .unwrap_or(c);
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        json!({"status": status, "body": body})
    };
    let mut words = call.split_whitespace();
    if words.next() == Some("setup") {
        // The hub binds before it writes its data directory, so the port
        // can answer a moment before the setup code is written.
        let code = loop {
            if let Ok(c) = std::fs::read_to_string(data.join("setup-code")) {
                break c.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no setup code within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let r = c.post(url("/api/v1/setup")).json(&json!({"setup_code": code, "household": "Fernhill", "username": "mum", "password": PASSWORD})).send().await.expect("setup");
        return answer(r).await;
    }
    let r = c
        .post(url("/api/v1/login"))
        .json(&json!({"username": "mum", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let v: Value = r.json().await.expect("json");
    let token = v["token"].as_str().expect("token").to_owned();
    let arg = words.next().unwrap_or_default().to_owned();
    let rest = call.split_once(' ').map(|(_, r)| r).unwrap_or_default();
    let r = match call.split_whitespace().next().unwrap_or_default() {
        "toys" => c.get(url("/api/v1/toys")).bearer_auth(&token).send().await,
        "confirm" => {
            let toys: Value = c
                .get(url("/api/v1/toys"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("toys")
                .json()
                .await
                .expect("json");
            let id = toys["pending"][0]["pairing_id"]
                .as_str()
                .expect("a pending pairing")
                .to_owned();
            c.post(url(&format!("/api/v1/pairings/{id}/confirm")))
                .bearer_auth(&token)
                .json(&json!({"code": arg}))
                .send()
                .await
        }
        "send" => {
            let wav = crate::messages::tone_wav(1.5, 16_000);
            c.post(url(&format!("/api/v1/toys/{arg}/messages")))
                .bearer_auth(&token)
                .header("content-type", "audio/wav")
                .body(wav)
                .send()
                .await
        }
        "messages" => {
            c.get(url(&format!("/api/v1/messages?toy={arg}")))
                .bearer_auth(&token)
                .send()
                .await
        }
        "rename" => {
            c.patch(url("/api/v1/household"))
                .bearer_auth(&token)
                .json(&json!({"name": rest}))
                .send()
                .await
        }
        "remove" => {
            c.delete(url(&format!("/api/v1/toys/{arg}")))
                .bearer_auth(&token)
                .send()
                .await
        }
        other => panic!("unknown call {other}"),
    };
    answer(r.expect("request")).await
}

/// A toy record and a hub browser written with Python's `zeroconf`; reads
/// commands on stdin (`find INSTANCE`, `quit`), prints `READY`, `HUB ...`
/// lines and `BYE`.
const ZEROCONF_PEER: &str = r#"
import socket, sys, time
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf
HUB = "_hearth._tcp.local."
zc = Zeroconf(ip_version=IPVersion.V4Only)
names = set()
def changed(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        names.discard(name)
    else:
        names.add(name)
browser = ServiceBrowser(zc, HUB, handlers=[changed])
toy = ServiceInfo("_hearth-toy._tcp.local.", "Zeroconf Owl._hearth-toy._tcp.local.",
                  addresses=[socket.inet_aton(sys.argv[1])], port=9, server="zc-owl.local.",
                  properties={"v": "1", "id": "zc-owl", "fp": "ab" * 32, "model": "python zeroconf"})
zc.register_service(toy)
print("READY", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "find":
        name, deadline, info = arg + "." + HUB, time.time() + 30, None
        while time.time() < deadline and info is None:
            if name in names:
                info = zc.get_service_info(HUB, name, timeout=3000)
            else:
                time.sleep(0.1)
        if info is None:
            print("HUB-ERROR not found: " + arg + " among " + repr(sorted(names)), flush=True)
            continue
        txt = ",".join(k.decode() + "=" + (v or b"").decode() for k, v in sorted(info.properties.items()))
        addrs = ",".join(info.parsed_addresses())
        print("HUB instance=" + arg + " host=" + info.server + " port=" + str(info.port) + " addrs=" + addrs + " txt=" + txt, flush=True)
    elif cmd == "quit":
        break
browser.cancel()
zc.unregister_service(toy)
zc.close()
print("BYE", flush=True)
"#;

/// Finds the hub with Python's zeroconf from namespace B, renames the
/// household through the API and finds it under the new name, and checks
/// that the hub lists the toy record zeroconf publishes.
fn zeroconf_interop(pair: &NetnsPair, data: &std::path::Path) {
    let have = crate::harness::run_with_timeout(
        Command::new("python3").args(["-c", "import zeroconf"]),
        30,
        None,
    );
    if !have.status.success() {
        crate::skips::skip(
            "the second mDNS implementation needs python3 with zeroconf",
            "python3 -m pip install zeroconf",
        );
        return;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-u", "-c", ZEROCONF_PEER])
        .arg(pair.addr_b().to_string());
    let mut peer = Proc::new(
        "zeroconf",
        pair.spawn_in_b(&mut cmd).expect("python3 starts"),
    );
    peer.wait_for("READY", |l| l == "READY");
    let ca_pem = std::fs::read_to_string(data.join("ca.crt")).expect("ca");
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("ca pem");
    let ca_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&ca.contents))
    };
    peer.send("find Fernhill");
    let line = peer.wait_for("the hub's record", |l| l.starts_with("HUB"));
    assert!(line.starts_with("HUB instance=Fernhill "), "{line}");
    assert!(line.contains(" host=hearth.local. "), "{line}");
    assert!(line.contains(" port=8443 "), "{line}");
    assert!(
        line.contains(&format!(" addrs={}", pair.addr_a())),
        "{line}"
    );
    let txt = line.rsplit(" txt=").next().unwrap_or_default();
    assert_eq!(txt, format!("api=/toy/v1,ca={ca_sha},v=1"), "{line}");
    // The hub lists zeroconf's toy record.
    parent_until(pair, data, "toys", "the zeroconf toy", |v| {
        v["body"]["discovered"].as_array().is_some_and(|d| {
            d.iter()
                .any(|t| t["toy_id"] == "zc-owl" && t["name"] == "Zeroconf Owl")
        })
    });
    // Renaming the household through the API renames the mDNS instance.
    let renamed = parent_call(pair, data, "rename Fernhill Cottage");
    assert_eq!(renamed["status"], 200, "{renamed}");
    peer.send("find Fernhill Cottage");
    let line = peer.wait_for("the renamed hub", |l| l.starts_with("HUB"));
    assert!(line.starts_with("HUB instance=Fernhill Cottage "), "{line}");
    let back = parent_call(pair, data, "rename Fernhill");
    assert_eq!(back["status"], 200, "{back}");
    peer.send("quit");
    peer.wait_for("BYE", |l| l == "BYE");
    assert!(peer.finish().success());
}
