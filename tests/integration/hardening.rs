//! Issue 9, network and TLS half: the hub CA's name constraints survive an
//! upgrade without unpairing toys, the server certificate is short-lived and
//! renewed, and the hub holds up against junk connections from the LAN.

use std::sync::Arc;

use hearth::app::Application;
use hearth::clock::{Clock, ManualClock};
use hearth::config::Config;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::harness::{Hub, TestToy, client, client_from_keeping, tls_config};
use crate::proc_hub::{ProcHub, status_number};

/// Starts another hub on an existing data directory (a restart after an
/// upgrade or a configuration change). Returns its port and its CA PEM.
async fn start_on(data_dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> (u16, String) {
    let mut config = Config::development_defaults();
    config.data_dir = data_dir.to_owned();
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.mdns.enabled = false;
    tweak(&mut config);
    let app = Application::build_with_clock(config, Arc::new(ManualClock::default()))
        .await
        .expect("the hub starts again");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    let ca = std::fs::read_to_string(data_dir.join("ca.crt")).expect("ca.crt");
    (port, ca)
}

/// The DNS names and addresses of the server certificate in `data_dir`.
fn leaf_names(data_dir: &std::path::Path) -> Vec<String> {
    let pem = std::fs::read(data_dir.join("server.crt")).expect("server.crt");
    let der = CertificateDer::from_pem_slice(&pem).expect("pem");
    let (_, leaf) = x509_parser::parse_x509_certificate(der.as_ref()).expect("leaf");
    let mut names = hearth::pki::cert_names(&leaf);
    names.sort();
    names
}

#[actix_web::test]
async fn new_names_never_cut_off_toys_that_pinned_the_constrained_ca() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-names");
    toy.pair(&hub, &parent).await;
    let pinned = toy.ca_pem.clone();
    let cert = toy.cert_pem.clone().expect("paired");

    // The parent adds a home address and a name outside `.local`. A leaf
    // naming hub.example.net would break the name constraints the toy
    // pinned, so that name is left out; the address is a home one and is in.
    let (port, ca) = start_on(&hub.data_dir(), |c| {
        c.tls.extra_names = vec!["hub.example.net".into(), "192.168.7.7".into()];
    })
    .await;
    assert_eq!(ca, pinned, "the constrained CA is kept as it is");
    assert_eq!(
        leaf_names(&hub.data_dir()),
        vec!["127.0.0.1", "192.168.7.7", "hearth.local", "localhost"]
    );
    let toy_client = client(tls_config(&pinned, Some((&cert, &toy.key_pem))));
    let r = toy_client
        .get(format!("https://localhost:{port}/toy/v1/whoami"))
        .send()
        .await
        .expect("the toy still connects");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["toy_id"], "bear-names");
}

/// The leaf the hub at `port` presents in a real TLS handshake (accepting
/// any certificate: the test clock may run ahead of the real one).
async fn served_leaf(port: u16) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        let cfg = Arc::new(hearth::toy::tls::pairing_config().expect("tls"));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(cfg, name).expect("conn");
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("handshake");
        }
        conn.peer_certificates().expect("certs")[0].to_vec()
    })
    .await
    .expect("join")
}

fn not_after(der: &[u8]) -> time::OffsetDateTime {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("leaf");
    c.validity().not_after.to_datetime()
}

#[actix_web::test]
async fn the_server_certificate_is_renewed_from_the_same_ca_before_it_ends() {
    let hub = Hub::start().await;
    let first = served_leaf(hub.port).await;
    let (_, leaf) = x509_parser::parse_x509_certificate(&first).expect("leaf");
    let span = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(span <= 365 * 86_400, "the leaf lives {span} s");

    // `hearth doctor` reports when it ends.
    let config = hub.dir.path().join("hearth.toml");
    std::fs::write(&config, "version = 1\n[mdns]\nenabled = false\n").expect("config");
    let data = hub.data_dir();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["doctor", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("doctor runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let until = not_after(&first)
        .date()
        .format(&time::format_description::well_known::Iso8601::DATE)
        .expect("date");
    assert!(
        text.contains(&format!("server certificate expires on {until}")),
        "{text}"
    );

    // 31 days before its end nothing happens; at 29 days the hub renews.
    let t0 = hub.clock.now();
    hub.clock.advance(time::Duration::days(333));
    assert_eq!(
        hearth::app::renew_server_certificate(&hub.state).await,
        None
    );
    assert_eq!(served_leaf(hub.port).await, first);
    hub.clock.advance(time::Duration::days(2));
    let end = hearth::app::renew_server_certificate(&hub.state)
        .await
        .expect("renewed at 29 days left");
    let second = served_leaf(hub.port).await;
    assert_ne!(second, first, "new connections get the new leaf at once");
    assert_eq!(not_after(&second), end);
    assert!(end - t0 >= time::Duration::days(335 + 363));
    // From the same CA: a client trusting the CA pinned before still verifies it.
    let (_, leaf) = x509_parser::parse_x509_certificate(&second).expect("leaf");
    let ca = CertificateDer::from_pem_slice(hub.ca_pem.as_bytes()).expect("ca");
    let (_, ca) = x509_parser::parse_x509_certificate(ca.as_ref()).expect("ca");
    assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
    assert_eq!(
        std::fs::read_to_string(hub.data_dir().join("ca.crt")).expect("ca.crt"),
        hub.ca_pem
    );
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the new soft limit: the flood below and the hub share it.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0)
}

/// A TCP connection to `port` from the attacker's address 127.0.0.2 (the
/// parent and the toy use 127.0.0.1); `None` when the hub closed it.
async fn junk_connection(port: u16) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.2:0".parse().ok()?).ok()?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .ok()
}

/// A connection from 127.0.0.2 that completes TLS and then trickles a
/// `POST /api/v1/login` body one byte every half second until `stop`.
async fn slow_body(
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let Some(sock) = junk_connection(port).await else {
        return std::thread::spawn(|| {});
    };
    let sock = sock.into_std().expect("std");
    std::thread::spawn(move || {
        let _ = sock.set_nonblocking(false);
        let cfg = Arc::new(hearth::toy::tls::pairing_config().expect("tls"));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let Ok(conn) = rustls::ClientConnection::new(cfg, name) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let head = "POST /api/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{";
        if tls.write_all(head.as_bytes()).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            if tls.write_all(b" ").and_then(|_| tls.flush()).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    })
}

#[actix_web::test]
async fn a_flood_from_one_address_leaves_parents_and_toys_answered_within_a_second() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    const SLOW: usize = 40;
    const IDLE: usize = 600;
    const STALLED: usize = 100;
    let limit = raise_nofile();
    if limit < 4096 {
        println!("skipped: the open-file limit is {limit}, the flood needs 4096");
        return;
    }
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-flood");
    toy.pair(&hub, &parent).await;

    let sign_in = || async {
        let t = Instant::now();
        let r = hub
            .anon()
            .post(hub.url("/api/v1/login"))
            .json(&serde_json::json!({"username": "mum", "password": crate::harness::PASSWORD}))
            .send()
            .await
            .expect("sign-in");
        assert_eq!(r.status(), 200);
        t.elapsed()
    };
    let baseline = sign_in().await;
    println!("baseline sign-in {baseline:?}");

    // The flood, all from 127.0.0.2: slow bodies, idle TCP connections,
    // and handshakes stalled after a TLS record header.
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(slow_body(hub.port, stop.clone()).await);
    }
    let mut junk = Vec::new();
    for _ in 0..IDLE {
        junk.extend(junk_connection(hub.port).await);
    }
    for _ in 0..STALLED {
        if let Some(mut s) = junk_connection(hub.port).await {
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
            junk.push(s);
        }
    }

    // A parent opens the sign-in page and signs in, and a toy asks who it
    // is, each on a fresh connection, now and for the next seconds (past the
    // handshake timeout): within 1 s. The sign-in itself is Argon2id, about
    // 2 s in a debug build on a busy machine, so it is measured against its
    // own time without the flood.
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut worst_sign_in = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            hub.anon().get(hub.url("/login")).send(),
        )
        .await
        .expect("the sign-in page is answered within 1 s during the flood")
        .expect("page");
        assert_eq!(r.status(), 200);
        worst = worst.max(t.elapsed());
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            toy.client(&hub).get(hub.url("/toy/v1/whoami")).send(),
        )
        .await
        .expect("a toy's request is answered within 1 s during the flood")
        .expect("whoami");
        assert_eq!(r.status(), 200);
        worst = worst.max(t.elapsed());
        // Argon2id competes for the CPU with the other tests here, so the
        // bound is loose; the page above is the sharp check of admission.
        let took = tokio::time::timeout(baseline * 3 + Duration::from_secs(1), sign_in())
            .await
            .expect("a parent's sign-in is answered during the flood");
        worst_sign_in = worst_sign_in.max(took);
    }
    println!(
        "flood: {} junk sockets held by the client; worst page/toy answer {worst:?}, worst sign-in {worst_sign_in:?} (baseline {baseline:?})",
        junk.len()
    );
    stop.store(true, Ordering::Relaxed);
    drop(junk);
    for t in slow {
        let _ = t.join();
    }
}

/// The junk-connection flood against a real `hearth` process: 600 idle TCP
/// connections, 100 handshakes stalled after a TLS record header and 40
/// slow bodies from one address, held for 3 s and dropped; the hub's
/// resident memory comes back within `durability::RSS_MARGIN_KIB` of its
/// pre-flood figure within 10 s.
#[test]
fn memory_returns_after_a_junk_connection_flood() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let limit = raise_nofile();
    if limit < 4096 {
        println!("skipped: the open-file limit is {limit}, the flood needs 4096");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let hub = ProcHub::start(&dir.path().join("data"), Arc::clone(&log))
        .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")));
    let rt = crate::durability::runtime();
    // A few ordinary requests first, so that what is made once (TLS
    // session state, templates) is in the pre-flood figure.
    rt.block_on(async {
        for _ in 0..5 {
            let r = hub
                .anon()
                .get(hub.url("/login"))
                .send()
                .await
                .expect("page");
            // Before setup the page sends the visitor to /setup.
            assert_eq!(r.status(), 303);
        }
    });
    let before_kib = hub.status_kib("VmRSS").expect("VmRSS of the hub");
    let stop = Arc::new(AtomicBool::new(false));
    let slow = rt.block_on(async {
        let mut slow = Vec::new();
        for _ in 0..40 {
            slow.push(slow_body(hub.port, stop.clone()).await);
        }
        let mut junk = Vec::new();
        for _ in 0..600 {
            junk.extend(junk_connection(hub.port).await);
        }
        for _ in 0..100 {
            if let Some(mut s) = junk_connection(hub.port).await {
                let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
                junk.push(s);
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(junk);
        slow
    });
    let during_kib = hub.status_kib("VmHWM").expect("VmHWM of the hub");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in slow {
        let _ = t.join();
    }
    let (after_kib, returned) =
        crate::durability::rss_returns(&hub, before_kib, Duration::from_secs(10));
    println!(
        "junk flood: RSS before {before_kib} KiB, peak {during_kib} KiB, after {after_kib} KiB"
    );
    assert!(
        returned,
        "memory did not return after the junk flood: RSS {before_kib} KiB before, {after_kib} KiB 10 s after (margin {} KiB)",
        crate::durability::RSS_MARGIN_KIB
    );
}

#[actix_web::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let hub = Hub::start().await;
    let port = hub.port;
    // 100 bytes announced, one sent, then one a second: the deadline for
    // 100 bytes is the 10 s grace.
    let deadline = hearth::http::body_deadline(100);
    assert_eq!(deadline, Duration::from_secs(10));
    let (status, body, took) = tokio::task::spawn_blocking(move || {
        let cfg = Arc::new(hearth::toy::tls::pairing_config().expect("tls"));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(cfg, name).expect("conn");
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let started = Instant::now();
        tls.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .expect("head");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(20) {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if !got.is_empty() {
                        break;
                    }
                    let _ = tls.write_all(b" ").and_then(|_| tls.flush());
                }
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        let status = text.split(' ').nth(1).unwrap_or("").to_owned();
        (status, text, started.elapsed())
    })
    .await
    .expect("join");
    assert_eq!(status, "408", "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(3),
        "answered after {took:?}"
    );
}

#[actix_web::test]
async fn sigterm_answers_50_parked_long_polls_at_once_and_exits_within_2_s() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    const TOYS: usize = 50;
    // Pair the toys on an in-process hub, then serve the same data
    // directory with the real binary.
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toys = Vec::new();
    for i in 0..TOYS {
        let mut toy = TestToy::new(&format!("bear-{i}"));
        toy.pair(&hub, &parent).await;
        toys.push(toy);
    }
    let config = hub.dir.path().join("serve.toml");
    std::fs::write(&config, "version = 1\n").expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--data-dir"])
        .arg(hub.data_dir())
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--no-mdns"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn hearth");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let (port, rx): (u16, _) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the hub says it is serving");
            if line.contains("hearth is serving") {
                let port = line
                    .rsplit("port=")
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .expect("port");
                return (port, rx);
            }
        }
    })
    .await
    .expect("join");

    // Each toy parks a long-poll (from its own loopback address: the hub
    // allows 32 connections per address).
    let mut polls = Vec::new();
    for (i, toy) in toys.iter().enumerate() {
        let tls = tls_config(
            &toy.ca_pem,
            Some((toy.cert_pem.as_deref().expect("cert"), &toy.key_pem)),
        );
        let c = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .local_address(std::net::IpAddr::from([127, 0, 1, (i + 1) as u8]))
            .build()
            .expect("client");
        let url = format!("https://localhost:{port}/toy/v1/inbox?wait=60");
        polls.push(tokio::spawn(async move {
            let r = c.get(url).send().await.expect("the long-poll is answered");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            (status, v)
        }));
    }
    // Parked: give them time to reach the hub and wait there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "long-polls are parked"
    );

    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "SIGTERM sent");
    for p in polls {
        let (status, v) = tokio::time::timeout(Duration::from_secs(2), p)
            .await
            .expect("answered within 2 s of SIGTERM")
            .expect("join");
        assert_eq!((status, v), (200, serde_json::json!({"messages": []})));
    }
    let answered = sent.elapsed();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return (s, Instant::now());
            }
            assert!(Instant::now() < deadline, "the hub did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    let exited = status.1 - sent;
    println!("50 long-polls answered after {answered:?}, exit after {exited:?}");
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        status.0.success(),
        "exit status {:?}: {}",
        status.0,
        log.join("\n")
    );
    assert!(exited < Duration::from_secs(2), "exited after {exited:?}");
}

/// A cross-site page can post `text/plain` without a CORS preflight: the
/// JSON endpoints that need no session (setup, sign-in, pairing) answer
/// such a post with `415` before reading it, and it changes nothing.
#[actix_web::test]
async fn json_endpoints_refuse_bodies_that_are_not_declared_json() {
    let hub = Hub::start().await;
    let toy = TestToy::new("owl");
    let setup = serde_json::json!({"setup_code": hub.setup_code(), "household": "Fernhill",
        "username": "mum", "password": crate::harness::PASSWORD});
    let login = serde_json::json!({"username": "mum", "password": crate::harness::PASSWORD});
    let posts = [
        ("/api/v1/setup", setup.to_string()),
        ("/api/v1/login", login.to_string()),
        ("/toy/v1/pair", toy.request_body().to_string()),
    ];
    for (path, body) in &posts {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let mut req = hub.anon().post(hub.url(path)).body(body.clone());
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let r = req.send().await.expect("post");
            assert_eq!(r.status(), 415, "{path} with {ct:?}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], "unsupported_media_type", "{path}");
        }
    }
    // Nothing happened: setup is still open (the harness's setup asserts
    // its 201) and no pairing waits.
    let parent = hub.parent().await;
    let v: Value = parent.get("/api/v1/toys").await.json().await.expect("toys");
    assert_eq!(v["pending"].as_array().map(Vec::len), Some(0), "{v}");
    // Parameters and case of the media type do not matter.
    let r = hub
        .anon()
        .post(hub.url("/api/v1/login"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(posts[1].1.clone())
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// The plain-HTTP redirect listener sends pages to HTTPS on a host the
/// certificate names (never one taken from `X-Forwarded-Host` or an
/// unknown `Host`), and answers the APIs `403` instead of redirecting, so
/// a client does not send its body in clear text and then again.
#[actix_web::test]
async fn the_redirect_listener_keeps_its_host_and_refuses_the_apis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::development_defaults();
    config.data_dir = dir.path().to_owned();
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.redirect_http_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.mdns.enabled = false;
    let app = Application::build_with_clock(config, Arc::new(ManualClock::default()))
        .await
        .expect("the hub starts");
    let (port, plain) = (app.port(), app.redirect_port().expect("a redirect port"));
    actix_web::rt::spawn(app.run_until_stopped());
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt");
    let http = client(tls_config(&ca, None));
    let get = |path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("http://127.0.0.1:{plain}{path}"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.expect("plain request")
        }
    };
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // A name the certificate holds is kept, with the path and query.
    let r = get("/toys?x=1", vec![("host", "localhost:80")]).await;
    assert_eq!(r.status(), 308);
    assert_eq!(location(&r), format!("https://localhost:{port}/toys?x=1"));
    // Forwarded and unknown hosts are never reflected.
    let r = get(
        "/",
        vec![("host", "localhost"), ("x-forwarded-host", "evil.example")],
    )
    .await;
    assert_eq!(location(&r), format!("https://localhost:{port}/"));
    let r = get("/", vec![("host", "evil.example")]).await;
    assert_eq!(r.status(), 308);
    assert_eq!(location(&r), format!("https://hearth.local:{port}/"));
    // The APIs are not redirected.
    for path in ["/api/v1/login", "/toy/v1/inbox", "/api"] {
        let r = get(path, vec![]).await;
        assert_eq!(r.status(), 403, "{path}");
        assert!(location(&r).is_empty(), "{path} is not redirected");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "https_required", "{path}");
    }
}

/// A burst of requests that each need SQLite on a blocking thread starts a
/// bounded number of threads (issue 14, BENCHMARKS.md (o)): 200 signed-in
/// connections, already open (25 from each of eight loopback addresses,
/// under the per-address cap), each change the parent's display name at the
/// same moment while another process holds the database's write lock, and
/// the hub's thread count, read every 2 ms, stays within what it had before
/// plus its two workers' blocking pools
/// (`http::limits::BLOCKING_THREADS_PER_WORKER` each). With tokio's default
/// (512 shared by the workers) the same burst started a thread per waiting
/// request.
#[test]
fn a_burst_of_requests_starts_a_bounded_number_of_threads() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let hub = ProcHub::start(&dir.path().join("data"), Arc::clone(&log))
        .unwrap_or_else(|| panic!("the hub starts; log:\n{}", log.lock().expect("log")));
    let rt = crate::durability::runtime();
    let token = rt.block_on(async {
        hub.setup().await;
        hub.login().await
    });
    let url = format!("https://127.0.0.1:{}/api/v1/ledger", hub.port);
    let addresses: Vec<Vec<reqwest::Client>> = (0..8u8)
        .map(|a| {
            // Kept open past the warm-up: 25 new handshakes at once from
            // one address would be over its cap of 8.
            (0..25)
                .map(|_| client_from_keeping(&hub.ca_pem, 20 + a, Duration::from_secs(60)))
                .collect()
        })
        .collect();
    let get = |c: &reqwest::Client| c.get(&url).bearer_auth(&token).send();
    // A write: each waits for SQLite's one writer and its sync to disk.
    let me = format!("https://127.0.0.1:{}/api/v1/me", hub.port);
    let rename = |c: &reqwest::Client| {
        c.patch(&me)
            .bearer_auth(&token)
            .json(&serde_json::json!({"display_name": "Mum"}))
            .send()
    };
    // Every client opens its connection first, one address's at a time.
    rt.block_on(futures_util::future::join_all(addresses.iter().map(
        |clients| async move {
            for c in clients {
                assert_eq!(get(c).await.expect("a first request").status(), 200);
            }
        },
    )));
    let pid = hub.pid();
    let threads = move || status_number(pid, "Threads").unwrap_or(0);
    let before = threads();
    assert!(before > 0, "the hub's thread count is readable");
    // Two workers of 16 (`BLOCKING_THREADS_PER_WORKER`), written out so
    // that the constant is not its own oracle, and 4 for the hub's own
    // runtime (its timers and background work may start one meanwhile).
    // Without the limit the same burst took 60 to 140 more.
    let bound = before + 2 * 16 + 4;
    let most = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done) = (Arc::clone(&most), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(threads(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Another process holds the database's write lock, so every write of the
    // burst waits (the hub's busy timeout is 5 s) and holds whatever thread
    // it runs on: until more threads than the bound run, or for 2 s.
    let db = rusqlite::Connection::open(hub.data.join("hearth.db")).expect("open the database");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let answers = rt.block_on(async {
        let burst = futures_util::future::join_all(addresses.iter().flatten().map(rename));
        let hold = async {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while most.load(Ordering::SeqCst) <= bound && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            db.execute_batch("COMMIT").expect("release the write lock");
        };
        tokio::join!(burst, hold).0
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let ok = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    assert_eq!(ok, 200, "every request of the burst is answered");
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= bound,
        "the burst took the hub from {before} to {most} threads (at most {bound})"
    );
}
