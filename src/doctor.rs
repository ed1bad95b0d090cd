//! `hearth doctor`: checks an installation and prints each problem with
//! its fix: configuration, data directory owner and modes, certificates
//! (validity and names), database integrity, free disk, the listening
//! port, mDNS and the clock. Exits non-zero when something is wrong;
//! warnings alone do not fail.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::ExitCode;

use x509_parser::prelude::FromDer;

use crate::config::Config;
use crate::datadir::{DataDir, DataFile};

/// Free space below which the hub may soon refuse recordings (507).
const MIN_FREE_BYTES: u64 = 200 << 20;

#[derive(Default)]
struct Report {
    failures: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: &str) {
        println!("ok   {what}");
    }
    fn warn(&mut self, what: &str, fix: &str) {
        self.warnings += 1;
        println!("WARN {what}\n     fix: {fix}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failures += 1;
        println!("FAIL {what}\n     fix: {fix}");
    }
}

/// Runs every check and prints the report.
pub fn run(cfg: &Config) -> ExitCode {
    let mut r = Report::default();
    r.ok("configuration is valid");
    let dir = &cfg.data_dir;
    match std::fs::metadata(dir) {
        Err(_) => r.fail(
            &format!("the data directory {} does not exist", dir.display()),
            "start the hub once (systemctl start hearth) or create it: install -d -m 0700 -o hearth -g hearth /var/lib/hearth",
        ),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.fail(&format!("{} has mode {mode:o}; others can read the family's data", dir.display()), &format!("chmod 700 {}", dir.display()));
            } else {
                r.ok(&format!("{} is private (mode {mode:o})", dir.display()));
            }
            let me = nix::unistd::geteuid().as_raw();
            if me != 0 && meta.uid() != me {
                r.warn(&format!("{} belongs to uid {}, not to this user", dir.display(), meta.uid()), "run doctor as the hub's user: sudo -u hearth hearth doctor");
            }
            check_files(&mut r, cfg);
            check_disk(&mut r, cfg);
        }
    }
    check_port(&mut r, cfg);
    if cfg.mdns.enabled {
        let ifaces = std::fs::read_dir("/sys/class/net")
            .map(|d| d.count())
            .unwrap_or(0);
        if ifaces <= 1 {
            r.warn(
                "no network interface besides loopback: toys cannot find the hub by mDNS",
                "connect the Pi to the home network",
            );
        } else {
            r.ok(&format!(
                "mDNS is on ({ifaces} network interfaces; host name {})",
                cfg.mdns.host_name
            ));
        }
    } else {
        r.warn(
            "mDNS is off: toys must be given the hub's address by hand",
            "set [mdns] enabled = true unless you mean it",
        );
    }
    check_clock(&mut r);
    println!("{} problem(s), {} warning(s)", r.failures, r.warnings);
    if r.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn check_files(r: &mut Report, cfg: &Config) {
    let dir = &cfg.data_dir;
    let layout = DataDir::new(dir);
    for p in layout.secret_files() {
        if let Ok(m) = std::fs::metadata(&p) {
            let mode = m.permissions().mode() & 0o777;
            if mode != 0o600 {
                r.fail(
                    &format!("{} has mode {mode:o}", p.display()),
                    &format!("chmod 600 {}", p.display()),
                );
            }
        }
    }
    let code = layout.path(DataFile::SetupCode);
    if code.exists() {
        r.warn(
            &format!(
                "setup is not done yet: the one-time setup code is in {}",
                code.display()
            ),
            &format!(
                "open the hub's /setup page and type the code from sudo cat {} (or the newest line of journalctl -u hearth | grep 'setup code'); it changes every {} hours and after {} wrong guesses",
                code.display(),
                crate::accounts::SETUP_CODE_LIFETIME_SECS / 3600,
                crate::accounts::SETUP_CODE_MAX_WRONG
            ),
        );
    }
    match std::fs::read(layout.path(DataFile::ServerCert)) {
        Err(_) => r.warn(
            "no server certificate yet",
            "start the hub once; it makes its certificates on the first start",
        ),
        Ok(pem) => {
            let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
                .map(|d: rustls::pki_types::CertificateDer<'static>| d.to_vec());
            match der
                .ok()
                .as_deref()
                .map(x509_parser::certificate::X509Certificate::from_der)
            {
                Some(Ok((_, cert))) => {
                    let end = cert.validity().not_after;
                    let until = end
                        .to_datetime()
                        .date()
                        .format(&time::format_description::well_known::Iso8601::DATE)
                        .unwrap_or_default();
                    let left = end.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
                    let span = end.timestamp() - cert.validity().not_before.timestamp();
                    if left <= 0 {
                        r.fail(
                            &format!("the server certificate expired on {until}"),
                            "restart the hub: it issues a new one from its CA",
                        );
                    } else if left < crate::pki::LEAF_RENEW_DAYS * 86_400 {
                        r.warn(
                            &format!(
                                "the server certificate expires on {until} ({} days left) and was not renewed",
                                left / 86_400
                            ),
                            "start the hub (systemctl start hearth): it renews the certificate within an hour; see journalctl -u hearth if it does not",
                        );
                    } else if span > crate::pki::LEAF_DAYS * 86_400 {
                        r.warn(
                            &format!(
                                "the server certificate expires on {until}, {} days after it started: phones may refuse so long a life",
                                span / 86_400
                            ),
                            "restart the hub: it replaces it with one valid for 365 days",
                        );
                    } else {
                        r.ok(&format!(
                            "server certificate expires on {until} ({} days left; the hub renews it {} days before)",
                            left / 86_400,
                            crate::pki::LEAF_RENEW_DAYS
                        ));
                    }
                    let names = crate::pki::cert_names(&cert);
                    if names.iter().any(|n| n == &cfg.mdns.host_name) {
                        r.ok(&format!("server certificate covers {}", cfg.mdns.host_name));
                    } else {
                        r.warn(
                            &format!(
                                "the server certificate does not cover {} yet",
                                cfg.mdns.host_name
                            ),
                            "restart the hub: it issues a leaf for the configured names",
                        );
                    }
                }
                _ => r.fail(
                    &format!(
                        "{} is not a readable certificate",
                        layout.path(DataFile::ServerCert).display()
                    ),
                    &format!(
                        "move {} and {} away and restart the hub",
                        layout.path(DataFile::ServerCert).display(),
                        layout.path(DataFile::ServerKey).display()
                    ),
                ),
            }
        }
    }
    let db = layout.path(DataFile::Database);
    if !db.exists() {
        r.warn("no database yet", "start the hub once");
        return;
    }
    match crate::store::Store::open(dir).and_then(|s| s.integrity_check()) {
        Ok(None) => r.ok("database integrity_check passed"),
        Ok(Some(msg)) => r.fail(
            &format!("the database is damaged: {msg}"),
            &format!(
                "stop the hub and restore {} from a backup",
                layout.path(DataFile::Database).display()
            ),
        ),
        Err(e) => r.fail(
            &format!("the database cannot be opened: {e}"),
            "check the owner and mode of the data directory, or restore a backup",
        ),
    }
}

fn check_disk(r: &mut Report, cfg: &Config) {
    match nix::sys::statvfs::statvfs(&cfg.data_dir) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            if free < MIN_FREE_BYTES {
                r.fail(
                    &format!("only {} MiB free on the data disk", free >> 20),
                    "delete old messages or use a larger SD card",
                );
            } else {
                r.ok(&format!("{} MiB free on the data disk", free >> 20));
            }
        }
        Err(e) => r.warn(
            &format!("cannot read free disk space: {e}"),
            "check the data directory's file system",
        ),
    }
}

fn check_port(r: &mut Report, cfg: &Config) {
    let mut addr = cfg.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)) {
        Ok(_) => r.ok(&format!(
            "something answers on {addr} (the hub, if it is running)"
        )),
        Err(_) => r.warn(
            &format!("nothing listens on {addr}"),
            "start the hub: sudo systemctl start hearth (then: journalctl -u hearth)",
        ),
    }
}

fn check_clock(r: &mut Report) {
    // The build date is a floor: a Pi without a real-time clock and no
    // network time starts in 1970, and certificates then look invalid.
    let now = time::OffsetDateTime::now_utc().year();
    if now < 2025 {
        r.fail(
            &format!("the clock says the year is {now}"),
            "enable network time (timedatectl set-ntp true) or set the date",
        );
    } else {
        r.ok("the clock looks sane");
    }
}
