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

use crate::harness::{Hub, TestToy, client, tls_config};

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
