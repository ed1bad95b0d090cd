//! What `hearth-toy` does when it runs: keep its key, advertise itself by
//! mDNS, find the hub, pair when it holds no certificate, report status,
//! then loop on the inbox (long-poll), playing and acknowledging each
//! message, and send recordings when asked.
//!
//! It prints one line per event on stdout, for people and for tests
//! (`pairing code: 123456`, `received message ID: PATH`, ...). External
//! commands (`--say-cmd`, `--play-cmd`, `--record-cmd`) run through `sh -c`
//! with the value passed as `$1`, never pasted into the script, so text from
//! the network can never become shell code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::printable;
use super::{
    CodeReady, HubAddress, PairOptions, PairingFailure, Recording, ToyClient, ToyError, ToyState,
    pair, sniff_audio,
};
use crate::discovery::{DiscoveryOptions, NO_PORT, ToyAdvert, ToyAdvertiser, find_hub};
use crate::domain::{DisplayName, Hex32, IdempotencyKey};

/// Long-poll length of the inbox, seconds.
const INBOX_WAIT: u64 = 30;
/// How long one mDNS search lasts.
const MDNS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the status is sent again while running.
const STATUS_EVERY: Duration = Duration::from_secs(30 * 60);
const FIRMWARE: &str = concat!("hearth-toy ", env!("CARGO_PKG_VERSION"));

/// Everything the binary's command line sets.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// The state directory (key, certificate, inbox).
    pub state_dir: PathBuf,
    /// Display name (kept in the state once given).
    pub name: Option<String>,
    /// Model text sent at pairing and advertised.
    pub model: Option<String>,
    /// `HOST:PORT` of the hub, instead of mDNS.
    pub hub: Option<String>,
    /// The name the hub's certificate must carry when `hub` is an address.
    pub hub_name: Option<String>,
    /// Speaks the pairing code: `{code}` is replaced by it.
    pub say_cmd: Option<String>,
    /// Plays a message: `{file}` is replaced by its path.
    pub play_cmd: Option<String>,
    /// Records the child: `{file}` is the path to write.
    pub record_cmd: Option<String>,
    /// Advertise and browse by mDNS.
    pub mdns: bool,
    /// Enter on stdin records (also on when stdin is a terminal).
    pub interactive: bool,
    /// Pair again when the hub removed the toy (instead of exiting).
    pub repair: bool,
    /// Battery level to report; read from `/sys/class/power_supply` when unset.
    pub battery: Option<u8>,
}

impl AgentOptions {
    fn model(&self) -> String {
        self.model.clone().unwrap_or_else(|| FIRMWARE.to_owned())
    }
}

/// Prints one event line and flushes it at once (tests read it through a pipe).
fn say(line: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn open_state(opts: &AgentOptions) -> Result<ToyState, ToyError> {
    let mut state = ToyState::open(&opts.state_dir)?;
    if let Some(n) = &opts.name {
        let name = DisplayName::parse(n).map_err(|e| ToyError::Local(format!("--name: {e}")))?;
        state.set_name(name)?;
    }
    Ok(state)
}

/// Runs the toy until Ctrl-C (`Ok`) or an error it cannot get past.
pub async fn run(opts: AgentOptions) -> Result<(), ToyError> {
    let mut state = open_state(&opts)?;
    for sub in ["inbox", "outbox"] {
        std::fs::create_dir_all(state.dir().join(sub))
            .map_err(|e| ToyError::Local(format!("{}: {e}", state.dir().join(sub).display())))?;
    }
    say(format!(
        "toy {} ({}), key fingerprint {}",
        state.toy_id(),
        state.name(),
        state.fingerprint().to_hex()
    ));
    let advertiser = if opts.mdns {
        advertise(&opts, &state)
    } else {
        None
    };
    let recordings = if opts.interactive || std::io::stdin().is_terminal() {
        Some(stdin_lines())
    } else {
        None
    };
    let result = tokio::select! {
        r = run_sessions(&opts, &mut state, advertiser.as_ref(), recordings) => r,
        _ = tokio::signal::ctrl_c() => {
            say("stopping");
            Ok(())
        }
    };
    if let Some(a) = &advertiser {
        a.shutdown();
    }
    result
}

fn advertise(opts: &AgentOptions, state: &ToyState) -> Option<ToyAdvertiser> {
    let advert = ToyAdvert {
        instance: state.name().to_string(),
        toy_id: state.toy_id().clone(),
        model: opts.model(),
        fp: state.fingerprint(),
        paired: state.is_paired(),
        port: NO_PORT,
    };
    match ToyAdvertiser::start(advert, &DiscoveryOptions::default()) {
        Ok(a) => Some(a),
        Err(e) => {
            say(format!(
                "warning: cannot advertise the toy by mDNS ({e}); the hub will not list it as found"
            ));
            None
        }
    }
}

/// Reads lines from stdin on a thread of its own (stdin has no async API
/// that works on every kind of file) and sends a tick per Enter.
fn stdin_lines() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
            if tx.blocking_send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Finds the hub: `--hub`, else mDNS (a paired toy takes only a hub with
/// its pinned CA, and falls back to the address saved at pairing).
async fn locate(opts: &AgentOptions, state: &ToyState) -> Result<HubAddress, ToyError> {
    if let Some(h) = &opts.hub {
        return HubAddress::parse(h, opts.hub_name.as_deref());
    }
    let pinned = state
        .credentials()
        .and_then(|c| super::tls::cert_from_pem(&c.ca_pem).ok())
        .map(|d| Hex32::sha256(d.as_ref()));
    if !opts.mdns {
        return state.hub().cloned().ok_or_else(|| {
            ToyError::Local("mDNS is off and no hub address is known: pass --hub HOST:PORT".into())
        });
    }
    loop {
        say("looking for a Hearth hub on the network (mDNS)...");
        match find_hub(&DiscoveryOptions::default(), MDNS_TIMEOUT).await {
            Ok(rec) => {
                let mut hub = HubAddress::from_record(&rec);
                if let Some(name) = &opts.hub_name {
                    hub.host = name.clone();
                }
                match pinned {
                    Some(p) if p != rec.ca_sha256 && !proves_pinned_ca(state, &hub).await => {
                        say(format!(
                            "ignoring hub {:?}: it is not the hub this toy paired with",
                            printable(&rec.instance, 63)
                        ));
                    }
                    _ => {
                        say(format!(
                            "found hub {:?} at {}:{}",
                            printable(&rec.instance, 63),
                            hub.host,
                            hub.port
                        ));
                        return Ok(hub);
                    }
                }
            }
            Err(e) => say(format!("no hub found yet: {e}")),
        }
        if pinned.is_some() {
            if let Some(saved) = state.hub() {
                return Ok(saved.clone());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether a hub whose TXT `ca` is not the pinned certificate's hash still
/// passes TLS against the pinned certificate: a hub reissues its CA
/// certificate with the same key and subject (0.2 added name constraints),
/// and the chain, not the hash, is what the toy trusts.
async fn proves_pinned_ca(state: &ToyState, hub: &HubAddress) -> bool {
    match ToyClient::new(state, hub) {
        Ok(client) => client.whoami().await.is_ok(),
        Err(_) => false,
    }
}

enum SessionEnd {
    /// Pair again (the hub removed the toy and `--repair` is set).
    Repair,
}

async fn run_sessions(
    opts: &AgentOptions,
    state: &mut ToyState,
    advertiser: Option<&ToyAdvertiser>,
    mut recordings: Option<mpsc::Receiver<()>>,
) -> Result<(), ToyError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let hub = match locate(opts, state).await {
            Ok(h) => h,
            Err(e) => return Err(e),
        };
        if !state.is_paired() {
            match pair_once(opts, state, &hub).await {
                Ok(()) => {
                    say(format!(
                        "paired with the hub at {}:{} as {}",
                        hub.host,
                        hub.port,
                        state.toy_id()
                    ));
                    if let Some(a) = advertiser {
                        let _ = a.set_paired(true);
                    }
                }
                Err(e @ ToyError::Pairing(PairingFailure::Expired | PairingFailure::TimedOut)) => {
                    say(format!("{e}; starting a new pairing"));
                    continue;
                }
                Err(e) if e.is_retryable() => {
                    say(format!(
                        "error: {e}; trying again in {} s",
                        backoff.as_secs()
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        match session(opts, state, &hub, recordings.as_mut()).await {
            Ok(SessionEnd::Repair) => {
                state.forget_pairing()?;
                if let Some(a) = advertiser {
                    let _ = a.set_paired(false);
                }
                say("the hub no longer accepts this toy: pairing again");
            }
            Err(e) if e.is_retryable() => {
                say(format!(
                    "error: {e}; trying again in {} s",
                    backoff.as_secs()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn pair_once(
    opts: &AgentOptions,
    state: &mut ToyState,
    hub: &HubAddress,
) -> Result<(), ToyError> {
    say(format!(
        "pairing with the hub at {}:{} ...",
        hub.host, hub.port
    ));
    let popts = PairOptions {
        model: opts.model(),
        ..PairOptions::default()
    };
    let say_cmd = opts.say_cmd.clone();
    pair(state, hub, &popts, |ready: &CodeReady| {
        say(format!("pairing code: {}", ready.code.as_str()));
        say("a parent types this code on the hub's Toys page to confirm");
        if let Some(cmd) = say_cmd {
            let code = ready.code.as_str().to_owned();
            tokio::spawn(async move {
                if let Err(e) = run_cmd(&cmd, "{code}", &code).await {
                    say(format!("warning: --say-cmd failed: {e}"));
                }
            });
        }
    })
    .await
}

/// One connected stretch: status, then the message loop. Returns on an error
/// (network ones are retried by the caller) or when the toy must pair again.
async fn session(
    opts: &AgentOptions,
    state: &mut ToyState,
    hub: &HubAddress,
    mut recordings: Option<&mut mpsc::Receiver<()>>,
) -> Result<SessionEnd, ToyError> {
    let client = Arc::new(ToyClient::new(state, hub)?);
    let outcome = async {
        let me = client.whoami().await?;
        say(format!(
            "connected to the hub as {:?}{}",
            printable(&me.name, 64),
            me.child
                .as_deref()
                .map(|c| format!(" (child: {})", printable(c, 64)))
                .unwrap_or_default()
        ));
        state.set_hub(hub.clone())?;
        send_status(opts, &client).await?;
        send_outbox(&client, &state.dir().join("outbox")).await?;
        message_loop(opts, state.dir(), &client, &mut recordings).await
    }
    .await;
    match outcome {
        Err(ToyError::Removed | ToyError::NotPaired(_)) if opts.repair => Ok(SessionEnd::Repair),
        Err(e) => Err(e),
        Ok(never) => match never {},
    }
}

async fn send_status(opts: &AgentOptions, client: &ToyClient) -> Result<(), ToyError> {
    let battery = opts.battery.or_else(read_battery);
    client.status(battery, Some(FIRMWARE)).await?;
    match battery {
        Some(b) => say(format!("status sent (battery {b}%)")),
        None => say("status sent"),
    }
    Ok(())
}

/// The first battery's charge from sysfs, if the machine has one.
fn read_battery() -> Option<u8> {
    let dir = std::fs::read_dir("/sys/class/power_supply").ok()?;
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("BAT"))
        .find_map(|e| std::fs::read_to_string(e.path().join("capacity")).ok())
        .and_then(|s| s.trim().parse::<u8>().ok())
        .map(|b| b.min(100))
}

/// A file name for a hub-chosen id: the id itself when it is a safe token,
/// else its hash (so `../` or odd bytes can never leave the inbox directory).
fn file_stem(id: &str) -> String {
    match IdempotencyKey::parse(id) {
        Ok(_) if !id.starts_with('.') => id.to_owned(),
        _ => Hex32::sha256(id.as_bytes()).to_hex(),
    }
}

enum Never {}

async fn message_loop(
    opts: &AgentOptions,
    dir: &Path,
    client: &Arc<ToyClient>,
    recordings: &mut Option<&mut mpsc::Receiver<()>>,
) -> Result<Never, ToyError> {
    let mut skipped = std::collections::HashSet::<String>::new();
    let mut last_status = tokio::time::Instant::now();
    let (done_tx, mut done_rx) = mpsc::channel::<Result<(), ToyError>>(4);
    if opts.record_cmd.is_some() && recordings.is_some() {
        say("press Enter to record a message");
    }
    loop {
        let poll = client.inbox(INBOX_WAIT);
        tokio::pin!(poll);
        let messages = loop {
            tokio::select! {
                r = &mut poll => break r?,
                Some(()) = next_tick(recordings) => start_recording(opts, dir, client, done_tx.clone()),
                Some(r) = done_rx.recv() => r?,
            }
        };
        if messages.iter().all(|m| skipped.contains(&m.id)) && !messages.is_empty() {
            // Only messages we could not take are left: do not spin on them.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        for m in messages {
            if skipped.contains(&m.id) {
                continue;
            }
            match take_message(opts, dir, client, &m.id, &m.from).await {
                Ok(()) => {}
                Err(e @ ToyError::Hub { .. }) | Err(e @ ToyError::Protocol(_)) => {
                    say(format!(
                        "error: message {}: {e}; skipping it",
                        printable(&m.id, 64)
                    ));
                    skipped.insert(m.id);
                }
                Err(e) => return Err(e),
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            send_status(opts, client).await?;
            last_status = tokio::time::Instant::now();
        }
    }
}

async fn next_tick(rx: &mut Option<&mut mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn take_message(
    opts: &AgentOptions,
    dir: &Path,
    client: &ToyClient,
    id: &str,
    from: &str,
) -> Result<(), ToyError> {
    let audio = client.fetch_audio(id).await?;
    let path = dir.join("inbox").join(format!("{}.ogg", file_stem(id)));
    tokio::fs::write(&path, &audio)
        .await
        .map_err(|e| ToyError::Local(format!("{}: {e}", path.display())))?;
    let shown = printable(id, 64);
    match &opts.play_cmd {
        Some(cmd) => {
            say(format!(
                "received message {shown} from {}: playing",
                printable(from, 64)
            ));
            match run_cmd(cmd, "{file}", &path.to_string_lossy()).await {
                Ok(()) => {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                Err(e) => say(format!(
                    "error: could not play message {shown} ({e}); it is kept at {}",
                    path.display()
                )),
            }
        }
        None => say(format!("received message {shown}: {}", path.display())),
    }
    // Marked played even when the player failed: otherwise the inbox would
    // hand it back at once, forever. The file stays for a person to play.
    client.played(id).await
}

fn fresh_key() -> IdempotencyKey {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = format!("rec-{now}-{}", hex::encode(rand::random::<[u8; 6]>()));
    // The text is made of token characters only, so this cannot fail.
    IdempotencyKey::parse(&text).unwrap_or_else(|_| fallback_key())
}

fn fallback_key() -> IdempotencyKey {
    match IdempotencyKey::parse("rec") {
        Ok(k) => k,
        Err(_) => unreachable!("\"rec\" is a valid idempotency key"),
    }
}

fn start_recording(
    opts: &AgentOptions,
    dir: &Path,
    client: &Arc<ToyClient>,
    done: mpsc::Sender<Result<(), ToyError>>,
) {
    let Some(cmd) = opts.record_cmd.clone() else {
        say(
            "recording is off: start the toy with --record-cmd (e.g. 'arecord -f S16_LE -r 16000 -d 10 {file}')",
        );
        return;
    };
    let (client, outbox) = (client.clone(), dir.join("outbox"));
    tokio::spawn(async move {
        let key = fresh_key();
        let path = outbox.join(format!("{key}.wav"));
        say("recording...");
        if let Err(e) = run_cmd(&cmd, "{file}", &path.to_string_lossy()).await {
            say(format!(
                "error: --record-cmd failed ({e}); nothing was sent"
            ));
            let _ = std::fs::remove_file(&path);
            return;
        }
        let r = send_file(&client, &path, &key).await;
        if let Err(e @ (ToyError::Removed | ToyError::NotPaired(_) | ToyError::HubIdentity(_))) = r
        {
            let _ = done.send(Err(e)).await;
        }
    });
}

/// Uploads one recorded file with its key, printing the outcome. The file is
/// removed once the hub has it, and kept (for the next start) after a
/// network failure.
async fn send_file(
    client: &ToyClient,
    path: &Path,
    key: &IdempotencyKey,
) -> Result<Recording, ToyError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ToyError::Local(format!("{}: {e}", path.display())))?;
    let Some(ct) = sniff_audio(&bytes) else {
        let e = ToyError::Local(format!(
            "{} is neither a WAV nor an Ogg file",
            path.display()
        ));
        say(format!("error: {e}; nothing was sent"));
        let _ = tokio::fs::remove_file(path).await;
        return Err(e);
    };
    match client.upload_recording(bytes, ct, key).await {
        Ok(r) => {
            say(format!(
                "recording sent: {} ({:.1} s)",
                printable(&r.id, 64),
                r.duration_ms as f64 / 1000.0
            ));
            let _ = tokio::fs::remove_file(path).await;
            Ok(r)
        }
        Err(e) if e.is_retryable() => {
            say(format!(
                "error: {e}; the recording is kept at {} and sent when the hub is back",
                path.display()
            ));
            Err(e)
        }
        Err(e) => {
            say(format!("error: the recording was not accepted: {e}"));
            if matches!(e, ToyError::Hub { .. }) {
                let _ = tokio::fs::remove_file(path).await;
            }
            Err(e)
        }
    }
}

/// Sends recordings left from an earlier run, each with its original key.
async fn send_outbox(client: &ToyClient, outbox: &Path) -> Result<(), ToyError> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(key) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| IdempotencyKey::parse(s).ok())
        else {
            continue;
        };
        if let Err(
            e @ (ToyError::Removed
            | ToyError::NotPaired(_)
            | ToyError::HubIdentity(_)
            | ToyError::Network(_)),
        ) = send_file(client, &path, &key).await
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `template` through `sh -c`, with `placeholder` standing for `"$1"`
/// (appended when the template has none) and `value` passed as `$1`.
async fn run_cmd(template: &str, placeholder: &str, value: &str) -> Result<(), String> {
    let script = if template.contains(placeholder) {
        template.replace(placeholder, "\"$1\"")
    } else {
        format!("{template} \"$1\"")
    };
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(value)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot start sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{template}` exited with {status}"))
    }
}

/// `hearth-toy record FILE`: uploads a WAV or Ogg file with a fresh
/// idempotency key, retrying network failures with the same key.
pub async fn record_file(opts: &AgentOptions, file: &Path) -> Result<Recording, ToyError> {
    let state = open_state(opts)?;
    if !state.is_paired() {
        return Err(ToyError::NotPaired(
            "the toy holds no client certificate yet; run hearth-toy first to pair it".into(),
        ));
    }
    let hub = locate(opts, &state).await?;
    let client = ToyClient::new(&state, &hub)?;
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| ToyError::Local(format!("{}: {e}", file.display())))?;
    let ct = sniff_audio(&bytes).ok_or_else(|| {
        ToyError::Local(format!(
            "{} is neither a WAV nor an Ogg file",
            file.display()
        ))
    })?;
    let r = client.upload_recording(bytes, ct, &fresh_key()).await?;
    say(format!(
        "recording sent: {} ({:.1} s)",
        printable(&r.id, 64),
        r.duration_ms as f64 / 1000.0
    ));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_become_safe_file_names() {
        assert_eq!(file_stem("abc-123"), "abc-123");
        for bad in ["../x", "..", ".hidden", "a/b", "", "é"] {
            let s = file_stem(bad);
            assert_eq!(s.len(), 64, "{bad}");
            assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn fresh_keys_are_valid_and_differ() {
        let (a, b) = (fresh_key(), fresh_key());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("rec-"));
    }

    #[tokio::test]
    async fn commands_get_values_as_arguments_not_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let tmpl = format!("printf %s {{code}} > {}", out.display());
        run_cmd(&tmpl, "{code}", "$(touch pwned); 12")
            .await
            .expect("run");
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            "$(touch pwned); 12"
        );
        assert!(!Path::new("pwned").exists());
        assert!(run_cmd("false", "{file}", "x").await.is_err());
    }
}
