//! The LAN guard against real addresses: the `hearth` binary in namespace A
//! and a client in namespace B that reaches it once from a home-network
//! address (`10.213.X.2`, RFC 1918) and once from a public one
//! (`203.0.113.2`, TEST-NET-3: public by the guard's rules, and never routed
//! anywhere, so nothing leaves the namespaces). No test-only switch in the
//! hub: the guard sees the source address the kernel reports.
//!
//! The client is this test binary re-executed in B ([`netns_child`], role
//! `client`); it prints one line `RESULT <status> <error code>` per URL.
//! The plain-HTTP redirect listener (`redirect_http_listen`) is checked the
//! same way.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{NetnsPair, Proc, role, self_test_command};

const CHILD: &str = "lan_guard::netns_child";
const PUBLIC_HUB: &str = "203.0.113.1";
const PUBLIC_CLIENT: &str = "203.0.113.2";

/// GETs `path` from namespace B at `addr`:8443; returns (status, error code).
fn get_from_b(pair: &NetnsPair, data: &std::path::Path, addr: &str, path: &str) -> (u16, String) {
    get_from_b_port(pair, data, addr, 8443, path)
}

/// [`get_from_b`] on another port: 8443 is HTTPS, any other plain HTTP.
fn get_from_b_port(
    pair: &NetnsPair,
    data: &std::path::Path,
    addr: &str,
    port: u16,
    path: &str,
) -> (u16, String) {
    let mut cmd = self_test_command(CHILD, "client");
    cmd.env("HEARTH_TEST_PORT", port.to_string());
    cmd.env("HEARTH_TEST_DATA", data)
        .env("HEARTH_TEST_ADDR", addr)
        .env("HEARTH_TEST_PATH", path);
    let line = NetnsPair::result_in(pair.ns_b(), &cmd, &format!("for {addr}{path}"));
    let line = line.as_str();
    let (status, code) = line.split_once(' ').unwrap_or((line, ""));
    (status.parse().expect("a status"), code.to_owned())
}

fn start_hub(pair: &NetnsPair, dir: &std::path::Path, allow_public: bool) -> Proc {
    let config = dir.join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\nlisten = \"0.0.0.0:8443\"\nredirect_http_listen = \"0.0.0.0:8080\"\nallow_public_clients = {allow_public}\n[mdns]\nenabled = false\n"
        ),
    )
    .expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"));
    Proc::new("hub", pair.spawn_in_a(&mut cmd).expect("the hub starts"))
}

#[test]
fn lan_guard_refuses_a_real_public_address_and_allows_the_home_network() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    pair.add_addr_a(&format!("{PUBLIC_HUB}/24"))
        .and_then(|()| pair.add_addr_b(&format!("{PUBLIC_CLIENT}/24")))
        .expect("public-range addresses on the veth");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let home = pair.addr_a().to_string();

    let hub = start_hub(&pair, dir.path(), false);
    // From the home network: served.
    assert_eq!(get_from_b(&pair, &data, &home, "/setup").0, 200);
    // From a public address: refused, for pages and both APIs.
    assert_eq!(get_from_b(&pair, &data, PUBLIC_HUB, "/setup").0, 403);
    for path in ["/api/v1/toys", "/toy/v1/whoami", "/ca.crt"] {
        let (status, code) = get_from_b(&pair, &data, PUBLIC_HUB, path);
        assert_eq!(status, 403, "{path}");
        if path != "/ca.crt" {
            assert_eq!(code, "outside_home_network", "{path}");
        }
    }
    // The plain-HTTP redirect listener too: home network redirected, the
    // outside refused (DESIGN.md: no connection from outside the home).
    assert_eq!(get_from_b_port(&pair, &data, &home, 8080, "/").0, 308);
    let (status, _) = get_from_b_port(&pair, &data, PUBLIC_HUB, 8080, "/");
    assert_eq!(status, 403, "the redirect listener refuses the outside");
    drop(hub);

    // allow_public_clients turns the guard off.
    let _hub = start_hub(&pair, dir.path(), true);
    assert_eq!(get_from_b(&pair, &data, PUBLIC_HUB, "/setup").0, 200);
}

/// The client, run inside namespace B; does nothing in a normal run.
#[test]
#[ignore = "a child process of lan_guard_refuses_a_real_public_address_and_allows_the_home_network"]
fn netns_child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "client");
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let (data, addr, path) = (
        std::path::PathBuf::from(var("HEARTH_TEST_DATA")),
        var("HEARTH_TEST_ADDR"),
        var("HEARTH_TEST_PATH"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let line = rt.block_on(async move {
        // The hub may still be starting: wait for its CA and its port.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = var("HEARTH_TEST_PORT").parse().expect("port");
        let target: std::net::SocketAddr = format!("{addr}:{port}").parse().expect("addr");
        let ca = loop {
            if let Ok(ca) = std::fs::read_to_string(data.join("ca.crt")) {
                if std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).is_ok() {
                    break ca;
                }
            }
            assert!(Instant::now() < deadline, "the hub did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let c = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::harness::tls_config(&ca, None))
            .redirect(reqwest::redirect::Policy::none())
            .resolve("hearth.local", target)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let scheme = if port == 8443 { "https" } else { "http" };
        let r = c
            .get(format!("{scheme}://hearth.local:{port}{path}"))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        format!("{status} {}", v["error"]["code"].as_str().unwrap_or(""))
    });
    println!("RESULT {line}");
}
