//! The addresses a running hub can actually be reached at, printed when it
//! starts: `localhost` when it listens on loopback or on every interface,
//! each LAN address of this machine when it listens on every interface,
//! and the mDNS host name (`hearth.local`) only while mDNS advertises it.
//!
//! [`reachable`] is a pure function of what the caller found (the bound
//! address, the interface addresses, whether mDNS is up and which names
//! the certificate covers), so tests can give it any network;
//! [`interface_addresses`] reads the real interfaces.

use std::net::IpAddr;

/// One address the hub answers at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The URL, without a path (`https://localhost:8443`).
    pub url: String,
    /// Whether the hub's certificate names this host, so a browser that
    /// trusts the hub's CA shows no warning.
    pub in_certificate: bool,
    /// How it is found: `this computer`, `home network`, `mDNS`.
    pub via: &'static str,
}

/// The addresses of this machine's network interfaces that are up, without
/// loopback and link-local ones (a link-local URL needs a zone, which
/// browsers do not accept). Empty when the interfaces cannot be read.
pub fn interface_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .filter(|i| !i.is_loopback() && !i.is_link_local())
            .map(|i| i.ip())
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the network interfaces");
            Vec::new()
        }
    }
}

fn host_in_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Where a hub bound to `listen` on `port` can be reached, given this
/// machine's `interfaces`, the mDNS host name when mDNS is advertising,
/// and the names its certificate covers. The first entry is the one to
/// suggest first.
pub fn reachable(
    listen: IpAddr,
    port: u16,
    interfaces: &[IpAddr],
    mdns_host: Option<&str>,
    cert_names: &[String],
) -> Vec<Reach> {
    let suffix = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let covered = |host: &str| cert_names.iter().any(|n| n.eq_ignore_ascii_case(host));
    let mut out = Vec::new();
    let mut add = |host: String, name_in_cert: &str, via: &'static str| {
        let url = format!("https://{host}{suffix}");
        if !out.iter().any(|r: &Reach| r.url == url) {
            out.push(Reach {
                url,
                in_certificate: covered(name_in_cert),
                via,
            });
        }
    };
    if listen.is_unspecified() || listen.is_loopback() {
        // `localhost` resolves to 127.0.0.1 (and ::1): reachable when the hub
        // listens on 127.0.0.1, on ::1 (browsers try both) or everywhere.
        add("localhost".into(), "localhost", "this computer");
    } else {
        add(host_in_url(listen), &listen.to_string(), "home network");
    }
    if listen.is_unspecified() {
        // 0.0.0.0 takes IPv4 only; [::] takes both (Linux's default dual stack).
        let v6 = listen.is_ipv6();
        for ip in interfaces {
            if ip.is_loopback() || (ip.is_ipv6() && !v6) {
                continue;
            }
            add(host_in_url(*ip), &ip.to_string(), "home network");
        }
    }
    if let Some(host) = mdns_host
        && !listen.is_loopback()
    {
        add(host.to_owned(), host, "mDNS");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["hearth.local", "localhost", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn urls(r: &[Reach]) -> Vec<&str> {
        r.iter().map(|r| r.url.as_str()).collect()
    }

    #[test]
    fn every_interface_when_listening_everywhere() {
        let ifs = [ip("192.168.1.20"), ip("10.0.0.7"), ip("fd00::5")];
        let r = reachable(ip("0.0.0.0"), 8443, &ifs, Some("hearth.local"), &names());
        assert_eq!(
            urls(&r),
            [
                "https://localhost:8443",
                "https://192.168.1.20:8443",
                "https://10.0.0.7:8443",
                "https://hearth.local:8443"
            ]
        );
        assert!(r[0].in_certificate && r[3].in_certificate);
        assert!(
            !r[1].in_certificate,
            "a LAN address is not in the certificate unless listed"
        );
        let r = reachable(ip("::"), 443, &ifs, None, &names());
        assert_eq!(
            urls(&r),
            [
                "https://localhost",
                "https://192.168.1.20",
                "https://10.0.0.7",
                "https://[fd00::5]"
            ]
        );
    }

    #[test]
    fn loopback_only_and_no_mdns_name_unless_advertised() {
        let ifs = [ip("192.168.1.20")];
        let r = reachable(ip("127.0.0.1"), 9000, &ifs, Some("hearth.local"), &names());
        assert_eq!(urls(&r), ["https://localhost:9000"]);
        let r = reachable(ip("0.0.0.0"), 8443, &ifs, None, &names());
        assert!(!urls(&r).iter().any(|u| u.contains("hearth.local")));
    }

    #[test]
    fn a_specific_address_is_the_only_one() {
        let mut n = names();
        n.push("192.168.1.20".into());
        let ifs = [ip("192.168.1.20"), ip("10.0.0.7")];
        let r = reachable(ip("192.168.1.20"), 8443, &ifs, Some("hearth.local"), &n);
        assert_eq!(
            urls(&r),
            ["https://192.168.1.20:8443", "https://hearth.local:8443"]
        );
        assert!(r[0].in_certificate);
    }
}
