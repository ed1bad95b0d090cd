//! A pair of Linux network namespaces joined by a veth cable, for tests that
//! need a real network (mDNS multicast, TCP between two "machines") without
//! touching the host's own interfaces.
//!
//! ```text
//!   namespace A (hub side)                 namespace B (toy side)
//!   lo up                                  lo up
//!   <if_a> 10.213.X.1/24  <--- veth --->   <if_b> 10.213.X.2/24
//!   route 224.0.0.0/4 dev <if_a>           route 224.0.0.0/4 dev <if_b>
//! ```
//!
//! The namespaces are named `hearth-<pid>-<n>-a` / `-b`, so parallel tests
//! and parallel test runs never collide, and are deleted when the
//! [`NetnsPair`] is dropped, also when the test panics. Namespaces left
//! behind by a run that was killed (its pid no longer exists) are deleted by
//! the next [`NetnsPair::create`].
//!
//! The test process itself stays in the host namespace; everything that must
//! run inside one is a child process started through `ip netns exec`:
//! [`NetnsPair::spawn_in_a`] / [`NetnsPair::spawn_in_b`] take any
//! `std::process::Command` (program, arguments, environment, working
//! directory) and return the `Child` with stdin and stdout piped (stderr is
//! inherited, so a child's errors show up in the test output). [`Proc`] wraps
//! such a child: it reads stdout lines on a thread, lets the test wait for a
//! line with a deadline (no sleeps), writes commands to stdin, and kills the
//! child when dropped.
//!
//! To run Rust code in a namespace, a test re-executes this test binary:
//! [`self_test_command`] builds `<test exe> <test name> --exact --ignored
//! --nocapture` with [`ROLE_ENV`] set; the named test is `#[ignore]`d so a
//! normal run skips it, and it does nothing unless [`role`] returns a role.
//!
//! ```ignore
//! let Some(pair) = NetnsPair::create_or_skip() else { return };
//! let mut hub = Proc::new("hub", pair.spawn_in_a(&mut Command::new(env!("CARGO_BIN_EXE_hearth")))?);
//! let mut toy = Proc::new("toy", pair.spawn_in_b(&mut self_test_command("my::child", "toy"))?);
//! toy.send("find")?;
//! let line = toy.wait_for("the hub", |l| l.starts_with("HUB "));
//! assert!(line.contains(&pair.addr_a().to_string()));
//! ```

// Parts of the harness are for tests that run the real binaries later.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that tells a re-executed test binary which role
/// to play.
pub const ROLE_ENV: &str = "HEARTH_TEST_ROLE";

/// Set to `1` to skip the namespace tests on purpose.
pub const SKIP_ENV: &str = "HEARTH_SKIP_NETNS";

const PREFIX: &str = "hearth-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces joined by a veth pair; see the module docs.
pub struct NetnsPair {
    ns: [String; 2],
    ifs: [String; 2],
    addrs: [Ipv4Addr; 2],
}

impl NetnsPair {
    /// Why namespace tests cannot run here, if they cannot: not root, no
    /// `ip` command, not Linux, or [`SKIP_ENV`] set.
    pub fn skip_reason() -> Option<String> {
        if std::env::var_os(SKIP_ENV).is_some_and(|v| v == "1") {
            return Some(format!("{SKIP_ENV}=1"));
        }
        if !cfg!(target_os = "linux") {
            return Some("network namespaces need Linux".into());
        }
        match effective_uid() {
            Some(0) => {}
            Some(uid) => return Some(format!("network namespaces need root (uid is {uid})")),
            None => return Some("cannot read the uid from /proc/self/status".into()),
        }
        if !crate::harness::have("ip") {
            return Some("the `ip` command (iproute2) is missing".into());
        }
        let s = crate::harness::run_with_timeout(Command::new("ip").arg("-V"), 30, None).status;
        if s.success() {
            None
        } else {
            Some(format!("`ip -V` failed ({s})"))
        }
    }

    /// [`NetnsPair::create`], or `None` after reporting the skip through
    /// `skips::skip`
    /// when namespaces are unavailable. Panics when they should work but
    /// setting them up fails.
    pub fn create_or_skip() -> Option<NetnsPair> {
        if let Some(reason) = Self::skip_reason() {
            let fix = if reason.starts_with(SKIP_ENV) {
                format!("unset {SKIP_ENV}")
            } else {
                "run cargo test as root on Linux with iproute2 (sudo apt install iproute2)".into()
            };
            crate::skips::skip(&reason, &fix);
            return None;
        }
        match Self::create() {
            Ok(pair) => Some(pair),
            Err(e) => panic!("cannot set up the network namespaces: {e}"),
        }
    }

    /// Creates and wires up the two namespaces.
    pub fn create() -> io::Result<NetnsPair> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Addresses only exist inside the namespaces, so reuse across runs is
        // harmless; varying the subnet just makes captures easier to read.
        let subnet = u8::try_from((pid.wrapping_add(n)) % 250 + 1).unwrap_or(1);
        let pair = NetnsPair {
            ns: [
                format!("{PREFIX}{pid}-{n}-a"),
                format!("{PREFIX}{pid}-{n}-b"),
            ],
            // Interface names are at most 15 bytes: "hv" + pid in hex (at
            // most 6) + "n" + counter + "a".
            ifs: [format!("hv{pid:x}n{n}a"), format!("hv{pid:x}n{n}b")],
            addrs: [
                Ipv4Addr::new(10, 213, subnet, 1),
                Ipv4Addr::new(10, 213, subnet, 2),
            ],
        };
        // From here on, Drop cleans up whatever part was created.
        pair.setup()?;
        Ok(pair)
    }

    fn setup(&self) -> io::Result<()> {
        let [a, b] = &self.ns;
        let [if_a, if_b] = &self.ifs;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&["link", "add", if_a, "type", "veth", "peer", "name", if_b])?;
        ip(&["link", "set", if_a, "netns", a])?;
        ip(&["link", "set", if_b, "netns", b])?;
        for i in 0..2 {
            let (ns, ifname) = (&self.ns[i], &self.ifs[i]);
            let addr = format!("{}/24", self.addrs[i]);
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &addr, "dev", ifname])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname])?;
        }
        Ok(())
    }

    /// Namespace A's name (for `ip -n`, `ip netns exec`).
    pub fn ns_a(&self) -> &str {
        &self.ns[0]
    }

    /// Namespace B's name.
    pub fn ns_b(&self) -> &str {
        &self.ns[1]
    }

    /// The veth interface inside namespace A.
    pub fn if_a(&self) -> &str {
        &self.ifs[0]
    }

    /// The veth interface inside namespace B.
    pub fn if_b(&self) -> &str {
        &self.ifs[1]
    }

    /// Namespace A's address on the veth (`10.213.X.1`).
    pub fn addr_a(&self) -> Ipv4Addr {
        self.addrs[0]
    }

    /// Namespace B's address on the veth (`10.213.X.2`).
    pub fn addr_b(&self) -> Ipv4Addr {
        self.addrs[1]
    }

    /// Adds another address (`a.b.c.d/len`) to namespace A's veth.
    pub fn add_addr_a(&self, cidr: &str) -> io::Result<()> {
        ip(&["-n", self.ns_a(), "addr", "add", cidr, "dev", self.if_a()])
    }

    /// Adds another address (`a.b.c.d/len`) to namespace B's veth.
    pub fn add_addr_b(&self, cidr: &str) -> io::Result<()> {
        ip(&["-n", self.ns_b(), "addr", "add", cidr, "dev", self.if_b()])
    }

    /// Runs the self-test child `cmd` in namespace `ns` (90 s at most) and
    /// returns what follows `RESULT ` on its output; panics with `what` and
    /// the child's output when it printed none.
    pub fn result_in(ns: &str, cmd: &Command, what: &str) -> String {
        let out = crate::harness::run_with_timeout(&mut NetnsPair::command_in(ns, cmd), 90, None);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                panic!(
                    "no RESULT {what}: {text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// `cmd` rewritten as `ip netns exec <ns> <program> <args>`, with the
    /// same environment changes and working directory.
    pub fn command_in(ns: &str, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Starts `cmd` inside namespace A with stdin and stdout piped.
    pub fn spawn_in_a(&self, cmd: &mut Command) -> io::Result<Child> {
        spawn_piped(Self::command_in(self.ns_a(), cmd))
    }

    /// Starts `cmd` inside namespace B with stdin and stdout piped.
    pub fn spawn_in_b(&self, cmd: &mut Command) -> io::Result<Child> {
        spawn_piped(Self::command_in(self.ns_b(), cmd))
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it
        // the peer. If setup failed before the move, the veth is still here.
        for ns in &self.ns {
            let _ = ip_quiet(&["netns", "del", ns]);
        }
        let _ = ip_quiet(&["link", "del", &self.ifs[0]]);
    }
}

fn spawn_piped(mut cmd: Command) -> io::Result<Child> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Runs `ip <args>` (30 s at most), failing with its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = crate::harness::run_with_timeout(Command::new("ip").args(args), 30, None);
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn ip_quiet(args: &[&str]) -> io::Result<ExitStatus> {
    Ok(crate::harness::run_with_timeout(Command::new("ip").args(args), 30, None).status)
}

pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, filesystem.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Deletes `hearth-<pid>-<n>-a|b` namespaces whose test process is gone.
fn remove_stale_namespaces() {
    let out =
        crate::harness::run_with_timeout(Command::new("ip").args(["netns", "list"]), 30, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('-').collect();
        let ours = parts.len() == 3
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && parts[1].bytes().all(|b| b.is_ascii_digit())
            && (parts[2] == "a" || parts[2] == "b");
        if ours && !std::path::Path::new("/proc").join(parts[0]).exists() {
            let _ = ip_quiet(&["netns", "del", name]);
        }
    }
}

/// The command that re-executes this test binary to run only `test_name`
/// (its full path, e.g. `discovery::netns_child`) with [`ROLE_ENV`] = `role`.
pub fn self_test_command(test_name: &str, role: &str) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([
        test_name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env(ROLE_ENV, role);
    cmd
}

/// The role this process was re-executed for, if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok().filter(|r| !r.is_empty())
}

/// A child process observed through its stdout lines.
pub struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

/// The default deadline for [`Proc::wait_for`].
pub const DEADLINE: Duration = Duration::from_secs(30);

impl Proc {
    /// Takes over `child` (spawned with piped stdout, ideally piped stdin).
    pub fn new(label: &str, mut child: Child) -> Proc {
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The child's process id (for `ip netns exec` children, the program's
    /// own: `ip` replaces itself with it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let label = &self.label;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{label}: stdin is not piped"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{label}: cannot write {line:?}: {e}"));
    }

    /// Waits up to [`DEADLINE`] for a stdout line matching `pred` and
    /// returns it; panics with everything the child printed otherwise.
    pub fn wait_for(&mut self, what: &str, pred: impl FnMut(&str) -> bool) -> String {
        self.wait_for_within(what, DEADLINE, pred)
    }

    /// [`Proc::wait_for`] with an explicit deadline.
    pub fn wait_for_within(
        &mut self,
        what: &str,
        within: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => {
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => format!("not within {within:?}"),
                        mpsc::RecvTimeoutError::Disconnected => "its stdout closed".to_owned(),
                    };
                    panic!(
                        "{}: waited for {what}, {why}; it printed:\n{}",
                        self.label,
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    /// Like [`Proc::wait_for`], but first looks through the lines already
    /// read (including the ones an earlier `wait_for` skipped over).
    pub fn saw_or_wait_for(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        if let Some(line) = self.log.iter().find(|l| pred(l)) {
            return line.clone();
        }
        self.wait_for(what, pred)
    }

    /// Every line read so far (including ones skipped by `wait_for`).
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Closes stdin and waits up to [`DEADLINE`] for the child to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    // Draining stdout keeps the child from blocking on a full pipe.
                    match self.lines.recv_timeout(Duration::from_millis(50)) {
                        Ok(line) => self.log.push(line),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                Ok(None) => panic!("{}: did not exit within {DEADLINE:?}", self.label),
                Err(e) => panic!("{}: cannot wait: {e}", self.label),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
