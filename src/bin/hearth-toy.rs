//! `hearth-toy`, the reference toy: turns a Linux box with a speaker and a
//! microphone into a Hearth toy. Thin over [`hearth::toy::agent`]: this file
//! parses the command line, sets up logging and maps errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hearth::toy::ToyError;
use hearth::toy::agent::{self, AgentOptions};

/// A Hearth toy: pairs with the hub, plays the messages it receives and
/// sends recordings.
#[derive(Parser, Debug)]
#[command(name = "hearth-toy", version, about)]
struct Cli {
    /// State directory: the toy's key, certificate and received messages.
    #[arg(long, env = "HEARTH_TOY_STATE")]
    state: PathBuf,
    /// The toy's display name (kept for later runs).
    #[arg(long)]
    name: Option<String>,
    /// Model text sent at pairing and advertised by mDNS (at most 64 bytes).
    #[arg(long)]
    model: Option<String>,
    /// The hub's address as HOST:PORT, instead of finding it by mDNS.
    #[arg(long, value_name = "HOST:PORT")]
    hub: Option<String>,
    /// The name the hub's certificate must carry (e.g. hearth.local) when
    /// --hub is an IP address.
    #[arg(long, value_name = "NAME")]
    hub_name: Option<String>,
    /// Command that announces the pairing code; {code} stands for it (e.g. 'espeak {code}').
    #[arg(long, value_name = "CMD")]
    say_cmd: Option<String>,
    /// Command that plays a message; {file} stands for its path (e.g. 'ogg123 -q {file}').
    #[arg(long, value_name = "CMD")]
    play_cmd: Option<String>,
    /// Command that records a message; {file} is the path to write (e.g. 'arecord -f S16_LE -r 16000 -d 10 {file}').
    #[arg(long, value_name = "CMD")]
    record_cmd: Option<String>,
    /// Neither advertise the toy nor look for the hub by mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Record when Enter is pressed, even when stdin is not a terminal.
    #[arg(long)]
    interactive: bool,
    /// When the hub has removed this toy, pair again instead of exiting.
    #[arg(long)]
    repair: bool,
    /// Battery level to report, in percent (default: read from /sys/class/power_supply).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    battery: Option<u8>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sends a WAV or Ogg Opus file to the household as the child's recording.
    Record {
        /// The audio file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // `hearth-toy man` prints the man page (used by packaging); it needs no --state.
    if std::env::args().nth(1).as_deref() == Some("man") {
        use clap::CommandFactory;
        let man = clap_mangen::Man::new(Cli::command());
        return match man.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the man page: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_TOY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = AgentOptions {
        state_dir: cli.state,
        name: cli.name,
        model: cli.model,
        hub: cli.hub,
        hub_name: cli.hub_name,
        say_cmd: cli.say_cmd,
        play_cmd: cli.play_cmd,
        record_cmd: cli.record_cmd,
        mdns: !cli.no_mdns,
        interactive: cli.interactive,
        repair: cli.repair,
        battery: cli.battery,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Some(Command::Record { file }) => agent::record_file(&opts, file).await.map(|_| ()),
            None => agent::run(opts).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            eprintln!("error: {e}");
            ExitCode::from(match e {
                ToyError::Removed | ToyError::NotPaired(_) => 3,
                ToyError::Pairing(_) => 4,
                _ => 1,
            })
        }
    }
}
