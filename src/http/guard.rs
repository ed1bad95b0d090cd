//! The LAN-only guard: by default the hub answers only clients on the
//! home network (loopback, RFC 1918, link-local, unique-local); anyone else
//! gets `403` and a log line. This is the CloudPets lesson: the hub must
//! not be reachable from the internet by accident.

use std::net::IpAddr;

/// True for addresses of the home network (the rule lives in
/// [`crate::domain::on_home_network`], shared with the MQTT broker check).
pub fn is_local(ip: IpAddr) -> bool {
    crate::domain::on_home_network(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.20",
            "169.254.9.9",
            "::1",
            "fe80::1",
            "fd12:3456::1",
            "fc00::1",
            "::ffff:192.168.1.2",
        ] {
            assert!(is_local(local.parse().expect("ip")), "{local} is local");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "172.15.0.1",
            "192.169.0.1",
            "100.64.0.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "fec0::1",
        ] {
            assert!(!is_local(public.parse().expect("ip")), "{public} is public");
        }
    }
}
