//! Issue 9, network and TLS half: the hub CA's name constraints survive an
//! upgrade without unpairing toys, the server certificate is short-lived and
//! renewed, and the hub holds up against junk connections from the LAN.

use std::sync::Arc;

use hearth::app::Application;
use hearth::clock::ManualClock;
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
