//! Egress: the hub contacts nothing but the mailbox it was given.
//!
//! ```text
//!   namespace A (home: the hub)              namespace B (LAN and "world")
//!   hearth serve, 0.0.0.0:8443, mDNS on      Garage, S3 API on 10.213.X.2
//!   default route via 10.213.X.2  --veth-->  the driver: parent, toy, Grandma
//!   tcpdump: every packet A sends
//! ```
//!
//! Namespace A has a default route into B, so any connection the hub tried
//! (a DNS lookup, a time server, a crash reporter, a second endpoint) would
//! leave through the veth, where `tcpdump` in A records every packet A
//! sends that is not part of an answer: UDP, ICMP, IGMP, IPv6, and TCP
//! segments with SYN and without ACK (connection attempts). The answers to
//! the driver's requests (SYN-ACK and data) are not attempts and are not
//! recorded; loopback traffic stays in A and is not on the veth.
//!
//! The driver is this test binary re-executed in B ([`netns_child`], role
//! `driver`). It starts the real Garage on B's address and goes through a
//! household's whole relay life over the network: setup, pairing a toy, the
//! toy's recording, a parent's message to the toy, a refused mailbox check,
//! the settings checked and saved, a share, Grandma fetching the player,
//! the metadata and both clips by their presigned URLs and uploading a
//! reply, the hub's reply poll, approval to the toy, stop sharing. The
//! parent process then runs `hearth relay check` in A and stops the hub.
//!
//! UDP packets from A to B's discard-style ports (markers) split the
//! capture into phases and prove it is complete up to each marker: the
//! first phase (up to the refused check, which names a closed port on B as
//! the endpoint) must show exactly that one destination, which shows the
//! capture sees the hub's attempts; the second exactly the mailbox's
//! `address:port`. Multicast DNS (224.0.0.251 / ff02::fb port 5353), IGMP
//! and ICMPv6 to link-local multicast (the kernel's own neighbour and
//! group bookkeeping) are the only other packets allowed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    PASSWORD, Parent, Target, TestToy, eventually, have, recording_from, run_with_timeout,
};
use crate::messages::tone_wav;
use crate::netns::{NetnsPair, Proc, role, self_test_command};
use crate::relay::{
    Garage, fetch, parse_link, put_settings, send_reply, share, share_state, waiting_reply,
};
use crate::skips::skip;

const CHILD: &str = "relay_egress::netns_child";
/// The hub's HTTPS port in namespace A.
const HUB_PORT: u16 = 8443;
/// A port nothing listens on in B: the endpoint of the refused check.
const CLOSED_PORT: u16 = 9;
/// Marker ports (UDP from A to B; nothing listens there).
const START: u16 = 40_001;
const PHASE: u16 = 40_002;
const END: u16 = 40_003;

/// Sends one UDP marker packet from namespace A to `addr_b:port`.
fn marker(pair: &NetnsPair, port: u16) {
    let script = format!("echo hearth-marker > /dev/udp/{}/{port}", pair.addr_b());
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    let out = run_with_timeout(&mut NetnsPair::command_in(pair.ns_a(), &cmd), 30, None);
    assert!(
        out.status.success(),
        "marker {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One packet of the capture: protocol and destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sent {
    proto: String,
    dst: String,
}

/// Reads one line of `tcpdump -n -q` (`… Out IP 10.0.0.1.5353 >
/// 224.0.0.251.5353: UDP, length 40`), `None` for other lines.
fn parse(line: &str) -> Option<Sent> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "IP" || *w == "IP6")?;
    if words.get(at + 2) != Some(&">") {
        return None;
    }
    let dst = words.get(at + 3)?.trim_end_matches(':').to_owned();
    let rest = words[at + 4..].join(" ");
    let proto = if rest.starts_with("tcp") {
        "tcp"
    } else if rest.starts_with("UDP") || rest.contains("[|domain]") || dst.ends_with(".5353") {
        "udp"
    } else if rest.contains("igmp") {
        "igmp"
    } else if rest.contains("ICMP6") {
        "icmp6"
    } else if rest.contains("ICMP") {
        "icmp"
    } else {
        "other"
    };
    Some(Sent {
        proto: proto.to_owned(),
        dst,
    })
}

/// `ip.port` as tcpdump writes it.
fn dotted(addr: impl std::fmt::Display, port: u16) -> String {
    format!("{addr}.{port}")
}

/// What the kernel or mDNS sends on its own, allowed in every phase.
fn background(s: &Sent) -> bool {
    let mdns = s.dst == "224.0.0.251.5353" || s.dst == "ff02::fb.5353";
    let kernel = s.proto == "igmp" || (s.proto == "icmp6" && s.dst.starts_with("ff02:"));
    mdns || kernel
}

/// The destinations of the packets between two markers, background apart;
/// and how many mDNS packets there were.
fn phase(lines: &[String], from: &str, to: &str) -> (BTreeSet<Sent>, usize) {
    let sent: Vec<Sent> = lines.iter().filter_map(|l| parse(l)).collect();
    let at = |dst: &str| {
        sent.iter()
            .position(|s| s.proto == "udp" && s.dst == dst)
            .unwrap_or_else(|| panic!("marker {dst} not captured: {lines:#?}"))
    };
    let (a, b) = (at(from), at(to));
    assert!(a < b, "markers out of order");
    let between = &sent[a + 1..b];
    let mdns = between.iter().filter(|s| s.dst.ends_with(".5353")).count();
    (
        between.iter().filter(|s| !background(s)).cloned().collect(),
        mdns,
    )
}

#[test]
fn the_hub_contacts_nothing_but_the_mailbox_during_share_reply_and_stop() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    if !have("tcpdump") {
        skip(
            "tcpdump is not installed",
            "sudo apt install tcpdump (.ci/run does it)",
        );
        return;
    }
    if !have("garage") {
        skip(
            "the garage S3 server is not installed",
            "cargo install garage --locked (.ci/run does it)",
        );
        return;
    }
    // The hub's namespace has a way out: everything not local goes to B.
    let route = run_with_timeout(
        Command::new("ip").args([
            "-n",
            pair.ns_a(),
            "route",
            "add",
            "default",
            "via",
            &pair.addr_b().to_string(),
        ]),
        30,
        None,
    );
    assert!(route.status.success(), "default route in A");

    // The capture: every packet A sends that is not an answer.
    let filter = "outbound and ((ip and not tcp) or \
                  (ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) or ip6)";
    let mut tcpdump = Command::new("sh");
    tcpdump.args(["-c", "exec tcpdump -n -q -l -i any \"$0\" 2>&1", filter]);
    let mut cap = Proc::new(
        "tcpdump",
        pair.spawn_in_a(&mut tcpdump).expect("tcpdump starts"),
    );
    cap.wait_for("tcpdump listening", |l| l.contains("listening on"));
    let start = dotted(pair.addr_b(), START);
    marker(&pair, START);
    cap.wait_for("the start marker", |l| l.contains(&start));

    // The hub, as installed: mDNS on, listening on every address.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!("version = 1\nlisten = \"0.0.0.0:{HUB_PORT}\"\n"),
    )
    .expect("config");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_hearth"));
    serve
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("HEARTH_LOG", "warn");
    let hub = Proc::new("hub", pair.spawn_in_a(&mut serve).expect("the hub starts"));

    let mut driver = self_test_command(CHILD, "driver");
    driver
        .env("HEARTH_TEST_DATA", &data)
        .env("HEARTH_TEST_HUB", format!("{}:{HUB_PORT}", pair.addr_a()))
        .env("HEARTH_TEST_WORLD", pair.addr_b().to_string());
    let mut driver = Proc::new("driver", pair.spawn_in_b(&mut driver).expect("driver"));
    let mailbox = driver.wait_for_within("the mailbox", Duration::from_secs(120), |l| {
        l.starts_with("MAILBOX ")
    });
    let mailbox: SocketAddr = mailbox["MAILBOX ".len()..].parse().expect("ip:port");
    driver.wait_for_within("the refused check", Duration::from_secs(120), |l| {
        l == "PHASE refused"
    });
    let middle = dotted(pair.addr_b(), PHASE);
    marker(&pair, PHASE);
    cap.wait_for("the phase marker", |l| l.contains(&middle));
    driver.send("go");
    driver.wait_for_within("the relay scenario", Duration::from_secs(300), |l| {
        l == "RESULT ok"
    });

    // `hearth relay check` from the hub's namespace: the same one endpoint.
    let mut check = Command::new(env!("CARGO_BIN_EXE_hearth"));
    check
        .args(["relay", "check", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("HEARTH_LOG", "warn");
    let out = run_with_timeout(&mut NetnsPair::command_in(pair.ns_a(), &check), 60, None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("works"),
        "hearth relay check: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The hub stops (SIGTERM), then the mailbox goes.
    let term = run_with_timeout(
        Command::new("kill").args(["-TERM", &hub.pid().to_string()]),
        10,
        None,
    );
    assert!(term.status.success());
    let status = hub.finish();
    assert!(status.success(), "the hub exits cleanly: {status}");
    driver.send("done");
    assert!(driver.finish().success(), "the driver exits cleanly");

    let end = dotted(pair.addr_b(), END);
    marker(&pair, END);
    cap.wait_for("the end marker", |l| l.contains(&end));
    let lines = cap.log().to_vec();
    println!("the capture in A:\n{}", lines.join("\n"));

    let sent = |dst: String| Sent {
        proto: "tcp".into(),
        dst,
    };
    let (before, mdns_before) = phase(&lines, &start, &middle);
    assert_eq!(
        before,
        BTreeSet::from([sent(dotted(pair.addr_b(), CLOSED_PORT))]),
        "up to the refused check the hub tried only the endpoint typed in; capture:\n{}",
        lines.join("\n")
    );
    let (after, mdns_after) = phase(&lines, &middle, &end);
    assert_eq!(
        after,
        BTreeSet::from([sent(dotted(mailbox.ip(), mailbox.port()))]),
        "from the saved settings on, the hub contacted only the mailbox; capture:\n{}",
        lines.join("\n")
    );
    assert!(
        mdns_before + mdns_after > 0,
        "the hub announced itself by mDNS (the capture sees its multicast too)"
    );
}

/// The hub in namespace A as the driver in B reaches it: `hearth.local`
/// (a name on the hub's certificate) resolved to A's address.
struct NetHub {
    addr: SocketAddr,
    ca_pem: String,
}

impl NetHub {
    fn client(&self, identity: Option<(&str, &str)>) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(crate::harness::tls_config(&self.ca_pem, identity))
            .redirect(reqwest::redirect::Policy::none())
            .resolve("hearth.local", self.addr)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }
}

impl Target for NetHub {
    fn port(&self) -> u16 {
        self.addr.port()
    }
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    fn url(&self, path: &str) -> String {
        format!("https://hearth.local:{}{path}", self.addr.port())
    }
    fn anon(&self) -> reqwest::Client {
        self.client(None)
    }
    fn with_cert(&self, cert_pem: &str, key_pem: &str) -> reqwest::Client {
        self.client(Some((cert_pem, key_pem)))
    }
}

/// Reads one line from the parent test on stdin.
fn wait_for_parent(expected: &str) {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    assert_eq!(line.trim(), expected, "the parent test said");
}

/// The driver, run inside namespace B; does nothing in a normal run.
#[test]
#[ignore = "a child process of the_hub_contacts_nothing_but_the_mailbox_during_share_reply_and_stop"]
fn netns_child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "driver");
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let data = std::path::PathBuf::from(var("HEARTH_TEST_DATA"));
    let hub_addr: SocketAddr = var("HEARTH_TEST_HUB").parse().expect("hub address");
    let world = var("HEARTH_TEST_WORLD");
    let garage = Garage::start_at(&world).expect("garage is installed (the parent checked)");
    println!("MAILBOX {world}:{}", garage.s3_port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(drive(&garage, &data, hub_addr, &world));
    println!("RESULT ok");
    // Garage stays up for `hearth relay check` until the parent is done.
    wait_for_parent("done");
}

async fn drive(garage: &Garage, data: &std::path::Path, hub_addr: SocketAddr, world: &str) {
    // The hub may still be starting: wait for its CA and its port.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ca_pem = loop {
        if let Ok(ca) = std::fs::read_to_string(data.join("ca.crt")) {
            if std::net::TcpStream::connect_timeout(&hub_addr, Duration::from_secs(2)).is_ok() {
                break ca;
            }
        }
        assert!(Instant::now() < deadline, "the hub did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hub = NetHub {
        addr: hub_addr,
        ca_pem,
    };

    // Setup and sign-in over the home network.
    let code = std::fs::read_to_string(data.join("setup-code")).expect("setup-code");
    let r = hub
        .anon()
        .post(hub.url("/api/v1/setup"))
        .json(&json!({"setup_code": code.trim(), "household": "Fernhill", "username": "mum", "password": PASSWORD}))
        .send()
        .await
        .expect("setup");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = hub
        .anon()
        .post(hub.url("/api/v1/login"))
        .json(&json!({"username": "mum", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let v: Value = r.json().await.expect("json");
    let parent = Parent {
        client: hub.anon(),
        token: v["token"].as_str().expect("token").to_owned(),
        base: hub.url(""),
    };

    // A toy, its recording, a parent's message to it.
    let mut toy = TestToy::new("bear");
    toy.pair(&hub, &parent).await;
    let msg = recording_from(&hub, &toy).await;
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(tone_wav(1.0, 16_000))
        .send()
        .await
        .expect("message");
    assert_eq!(r.status(), 201);
    assert_eq!(toy.inbox(&hub).await.len(), 1);

    // A mailbox typed wrong: a closed port. The only other destination.
    let mut wrong = garage.settings();
    wrong["endpoint"] = json!(format!("http://{world}:{CLOSED_PORT}"));
    let (s, v) = put_settings(&parent, wrong).await;
    assert_eq!((s, v["cause"].as_str()), (502, Some("unreachable")), "{v}");
    println!("PHASE refused");
    wait_for_parent("go");

    // A wrong key for the right mailbox, then the right settings.
    let mut wrong = garage.settings();
    wrong["secret_access_key"] = json!("0".repeat(64));
    let (s, v) = put_settings(&parent, wrong).await;
    assert_eq!((s, v["cause"].as_str()), (502, Some("wrong_key")), "{v}");
    let (s, v) = put_settings(&parent, garage.settings()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(parent.json("/api/v1/relay").await["configured"], true);

    // Share; Grandma opens the link and answers.
    let created = share(&parent, &msg, json!({"contact": "Grandma", "replies": 1})).await;
    let link = parse_link(created["link"].as_str().expect("link"));
    assert_eq!(fetch(&link.player).await.status(), 200);
    let m: Value = serde_json::from_slice(&link.open("m", &link.m_query).await).expect("m");
    let ogg = link
        .open("a", m["audio"]["ogg"].as_str().expect("ogg"))
        .await;
    assert!(ogg.starts_with(b"OggS"));
    let wav = link
        .open("w", m["audio"]["wav"].as_str().expect("wav"))
        .await;
    assert!(wav.starts_with(b"RIFF"));
    send_reply(
        &link,
        m["replies"][0]["put"].as_str().expect("put"),
        &tone_wav(1.5, 16_000),
    )
    .await;

    // The hub's poll fetches it; a parent approves it to the toy.
    let waiting = waiting_reply(&parent, 60).await;
    let rid = waiting["id"].as_str().expect("id");
    let r = parent
        .post(
            &format!("/api/v1/messages/{rid}/approve"),
            json!({"toy_id": "bear"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(toy.inbox(&hub).await.len(), 2);

    // Stop sharing: the objects go.
    let r = parent.delete(&format!("/api/v1/shares/{}", link.sid)).await;
    assert_eq!(r.status(), 204);
    eventually(60, "the share ended", || async {
        (share_state(&parent, &link.sid).await["state"] == "ended").then_some(())
    })
    .await;
    assert_eq!(garage.list().await, Vec::<String>::new());
}
