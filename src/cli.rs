//! The `hearth` command line: `serve`, headless user administration,
//! `check-config`, `doctor`, and the man page. Every failure says what to
//! do and exits non-zero.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use crate::accounts;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Overrides};
use crate::datadir::{DataDir, DataFile};
use crate::domain::{DisplayName, Role, Username};
use crate::error::{Code, Error};
use crate::family::{self, Actor};
use crate::store::{Store, audit};

/// Where the package puts the configuration; used when no --config is given and it exists.
pub const PACKAGE_CONFIG: &str = "/etc/hearth/hearth.toml";

/// Hearth: a private voice hub for families.
#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about,
    long_about = "Hearth runs on a Raspberry Pi at home: toys on the home Wi-Fi pair with it, parents open https://hearth.local on their phones, and voice messages stay in the household."
)]
pub struct Cli {
    /// The configuration file (TOML). Default: $HEARTH_CONFIG, else /etc/hearth/hearth.toml when it exists, else built-in development defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory (database, keys, setup code). Overrides the file.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: HTTPS web UI, parent API and toy API on one port.
    Serve {
        /// Address and port to listen on (default 0.0.0.0:8443).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// Do not advertise the hub or look for toys with mDNS.
        #[arg(long)]
        no_mdns: bool,
    },
    /// Manage household accounts without the web UI.
    User {
        /// What to do with users.
        #[command(subcommand)]
        action: UserAction,
    },
    /// Write an encrypted backup (age format, passphrase read from standard input) of the hub's database and keys.
    Backup {
        /// The backup file to create (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Decrypt and verify a backup without restoring it (passphrase from standard input).
    CheckBackup {
        /// The backup file.
        file: PathBuf,
    },
    /// Rebuild a hub from a backup into an empty data directory (passphrase from standard input).
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Home Assistant over MQTT: test the broker, set its password.
    Mqtt {
        /// What to do.
        #[command(subcommand)]
        action: MqttAction,
    },
    /// The relay mailbox (RELAY.md).
    Relay {
        /// What to do with the relay.
        #[command(subcommand)]
        action: RelayAction,
    },
    /// Check the configuration and exit.
    CheckConfig,
    /// Check the installation (configuration, data directory, certificates, database, disk, clock) and print fixes.
    Doctor,
    /// Print the man page (roff) to standard output.
    #[command(hide = true)]
    Man,
    /// Answer whether the password on standard input is common ("common"
    /// or "fine"): the hub asks this of a short-lived copy of itself.
    #[command(hide = true)]
    CheckPassword,
}

/// User administration.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from standard input.
    Add {
        /// Login name (letters, digits, . _ -).
        username: String,
        /// admin, parent or relative.
        #[arg(long, default_value = "parent")]
        role: String,
        /// Name shown on messages (default: the username).
        #[arg(long)]
        display_name: Option<String>,
        /// A toy id a relative may use (repeat for several).
        #[arg(long = "toy")]
        toys: Vec<String>,
    },
    /// Set a user's password (read from standard input) and end their sessions.
    Passwd {
        /// Login name.
        username: String,
    },
    /// List users: username, role, display name, toys (relatives), last sign-in.
    List,
    /// Remove a user; their sessions end. The last admin cannot be removed.
    Remove {
        /// Login name.
        username: String,
    },
    /// Make a one-time invitation code (72 hours) and print it with its join link.
    Invite {
        /// parent or relative.
        #[arg(long, default_value = "relative")]
        role: String,
        /// A toy id a relative may use (repeat for several).
        #[arg(long = "toy")]
        toys: Vec<String>,
    },
}

/// MQTT administration.
#[derive(Debug, Subcommand)]
pub enum MqttAction {
    /// Connect to the configured broker once and say how it went (exit 1 on failure).
    Check,
    /// Set the broker password (read from standard input; empty removes it).
    /// It is kept in the data directory as mqtt-password, mode 0600.
    SetPassword,
}

/// Relay administration.
#[derive(Debug, Subcommand)]
pub enum RelayAction {
    /// Check the configured mailbox live (put, presigned get, list and
    /// delete of a probe object), as the settings page does before saving.
    Check,
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("HEARTH_"))
        .collect()
}

fn config_file(cli: &Cli) -> Option<PathBuf> {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("HEARTH_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let p = PathBuf::from(PACKAGE_CONFIG);
            p.exists().then_some(p)
        })
}

/// Loads the configuration for `cli`.
pub fn load_config(cli: &Cli, listen: Option<String>, no_mdns: bool) -> anyhow::Result<Config> {
    let file = config_file(cli);
    let o = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
        no_mdns,
    };
    Ok(Config::load(file.as_deref(), &env_vars(), &o)?)
}

/// Sets up logging: to stderr, without timestamps under systemd (the
/// journal adds its own).
pub fn init_logging(filter: &str) {
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !under_journal);
    let _ = if under_journal {
        b.without_time().try_init()
    } else {
        b.try_init()
    };
}

fn read_password(prompt: &str) -> anyhow::Result<String> {
    read_secret(prompt, "password", Some("nothing was changed"))
}

/// A backup's passphrase: asked twice on a terminal when `twice`, else
/// the first line of standard input.
fn read_passphrase(twice: bool) -> anyhow::Result<String> {
    if twice && std::io::stdin().is_terminal() {
        eprintln!("Keep it safe: without this passphrase, nobody can open the backup.");
    }
    let repeat = twice.then_some("no backup was written");
    read_secret("Backup passphrase: ", "passphrase", repeat)
}

/// A secret typed at the terminal without echo (twice when `repeat` says
/// what a mismatch leaves undone), or else the first line of standard input.
fn read_secret(prompt: &str, what: &str, repeat: Option<&str>) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let a =
        rpassword::prompt_password(prompt).with_context(|| format!("cannot read the {what}"))?;
    if let Some(undone) = repeat {
        let b = rpassword::prompt_password("Repeat it: ")
            .with_context(|| format!("cannot read the {what}"))?;
        anyhow::ensure!(a == b, "the two {what}s differ; {undone}");
    }
    Ok(a)
}

fn backup_command(cfg: &Config, command: &Command) -> anyhow::Result<()> {
    use crate::data::backup;
    let now = SystemClock.unix();
    match command {
        Command::Backup { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists already; choose a new file name",
                out.display()
            );
            let store = open_store(cfg)?;
            let pass = backup::Passphrase::new_for_backup(read_passphrase(true)?)
                .map_err(|e| anyhow::anyhow!("passphrase refused: {}", e.message))?;
            let m = backup::write_file(&store, &cfg.data_dir, out, &pass, now, audit::SYSTEM)?;
            println!(
                "backup written to {} ({} files); `hearth check-backup {}` verifies it",
                out.display(),
                m.files.len() + 1,
                out.display()
            );
        }
        Command::CheckBackup { file } => {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let pass = backup::Passphrase::to_open(read_passphrase(false)?);
            // The check unpacks into a scratch directory next to the data
            // when there is one, else next to the backup.
            let room = if cfg.data_dir.is_dir() {
                cfg.data_dir.clone()
            } else {
                file.parent().map(PathBuf::from).unwrap_or_default()
            };
            let c = backup::check(f, &pass, &room)?;
            println!("ok: {}", c.summary());
        }
        Command::Restore { file } => {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let pass = backup::Passphrase::to_open(read_passphrase(false)?);
            let c = backup::restore(f, &pass, &cfg.data_dir, now)?;
            println!(
                "restored into {}: {}; start the hub with this data directory",
                cfg.data_dir.display(),
                c.summary()
            );
        }
        _ => {}
    }
    Ok(())
}

fn refuse_foreign_owner(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let me = nix::unistd::geteuid().as_raw();
        if me == 0 && meta.uid() != 0 {
            let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| meta.uid().to_string());
            anyhow::bail!(
                "{} belongs to the user {owner}; run this command as that user so the database stays theirs, e.g. `sudo -u {owner} hearth ...`",
                dir.display()
            );
        }
    }
    Ok(())
}

fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    anyhow::ensure!(
        DataDir::new(&cfg.data_dir)
            .path(DataFile::Database)
            .exists(),
        "there is no database in {}; start the hub once (hearth serve) or pass the right --data-dir",
        cfg.data_dir.display()
    );
    refuse_foreign_owner(&cfg.data_dir)?;
    Ok(Store::open(&cfg.data_dir)?)
}

/// An account use case's refusal as a command-line error: its message,
/// with the password rule's refusals said as such.
fn refused(e: Error) -> anyhow::Error {
    match e.code {
        Code::WeakPassword => anyhow::anyhow!("password refused: {}", e.message),
        Code::InternalError | Code::StorageFull => anyhow::Error::new(e),
        _ => anyhow::anyhow!("{}", e.message),
    }
}

fn user_command(cfg: &Config, action: UserAction) -> anyhow::Result<()> {
    let store = open_store(cfg)?;
    let now = SystemClock.unix();
    // The account use cases run their database work on blocking threads;
    // a small runtime of this thread hosts them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let ctx = family::Ctx {
        store: &store,
        events: None,
        now,
    };
    match action {
        UserAction::Add {
            username,
            role,
            display_name,
            toys,
        } => {
            let username = Username::parse(&username)?;
            let role = Role::parse(&role)?;
            let display = DisplayName::parse(display_name.as_deref().unwrap_or(username.as_str()))?;
            anyhow::ensure!(
                toys.is_empty() || role == Role::Relative,
                "--toy is for relatives; parents and admins see every toy"
            );
            let pw = read_password(&format!("Password for {username}: "))?;
            rt.block_on(accounts::add_user(
                &store,
                now,
                audit::SYSTEM,
                &username,
                &display,
                role,
                pw,
            ))
            .map_err(refused)?;
            if !toys.is_empty() {
                let change = family::MemberChange {
                    role: None,
                    toys: Some(toys),
                };
                rt.block_on(family::change_member(
                    &ctx,
                    Actor::CommandLine,
                    username.as_str(),
                    change,
                ))
                .map_err(refused)?;
            }
            println!("added {username} ({})", role.as_str());
        }
        UserAction::Remove { username } => {
            rt.block_on(family::remove_member(&ctx, Actor::CommandLine, &username))
                .map_err(refused)?;
            println!("removed {username}; their sessions ended");
        }
        UserAction::Invite { role, toys } => {
            let base = if cfg.listen.port() == 443 {
                format!("https://{}", cfg.mdns.host_name)
            } else {
                format!("https://{}:{}", cfg.mdns.host_name, cfg.listen.port())
            };
            let req = family::InviteRequest { role, toys };
            let inv = rt
                .block_on(family::invite(&ctx, Actor::CommandLine, req, &base))
                .map_err(refused)?;
            println!("code: {}", inv.code);
            println!("link: {}", inv.url);
            println!(
                "valid until {} (one use)",
                crate::clock::rfc3339(inv.expires_at)
            );
        }
        UserAction::Passwd { username } => {
            let username = Username::parse(&username)?;
            let user = rt
                .block_on(accounts::user(&store, &username))
                .map_err(refused)?;
            let pw = read_password(&format!("New password for {username}: "))?;
            let ended = rt
                .block_on(accounts::set_password(
                    &store,
                    None,
                    now,
                    audit::SYSTEM,
                    &user,
                    pw,
                    None,
                ))
                .map_err(refused)?;
            println!("password of {username} changed; {ended} sessions ended");
        }
        UserAction::List => {
            for m in rt
                .block_on(family::members(&ctx, Actor::CommandLine))
                .map_err(refused)?
            {
                let toys: Vec<&str> = m.toys.iter().map(|t| t.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    m.username,
                    m.role.as_str(),
                    m.display_name,
                    if toys.is_empty() {
                        "-".into()
                    } else {
                        toys.join(",")
                    },
                    m.last_sign_in
                        .map(crate::clock::rfc3339)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
    }
    Ok(())
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve { listen, no_mdns } => {
            let cfg = load_config(&cli, listen.clone(), *no_mdns)?;
            init_logging(&cfg.log);
            // Everything the hub writes (database, keys) is private to its user.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            crate::auth::password::use_checker(Box::new(check_password_in_child));
            let rt = actix_web::rt::System::new();
            rt.block_on(async move {
                let app = crate::app::Application::build(cfg).await?;
                tracing::info!(port = app.port(), "hearth is serving");
                app.run_until_stopped().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User { .. } => {
            let cfg = load_config(&cli, None, false)?;
            if let Command::User { action } = cli.command {
                user_command(&cfg, action)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { .. } | Command::CheckBackup { .. } | Command::Restore { .. } => {
            let cfg = load_config(&cli, None, false)?;
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            backup_command(&cfg, &cli.command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mqtt { action } => {
            let cfg = load_config(&cli, None, false)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            match action {
                MqttAction::Check => {
                    match rt.block_on(crate::mqtt::check(&cfg.mqtt, &cfg.data_dir)) {
                        Ok(how) => {
                            println!("ok: {how}");
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => {
                            eprintln!("hearth: MQTT check failed: {e}");
                            Ok(ExitCode::FAILURE)
                        }
                    }
                }
                MqttAction::SetPassword => {
                    let store = open_store(&cfg)?;
                    let pw = read_password("MQTT broker password: ")?;
                    let removed = pw.is_empty();
                    rt.block_on(crate::mqtt::set_password(
                        &store,
                        &cfg.data_dir,
                        SystemClock.unix(),
                        audit::SYSTEM,
                        pw,
                    ))
                    .map_err(refused)?;
                    println!(
                        "{}; a running hub uses it at its next connection (restart it to connect at once)",
                        if removed {
                            "MQTT password removed"
                        } else {
                            "MQTT password stored"
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Relay {
            action: RelayAction::Check,
        } => {
            let cfg = load_config(&cli, None, false)?;
            let store = open_store(&cfg)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            let said = rt.block_on(crate::relay::check_stored(&store, &cfg.data_dir))?;
            println!("{said}");
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let file = config_file(&cli);
            let cfg = load_config(&cli, None, false)?;
            match file {
                Some(f) => println!(
                    "{}: valid (data in {}, listening on {})",
                    f.display(),
                    cfg.data_dir.display(),
                    cfg.listen
                ),
                None => println!(
                    "no configuration file; the built-in defaults are valid (data in {}, listening on {})",
                    cfg.data_dir.display(),
                    cfg.listen
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let cfg = match load_config(&cli, None, false) {
                Ok(c) => c,
                Err(e) => {
                    println!(
                        "FAIL configuration: {e:#}\n     fix: correct the file, then run `hearth check-config`"
                    );
                    return Ok(ExitCode::FAILURE);
                }
            };
            Ok(crate::doctor::run(&cfg))
        }
        Command::CheckPassword => {
            let mut password = String::new();
            std::io::stdin()
                .take(PASSWORD_BYTES_MAX)
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let common = crate::auth::password::is_common_here(&password);
            println!("{}", if common { "common" } else { "fine" });
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The most a password to check can take: 1024 characters of up to four
/// bytes (`auth::password::MAX_CHARS`), and one more to notice a longer one.
const PASSWORD_BYTES_MAX: u64 = 4 * 1024 + 1;

/// How long the hub waits for its password checker.
const PASSWORD_CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks a short-lived copy of this binary (`/proc/self/exe check-password`,
/// the password on its standard input, never its arguments) whether a
/// password is common. zxcvbn's dictionaries (8 MiB once built) then live
/// only as long as that process. `None`, with a warning, when the copy
/// could not answer: the caller then checks in this process.
fn check_password_in_child(password: &str) -> Option<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("/proc/self/exe")
        .arg("check-password")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the password checker; checking in the hub");
            return None;
        }
    };
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(password.as_bytes()));
    let deadline = std::time::Instant::now() + PASSWORD_CHECK_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => break None,
        }
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(64).read_to_string(&mut out);
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    match (written, status, out.trim()) {
        (Some(Ok(())), Some(s), "common") if s.success() => Some(true),
        (Some(Ok(())), Some(s), "fine") if s.success() => Some(false),
        (written, status, out) => {
            tracing::warn!(
                ?status,
                written = written.is_some_and(|w| w.is_ok()),
                answer_bytes = out.len(),
                "the password checker did not answer; checking in the hub"
            );
            None
        }
    }
}
