//! Discovery over real mDNS between two network namespaces: the hub in A,
//! a toy and a source of broken records in B.
//!
//! The test process re-executes itself in the namespaces (see `netns.rs`);
//! [`netns_child`] plays the role named in `HEARTH_TEST_ROLE`, prints what it
//! observes as stdout lines and takes commands on stdin:
//!
//! | role | prints | stdin |
//! | --- | --- | --- |
//! | `hub` | `READY`, `EVENT appeared\|updated id=.. name=".." paired=..`, `EVENT gone id=..`, debug logs | `seen` → `SEEN id,id`; `up ID` → `UP ID bool`; `rename NAME` → `RENAMED`; `newca HEX` → `NEWCA`; `quit` → `BYE` |
//! | `toy` | `READY` | `find` → `HUB instance=".." host=.. port=.. api=.. ca=.. addrs=a,b` or `HUB-ERROR ..`; `paired` → `PAIRED`; `quit` → `BYE` |
//! | `garbage` | `READY` once its bad records are registered and junk packets sent | `quit` → `BYE` |
//! | `squatter` | `READY` once it answers for `hearth-test.local` with its own address | `quit` → `BYE` |
//!
//! With [`PKI_ENV`] set to a directory, the hub roles make a real hub CA and
//! server certificate there (`hearth::pki::HubPki`), serve TLS with it on the
//! advertised port and print `CERTIFIED host` when the certificate is made
//! to cover a host name; the toy then also takes `tls HOST ADDR PORT` →
//! `TLS ok` or `TLS-ERROR ..`: a TLS handshake that trusts only that CA
//! (`ca.crt` in the directory) and checks the server name `HOST`.

use std::io::BufRead;
use std::time::Duration;

use hearth::discovery::{
    CertifyHost, Discovery, DiscoveryEvent, DiscoveryOptions, HubAdvert, TOY_SERVICE_TYPE,
    ToyAdvert, ToyAdvertiser, find_hub,
};
use hearth::domain::{Hex32, ToyId};
use hearth::pki::{HubPki, server_names};
use mdns_sd::{ServiceDaemon, ServiceInfo, TxtProperty};
use rustls::pki_types::pem::PemObject;

use crate::netns::{NetnsPair, Proc, role, self_test_command};

const CHILD: &str = "discovery::netns_child";
const IFACE_ENV: &str = "HEARTH_TEST_IFACE";
const PKI_ENV: &str = "HEARTH_TEST_PKI_DIR";
const HOST: &str = "hearth-test.local";
const TOY_ID: &str = "bear-3f2a";
const CA: Hex32 = Hex32([0xca; 32]);
const FP: Hex32 = Hex32([0x3f; 32]);

/// The bad records the `garbage` role advertises: (instance, TXT strings).
fn garbage_records() -> Vec<(&'static str, Vec<TxtProperty>)> {
    let fp = FP.to_hex();
    vec![
        (
            "Bad Version",
            vec![
                ("v", "2").into(),
                ("id", "bad-version").into(),
                ("fp", fp.as_str()).into(),
            ],
        ),
        (
            "Bad Fp",
            vec![
                ("v", "1").into(),
                ("id", "bad-fp").into(),
                ("fp", "abc123").into(),
            ],
        ),
        (
            "Bad Id",
            vec![
                ("v", "1").into(),
                ("id", "bad id!").into(),
                ("fp", fp.as_str()).into(),
            ],
        ),
        ("No Id", vec![("v", "1").into(), ("fp", fp.as_str()).into()]),
        (
            "Bad Utf8",
            vec![
                ("v", "1").into(),
                ("id", "bad-utf8").into(),
                ("fp", fp.as_str()).into(),
                ("model", [0xffu8, 0xfe].as_slice()).into(),
            ],
        ),
    ]
}

/// A record with duplicate, differently cased keys: valid, listed as the
/// first id.
fn duplicate_key_record() -> Vec<TxtProperty> {
    let fp = FP.to_hex();
    vec![
        ("V", "1").into(),
        ("ID", "dup-first").into(),
        ("id", "dup-second").into(),
        ("Fp", fp.as_str()).into(),
        ("colour", "blue").into(),
    ]
}

/// Starts the child `name` (see [`CHILD`]) in namespace A or B, on that
/// namespace's interface.
fn start_child(pair: &NetnsPair, in_a: bool, name: &str) -> Proc {
    start_child_with(pair, in_a, name, None)
}

/// [`start_child`] with [`PKI_ENV`] set to `pki` when given.
fn start_child_with(
    pair: &NetnsPair,
    in_a: bool,
    name: &str,
    pki: Option<&std::path::Path>,
) -> Proc {
    let mut cmd = self_test_command(CHILD, name);
    cmd.env(IFACE_ENV, if in_a { pair.if_a() } else { pair.if_b() });
    if let Some(dir) = pki {
        cmd.env(PKI_ENV, dir);
    }
    let child = if in_a {
        pair.spawn_in_a(&mut cmd)
    } else {
        pair.spawn_in_b(&mut cmd)
    };
    Proc::new(
        name,
        child.unwrap_or_else(|e| panic!("cannot start {name}: {e}")),
    )
}

#[test]
fn discovery_over_real_mdns_in_netns() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    let start = |in_a: bool, name: &str| start_child(&pair, in_a, name);

    let mut hub = start(true, "hub");
    hub.wait_for("READY", |l| l == "READY");
    let mut toy = start(false, "toy");
    toy.wait_for("READY", |l| l == "READY");

    // The hub lists the toy.
    let line = hub.wait_for("the toy to appear", |l| {
        l.starts_with(&format!("EVENT appeared id={TOY_ID} "))
    });
    assert!(line.contains(r#"name="Bear 3F2A""#), "{line}");
    assert!(line.contains("paired=false"), "{line}");

    // The toy finds the hub, with its host, port, CA fingerprint and address.
    toy.send("find");
    let line = toy.wait_for("the hub record", |l| l.starts_with("HUB"));
    assert!(line.starts_with("HUB "), "{line}");
    assert!(line.contains(r#"instance="Test Home""#), "{line}");
    assert!(line.contains(" host=hearth-test.local "), "{line}");
    assert!(line.contains(" port=8443 "), "{line}");
    assert!(line.contains(" api=/toy/v1 "), "{line}");
    assert!(line.contains(&format!(" ca={} ", CA.to_hex())), "{line}");
    let addrs = line.rsplit("addrs=").next().unwrap_or_default();
    assert!(
        addrs.split(',').any(|a| a == pair.addr_a().to_string()),
        "{line}"
    );

    // Broken records and junk packets: each bad record is logged and ignored,
    // the valid ones are still listed.
    let mut garbage = start(false, "garbage");
    garbage.wait_for("READY", |l| l == "READY");
    hub.wait_for("the duplicate-key record", |l| {
        l.starts_with("EVENT appeared id=dup-first ")
    });
    for (name, _) in garbage_records() {
        let record = format!("record={name}._hearth-toy._tcp.local.");
        hub.saw_or_wait_for(&format!("{name:?} to be ignored"), |l| {
            l.contains("ignoring an invalid toy record") && l.ends_with(&record)
        });
    }
    hub.send("seen");
    assert_eq!(
        hub.wait_for("SEEN", |l| l.starts_with("SEEN")),
        format!("SEEN {TOY_ID},dup-first")
    );
    assert!(
        !hub.log().iter().any(|l| l.contains("dup-second")),
        "a later duplicate key won"
    );

    // A paired toy's record update reaches the hub as an update.
    toy.send("paired");
    toy.wait_for("PAIRED", |l| l == "PAIRED");
    let line = hub.wait_for("the toy update", |l| {
        l.starts_with(&format!("EVENT updated id={TOY_ID} "))
    });
    assert!(line.contains("paired=true"), "{line}");

    // A renamed household is found under its new name.
    hub.send("rename Renamed Home");
    hub.wait_for("RENAMED", |l| l == "RENAMED");
    toy.send("find");
    let line = toy.wait_for("the renamed hub", |l| l.starts_with("HUB"));
    assert!(line.contains(r#"instance="Renamed Home""#), "{line}");

    // New keys (the household was deleted): the same name, the new CA hash.
    let new_ca = Hex32::sha256(b"a new hub CA");
    hub.send(&format!("newca {}", new_ca.to_hex()));
    hub.wait_for("NEWCA", |l| l == "NEWCA");
    let new_ca_field = format!(" ca={} ", new_ca.to_hex());
    let line = find_hub_where(&mut toy, &hub, "the hub with its new CA", |l| {
        l.contains(&new_ca_field)
    });
    assert!(line.contains(r#"instance="Renamed Home""#), "{line}");

    // The toy leaves: goodbye packets make it Gone at once.
    toy.send("quit");
    toy.wait_for("BYE", |l| l == "BYE");
    hub.wait_for("the toy to go", |l| l == format!("EVENT gone id={TOY_ID}"));
    hub.send(&format!("up {TOY_ID}"));
    assert_eq!(
        hub.wait_for("UP", |l| l.starts_with("UP ")),
        format!("UP {TOY_ID} false")
    );
    hub.send("seen");
    assert_eq!(
        hub.wait_for("SEEN", |l| l.starts_with("SEEN")),
        "SEEN dup-first"
    );

    garbage.send("quit");
    hub.send("quit");
    hub.wait_for("BYE", |l| l == "BYE");
    for p in [toy, garbage, hub] {
        assert!(p.finish().success());
    }
}

/// [`start_child_with`] a real hub PKI in `pki`, then waits for `READY`.
fn ready_child(pair: &NetnsPair, in_a: bool, name: &str, pki: &std::path::Path) -> Proc {
    let mut p = start_child_with(pair, in_a, name, Some(pki));
    p.wait_for("READY", |l| l == "READY");
    p
}

/// Asks the toy for the hub until its record shows `instance` with an IPv4
/// address (records arrive one by one: a first answer may hold only the
/// link-local IPv6 one); returns the `HUB ..` line.
fn find_instance(toy: &mut Proc, hub: &Proc, instance: &str, what: &str) -> String {
    let wanted = format!("instance={instance:?}");
    find_hub_where(toy, hub, what, |line| {
        line.contains(&wanted) && host_port_addrs(line).2.iter().any(|a| !a.contains(':'))
    })
}

/// Asks the toy for the hub until its `HUB ..` line satisfies `ok` (within
/// 90 s), and returns that line.
fn find_hub_where(toy: &mut Proc, hub: &Proc, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        toy.send("find");
        let line = toy.wait_for("the hub record", |l| l.starts_with("HUB"));
        if ok(&line) {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the hub record never showed it; last: {line}\nhub log:\n{}",
            hub.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `host=`, `port=` and `addrs=` of a `HUB ..` line.
fn host_port_addrs(line: &str) -> (String, String, Vec<String>) {
    let field = |name: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_owned()
    };
    let addrs = line.rsplit("addrs=").next().unwrap_or_default();
    (
        field("host="),
        field("port="),
        addrs.split(',').map(str::to_owned).collect(),
    )
}

/// Checks from the toy's namespace that the certificate the hub serves at
/// the announced address chains to the hub CA and covers `host`.
fn assert_certificate_covers(
    toy: &mut Proc,
    hub: &Proc,
    host: &str,
    addrs: &[String],
    port: &str,
    what: &str,
) {
    let addr = addrs.iter().find(|a| !a.contains(':')).unwrap_or(&addrs[0]);
    toy.send(&format!("tls {host} {addr} {port}"));
    let line = toy.wait_for("the TLS check", |l| l.starts_with("TLS"));
    assert_eq!(
        line,
        "TLS ok",
        "{what}: the certificate served at {addr}:{port} does not cover the announced host {host}\nhub log:\n{}",
        hub.log().join("\n")
    );
}

/// Twenty household renames: the hub keeps its host name (re-registering
/// must not make mDNS see a conflict with itself), the certificate it serves
/// covers the host it announces, and it never announces a loopback address.
/// The hub uses the default interface selection. After a rename the new
/// record can take tens of seconds to be found (an open issue, see the
/// commit), hence the long deadline.
#[test]
fn renames_keep_the_host_name_and_never_announce_loopback() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    let pki = tempfile::tempdir().expect("tempdir");
    let mut hub = ready_child(&pair, true, "hub-all", pki.path());
    let mut toy = ready_child(&pair, false, "toy", pki.path());
    for n in 1..=20 {
        let name = format!("Home {n}");
        hub.send(&format!("rename {name}"));
        hub.wait_for("RENAMED", |l| l == "RENAMED");
        let line = find_instance(&mut toy, &hub, &name, &format!("rename {n}"));
        let (host, port, addrs) = host_port_addrs(&line);
        assert_eq!(
            host,
            HOST,
            "rename {n}: the host name changed: {line}\nhub log:\n{}",
            hub.log().join("\n")
        );
        assert!(
            addrs.iter().all(|a| !a.starts_with("127.") && a != "::1"),
            "rename {n}: a loopback address was announced: {line}"
        );
        assert_certificate_covers(&mut toy, &hub, &host, &addrs, &port, &format!("rename {n}"));
    }
    toy.send("quit");
    hub.send("quit");
    hub.wait_for("BYE", |l| l == "BYE");
    for p in [toy, hub] {
        assert!(p.finish().success());
    }
}

/// Another device already answers for the hub's host name: the hub takes
/// `hearth-test-2.local`, and the certificate it serves covers that name
/// the first time a toy can learn it (the certificate is reissued before
/// the name is announced), and no longer the taken one.
#[test]
fn a_host_name_taken_on_the_network_is_certified_before_it_is_announced() {
    let Some(pair) = NetnsPair::create_or_skip() else {
        return;
    };
    let pki = tempfile::tempdir().expect("tempdir");
    let mut squatter = ready_child(&pair, false, "squatter", pki.path());
    let mut toy = ready_child(&pair, false, "toy", pki.path());
    let mut hub = ready_child(&pair, true, "hub-all", pki.path());
    let line = find_instance(&mut toy, &hub, "Test Home", "start");
    let (host, port, addrs) = host_port_addrs(&line);
    assert_eq!(
        host,
        "hearth-test-2.local",
        "the hub announced a host name another device answers for: {line}\nhub log:\n{}",
        hub.log().join("\n")
    );
    // The hub's own order of events: the certificate, then the announcement.
    let certified = |l: &str| l == "CERTIFIED hearth-test-2.local";
    let announced = |l: &str| l.contains("advertising the hub by mDNS");
    hub.saw_or_wait_for("the certificate for the new name", certified);
    hub.saw_or_wait_for("the announcement", announced);
    let at = |pred: &dyn Fn(&str) -> bool| hub.log().iter().position(|l| pred(l));
    assert!(
        at(&certified) < at(&announced),
        "the name was announced before it was certified:\n{}",
        hub.log().join("\n")
    );
    assert_certificate_covers(&mut toy, &hub, &host, &addrs, &port, "after the conflict");
    let addr = addrs.iter().find(|a| !a.contains(':')).unwrap_or(&addrs[0]);
    toy.send(&format!("tls {HOST} {addr} {port}"));
    let taken = toy.wait_for("the TLS check", |l| l.starts_with("TLS"));
    assert!(
        taken.starts_with("TLS-ERROR"),
        "the certificate still covers the taken name: {taken}"
    );
    for p in [&mut toy, &mut squatter, &mut hub] {
        p.send("quit");
    }
    hub.wait_for("BYE", |l| l == "BYE");
    for p in [toy, squatter, hub] {
        assert!(p.finish().success());
    }
}

/// Plays the role named in `HEARTH_TEST_ROLE`; does nothing in a normal run.
#[test]
#[ignore = "a child process of discovery_over_real_mdns_in_netns"]
fn netns_child() {
    let Some(role) = role() else { return };
    let iface = std::env::var(IFACE_ENV).unwrap_or_else(|_| panic!("{IFACE_ENV} is not set"));
    let opts = DiscoveryOptions {
        interfaces: vec![iface],
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hearth=debug")
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .try_init();
    match role.as_str() {
        "hub" => hub_role(&opts),
        // The default: every interface, where the review saw host renames.
        "hub-all" => hub_role(&DiscoveryOptions::default()),
        // The toy uses every interface (the default), the hub only the veth
        // (an explicit selection), so both paths are exercised.
        "toy" => toy_role(&DiscoveryOptions::default()),
        "garbage" => garbage_role(&opts),
        "squatter" => squatter_role(&opts),
        other => panic!("unknown role {other:?}"),
    }
}

fn stdin_lines() -> impl Iterator<Item = String> {
    std::io::stdin().lock().lines().map_while(Result::ok)
}

fn hub_role(opts: &DiscoveryOptions) {
    // With a PKI directory: a real CA and leaf, served over TLS on the
    // advertised port, and reissued for a new host name before it is
    // announced. Without: a made-up CA hash and port, nothing served.
    let (port, ca_sha256, certify): (u16, Hex32, CertifyHost) = match std::env::var_os(PKI_ENV) {
        Some(dir) => {
            let names = server_names(HOST, "0.0.0.0".parse().expect("ip"), &[]);
            let pki = std::sync::Arc::new(
                HubPki::load_or_create(std::path::Path::new(&dir), &names, now()).expect("pki"),
            );
            let port = serve_tls(pki.server_config().expect("TLS config"));
            let certify_pki = pki.clone();
            let certify: CertifyHost = std::sync::Arc::new(move |host: &str| {
                certify_pki
                    .set_host_name(host, now())
                    .map_err(|e| e.to_string())?;
                println!("CERTIFIED {host}");
                Ok(())
            });
            (port, pki.ca_sha256(), certify)
        }
        None => (8443, CA, std::sync::Arc::new(|_: &str| Ok(()))),
    };
    let advert = HubAdvert {
        instance: "Test Home".into(),
        host: HOST.into(),
        port,
        ca_sha256,
    };
    let discovery = Discovery::start(advert, opts, certify).expect("start the hub's discovery");
    let mut events = discovery.subscribe();
    std::thread::spawn(move || {
        while let Ok(event) = events.blocking_recv() {
            match event {
                DiscoveryEvent::Appeared(t) => println!(
                    "EVENT appeared id={} name={:?} paired={} model={:?}",
                    t.toy_id, t.name, t.paired, t.model
                ),
                DiscoveryEvent::Updated(t) => println!(
                    "EVENT updated id={} name={:?} paired={} model={:?}",
                    t.toy_id, t.name, t.paired, t.model
                ),
                DiscoveryEvent::Gone(id) => println!("EVENT gone id={id}"),
            }
        }
    });
    println!("READY");
    for line in stdin_lines() {
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "seen" => {
                let mut ids: Vec<String> = discovery
                    .seen()
                    .into_iter()
                    .map(|t| t.toy_id.to_string())
                    .collect();
                ids.sort();
                println!("SEEN {}", ids.join(","));
            }
            "up" => {
                let id = ToyId::parse(arg).expect("a toy id");
                println!("UP {arg} {}", discovery.is_up(&id));
            }
            "rename" => {
                discovery.rename(arg).expect("rename");
                println!("RENAMED");
            }
            "newca" => {
                let ca = Hex32::parse("ca", arg).expect("a hash");
                discovery.set_ca(&ca).expect("set the CA");
                println!("NEWCA");
            }
            "quit" => break,
            other => panic!("unknown command {other:?}"),
        }
    }
    discovery.shutdown();
    println!("BYE");
}

fn toy_role(opts: &DiscoveryOptions) {
    let advert = ToyAdvert {
        instance: "Bear 3F2A".into(),
        toy_id: ToyId::parse(TOY_ID).expect("toy id"),
        model: "hearth-toy 1.0".into(),
        fp: FP,
        paired: false,
        port: 9,
    };
    let toy = ToyAdvertiser::start(advert, opts).expect("start the toy's advert");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    println!("READY");
    for line in stdin_lines() {
        match line.as_str() {
            "find" => match runtime.block_on(find_hub(opts, Duration::from_secs(20))) {
                Ok(hub) => {
                    let addrs: Vec<String> = hub.addrs.iter().map(ToString::to_string).collect();
                    println!(
                        "HUB instance={:?} host={} port={} api={} ca={} addrs={}",
                        hub.instance,
                        hub.host,
                        hub.port,
                        hub.api,
                        hub.ca_sha256.to_hex(),
                        addrs.join(",")
                    );
                }
                Err(e) => println!("HUB-ERROR {e}"),
            },
            "paired" => {
                toy.set_paired(true).expect("set paired");
                println!("PAIRED");
            }
            tls if tls.starts_with("tls ") => match check_tls(tls) {
                Ok(()) => println!("TLS ok"),
                Err(e) => println!("TLS-ERROR {e}"),
            },
            "quit" => break,
            other => panic!("unknown command {other:?}"),
        }
    }
    toy.shutdown();
    println!("BYE");
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Accepts TLS connections on every address, on a port the system picks,
/// and completes each handshake on a thread of its own; returns the port.
fn serve_tls(config: rustls::ServerConfig) -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = std::sync::Arc::new(config);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                if let Ok(mut conn) = rustls::ServerConnection::new(config) {
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut stream).is_err() {
                            return;
                        }
                    }
                    let _ = conn.complete_io(&mut stream);
                }
            });
        }
    });
    port
}

/// `tls HOST ADDR PORT`: a TLS handshake with `ADDR:PORT` that trusts only
/// the hub CA in [`PKI_ENV`] and checks the server name `HOST`.
fn check_tls(command: &str) -> Result<(), String> {
    let mut words = command.split(' ').skip(1);
    let (Some(host), Some(addr), Some(port)) = (words.next(), words.next(), words.next()) else {
        return Err(format!("bad command {command:?}"));
    };
    let dir = std::env::var_os(PKI_ENV).ok_or("no PKI directory")?;
    let ca_pem =
        std::fs::read(std::path::Path::new(&dir).join("ca.crt")).map_err(|e| e.to_string())?;
    let ca =
        rustls::pki_types::CertificateDer::from_pem_slice(&ca_pem).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let target: std::net::SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Answers for the hub's host name [`HOST`] with this namespace's address,
/// as another device on the network would: a service whose SRV target is
/// that name, announced without probing so that it answers at once.
fn squatter_role(opts: &DiscoveryOptions) {
    let daemon = ServiceDaemon::new().expect("mdns daemon");
    daemon
        .disable_interface(mdns_sd::IfKind::All)
        .and_then(|()| daemon.enable_interface(opts.interfaces.iter().collect::<Vec<_>>()))
        .expect("select the interface");
    let mut info = ServiceInfo::new(
        "_squat._tcp.local.",
        "Squatter",
        &format!("{HOST}."),
        (),
        9,
        None::<std::collections::HashMap<String, String>>,
    )
    .expect("service info")
    .enable_addr_auto();
    info.set_requires_probe(false);
    daemon.register(info).expect("register");
    println!("READY");
    for line in stdin_lines() {
        if line == "quit" {
            break;
        }
    }
    let _ = daemon.shutdown();
    println!("BYE");
}

/// Advertises records with bad TXT (plus one with duplicate keys) straight
/// through `mdns-sd`, and multicasts packets that are not DNS at all.
fn garbage_role(opts: &DiscoveryOptions) {
    let daemon = ServiceDaemon::new().expect("mdns daemon");
    daemon
        .disable_interface(mdns_sd::IfKind::All)
        .and_then(|()| daemon.enable_interface(opts.interfaces.iter().collect::<Vec<_>>()))
        .expect("select the interface");
    let mut records = garbage_records();
    records.push(("Dup Keys", duplicate_key_record()));
    for (name, txt) in records {
        let info = ServiceInfo::new(TOY_SERVICE_TYPE, name, "garbage.local.", (), 9, txt)
            .expect("a service info")
            .enable_addr_auto();
        daemon.register(info).expect("register");
    }
    send_junk_packets();
    println!("READY");
    for line in stdin_lines() {
        if line == "quit" {
            break;
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
    println!("BYE");
}

/// Multicasts malformed mDNS packets to 224.0.0.251:5353.
fn send_junk_packets() {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    let mut x: u32 = 0x2545_f491;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    let mut packets = vec![
        Vec::new(),
        vec![0; 5],
        // A response header claiming 65535 answers and carrying none.
        vec![0, 0, 0x84, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0],
        // One answer whose name is a compression pointer to itself.
        vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 16, 0, 1],
    ];
    for n in [12, 40, 300, 1400] {
        packets.push(random(n));
    }
    for p in packets {
        let _ = sock.send_to(&p, "224.0.0.251:5353");
    }
}
