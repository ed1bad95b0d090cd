//! A hub as a real process of the `hearth` binary, for tests that kill it,
//! restart it on the same data directory or measure its memory. Its log
//! (stderr) is collected on a thread; the port comes from the
//! "hearth is serving" line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{PASSWORD, client, tls_config};

/// A running `hearth serve`.
pub struct ProcHub {
    pub child: Child,
    pub port: u16,
    pub data: PathBuf,
    pub ca_pem: String,
    pub log: Arc<Mutex<String>>,
}

impl ProcHub {
    /// Starts `hearth serve` on `data` (created when missing) and waits up
    /// to 60 s until it serves. `None` when it exited first; its log is in
    /// `log`.
    pub fn start(data: &Path, log: Arc<Mutex<String>>) -> Option<ProcHub> {
        Self::start_with_env(data, log, &[])
    }

    /// Like [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(
        data: &Path,
        log: Arc<Mutex<String>>,
        env: &[(&str, &str)],
    ) -> Option<ProcHub> {
        let config = data.with_extension("toml");
        if !config.exists() {
            std::fs::write(&config, "version = 1\n").expect("config");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.args(["serve", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--no-mdns"])
            .env("HEARTH_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hearth");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("hearth is serving") {
                    if let Some(p) = l.rsplit("port=").next().and_then(|p| p.trim().parse().ok()) {
                        let _ = tx.send(p);
                    }
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).ok();
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        let ca_pem = std::fs::read_to_string(data.join("ca.crt")).expect("ca.crt");
        Some(ProcHub {
            child,
            port,
            data: data.to_owned(),
            ca_pem,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// An anonymous client trusting the hub.
    pub fn anon(&self) -> reqwest::Client {
        client(tls_config(&self.ca_pem, None))
    }

    /// A client presenting a toy certificate.
    pub fn with_cert(&self, cert: &str, key: &str) -> reqwest::Client {
        client(tls_config(&self.ca_pem, Some((cert, key))))
    }

    /// Runs setup (household "Fernhill", admin "mum") with the code from the data dir.
    pub async fn setup(&self) {
        let code = std::fs::read_to_string(self.data.join("setup-code")).expect("setup-code");
        let r = self
            .anon()
            .post(self.url("/api/v1/setup"))
            .json(&json!({"setup_code": code.trim(), "household": "Fernhill", "username": "mum", "password": PASSWORD}))
            .send()
            .await
            .expect("setup");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    /// Signs in as mum and returns the bearer token.
    pub async fn login(&self) -> String {
        let r = self
            .anon()
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": "mum", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    /// A line of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        status_number(self.pid(), field)
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait up to `secs` for the exit.
    pub fn stop(mut self, secs: u64) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number of a line of /proc/PID/status: KiB for `VmRSS` and the like,
/// a count for `Threads`. Takes only the pid, so a sampling thread can use it.
pub fn status_number(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(&format!("{field}:")))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
