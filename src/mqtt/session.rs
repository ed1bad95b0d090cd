//! One connection to the family's broker: the address check (home network
//! only), TCP, optional TLS (rustls, ring, the broker's certificate checked
//! against `ca_file` or the system's CAs), and MQTT 3.1.1 packets framed by
//! `rumqttc`'s codec (`rumqttc::mqttbytes::v4`).
//!
//! Why the connection is ours and not `rumqttc::EventLoop`: the event loop
//! resolves the host name again at every connect, after our check, so a
//! name that changes its answer could lead the hub outside the home; here
//! the checked address is the one dialled. (Its TLS features would also pull
//! an old `rustls-webpki` with open advisories into the build.)

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, LastWill, Packet, Publish, Subscribe};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::config::MqttConfig;

/// How long connecting (TCP, TLS and the broker's answer) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may take before the broker counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The keep-alive told to the broker; a ping goes out at half of it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Incoming packets larger than this end the session (the hub reads only
/// Home Assistant's short status messages).
const MAX_INCOMING: usize = 64 * 1024;
/// Outgoing packets are discovery configs and small states.
const MAX_OUTGOING: usize = 64 * 1024;

/// Why the hub could not talk to the broker; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// MQTT is not configured.
    #[error("MQTT is off: set [mqtt] enabled = true and host in the configuration file")]
    Off,
    /// The broker's name does not resolve.
    #[error("cannot resolve the broker {host:?}: {source}")]
    Resolve {
        /// The configured host.
        host: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The broker is not on the home network.
    #[error(
        "refused: the broker {host:?} is at {addr}, which is not on the home network (loopback, private 10/8, 172.16/12 or 192.168/16, link-local, or unique-local IPv6). Hearth sends toy status only to a broker inside the home, so nothing about the children leaves it; use the broker's local address"
    )]
    NotHomeNetwork {
        /// The configured host.
        host: String,
        /// The address it resolved to.
        addr: IpAddr,
    },
    /// TCP or TLS failed, or the broker went quiet.
    #[error("cannot reach the broker at {addr}: {why}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// What happened.
        why: String,
    },
    /// The TLS settings cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker refused the login.
    #[error("the broker refused the connection: {0}")]
    Refused(&'static str),
    /// The broker broke the protocol or closed the connection.
    #[error("the broker connection ended: {0}")]
    Protocol(String),
}

/// Resolves the configured host and checks every address it names: all
/// must be on the home network. Returns the addresses to dial, in order.
pub async fn resolve(cfg: &MqttConfig) -> Result<Vec<SocketAddr>, MqttError> {
    let host = cfg.host.trim();
    if !cfg.enabled || host.is_empty() {
        return Err(MqttError::Off);
    }
    let port = cfg.effective_port();
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| MqttError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    if let Some(outside) = addrs
        .iter()
        .find(|a| !crate::domain::on_home_network(a.ip()))
    {
        return Err(MqttError::NotHomeNetwork {
            host: host.to_owned(),
            addr: outside.ip(),
        });
    }
    if addrs.is_empty() {
        return Err(MqttError::Resolve {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        });
    }
    Ok(addrs)
}

/// The rustls client configuration (ring only) for the broker.
pub fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, MqttError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    MqttError::Tls(format!("cannot read mqtt.ca_file {}: {e}", path.display()))
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    MqttError::Tls(format!("mqtt.ca_file {} is not PEM: {e}", path.display()))
                })?;
            if certs.is_empty() {
                return Err(MqttError::Tls(format!(
                    "mqtt.ca_file {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    MqttError::Tls(format!("a certificate in {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// What the hub says when it connects.
pub struct Hello<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The password from the data directory, if any.
    pub password: Option<&'a str>,
    /// Topic and payload of the last will (retained), if any.
    pub will: Option<(&'a str, &'a str)>,
}

/// An open session with the broker.
pub struct Session {
    /// Where it is connected.
    pub addr: SocketAddr,
    rd: ReadHalf<Box<dyn Stream>>,
    wr: WriteHalf<Box<dyn Stream>>,
    buf: BytesMut,
    next_pkid: u16,
}

impl Session {
    /// Checks the address, connects, logs in and waits for the broker's
    /// answer, each attempt within [`CONNECT_TIMEOUT`]. Each checked
    /// address is tried in turn (a name such as `localhost` may give `::1`
    /// first while the broker listens on 127.0.0.1 only); the last failure
    /// is the answer.
    pub async fn open(cfg: &MqttConfig, hello: &Hello<'_>) -> Result<Session, MqttError> {
        let addrs = resolve(cfg).await?;
        let tls = if cfg.tls {
            Some(tls_config(cfg)?)
        } else {
            None
        };
        let mut last = MqttError::Off;
        for addr in addrs {
            let attempt = Self::open_at(cfg, addr, tls.clone(), hello);
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(s)) => return Ok(s),
                // The broker answered: another address would say the same.
                Ok(Err(e @ (MqttError::Refused(_) | MqttError::Tls(_)))) => return Err(e),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = MqttError::Connect {
                        addr,
                        why: format!("no answer within {} seconds", CONNECT_TIMEOUT.as_secs()),
                    }
                }
            }
        }
        Err(last)
    }

    async fn open_at(
        cfg: &MqttConfig,
        addr: SocketAddr,
        tls: Option<rustls::ClientConfig>,
        hello: &Hello<'_>,
    ) -> Result<Session, MqttError> {
        let conn = |e: std::io::Error| MqttError::Connect {
            addr,
            why: e.to_string(),
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(conn)?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(c) => {
                let name = ServerName::try_from(cfg.host.trim().to_owned()).map_err(|_| {
                    MqttError::Tls(format!("{:?} is not a valid server name", cfg.host))
                })?;
                let s = tokio_rustls::TlsConnector::from(Arc::new(c))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| MqttError::Connect {
                        addr,
                        why: format!("TLS handshake failed: {e}"),
                    })?;
                Box::new(s)
            }
        };
        let (rd, wr) = tokio::io::split(stream);
        let mut s = Session {
            addr,
            rd,
            wr,
            buf: BytesMut::with_capacity(4096),
            next_pkid: 0,
        };
        let mut connect = rumqttc::mqttbytes::v4::Connect::new(hello.client_id);
        connect.keep_alive = KEEP_ALIVE.as_secs() as u16;
        connect.clean_session = true;
        if !cfg.username.is_empty() {
            connect.set_login(cfg.username.clone(), hello.password.unwrap_or_default());
        }
        if let Some((topic, payload)) = hello.will {
            connect.last_will = Some(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
        }
        s.send(Packet::Connect(connect)).await?;
        match s.next().await? {
            Packet::ConnAck(ack) => match ack.code {
                ConnectReturnCode::Success => Ok(s),
                ConnectReturnCode::BadUserNamePassword => Err(MqttError::Refused(
                    "wrong user name or password: check mqtt.username and set the password with `hearth mqtt set-password`",
                )),
                // Mosquitto answers a wrong password with this code too.
                ConnectReturnCode::NotAuthorized => Err(MqttError::Refused(
                    "not authorised: check mqtt.username and set the password with `hearth mqtt set-password` (or the broker does not let this user connect)",
                )),
                ConnectReturnCode::RefusedProtocolVersion => {
                    Err(MqttError::Refused("the broker does not speak MQTT 3.1.1"))
                }
                ConnectReturnCode::BadClientId => {
                    Err(MqttError::Refused("the broker refused the client id"))
                }
                ConnectReturnCode::ServiceUnavailable => {
                    Err(MqttError::Refused("the broker is unavailable"))
                }
            },
            other => Err(MqttError::Protocol(format!(
                "expected CONNACK, got {other:?}"
            ))),
        }
    }

    /// Writes one packet (bounded by a deadline: a stuck broker ends the session).
    pub async fn send(&mut self, p: Packet) -> Result<(), MqttError> {
        let mut out = BytesMut::new();
        p.write(&mut out, MAX_OUTGOING)
            .map_err(|e| MqttError::Protocol(format!("cannot encode a packet: {e}")))?;
        let addr = self.addr;
        let write = async {
            self.wr.write_all(&out).await?;
            self.wr.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MqttError::Connect {
                addr,
                why: e.to_string(),
            }),
            Err(_) => Err(MqttError::Connect {
                addr,
                why: "the broker stopped reading".into(),
            }),
        }
    }

    /// Publishes at QoS 1 (the hub does not wait for the acknowledgement;
    /// a lost connection is answered by publishing everything again).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), MqttError> {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        p.retain = retain;
        p.pkid = self.pkid();
        self.send(Packet::Publish(p)).await
    }

    /// Subscribes to one topic filter.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        let mut s = Subscribe::new(filter, QoS::AtMostOnce);
        s.pkid = self.pkid();
        self.send(Packet::Subscribe(s)).await
    }

    /// Ends the session politely (the will is not sent).
    pub async fn disconnect(mut self) {
        let _ = self.send(Packet::Disconnect).await;
        let _ = self.wr.shutdown().await;
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// The next packet from the broker. Cancel-safe: bytes read before a
    /// cancellation stay in the buffer.
    pub async fn next(&mut self) -> Result<Packet, MqttError> {
        loop {
            match Packet::read(&mut self.buf, MAX_INCOMING) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(MqttError::Protocol(e.to_string())),
            }
            let n = self
                .rd
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| MqttError::Protocol(e.to_string()))?;
            if n == 0 {
                return Err(MqttError::Protocol(
                    "the broker closed the connection".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(host: &str) -> MqttConfig {
        MqttConfig {
            enabled: true,
            host: host.into(),
            ..MqttConfig::default()
        }
    }

    #[tokio::test]
    async fn only_home_network_brokers_are_dialled() {
        for home in [
            "127.0.0.1",
            "192.168.1.10",
            "10.0.0.2",
            "fd00::1",
            "fe80::1",
        ] {
            let a = resolve(&cfg(home)).await.expect(home);
            assert_eq!(a[0].ip().to_string(), home);
            assert_eq!(a[0].port(), 1883);
        }
        for outside in ["8.8.8.8", "100.64.0.1", "2001:db8::1"] {
            match resolve(&cfg(outside)).await {
                Err(MqttError::NotHomeNetwork { addr, .. }) => {
                    assert_eq!(addr.to_string(), outside)
                }
                other => panic!("{outside}: {other:?}"),
            }
        }
        let off = MqttConfig {
            enabled: false,
            ..cfg("127.0.0.1")
        };
        assert!(matches!(resolve(&off).await, Err(MqttError::Off)));
    }
}
