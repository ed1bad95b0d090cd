//! mDNS / DNS-SD discovery (`docs/toy-protocol.md` section 1), built on `mdns-sd`.
//!
//! The hub side ([`Discovery`]) advertises `_hearth._tcp` with the hub's host
//! name and its A/AAAA records, browses `_hearth-toy._tcp` and keeps a live
//! list of the valid toy records it sees, announced as [`DiscoveryEvent`]s.
//! The toy side advertises `_hearth-toy._tcp` ([`ToyAdvertiser`]) and looks
//! for a hub ([`find_hub`]).
//!
//! Each `mdns-sd` daemon runs its own thread; the hub consumes the daemon's
//! event channel on a dedicated thread that only updates an in-memory list,
//! so nothing here ever waits on the network while holding a lock.
//!
//! **Architecture Invariant:** a record from the network grants nothing and
//! can break nothing. Every TXT record goes through [`parse_toy_txt`] or
//! [`parse_hub_txt`]; an invalid one is logged at debug level and ignored,
//! never listed, never an error, never a panic.

mod hub;
mod toy;
mod txt;

use std::net::IpAddr;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use crate::domain::{Hex32, Invalid, ToyId};

pub use hub::{CertifyHost, Discovery};
pub use toy::{ToyAdvertiser, find_hub};
pub use txt::{parse_hub_txt, parse_toy_txt};

/// The hub's DNS-SD service type.
pub const HUB_SERVICE_TYPE: &str = "_hearth._tcp.local.";
/// A toy's DNS-SD service type.
pub const TOY_SERVICE_TYPE: &str = "_hearth-toy._tcp.local.";
/// The hub's `api` TXT value for protocol version 1.
pub const API_PATH: &str = "/toy/v1";
/// Longest instance name in bytes (one DNS label).
pub const MAX_INSTANCE_BYTES: usize = 63;
/// The port a toy advertises when it listens on none (the discard port).
pub const NO_PORT: u16 = 9;

/// Where discovery runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryOptions {
    /// Network interface names (e.g. `wlan0`) to advertise and browse on;
    /// empty means every interface, loopback included.
    pub interfaces: Vec<String>,
}

/// What the hub advertises as `_hearth._tcp.local.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubAdvert {
    /// The household's name; cut to 63 bytes at a character boundary.
    pub instance: String,
    /// The hub's mDNS host name, e.g. `hearth.local` (a trailing dot is
    /// accepted and ignored).
    pub host: String,
    /// The hub's HTTPS port.
    pub port: u16,
    /// SHA-256 of the hub CA certificate (DER).
    pub ca_sha256: Hex32,
}

/// A toy's TXT record once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToyRecord {
    pub toy_id: ToyId,
    /// Free text, at most 64 bytes; empty when the toy sent none.
    pub model: String,
    /// SHA-256 of the toy's public key (SubjectPublicKeyInfo, DER).
    pub fp: Hex32,
    pub paired: bool,
}

/// A hub found on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRecord {
    /// The household's name (the DNS-SD instance name, unescaped).
    pub instance: String,
    /// The SRV target without its trailing dot, e.g. `hearth.local`; the
    /// hub's certificate must cover it (`docs/toy-protocol.md` section 2).
    pub host: String,
    /// At least one address: IPv4 first, then IPv6. An IPv6 link-local
    /// address here has lost its scope (interface), see the module gaps.
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    /// The TXT `api` path, e.g. `/toy/v1`.
    pub api: String,
    /// The TXT `ca`: SHA-256 of the hub CA certificate (DER).
    pub ca_sha256: Hex32,
}

/// A valid toy record the hub currently sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenToy {
    pub toy_id: ToyId,
    /// The toy's DNS-SD instance name, e.g. `Bear 3F2A`.
    pub name: String,
    pub model: String,
    pub fp: Hex32,
    pub paired: bool,
}

/// A change in the hub's list of toys seen, keyed by toy id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A toy id is now visible.
    Appeared(SeenToy),
    /// A visible toy's record changed (name, model, fingerprint, paired).
    Updated(SeenToy),
    /// No valid record for this toy id is visible any more.
    Gone(ToyId),
}

/// What a toy advertises as `_hearth-toy._tcp.local.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToyAdvert {
    /// The toy's display name; cut to 63 bytes at a character boundary.
    pub instance: String,
    pub toy_id: ToyId,
    /// At most 64 bytes.
    pub model: String,
    pub fp: Hex32,
    pub paired: bool,
    /// The port the toy listens on, or [`NO_PORT`].
    pub port: u16,
}

/// Why discovery could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The multicast DNS engine could not start or refused a command.
    #[error(
        "multicast DNS (mDNS) is not working: {0}; check that the network is up and that \
         UDP port 5353 and multicast are allowed"
    )]
    Mdns(String),
    /// A configured interface does not exist on this machine.
    #[error(
        "network interface {0:?} does not exist; check the discovery interfaces setting \
         (`ip link` lists the interfaces)"
    )]
    NoSuchInterface(String),
    /// What we were asked to advertise breaks `docs/toy-protocol.md` section 1.
    #[error("cannot advertise this on the network: {0}")]
    InvalidAdvert(#[from] Invalid),
    /// `find_hub` saw no valid hub record in time.
    #[error(
        "no Hearth hub answered on the local network within {0} s; check that the hub is \
         running and that this device is on the same network (Wi-Fi) as the hub"
    )]
    HubNotFound(u64),
    /// The handle has been shut down.
    #[error("discovery has been shut down")]
    ShutDown,
    /// The server certificate could not be made to cover the host name, so
    /// the name is not announced.
    #[error("cannot make the server certificate cover the host name: {0}")]
    Certificate(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        match e {
            mdns_sd::Error::DaemonShutdown => Self::ShutDown,
            other => Self::Mdns(other.to_string()),
        }
    }
}

/// The interfaces discovery uses: the configured ones when any are named;
/// else, when the hub listens on one specific address, the interfaces that
/// carry it (`addrs`: each interface's name and address), so the hub does not
/// multicast its household name and addresses on networks it does not
/// serve; else (listening on every address or on loopback, or the address is
/// on no interface) none named, that is every interface.
pub fn interfaces_for(
    listen: std::net::IpAddr,
    configured: &[String],
    addrs: &[(String, std::net::IpAddr)],
) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    if listen.is_unspecified() || listen.is_loopback() {
        return Vec::new();
    }
    let mut names: Vec<String> = addrs
        .iter()
        .filter(|(_, ip)| *ip == listen)
        .map(|(name, _)| name.clone())
        .collect();
    names.dedup();
    names
}

/// Starts an `mdns-sd` daemon limited to `opts.interfaces` when any are named.
fn new_daemon(opts: &DiscoveryOptions) -> Result<ServiceDaemon, DiscoveryError> {
    for name in &opts.interfaces {
        check_interface(name)?;
    }
    let daemon = ServiceDaemon::new()?;
    if !opts.interfaces.is_empty() {
        // Selections apply in order, the last match winning: everything off,
        // then the named interfaces (all their IPv4 and IPv6 addresses) on.
        let named: Vec<IfKind> = opts.interfaces.iter().map(IfKind::from).collect();
        let configured = daemon
            .disable_interface(IfKind::All)
            .and_then(|()| daemon.enable_interface(named));
        if let Err(e) = configured {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
    }
    Ok(daemon)
}

/// Refuses an interface name that cannot exist, or (on Linux) does not.
fn check_interface(name: &str) -> Result<(), DiscoveryError> {
    let plausible = !name.is_empty()
        && name.len() <= 15
        && !name.contains(['/', '\0'])
        && name != "."
        && name != "..";
    if !plausible {
        return Err(DiscoveryError::NoSuchInterface(name.to_owned()));
    }
    #[cfg(target_os = "linux")]
    if !std::path::Path::new("/sys/class/net").join(name).exists() {
        return Err(DiscoveryError::NoSuchInterface(name.to_owned()));
    }
    Ok(())
}

/// Trims `name` and cuts it to 63 bytes at a character boundary; refuses an
/// empty name or one with control characters.
fn instance_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Invalid("an instance name must not be empty".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid(
            "an instance name must not contain control characters".into(),
        ));
    }
    let mut end = name.len().min(MAX_INSTANCE_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Ok(name[..end].trim_end().to_owned())
}

/// Checks an mDNS host name such as `hearth.local` and returns it fully
/// qualified (`hearth.local.`).
fn host_fqdn(host: &str) -> Result<String, Invalid> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let bad = || {
        Invalid(format!(
            "the host name {host:?} must look like `hearth.local`: labels of letters, digits \
             and `-`, ending in `.local`"
        ))
    };
    if host.len() > 253 || !host.to_ascii_lowercase().ends_with(".local") {
        return Err(bad());
    }
    let labels_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return Err(bad());
    }
    Ok(format!("{host}."))
}

/// The instance name inside a DNS-SD full name such as
/// `Bear\.3F2A._hearth-toy._tcp.local.`, with `\.` and `\\` unescaped.
fn instance_from_fullname(fullname: &str, service_type: &str) -> Option<String> {
    let cut = fullname.len().checked_sub(service_type.len() + 1)?;
    if !fullname.is_char_boundary(cut)
        || fullname.as_bytes().get(cut) != Some(&b'.')
        || !fullname[cut + 1..].eq_ignore_ascii_case(service_type)
    {
        return None;
    }
    let mut out = String::with_capacity(cut);
    let mut chars = fullname[..cut].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Builds the `ServiceInfo` for one of our adverts: the host's A/AAAA
/// records are filled in by `mdns-sd` from the selected interfaces.
fn service_info(
    service_type: &str,
    instance: &str,
    host_fqdn: &str,
    port: u16,
    txt: &[(&'static str, String)],
    opts: &DiscoveryOptions,
) -> Result<ServiceInfo, DiscoveryError> {
    let mut info = ServiceInfo::new(service_type, instance, host_fqdn, (), port, txt)
        .map_err(|e| DiscoveryError::InvalidAdvert(Invalid(e.to_string())))?
        .enable_addr_auto();
    if !opts.interfaces.is_empty() {
        info.set_interfaces(opts.interfaces.iter().map(IfKind::from).collect());
    }
    Ok(info)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_cut_at_a_char_boundary() {
        assert_eq!(instance_name("  Hearth ").unwrap(), "Hearth");
        let long = "é".repeat(40); // 80 bytes
        let cut = instance_name(&long).unwrap();
        assert_eq!(cut.len(), 62);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(instance_name(&"a".repeat(70)).unwrap().len(), 63);
        instance_name("   ").unwrap_err();
        instance_name("a\nb").unwrap_err();
    }

    #[test]
    fn host_names() {
        assert_eq!(host_fqdn("hearth.local").unwrap(), "hearth.local.");
        assert_eq!(host_fqdn("Hearth-2.LOCAL.").unwrap(), "Hearth-2.LOCAL.");
        for bad in [
            "",
            "hearth",
            "hearth.com",
            ".local",
            "a..local",
            "-a.local",
            "a b.local",
        ] {
            host_fqdn(bad).unwrap_err();
        }
    }

    #[test]
    fn instance_from_fullnames() {
        assert_eq!(
            instance_from_fullname("Bear\\.3F2A._hearth-toy._tcp.local.", TOY_SERVICE_TYPE)
                .as_deref(),
            Some("Bear.3F2A")
        );
        assert_eq!(
            instance_from_fullname("Our Home._HEARTH._tcp.local.", HUB_SERVICE_TYPE).as_deref(),
            Some("Our Home")
        );
        assert_eq!(
            instance_from_fullname("x._other._tcp.local.", HUB_SERVICE_TYPE),
            None
        );
        assert_eq!(instance_from_fullname("", HUB_SERVICE_TYPE), None);
        assert_eq!(
            instance_from_fullname("é_hearth._tcp.local.", HUB_SERVICE_TYPE),
            None
        );
    }

    #[test]
    fn discovery_keeps_to_the_interface_of_a_specific_listen_address() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        let addrs = vec![
            ("eth0".to_owned(), ip("192.168.1.10")),
            ("eth0".to_owned(), ip("fd00::10")),
            ("wlan1".to_owned(), ip("10.9.0.1")),
            ("lo".to_owned(), ip("127.0.0.1")),
        ];
        assert_eq!(interfaces_for(ip("192.168.1.10"), &[], &addrs), ["eth0"]);
        assert_eq!(interfaces_for(ip("fd00::10"), &[], &addrs), ["eth0"]);
        assert_eq!(interfaces_for(ip("10.9.0.1"), &[], &addrs), ["wlan1"]);
        let all: Vec<String> = Vec::new();
        assert_eq!(interfaces_for(ip("0.0.0.0"), &[], &addrs), all);
        assert_eq!(interfaces_for(ip("::"), &[], &addrs), all);
        assert_eq!(interfaces_for(ip("127.0.0.1"), &[], &addrs), all);
        assert_eq!(
            interfaces_for(ip("192.168.7.7"), &[], &addrs),
            all,
            "not ours: every interface"
        );
        let chosen = vec!["wlan1".to_owned()];
        assert_eq!(
            interfaces_for(ip("192.168.1.10"), &chosen, &addrs),
            chosen,
            "the setting wins"
        );
    }

    #[test]
    fn interfaces_are_checked() {
        for bad in ["", "../etc", "a/b", "averyveryverylongname", "no-such-if0"] {
            assert!(matches!(
                check_interface(bad),
                Err(DiscoveryError::NoSuchInterface(_))
            ));
        }
    }
}
