//! Configuration: a versioned TOML file with `deny_unknown_fields`, then
//! `HEARTH_*` environment overrides, then command-line flags, checked into a
//! [`Config`] that is passed down (there are no globals).
//!
//! Every key is documented here and, commented, in `packaging/hearth.toml`,
//! the sample the package ships; a test parses that sample.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration format this binary understands.
pub const CONFIG_VERSION: u32 = 1;

/// Why a configuration was refused. Each message names the file or
/// variable and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The OS error is the source, so `{:#}`
    /// prints it once.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid for this version (unknown key, wrong type…).
    #[error("the configuration file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The `[mdns]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MdnsConfig {
    /// Advertise `_hearth._tcp` and browse for toys. `--no-mdns` turns it off.
    pub enabled: bool,
    /// The hub's mDNS host name, covered by its certificate. When another
    /// device answers for it, discovery takes `-2`, `-3`, ... and the
    /// certificate is reissued for that name before it is announced.
    pub host_name: String,
    /// Only use these network interfaces (by name, e.g. `wlan0`); empty means
    /// the interfaces carrying `listen` when it is one specific address, and
    /// all interfaces when the hub listens on every address.
    pub interfaces: Vec<String>,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host_name: "hearth.local".into(),
            interfaces: Vec::new(),
        }
    }
}

/// The `[tls]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Extra DNS names or IP addresses for the server certificate.
    pub extra_names: Vec<String>,
}

/// The `[sessions]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused this long ends (minutes).
    pub idle_minutes: u64,
    /// A session ends this long after login whatever its use (hours).
    pub absolute_hours: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_minutes: 7 * 24 * 60,
            absolute_hours: 30 * 24,
        }
    }
}

/// The `[backups]` table: scheduled, encrypted backups to a directory
/// (e.g. a USB stick), the newest `keep` kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where scheduled backups go; none (the default) turns them off.
    pub directory: Option<PathBuf>,
    /// A file whose first line is the backup passphrase, readable only by
    /// the hub's user (mode 0600 or stricter); needed with `directory`.
    pub passphrase_file: Option<PathBuf>,
    /// Hours between two scheduled backups.
    pub every_hours: u32,
    /// How many scheduled backups to keep; older ones are deleted.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            directory: None,
            passphrase_file: None,
            every_hours: 24,
            keep: 7,
        }
    }
}

/// The `[mqtt]` table: publishing toy status and events to the family's
/// MQTT broker for Home Assistant (see `docs/home-assistant.md`). The
/// password is not here: this file is world-readable, so it lives in
/// `mqtt-password` (mode 0600) in the data directory, written by
/// `hearth mqtt set-password` or the admin's MQTT page.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish to the broker (off by default).
    pub enabled: bool,
    /// The broker's host name or IP address; it must resolve to an address
    /// of the home network (loopback, private, link-local, unique-local).
    pub host: String,
    /// The broker's port (1883, or 8883 with TLS, when left at 0).
    pub port: u16,
    /// Connect with TLS (rustls), checking the broker's certificate.
    pub tls: bool,
    /// A PEM file of the CA that signed the broker's certificate (with
    /// `tls`); without it the system's trusted CAs are used.
    pub ca_file: Option<PathBuf>,
    /// The user name to log in with (empty: none).
    pub username: String,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The root of the hub's own state and event topics.
    pub base_topic: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: String::new(),
            port: 0,
            tls: false,
            ca_file: None,
            username: String::new(),
            discovery_prefix: "homeassistant".into(),
            base_topic: "hearth".into(),
        }
    }
}

impl MqttConfig {
    /// The port to connect to: `port`, else the MQTT default for the transport.
    pub fn effective_port(&self) -> u16 {
        match (self.port, self.tls) {
            (0, false) => 1883,
            (0, true) => 8883,
            (p, _) => p,
        }
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    version: u32,
    data_dir: PathBuf,
    listen: String,
    redirect_http_listen: Option<String>,
    allow_public_clients: bool,
    log: String,
    mdns: MdnsConfig,
    tls: TlsConfig,
    sessions: SessionConfig,
    backups: BackupConfig,
    mqtt: MqttConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: PathBuf::from("./hearth-data"),
            listen: "0.0.0.0:8443".into(),
            redirect_http_listen: None,
            allow_public_clients: false,
            log: "info".into(),
            mdns: MdnsConfig::default(),
            tls: TlsConfig::default(),
            sessions: SessionConfig::default(),
            backups: BackupConfig::default(),
            mqtt: MqttConfig::default(),
        }
    }
}

/// The checked configuration the hub runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database, keys and setup code live.
    pub data_dir: PathBuf,
    /// The HTTPS address (parents' pages, parent API and toy API on one port).
    pub listen: SocketAddr,
    /// An optional plain-HTTP address that only redirects pages to HTTPS
    /// (the APIs get `403`; see `app::redirect_answer`).
    pub redirect_http_listen: Option<SocketAddr>,
    /// Answer clients outside the LAN (off by default: the CloudPets lesson).
    pub allow_public_clients: bool,
    /// A `tracing` filter, e.g. `info` or `hearth=debug`.
    pub log: String,
    /// mDNS settings.
    pub mdns: MdnsConfig,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Session lifetimes.
    pub sessions: SessionConfig,
    /// Scheduled backups.
    pub backups: BackupConfig,
    /// Home Assistant over MQTT.
    pub mqtt: MqttConfig,
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--no-mdns`.
    pub no_mdns: bool,
}

impl Config {
    /// Loads the file (if any), applies `env` (`HEARTH_*` variables) and the
    /// command-line overrides, and checks the result.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut fc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                parse_file(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => FileConfig::default(),
        };
        apply_env(&mut fc, env)?;
        if let Some(d) = &overrides.data_dir {
            fc.data_dir = d.clone();
        }
        if let Some(l) = &overrides.listen {
            fc.listen = l.clone();
        }
        if overrides.no_mdns {
            fc.mdns.enabled = false;
        }
        check(fc)
    }

    /// The defaults, as used for development.
    pub fn development_defaults() -> Self {
        // The defaults are valid by construction; `check` only fails on bad input.
        check(FileConfig::default()).unwrap_or_else(|_| unreachable_defaults())
    }
}

fn unreachable_defaults() -> Config {
    Config {
        data_dir: PathBuf::from("./hearth-data"),
        listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
        redirect_http_listen: None,
        allow_public_clients: false,
        log: "info".into(),
        mdns: MdnsConfig::default(),
        tls: TlsConfig::default(),
        sessions: SessionConfig::default(),
        backups: BackupConfig::default(),
        mqtt: MqttConfig::default(),
    }
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    let fc: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    if fc.version != CONFIG_VERSION {
        return Err(format!(
            "`version = {}` is not supported; this hearth understands version {CONFIG_VERSION}",
            fc.version
        ));
    }
    Ok(fc)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid(format!(
            "the environment variable {name}={v:?} must be true or false"
        ))),
    }
}

fn apply_env(fc: &mut FileConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in env {
        match name.as_str() {
            "HEARTH_DATA_DIR" => fc.data_dir = PathBuf::from(value),
            "HEARTH_LISTEN" => fc.listen = value.clone(),
            "HEARTH_REDIRECT_HTTP_LISTEN" => {
                fc.redirect_http_listen = (!value.is_empty()).then(|| value.clone())
            }
            "HEARTH_ALLOW_PUBLIC_CLIENTS" => fc.allow_public_clients = parse_bool(name, value)?,
            "HEARTH_LOG" => fc.log = value.clone(),
            "HEARTH_MDNS_ENABLED" => fc.mdns.enabled = parse_bool(name, value)?,
            "HEARTH_MDNS_HOST_NAME" => fc.mdns.host_name = value.clone(),
            "HEARTH_MDNS_INTERFACES" => {
                fc.mdns.interfaces = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "HEARTH_MQTT_ENABLED" => fc.mqtt.enabled = parse_bool(name, value)?,
            "HEARTH_MQTT_HOST" => fc.mqtt.host = value.clone(),
            "HEARTH_MQTT_PORT" => {
                fc.mqtt.port = value.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "the environment variable {name}={value:?} must be a port from 0 to 65535"
                    ))
                })?
            }
            "HEARTH_MQTT_TLS" => fc.mqtt.tls = parse_bool(name, value)?,
            "HEARTH_MQTT_CA_FILE" => fc.mqtt.ca_file = (!value.is_empty()).then(|| value.into()),
            "HEARTH_MQTT_USERNAME" => fc.mqtt.username = value.clone(),
            other
                if other.starts_with("HEARTH_")
                    && !other.starts_with(TEST_ENV_PREFIX)
                    && !KNOWN_NON_CONFIG_ENV.contains(&other) =>
            {
                return Err(ConfigError::Invalid(format!(
                    "unknown environment variable {other}; known ones are HEARTH_DATA_DIR, HEARTH_LISTEN, \
                     HEARTH_REDIRECT_HTTP_LISTEN, HEARTH_ALLOW_PUBLIC_CLIENTS, HEARTH_LOG, \
                     HEARTH_MDNS_ENABLED, HEARTH_MDNS_HOST_NAME, HEARTH_MDNS_INTERFACES, \
                     HEARTH_MQTT_ENABLED, HEARTH_MQTT_HOST, HEARTH_MQTT_PORT, HEARTH_MQTT_TLS, \
                     HEARTH_MQTT_CA_FILE, HEARTH_MQTT_USERNAME"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `HEARTH_*` variables that are not configuration keys (read elsewhere).
const KNOWN_NON_CONFIG_ENV: &[&str] = &["HEARTH_CONFIG"];

/// Variables of the test suite (`HEARTH_TEST_REQUIRE_ALL`, set by CI for a
/// whole `cargo test`, reaches every hub the tests start): not configuration,
/// and never an "unknown variable".
const TEST_ENV_PREFIX: &str = "HEARTH_TEST_";

/// Parses `ADDR:PORT`. `localhost:PORT` means 127.0.0.1:PORT; other host
/// names are refused with what to write instead (resolving them would make
/// the bound address depend on DNS at start-up).
fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let examples = "such as 0.0.0.0:8443 (every network), 127.0.0.1:8443 or localhost:8443 (this computer only), 192.168.1.20:8443 or [::]:8443";
    let invalid = |why: String| ConfigError::Invalid(format!("{what} {s:?} {why}"));
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "is only a port; write an address with it, {examples}"
        )));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(invalid(
            "has no port; an IPv6 address goes in brackets before the port, such as [::]:8443 or [::1]:8443"
                .into(),
        ));
    }
    let Some((host, port)) = s
        .rsplit_once(':')
        .filter(|_| s.parse::<std::net::IpAddr>().is_err())
    else {
        return Err(invalid(format!("has no port; write ADDR:PORT, {examples}")));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(invalid(format!(
            "has no valid port: {port:?} is not a number from 0 to 65535 (write ADDR:PORT, {examples})"
        )));
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(invalid(format!(
            "is an IPv6 address without brackets; write [{host}]:{port}"
        )));
    }
    Err(invalid(format!(
        "names the host {host:?}; the hub listens on an IP address of this computer, not a host name (except localhost): write one {examples}"
    )))
}

fn check(fc: FileConfig) -> Result<Config, ConfigError> {
    let listen = parse_addr("listen", &fc.listen)?;
    let redirect_http_listen = fc
        .redirect_http_listen
        .as_deref()
        .map(|s| parse_addr("redirect_http_listen", s))
        .transpose()?;
    let host = fc.mdns.host_name.trim_end_matches('.');
    if host.is_empty()
        || host.len() > 253
        || !host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    {
        return Err(ConfigError::Invalid(format!(
            "mdns.host_name {:?} is not a valid host name such as hearth.local",
            fc.mdns.host_name
        )));
    }
    if fc.sessions.idle_minutes == 0 || fc.sessions.absolute_hours == 0 {
        return Err(ConfigError::Invalid(
            "sessions.idle_minutes and sessions.absolute_hours must be at least 1".into(),
        ));
    }
    let b = &fc.backups;
    if b.directory.is_some() && b.passphrase_file.is_none() {
        return Err(ConfigError::Invalid(
            "backups.directory is set but backups.passphrase_file is not: scheduled backups need a file holding their passphrase".into(),
        ));
    }
    if !(1..=24 * 90).contains(&b.every_hours) || !(1..=1000).contains(&b.keep) {
        return Err(ConfigError::Invalid(
            "backups.every_hours must be 1 to 2160 and backups.keep 1 to 1000".into(),
        ));
    }
    check_mqtt(&fc.mqtt)?;
    tracing_subscriber::EnvFilter::try_new(&fc.log).map_err(|e| {
        ConfigError::Invalid(format!("log {:?} is not a valid log filter: {e}", fc.log))
    })?;
    Ok(Config {
        data_dir: fc.data_dir,
        listen,
        redirect_http_listen,
        allow_public_clients: fc.allow_public_clients,
        log: fc.log,
        mdns: MdnsConfig {
            host_name: host.to_ascii_lowercase(),
            ..fc.mdns
        },
        tls: fc.tls,
        sessions: fc.sessions,
        backups: fc.backups,
        mqtt: fc.mqtt,
    })
}

/// A topic segment for `discovery_prefix` and `base_topic`: letters,
/// digits, `_`, `-` and inner `/`, no wildcards, no leading or trailing `/`.
fn valid_topic_root(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
}

fn check_mqtt(m: &MqttConfig) -> Result<(), ConfigError> {
    for (key, v) in [
        ("mqtt.discovery_prefix", &m.discovery_prefix),
        ("mqtt.base_topic", &m.base_topic),
    ] {
        if !valid_topic_root(v) {
            return Err(ConfigError::Invalid(format!(
                "{key} {v:?} is not a valid topic root: use letters, digits, _ and - (and / between parts), such as \"homeassistant\" or \"hearth\""
            )));
        }
    }
    if m.username.len() > 256 || m.username.chars().any(char::is_control) {
        return Err(ConfigError::Invalid(
            "mqtt.username is at most 256 bytes of printable text".into(),
        ));
    }
    let host = m.host.trim();
    if m.enabled && host.is_empty() {
        return Err(ConfigError::Invalid(
            "mqtt.enabled is true but mqtt.host is empty: write the broker's address on the home network, such as \"192.168.1.10\" or \"homeassistant.local\"".into(),
        ));
    }
    if host.len() > 253
        || host.contains(['/', ' ', ':']) && host.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ConfigError::Invalid(format!(
            "mqtt.host {:?} is not a host name or IP address (write the port in mqtt.port)",
            m.host
        )));
    }
    if m.ca_file.is_some() && !m.tls {
        return Err(ConfigError::Invalid(
            "mqtt.ca_file is set but mqtt.tls is false: turn TLS on, or remove ca_file".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hearth.toml")
    }

    #[test]
    fn shipped_sample_parses() {
        let c = Config::load(Some(&sample_path()), &[], &Overrides::default())
            .expect("the shipped sample must parse");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/hearth"));
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.redirect_http_listen.map(|a| a.port()), Some(80));
        assert!(!c.allow_public_clients);
        assert_eq!(
            c.backups.directory, None,
            "scheduled backups are off until set"
        );
        assert_eq!((c.backups.every_hours, c.backups.keep), (24, 7));
    }

    #[test]
    fn scheduled_backups_need_a_passphrase_file_and_sane_numbers() {
        let load = |text: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let f = dir.path().join("h.toml");
            std::fs::write(&f, format!("version = 1\n[backups]\n{text}")).expect("write");
            Config::load(Some(&f), &[], &Overrides::default())
        };
        let err = load("directory = \"/media/usb\"").expect_err("refused");
        assert!(err.to_string().contains("passphrase_file"), "{err}");
        let c = load("directory = \"/media/usb\"\npassphrase_file = \"/etc/hearth/backup-passphrase\"\nkeep = 3")
            .expect("valid");
        assert_eq!(c.backups.keep, 3);
        assert!(load("keep = 0").is_err());
        assert!(load("every_hours = 0").is_err());
        assert!(load("evry_hours = 2").is_err(), "unknown keys are refused");
    }

    fn dev_sample_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hearth.dev.toml")
    }

    #[test]
    fn development_sample_parses_to_the_built_in_defaults() {
        let c = Config::load(Some(&dev_sample_path()), &[], &Overrides::default())
            .expect("the development sample must parse");
        let d = Config::development_defaults();
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.redirect_http_listen, d.redirect_http_listen);
        assert_eq!(c.allow_public_clients, d.allow_public_clients);
        assert_eq!(c.log, d.log);
        assert_eq!(c.mdns, d.mdns);
        assert_eq!(c.tls, d.tls);
        assert_eq!(c.sessions, d.sessions);
        assert_eq!(c.backups, d.backups);
        assert_eq!(c.mqtt, d.mqtt);
        assert_eq!(c.data_dir, PathBuf::from("./hearth-data"));
        assert_eq!(c.listen.port(), 8443);
    }

    #[test]
    fn listen_takes_localhost_and_explains_the_rest() {
        let listen = |v: &str| {
            let env = vec![("HEARTH_LISTEN".to_owned(), v.to_owned())];
            Config::load(None, &env, &Overrides::default()).map(|c| c.listen)
        };
        assert_eq!(
            listen("localhost:8443").expect("localhost"),
            "127.0.0.1:8443".parse().expect("addr")
        );
        assert_eq!(listen("[::1]:9000").expect("v6").to_string(), "[::1]:9000");
        for (bad, says) in [
            ("hearth.local:8443", "names the host \"hearth.local\""),
            ("0.0.0.0", "has no port"),
            ("localhost:http", "is not a number from 0 to 65535"),
            ("::1:8443", "in brackets"),
            ("fe80::1%eth0:8443", "[fe80::1%eth0]:8443"),
            ("8443", "is only a port"),
            ("localhost", "has no port"),
            ("::1", "has no port"),
        ] {
            let e = listen(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn samples_document_every_key() {
        for path in [sample_path(), dev_sample_path()] {
            sample_mentions_every_key(&path);
        }
    }

    fn sample_mentions_every_key(path: &Path) {
        let text = std::fs::read_to_string(path).expect("sample exists");
        for key in [
            "version",
            "data_dir",
            "listen",
            "redirect_http_listen",
            "allow_public_clients",
            "log",
            "[mdns]",
            "enabled",
            "host_name",
            "interfaces",
            "[tls]",
            "extra_names",
            "[sessions]",
            "idle_minutes",
            "absolute_hours",
            "[mqtt]",
            "host",
            "port",
            "tls",
            "ca_file",
            "username",
            "discovery_prefix",
            "base_topic",
            "mqtt-password",
        ] {
            assert!(
                text.contains(key),
                "{} does not mention {key}",
                path.display()
            );
        }
    }

    #[test]
    fn mqtt_is_off_by_default_and_checked() {
        let c = Config::load(Some(&sample_path()), &[], &Overrides::default()).expect("sample");
        assert!(!c.mqtt.enabled);
        assert_eq!(c.mqtt.discovery_prefix, "homeassistant");
        assert_eq!(c.mqtt.base_topic, "hearth");
        assert_eq!(c.mqtt.effective_port(), 1883);
        let load = |pairs: &[(&str, &str)]| {
            let env: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Config::load(None, &env, &Overrides::default())
        };
        let c = load(&[
            ("HEARTH_MQTT_ENABLED", "true"),
            ("HEARTH_MQTT_HOST", "192.168.1.10"),
            ("HEARTH_MQTT_TLS", "on"),
        ])
        .expect("valid");
        assert_eq!(c.mqtt.effective_port(), 8883);
        let e = load(&[("HEARTH_MQTT_ENABLED", "true")]).expect_err("no host");
        assert!(e.to_string().contains("mqtt.host is empty"), "{e}");
        let e = load(&[("HEARTH_MQTT_HOST", "broker:1883")]).expect_err("port in host");
        assert!(e.to_string().contains("mqtt.port"), "{e}");
        let e = load(&[("HEARTH_MQTT_CA_FILE", "/etc/ca.pem")]).expect_err("ca without tls");
        assert!(e.to_string().contains("mqtt.tls"), "{e}");
        let e = parse_file("version = 1\n[mqtt]\nbase_topic = \"a/#\"\n")
            .map(check)
            .expect("parses")
            .expect_err("wildcard");
        assert!(e.to_string().contains("mqtt.base_topic"), "{e}");
        let e = parse_file("version = 1\n[mqtt]\npassword = \"x\"\n").expect_err("no password key");
        assert!(e.contains("password"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse_file("version = 1\nlisten_port = 8443\n").expect_err("unknown key");
        assert!(err.contains("listen_port"), "{err}");
        let err =
            parse_file("version = 1\n[mdns]\nhostname = \"x.local\"\n").expect_err("unknown key");
        assert!(err.contains("hostname"), "{err}");
    }

    #[test]
    fn newer_version_is_refused() {
        let err = parse_file("version = 2\n").expect_err("newer version");
        assert!(err.contains("version"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let env = vec![
            ("HEARTH_LISTEN".to_owned(), "127.0.0.1:9000".to_owned()),
            ("HEARTH_MDNS_ENABLED".to_owned(), "false".to_owned()),
            ("HEARTH_DATA_DIR".to_owned(), "/tmp/x".to_owned()),
        ];
        let c = Config::load(None, &env, &Overrides::default()).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:9000".parse().expect("addr"));
        assert!(!c.mdns.enabled);
        let o = Overrides {
            listen: Some("127.0.0.1:9001".into()),
            ..Overrides::default()
        };
        let c = Config::load(None, &env, &o).expect("valid");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn bad_values_are_explained() {
        let bad = vec![("HEARTH_LISTEN".to_owned(), "nonsense".to_owned())];
        let e = Config::load(None, &bad, &Overrides::default()).expect_err("bad listen");
        assert!(e.to_string().contains("nonsense"));
        let bad = vec![("HEARTH_TYPO".to_owned(), "1".to_owned())];
        let e = Config::load(None, &bad, &Overrides::default()).expect_err("unknown variable");
        assert!(e.to_string().contains("HEARTH_TYPO"));
        let test_suite = vec![("HEARTH_TEST_REQUIRE_ALL".to_owned(), "1".to_owned())];
        Config::load(None, &test_suite, &Overrides::default())
            .expect("the test suite's variables are not configuration");
    }
}
