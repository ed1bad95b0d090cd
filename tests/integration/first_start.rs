//! A newcomer's first start, through the real `hearth` binary: where the
//! hub says it can be reached, and the messages for the usual first
//! mistakes (a port in use, a `--data-dir` that is a file, a host name in
//! `--listen`, a `--config` file that does not exist). A failed start must
//! leave the data directory as it found it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// `hearth serve ARGS` with a minimal configuration file in `dir`, run to
/// completion (for starts that must fail).
fn serve_fails(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("hearth.toml");
    std::fs::write(&config, "version = 1\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth");
    assert!(
        !out.status.success(),
        "hearth serve {args:?} should fail; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `hearth serve` whose log lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    log: String,
}

impl Running {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let config = dir.join("hearth.toml");
        std::fs::write(&config, "version = 1\n").expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearth");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Reads the log until "hearth is serving" (everything the start
    /// prints comes before it) and returns the port from that line.
    fn wait_serving(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push_str(&l);
                    self.log.push('\n');
                    if l.contains("hearth is serving") {
                        return l
                            .rsplit("port=")
                            .next()
                            .and_then(|p| p.trim().parse().ok())
                            .unwrap_or_else(|| panic!("no port in {l:?}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("not serving within 60 s; log so far:\n{}", self.log)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the hub exited; its log:\n{}", self.log)
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_port_in_use_leaves_a_new_data_dir_untouched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{port}");
    let out = serve_fails(
        dir.path(),
        &["--no-mdns", "--listen", &listen, "--data-dir", path(&data)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    assert!(
        !data.exists(),
        "a hub that could not listen created {} (no database, CA or setup code may be left behind)",
        data.display()
    );
    // An existing, empty data directory stays empty too.
    std::fs::create_dir(&data).expect("mkdir");
    serve_fails(
        dir.path(),
        &["--no-mdns", "--listen", &listen, "--data-dir", path(&data)],
    );
    let left: Vec<_> = std::fs::read_dir(&data)
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "the failed start wrote {left:?}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("write");
    for (data, names) in [
        (file.clone(), file.clone()),
        (file.join("data"), file.clone()),
    ] {
        let out = serve_fails(
            dir.path(),
            &[
                "--no-mdns",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                path(&data),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{} is a file, not a directory", names.display())),
            "{err}"
        );
        assert!(err.contains("--data-dir"), "{err}");
        assert!(!err.contains("owner"), "not a question of owners: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "keep me",
        "the file is left alone"
    );
}

#[test]
fn a_host_name_in_listen_is_explained_and_localhost_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = serve_fails(
        dir.path(),
        &[
            "--no-mdns",
            "--listen",
            "hearth.local:8443",
            "--data-dir",
            path(&data),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"hearth.local:8443\"")
            && err.contains("not a host name")
            && err.contains("0.0.0.0:8443"),
        "{err}"
    );
    assert!(!data.exists(), "a refused configuration creates nothing");

    let mut hub = Running::start(dir.path(), &["--no-mdns", "--listen", "localhost:0"], &[]);
    let port = hub.wait_serving();
    assert!(
        hub.log
            .contains(&format!("reachable at https://localhost:{port} ")),
        "{}",
        hub.log
    );
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listens on 127.0.0.1");
}

#[test]
fn a_missing_config_file_prints_the_os_error_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    for sub in ["serve", "check-config"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg(sub)
            .arg("--config")
            .arg(&missing)
            .output()
            .expect("run hearth");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert_eq!(
            err.matches("os error 2").count(),
            1,
            "the OS error once: {err}"
        );
    }
}

/// The IPv4 addresses of this machine other than loopback and link-local,
/// read with `ip` (iproute2), independently of the hub's own listing.
fn ipv4_addresses() -> Option<Vec<String>> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "up"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet")?;
                Some(w.next()?.split('/').next()?.to_owned())
            })
            .filter(|a| !a.starts_with("127.") && !a.starts_with("169.254."))
            .collect(),
    )
}

#[test]
fn the_hub_prints_every_url_it_answers_at() {
    let Some(addrs) = ipv4_addresses() else {
        crate::skips::skip(
            "listing this machine's addresses needs the ip command",
            "sudo apt install iproute2",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Running::start(dir.path(), &["--no-mdns", "--listen", "0.0.0.0:0"], &[]);
    let port = hub.wait_serving();
    let log = &hub.log;
    assert!(
        log.contains(&format!(
            "reachable at https://localhost:{port} (this computer)"
        )),
        "{log}"
    );
    for a in &addrs {
        let url = format!("reachable at https://{a}:{port} (home network");
        assert!(log.contains(&url), "{a} is missing:\n{log}");
        // The certificate names localhost and hearth.local, not LAN addresses.
        assert!(log.contains("add it to tls.extra_names"), "{log}");
    }
    assert!(
        !log.contains("reachable at https://hearth.local"),
        "hearth.local is not offered while mDNS is off:\n{log}"
    );
    assert!(
        log.contains("hearth.local is not advertised (mDNS is off)"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "no account exists yet: open https://localhost:{port}/setup"
        )),
        "{log}"
    );
    // Every URL printed answers: here, the loopback and LAN addresses.
    for a in addrs.iter().map(String::as_str).chain(["127.0.0.1"]) {
        std::net::TcpStream::connect((a, port))
            .unwrap_or_else(|e| panic!("{a}:{port} printed but not answering: {e}"));
    }
}

#[test]
fn the_mdns_name_is_printed_when_mdns_is_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A name of its own, so the test never answers for a real hub.
    let host = format!("hearth-test-{}.local", std::process::id());
    let mut hub = Running::start(
        dir.path(),
        &["--listen", "0.0.0.0:0"],
        &[("HEARTH_MDNS_HOST_NAME", &host)],
    );
    let port = hub.wait_serving();
    if hub.log.contains("mDNS is off") {
        crate::skips::skip(
            "mDNS cannot start on this machine (no multicast interface)",
            "run the tests on a machine with a network interface",
        );
        return;
    }
    assert!(
        hub.log
            .contains(&format!("reachable at https://{host}:{port} (mDNS)")),
        "{}",
        hub.log
    );
}
