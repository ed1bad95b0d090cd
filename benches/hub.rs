//! Benchmarks (b) to (e) of BENCHMARKS.md, against the real hub running as a
//! separate process (`target/release/hearth serve`), over HTTPS with mutual
//! TLS for the toys. Run with `cargo bench --bench hub`.
//!
//! (b) parent upload acknowledged -> toy long-poll answered, with 1 and with
//!     200 paired toys long-polling;
//! (c) the hub's resident memory idle, with 200 and with 1000 toys holding a
//!     long-poll open;
//! (d) 10 s Ogg Opus recordings stored per second from 50 concurrent toys;
//! (e) cold start to the first HTTPS answer, on an empty and on an existing
//!     data directory.
//!
//! `HEARTH_BENCH_BIN=/path/to/hearth` measures that binary instead of
//! building one; `HEARTH_BENCH_TOYS=200` leaves out the 1000-toy figure;
//! `HEARTH_BENCH_ONLY=memory` takes only the memory figures of (c);
//! `HEARTH_BENCH_HOLD=SECS` keeps the toys' long-polls open that long
//! after them, to look at the hub from outside.
//! With `HEARTH_BENCH_REFERENCE=/path/to/hearth` (for example the binary
//! of the previous main, built or unpacked from its `.deb`), every figure
//! is also taken for that binary in the same run, one after the other, and
//! the table shows both side by side, with (f) the two binaries' sizes.
//!
//! Toys pair through the real protocol (PROTOCOL.md section 3, the parent
//! confirming the code over the API) and then talk through
//! `hearth::toy::ToyClient`, one connection each. When the release binary
//! cannot be built the benchmark says why and exits successfully.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::speech_like;

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::future::join_all;
use hearth::audio::{self, AudioKind, Pcm};
use hearth::domain::{Hex32, IdempotencyKey, PairingCode};
use hearth::toy::{Credentials, HubAddress, Retry, ToyClient, ToyState};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PASSWORD: &str = "plum violet kettle harbour";
/// Latency samples per toy count in (b), after warm-up.
const LATENCY_RUNS: usize = 200;
const WARMUP: usize = 5;
/// Pause between a toy's new long-poll leaving and the next upload, so the
/// hub has registered the wait.
const SETTLE: Duration = Duration::from_millis(20);
/// Concurrent uploaders and duration of (d).
const UPLOADERS: usize = 50;
const UPLOAD_SECONDS: u64 = 10;
/// Cold starts per variant in (e).
const STARTS: usize = 10;
/// Most pairings the hub keeps pending at once.
const PAIR_BATCH: usize = 8;

// ---------------------------------------------------------------- helpers

/// A 16 kHz mono 16-bit WAV of `seconds` of speech-like signal.
fn wav(seconds: usize) -> Vec<u8> {
    let rate = 16_000;
    audio::encode_wav(&Pcm {
        sample_rate: rate,
        samples: speech_like(rate, rate as usize * seconds),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`-quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median_ms(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// User + system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(ticks / 100.0)
}

/// The `Environment=` lines of the shipped unit, `systemd/hearth.service`.
fn unit_environment() -> Result<Vec<(String, String)>> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hearth.service");
    let text = std::fs::read_to_string(&unit)
        .with_context(|| format!("cannot read {}", unit.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Raises the open-file limit so 1000 toys (and the hub, which inherits it)
/// fit; returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let want = hard.min(8192);
            if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
                want
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Builds the hub's release binary next to this benchmark's executable,
/// or takes the one `HEARTH_BENCH_BIN` names (already built, for example
/// when the benchmark itself runs unoptimised with `cargo test --bench
/// hub`: the figures are the hub process's, the toys only drive it).
fn build_hub() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("HEARTH_BENCH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Drop what cargo set for running this benchmark (CARGO_PKG_*,
    // CARGO_MANIFEST_DIR, OUT_DIR, LD_LIBRARY_PATH, ...), so the nested build
    // sees the environment of the outer one and does not rebuild crates.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let keep = matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
        if !keep
            && (k.starts_with("CARGO_")
                || k.starts_with("__CARGO")
                || k == "OUT_DIR"
                || k == "LD_LIBRARY_PATH")
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .args(["build", "--release", "--quiet", "--bin", "hearth"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "cargo build --release --bin hearth failed"
    );
    // target/release/deps/hub-<hash> -> target/release/hearth
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("hearth"))
        .ok_or_else(|| anyhow!("cannot locate the target directory"))?;
    ensure!(bin.exists(), "{} is missing after the build", bin.display());
    Ok(bin)
}

/// A client that accepts the hub's certificate without checking it (the
/// parent side; the toys use their own pinned-CA clients).
fn anon_client(port: u16, local: Option<IpAddr>) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(hearth::toy::tls::pairing_config()?)
        .local_address(local)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

// ---------------------------------------------------------------- the hub

struct HubProc {
    child: Child,
    port: u16,
    data: PathBuf,
}

impl HubProc {
    /// Spawns `hearth serve` on `data` (created if missing) and a free port.
    fn spawn(bin: &Path, root: &Path) -> Result<HubProc> {
        let data = root.join("data");
        let config = root.join("hearth.toml");
        std::fs::write(&config, "version = 1\n")?;
        let port = free_port()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("hub.log"))?;
        let mut cmd = Command::new(bin);
        // The hub refuses HEARTH_* variables it does not know, such as this
        // benchmark's own HEARTH_BENCH_*: none reaches it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HEARTH_") {
                cmd.env_remove(k);
            }
        }
        // As systemd/hearth.service runs it: its Environment= lines.
        for (k, v) in unit_environment()? {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-mdns")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(HubProc { child, port, data })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Polls `GET /login` until any HTTPS answer; the time since `since`.
    async fn wait_ready(&mut self, since: Instant, limit: Duration) -> Result<Duration> {
        let client = anon_client(self.port, None)?;
        let url = format!("{}/login", self.base());
        loop {
            if client.get(&url).send().await.is_ok() {
                return Ok(since.elapsed());
            }
            if let Some(st) = self.child.try_wait()? {
                bail!("the hub exited during start ({st}); see hub.log");
            }
            ensure!(since.elapsed() < limit, "the hub did not answer in time");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
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

/// A signed-in parent (bearer token).
struct Parent {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Parent {
    async fn setup(hub: &HubProc) -> Result<Parent> {
        let http = anon_client(hub.port, None)?;
        let base = hub.base();
        let code = std::fs::read_to_string(hub.data.join("setup-code"))?
            .trim()
            .to_owned();
        let r = http
            .post(format!("{base}/api/v1/setup"))
            .json(&json!({"setup_code": code, "household": "Benchhill", "username": "mum", "password": PASSWORD}))
            .send()
            .await?;
        ensure!(
            r.status() == 201,
            "setup: {} {}",
            r.status(),
            r.text().await?
        );
        let r = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": "mum", "password": PASSWORD}))
            .send()
            .await?;
        ensure!(r.status() == 200, "login: {}", r.status());
        let v: Value = r.json().await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| anyhow!("login without token"))?
            .to_owned();
        Ok(Parent { http, base, token })
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?)
    }

    /// Sends `wav` to the toy; returns when the 201 arrived.
    async fn send_message(&self, toy_id: &str, wav: Vec<u8>) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/v1/toys/{toy_id}/messages", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "audio/wav")
            .body(wav)
            .send()
            .await?;
        ensure!(r.status() == 201, "upload: {}", r.status());
        Ok(())
    }
}

// ---------------------------------------------------------------- toys

struct Toy {
    id: String,
    client: ToyClient,
}

/// Pairs one toy through PROTOCOL.md section 3, the parent confirming.
async fn pair_toy(hub: &HubProc, parent: &Parent, dir: &Path, local: IpAddr) -> Result<Toy> {
    let mut state = ToyState::open(dir)?;
    let anon = anon_client(hub.port, Some(local))?;
    let base = hub.base();
    let nonce: [u8; 32] = rand::random();
    let r = anon
        .post(format!("{base}/toy/v1/pair"))
        .json(&json!({
            "toy_id": state.toy_id().as_str(),
            "name": state.name().as_str(),
            "model": "hub-bench",
            "csr": state.csr_pem()?,
            "commitment": Hex32::sha256(&nonce).to_hex(),
        }))
        .send()
        .await?;
    ensure!(r.status().is_success(), "pair start: {}", r.status());
    let started: Value = r.json().await?;
    let pairing_id = started["pairing_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let hub_nonce = Hex32::parse("hub_nonce", started["hub_nonce"].as_str().unwrap_or(""))
        .map_err(|e| anyhow!("hub_nonce: {}", e.0))?;
    let ca_pem = started["ca_cert"].as_str().unwrap_or_default().to_owned();
    let ca_der = hearth::toy::tls::cert_from_pem(&ca_pem).map_err(|e| anyhow!("ca: {e}"))?;
    let r = anon
        .post(format!("{base}/toy/v1/pair/{pairing_id}/reveal"))
        .json(&json!({"toy_nonce": hex::encode(nonce)}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "reveal: {}", r.status());
    let code = PairingCode::compute(ca_der.as_ref(), state.spki_der(), &nonce, &hub_nonce.0);
    let r = parent
        .post_json(
            &format!("/api/v1/pairings/{pairing_id}/confirm"),
            &json!({"code": code.as_str()}),
        )
        .await?;
    ensure!(r.status().is_success(), "confirm: {}", r.status());
    let r = anon
        .get(format!("{base}/toy/v1/pair/{pairing_id}"))
        .send()
        .await?;
    ensure!(r.status().is_success(), "poll: {}", r.status());
    let polled: Value = r.json().await?;
    ensure!(
        polled["status"] == "approved",
        "status {}",
        polled["status"]
    );
    let cert_pem = polled["client_cert"]
        .as_str()
        .ok_or_else(|| anyhow!("no client_cert"))?
        .to_owned();
    let mut addr = HubAddress::parse(&format!("127.0.0.1:{}", hub.port), Some("localhost"))?;
    addr.local_addr = Some(local);
    state.set_paired(Credentials { ca_pem, cert_pem }, addr.clone())?;
    let client = ToyClient::new(&state, &addr)?.with_retry(Retry {
        attempts: 1,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
    });
    Ok(Toy {
        id: state.toy_id().as_str().to_owned(),
        client,
    })
}

/// The loopback address toy `i` connects from: 127.1.0.1, 127.1.0.2 …
fn toy_address(i: usize) -> IpAddr {
    IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8])
}

/// Pairs toys until there are `n`, at most [`PAIR_BATCH`] at a time.
async fn pair_up_to(
    hub: &HubProc,
    parent: &Parent,
    root: &Path,
    toys: &mut Vec<Arc<Toy>>,
    n: usize,
) -> Result<Duration> {
    let t = Instant::now();
    while toys.len() < n {
        let start = toys.len();
        let end = (start + PAIR_BATCH).min(n);
        let dirs: Vec<PathBuf> = (start..end)
            .map(|i| root.join(format!("toys/{i:04}")))
            .collect();
        // Each toy from its own loopback address, as toys on a home network
        // each have theirs: the hub caps connections per client address.
        let batch = join_all(
            dirs.iter()
                .zip(start..end)
                .map(|(d, i)| pair_toy(hub, parent, d, toy_address(i))),
        )
        .await;
        for toy in batch {
            toys.push(Arc::new(toy?));
        }
    }
    Ok(t.elapsed())
}

enum Event {
    /// The toy is about to send a new long-poll.
    Polling(usize),
    /// The toy's long-poll answered with a message.
    Answered(usize, Instant),
}

/// Every toy of `toys[from..to]` long-polls (`wait=60`) in a loop, marks
/// what arrives played and reports through `tx`.
fn start_pollers(
    toys: &[Arc<Toy>],
    range: std::ops::Range<usize>,
    tx: &mpsc::UnboundedSender<Event>,
    polling: &Arc<AtomicUsize>,
    errors: &Arc<AtomicUsize>,
) -> Vec<JoinHandle<()>> {
    range
        .map(|i| {
            let toy = toys[i].clone();
            let tx = tx.clone();
            let polling = polling.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let _ = tx.send(Event::Polling(i));
                    if first {
                        polling.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                    match toy.client.inbox(60).await {
                        Ok(msgs) if msgs.is_empty() => {}
                        Ok(msgs) => {
                            let _ = tx.send(Event::Answered(i, Instant::now()));
                            for m in msgs {
                                if toy.client.played(&m.id).await.is_err() {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn wait_polling(polling: &AtomicUsize, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while polling.load(Ordering::SeqCst) < n {
        ensure!(Instant::now() < deadline, "toys did not start polling");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the requests reach the hub and park.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

struct Latency {
    /// 201 at the parent -> long-poll answer at the toy (negative: the toy
    /// was answered before the parent's 201 arrived).
    ack_to_answer: Vec<f64>,
    /// Upload sent -> long-poll answer at the toy.
    send_to_answer: Vec<f64>,
}

/// (b): uploads to toys `0..n` in turn, each time waiting for that toy's
/// long-poll to be parked again first.
async fn latency(
    parent: &Parent,
    toys: &[Arc<Toy>],
    n: usize,
    rx: &mut mpsc::UnboundedReceiver<Event>,
    clip: &[u8],
) -> Result<Latency> {
    let mut ready = vec![false; toys.len()];
    let mut out = Latency {
        ack_to_answer: Vec::new(),
        send_to_answer: Vec::new(),
    };
    let drain = |rx: &mut mpsc::UnboundedReceiver<Event>, ready: &mut Vec<bool>| {
        while let Ok(ev) = rx.try_recv() {
            if let Event::Polling(i) = ev {
                ready[i] = true;
            }
        }
    };
    for round in 0..WARMUP + LATENCY_RUNS {
        let i = round % n;
        drain(rx, &mut ready);
        while !ready[i] {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(Event::Polling(j))) => ready[j] = true,
                Ok(Some(Event::Answered(..))) => {}
                _ => bail!("toy {i} never polled again"),
            }
        }
        tokio::time::sleep(SETTLE).await;
        ready[i] = false;
        let sent = Instant::now();
        parent.send_message(&toys[i].id, clip.to_vec()).await?;
        let ack = Instant::now();
        let answered = loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(Event::Answered(j, t))) if j == i => break t,
                Ok(Some(Event::Polling(j))) if j != i => ready[j] = true,
                Ok(Some(_)) => {}
                _ => bail!("toy {i} was not answered"),
            }
        };
        if round >= WARMUP {
            let signed = if answered >= ack {
                ms(answered - ack)
            } else {
                -ms(ack - answered)
            };
            out.ack_to_answer.push(signed);
            out.send_to_answer.push(ms(answered - sent));
        }
    }
    out.ack_to_answer.sort_by(f64::total_cmp);
    out.send_to_answer.sort_by(f64::total_cmp);
    Ok(out)
}

// ---------------------------------------------------------------- main

struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>, aim: impl Into<String>) {
        let (what, value, aim) = (what.into(), value.into(), aim.into());
        println!("  {what:<58} {value:<28} {aim}");
        self.rows.push((what, value, aim));
    }
}

#[tokio::main]
async fn main() {
    println!("Hearth hub benchmarks (b)-(e)");
    let bin = match build_hub() {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED: the release hub could not be built ({e:#}).");
            return;
        }
    };
    let reference = std::env::var_os("HEARTH_BENCH_REFERENCE").map(PathBuf::from);
    let mut reports = Vec::new();
    for b in std::iter::once(&bin).chain(reference.as_ref()) {
        println!("\n== {}", b.display());
        match run(b).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("benchmark failed for {}: {e:#}", b.display());
                std::process::exit(1);
            }
        }
    }
    print_table(&reports, &bin, reference.as_deref());
}

/// The figures of this tree's binary, and of the reference's when given,
/// side by side as a Markdown table.
fn print_table(reports: &[Report], bin: &Path, reference: Option<&Path>) {
    let size = |p: &Path| {
        std::fs::metadata(p).map_or("?".into(), |m| {
            format!("{:.1} MiB", m.len() as f64 / (1024.0 * 1024.0))
        })
    };
    println!("\nload average at the end: {}\n", loadavg());
    match (reports, reference) {
        ([this, old], Some(r)) => {
            println!("| benchmark | this tree | reference | aim |\n| --- | --- | --- | --- |");
            for ((w, v, a), (_, o, _)) in this.rows.iter().zip(&old.rows) {
                println!("| {w} | {v} | {o} | {a} |");
            }
            println!(
                "| (f) `hearth` binary | {} | {} | <= 8 MiB |",
                size(bin),
                size(r)
            );
        }
        _ => {
            println!("| benchmark | figure | aim |\n| --- | --- | --- |");
            for (w, v, a) in reports.iter().flat_map(|r| &r.rows) {
                println!("| {w} | {v} | {a} |");
            }
            println!("| (f) `hearth` binary | {} | <= 8 MiB |", size(bin));
        }
    }
}

/// `HEARTH_BENCH_ONLY=memory`: only the memory figures of (c), for a
/// quicker run (the (b) latencies, (d) uploads and (e) starts are left
/// out, and so are their rows).
fn memory_only() -> bool {
    std::env::var("HEARTH_BENCH_ONLY").is_ok_and(|v| v == "memory")
}

async fn run(bin: &Path) -> Result<Report> {
    let fds = raise_fd_limit();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: nproc {nproc}, CPU {:?}, open-file limit {fds}, load average {}",
        cpu_model(),
        loadavg()
    );
    let mut big = if fds >= 2600 { 1000 } else { 200 };
    // HEARTH_BENCH_TOYS=200 leaves out the 1000-toy figure (a quicker run).
    if let Some(n) = std::env::var("HEARTH_BENCH_TOYS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        big = big.min(n.max(200));
    }
    if big < 1000 {
        println!("open-file limit {fds} < 2600: the 1000-toy figure is skipped (ulimit -n 4096)");
    }
    let mut report = Report { rows: Vec::new() };
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("hub");
    std::fs::create_dir_all(&root)?;

    let mut hub = HubProc::spawn(bin, &root)?;
    let result = measure(&mut hub, &root, big, &mut report).await;
    hub.stop();
    result?;
    if memory_only() {
        return Ok(report);
    }

    // (e) cold start.
    println!("(e) cold start, load average {}", loadavg());
    let mut empty = Vec::new();
    let mut existing = Vec::new();
    for run in 0..STARTS {
        let dir = tmp.path().join(format!("cold{run}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let mut h = HubProc::spawn(bin, &dir)?;
        empty.push(h.wait_ready(t, Duration::from_secs(30)).await?);
        h.stop();
    }
    let warm_dir = tmp.path().join("cold0");
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut h = HubProc::spawn(bin, &warm_dir)?;
        existing.push(h.wait_ready(t, Duration::from_secs(30)).await?);
        h.stop();
    }
    report.row(
        "(e) cold start, empty data dir (median of 10)",
        format!(
            "{:.1} ms (min {:.1})",
            median_ms(&empty),
            ms(empty.iter().min().copied().unwrap_or_default())
        ),
        "<= 50 ms",
    );
    report.row(
        "(e) start, existing data dir (median of 10)",
        format!(
            "{:.1} ms (min {:.1})",
            median_ms(&existing),
            ms(existing.iter().min().copied().unwrap_or_default())
        ),
        "<= 50 ms",
    );

    Ok(report)
}

async fn measure(hub: &mut HubProc, root: &Path, big: usize, report: &mut Report) -> Result<()> {
    hub.wait_ready(Instant::now(), Duration::from_secs(60))
        .await?;
    let pid = hub.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kib = proc_kib(pid, "VmRSS")?;
    report.row(
        "(c) hub RSS idle, fresh start (before setup)",
        format!("{:.1} MiB", kib as f64 / 1024.0),
        "<= 10 MiB",
    );
    let parent = Parent::setup(hub).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kib = proc_kib(pid, "VmRSS")?;
    report.row(
        "(c) hub RSS idle (after setup and login)",
        format!("{:.1} MiB", kib as f64 / 1024.0),
        "<= 10 MiB",
    );

    // (b) with 1 toy.
    let clip = wav(1);
    let mut toys: Vec<Arc<Toy>> = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let polling = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    pair_up_to(hub, &parent, root, &mut toys, 1).await?;
    let mut pollers = start_pollers(&toys, 0..1, &tx, &polling, &errors);
    wait_polling(&polling, 1).await?;
    println!("(b) N=1, load average {}", loadavg());
    if !memory_only() {
        let l1 = latency(&parent, &toys, 1, &mut rx, &clip).await?;
        latency_rows(report, 1, &l1);
    }

    // (c) and (b) with 200 toys.
    let t = pair_up_to(hub, &parent, root, &mut toys, 200).await?;
    println!("paired 199 more toys in {:.1} s", t.as_secs_f64());
    pollers.extend(start_pollers(&toys, 1..200, &tx, &polling, &errors));
    wait_polling(&polling, 200).await?;
    let kib = proc_kib(pid, "VmRSS")?;
    report.row(
        "(c) hub RSS, 200 toys long-polling",
        format!("{:.1} MiB", kib as f64 / 1024.0),
        "-",
    );
    println!("(b) N=200, load average {}", loadavg());
    if !memory_only() {
        let l200 = latency(&parent, &toys, 200, &mut rx, &clip).await?;
        latency_rows(report, 200, &l200);
    }

    // (c) with 1000 toys.
    if big > 200 {
        let t = pair_up_to(hub, &parent, root, &mut toys, big).await?;
        println!("paired {} more toys in {:.1} s", big - 200, t.as_secs_f64());
        pollers.extend(start_pollers(&toys, 200..big, &tx, &polling, &errors));
        wait_polling(&polling, big).await?;
        let kib = proc_kib(pid, "VmRSS")?;
        let hwm = proc_kib(pid, "VmHWM")?;
        report.row(
            format!("(c) hub RSS, {big} toys long-polling (peak so far)"),
            format!(
                "{:.1} MiB ({:.1})",
                kib as f64 / 1024.0,
                hwm as f64 / 1024.0
            ),
            "<= 40 MiB",
        );
    }
    // HEARTH_BENCH_HOLD=SECS keeps every long-poll open that long after
    // the figures, to look at the hub from outside (smaps, a profiler).
    if let Some(secs) = std::env::var("HEARTH_BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        println!("holding {big} long-polls for {secs} s (pid {pid})");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    for p in &pollers {
        p.abort();
    }
    drop(pollers);
    println!(
        "toy request errors during (b)/(c): {}",
        errors.load(Ordering::SeqCst)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    if memory_only() {
        return Ok(());
    }

    // (d) recordings.
    let ogg = audio::ingest(AudioKind::Wav, &wav(10))?.ogg;
    let mut singles = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        audio::ingest_recording(AudioKind::OggOpus, &ogg)?;
        singles.push(t.elapsed());
    }
    let single = median_ms(&singles);
    println!(
        "(d) {UPLOADERS} toys x {UPLOAD_SECONDS} s, clip {} bytes, load average {}",
        ogg.len(),
        loadavg()
    );
    let cpu0 = cpu_seconds(pid)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(UPLOAD_SECONDS);
    let ogg = Arc::new(ogg);
    let tasks: Vec<_> = toys
        .iter()
        .take(UPLOADERS)
        .enumerate()
        .map(|(i, toy)| {
            let toy = toy.clone();
            let ogg = ogg.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut failed = 0usize;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    let key = IdempotencyKey::parse(&format!("bench-{i}-{n}"))
                        .map_err(|e| anyhow!("key: {}", e.0));
                    let Ok(key) = key else {
                        failed += 1;
                        continue;
                    };
                    match toy
                        .client
                        .upload_recording(ogg.to_vec(), "audio/ogg", &key)
                        .await
                    {
                        Ok(_) => done.push(Instant::now()),
                        Err(_) => failed += 1,
                    }
                }
                (done, failed)
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (d, f) = t.await?;
        stored.extend(d);
        failed += f;
    }
    let wall = start.elapsed();
    let cpu = cpu_seconds(pid)? - cpu0;
    let in_window = stored.iter().filter(|t| **t <= deadline).count();
    let mut per_second = vec![0usize; UPLOAD_SECONDS as usize];
    for t in &stored {
        let s = (*t - start).as_secs() as usize;
        if s < per_second.len() {
            per_second[s] += 1;
        }
    }
    println!("(d) 201s per second: {per_second:?}; failed {failed}; all done after {wall:.1?}");
    let busiest = per_second.iter().max().copied().unwrap_or(0);
    report.row(
        format!("(d) 10 s recordings stored/s, {UPLOADERS} toys"),
        format!(
            "{:.1}/s ({} in {UPLOAD_SECONDS} s)",
            in_window as f64 / UPLOAD_SECONDS as f64,
            in_window
        ),
        ">= 300/s",
    );
    report.row("(d) busiest second", format!("{busiest}/s"), ">= 300/s");
    report.row(
        "(d) hub CPU per stored recording",
        format!("{:.1} ms", cpu * 1000.0 / stored.len().max(1) as f64),
        "<= 5 ms",
    );
    report.row(
        "(d) one ingest_recording in the bench process (this tree's code, median of 5)",
        format!("{single:.1} ms"),
        "-",
    );
    Ok(())
}

fn latency_rows(report: &mut Report, n: usize, l: &Latency) {
    let early = l.ack_to_answer.iter().filter(|v| **v < 0.0).count();
    report.row(
        format!("(b) ack -> toy answer, {n} toy(s), p50 / p99"),
        format!(
            "{:.2} / {:.2} ms",
            quantile(&l.ack_to_answer, 0.5),
            quantile(&l.ack_to_answer, 0.99)
        ),
        "p99 <= 5 ms",
    );
    report.row(
        format!("(b)   answered before the ack arrived, {n} toy(s)"),
        format!("{early} of {}", l.ack_to_answer.len()),
        "-",
    );
    report.row(
        format!("(b)   upload sent -> toy answer, {n} toy(s), p50 / p99"),
        format!(
            "{:.1} / {:.1} ms",
            quantile(&l.send_to_answer, 0.5),
            quantile(&l.send_to_answer, 0.99)
        ),
        "-",
    );
}
