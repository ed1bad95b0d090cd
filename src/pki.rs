//! Certificates: the hub CA, the server leaf and the toys' client
//! certificates (rcgen, ECDSA P-256), the rustls server configuration
//! (ring provider only, TLS 1.2 and 1.3, client certificates optional), and
//! CSR checks for pairing.
//!
//! Keys are written 0600 in the data directory. The CA is made once; a new
//! leaf is issued from it whenever the set of names it must cover changes or
//! it nears its end.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::datadir::{DataDir, DataFile, write_private_file};
use crate::domain::{Hex32, Invalid, ToyId};

/// How long a server leaf is valid. Apple platforms refuse TLS server
/// certificates valid for more than 825 days, even from a private CA.
const LEAF_DAYS: i64 = 800;
/// A leaf this close to its end is replaced at start.
const LEAF_RENEW_DAYS: i64 = 30;
/// The hub CA lives as long as the hub.
const CA_YEARS: i64 = 25;
/// Toy certificates: revocation is per certificate in the database, so a
/// long life costs nothing and spares toys a renewal protocol.
const TOY_CERT_YEARS: i64 = 20;

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A key or certificate file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A stored file is not what it should be.
    #[error("{0}")]
    Corrupt(String),
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The hub's certificates and keys, loaded or made at start.
pub struct HubPki {
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
    /// SHA-256 of the CA certificate (DER): TXT `ca` and the pairing code input.
    pub ca_sha256: Hex32,
}

impl HubPki {
    /// Loads the CA and leaf from `dir`, making what is missing. `names` are
    /// the DNS names and IP addresses the leaf must cover.
    pub fn load_or_create(
        dir: &Path,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let layout = DataDir::new(dir);
        let ca_key_path = layout.path(DataFile::CaKey);
        let ca_crt_path = layout.path(DataFile::CaCert);
        let (ca_key, ca_pem) = if ca_key_path.exists() && ca_crt_path.exists() {
            let key_pem = std::fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
            let crt_pem = std::fs::read_to_string(&ca_crt_path).map_err(io_err(&ca_crt_path))?;
            (KeyPair::from_pem(&key_pem)?, crt_pem)
        } else {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            let tag = hex::encode(rand::random::<[u8; 4]>());
            dn.push(DnType::CommonName, format!("Hearth hub CA {tag}"));
            dn.push(DnType::OrganizationName, "Hearth");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(365 * CA_YEARS);
            let cert = params.self_signed(&key)?;
            write_private_file(&ca_key_path, key.serialize_pem().as_bytes())
                .map_err(io_err(&ca_key_path))?;
            write_private_file(&ca_crt_path, cert.pem().as_bytes())
                .map_err(io_err(&ca_crt_path))?;
            tracing::info!("created the hub certificate authority");
            (key, cert.pem())
        };
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| PkiError::Corrupt(format!("{}: {e}", ca_crt_path.display())))?;
        let ca_sha256 = Hex32::sha256(ca_der.as_ref());

        let srv_key_path = layout.path(DataFile::ServerKey);
        let srv_crt_path = layout.path(DataFile::ServerCert);
        let wanted: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let reuse = match (
            std::fs::read_to_string(&srv_key_path),
            std::fs::read(&srv_crt_path),
        ) {
            (Ok(k), Ok(c)) => match CertificateDer::from_pem_slice(&c) {
                Ok(der) if leaf_is_current(der.as_ref(), &wanted, ca_der.as_ref(), now) => {
                    Some((k, der))
                }
                _ => None,
            },
            _ => None,
        };
        let (server_key_pem, leaf_der) = match reuse {
            Some(x) => x,
            None => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(
                    DnType::CommonName,
                    names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "hearth.local".into()),
                );
                params.distinguished_name = dn;
                params.subject_alt_names = wanted
                    .iter()
                    .map(|n| match n.parse::<IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
                    })
                    .collect::<Result<Vec<_>, rcgen::Error>>()?;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.not_before = now - Duration::days(1);
                params.not_after = now + Duration::days(LEAF_DAYS);
                let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key)?;
                let cert = params.signed_by(&key, &issuer)?;
                let key_pem = key.serialize_pem();
                write_private_file(&srv_key_path, key_pem.as_bytes())
                    .map_err(io_err(&srv_key_path))?;
                write_private_file(&srv_crt_path, cert.pem().as_bytes())
                    .map_err(io_err(&srv_crt_path))?;
                tracing::info!(names = ?wanted, "issued a new server certificate");
                (key_pem, cert.der().clone())
            }
        };
        let server_key_der = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes())
            .map_err(|e| PkiError::Corrupt(format!("{}: {e}", srv_key_path.display())))?
            .secret_der()
            .to_vec();
        Ok(Self {
            ca_key,
            server_chain: vec![leaf_der, ca_der.clone()],
            ca_der,
            ca_pem,
            server_key_der,
            ca_sha256,
        })
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        self.ca_der.as_ref()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server's chain `[leaf, CA]`.
    pub fn server_chain(&self) -> &[CertificateDer<'static>] {
        &self.server_chain
    }

    /// The rustls configuration: ring provider, TLS 1.2 and 1.3, client
    /// certificates optional but, when presented, verified against the hub CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Corrupt(format!("client verifier: {e}")))?;
        let key = PrivateKeyDer::try_from(self.server_key_der.clone())
            .map_err(|e| PkiError::Corrupt(format!("server key: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain.clone(), key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// Issues a toy's client certificate for a checked CSR: CN = toy id,
    /// extended key usage clientAuth. Returns (DER, PEM).
    pub fn issue_toy_cert(
        &self,
        csr: &CheckedCsr,
        toy_id: &ToyId,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, String), PkiError> {
        let mut req = CertificateSigningRequestParams::from_der(&csr.der.clone().into())?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, toy_id.as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365 * TOY_CERT_YEARS);
        params.serial_number = Some(rand::random::<[u8; 16]>().to_vec().into());
        req.params = params;
        let issuer = Issuer::from_ca_cert_der(&self.ca_der, &self.ca_key)?;
        let cert = req.signed_by(&issuer)?;
        Ok((cert.der().to_vec(), cert.pem()))
    }
}

fn leaf_is_current(
    der: &[u8],
    wanted: &BTreeSet<String>,
    ca_der: &[u8],
    now: OffsetDateTime,
) -> bool {
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return false;
    };
    let Ok((_, ca)) = x509_parser::certificate::X509Certificate::from_der(ca_der) else {
        return false;
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return false;
    }
    let end = cert.validity().not_after.timestamp();
    if end - now.unix_timestamp() < LEAF_RENEW_DAYS * 86_400 {
        return false;
    }
    let have: BTreeSet<String> = cert_names(&cert).into_iter().collect();
    &have == wanted
}

/// The DNS names and IP addresses in a certificate's subjectAltName.
pub fn cert_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => out.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => out.push(
                        IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                    ),
                    16 => out.push(
                        IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

/// The names the server leaf must cover (`docs/toy-protocol.md` section 2).
pub fn server_names(host_name: &str, listen: IpAddr, extra: &[String]) -> Vec<String> {
    let mut v = vec![host_name.to_owned(), "localhost".into(), "127.0.0.1".into()];
    if !listen.is_unspecified() && !listen.is_loopback() {
        v.push(listen.to_string());
    }
    v.extend(extra.iter().cloned());
    let mut seen = BTreeSet::new();
    v.retain(|n| seen.insert(n.to_ascii_lowercase()));
    v
}

/// A CSR whose signature checked out and whose key is one we accept.
#[derive(Clone)]
pub struct CheckedCsr {
    /// The request, DER.
    pub der: Vec<u8>,
    /// The SubjectPublicKeyInfo exactly as its DER bytes stand in the CSR.
    pub spki_der: Vec<u8>,
}

impl CheckedCsr {
    /// SHA-256 of the public key (TXT `fp`).
    pub fn key_fp(&self) -> Hex32 {
        Hex32::sha256(&self.spki_der)
    }
}

/// OID of id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// OID of the P-256 curve (prime256v1).
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// OID of Ed25519.
const OID_ED25519: &str = "1.3.101.112";

/// Parses a PEM PKCS#10 request, checks its signature and that its key is
/// ECDSA P-256 with an uncompressed point (or Ed25519). Its subject is ignored.
pub fn check_csr(pem_text: &str) -> Result<CheckedCsr, Invalid> {
    let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem_text.as_bytes())
        .map_err(|_| {
            Invalid(
                "csr is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)".into(),
            )
        })?;
    let der = der.as_ref().to_vec();
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|_| Invalid("csr is not a valid PKCS#10 certificate request".into()))?;
    if !rest.is_empty() {
        return Err(Invalid("csr has trailing bytes after the request".into()));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() != Some(OID_P256) {
                return Err(Invalid(
                    "the toy key must be ECDSA on the P-256 curve (or Ed25519)".into(),
                ));
            }
            let point = &spki.subject_public_key.data;
            if point.len() != 65 || point[0] != 0x04 {
                return Err(Invalid(
                    "the P-256 public key must be an uncompressed point (65 bytes starting 0x04)"
                        .into(),
                ));
            }
        }
        OID_ED25519 => {}
        _ => {
            return Err(Invalid(
                "the toy key must be ECDSA P-256 (or Ed25519); other key types are not accepted"
                    .into(),
            ));
        }
    }
    csr.verify_signature()
        .map_err(|_| Invalid("the csr signature does not verify with its own public key".into()))?;
    // rcgen must be able to turn it into a certificate; refuse now, with a
    // clear message, rather than when a parent confirms.
    CertificateSigningRequestParams::from_der(&der.clone().into())
        .map_err(|e| Invalid(format!("the csr cannot be used: {e}")))?;
    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        der,
    })
}

/// Makes a P-256 key and a CSR for it (used by the reference toy and tests).
/// Returns (key PEM, CSR PEM).
pub fn make_toy_key_and_csr(toy_id: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = csr_for_key(&key, toy_id)?;
    Ok((key.serialize_pem(), csr))
}

/// A CSR for an existing key PEM.
pub fn csr_for_key_pem(key_pem: &str, toy_id: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem)?;
    csr_for_key(&key, toy_id)
}

fn csr_for_key(key: &KeyPair, toy_id: &str) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, toy_id);
    params.distinguished_name = dn;
    Ok(params.serialize_request(key)?.pem()?)
}

/// SHA-256 of a certificate's DER.
pub fn cert_sha256(der: &[u8]) -> Vec<u8> {
    Hex32::sha256(der).0.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn ca_and_leaf_are_made_once_with_the_right_names_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let a = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        let layout = DataDir::new(dir.path());
        for f in [
            layout.path(DataFile::CaKey),
            layout.path(DataFile::ServerKey),
            layout.path(DataFile::CaCert),
            layout.path(DataFile::ServerCert),
        ] {
            let mode = std::fs::metadata(&f).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
        let (_, leaf) =
            x509_parser::certificate::X509Certificate::from_der(a.server_chain()[0].as_ref())
                .expect("leaf parses");
        let mut got = cert_names(&leaf);
        got.sort();
        assert_eq!(got, vec!["127.0.0.1", "hearth.local", "localhost"]);
        let (_, ca) = x509_parser::certificate::X509Certificate::from_der(a.ca_der()).expect("ca");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        // The same names: nothing new. Other names: a new leaf from the same CA.
        let b = HubPki::load_or_create(dir.path(), &names, now()).expect("reload");
        assert_eq!(a.server_chain()[0], b.server_chain()[0]);
        let more = server_names("den.local", "0.0.0.0".parse().expect("ip"), &[]);
        let c = HubPki::load_or_create(dir.path(), &more, now()).expect("rename");
        assert_ne!(a.server_chain()[0], c.server_chain()[0]);
        assert_eq!(a.ca_sha256, c.ca_sha256);
    }

    #[test]
    fn csr_checks() {
        let (_, csr) = make_toy_key_and_csr("bear-1").expect("csr");
        let checked = check_csr(&csr).expect("a P-256 CSR is accepted");
        assert_eq!(checked.spki_der[0], 0x30);
        assert!(check_csr("not a csr").is_err());
        // A tampered signature is refused.
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .expect("pem");
        let mut bytes = der.as_ref().to_vec();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x55;
        let pem = pem_encode("CERTIFICATE REQUEST", &bytes);
        assert!(check_csr(&pem).is_err());
        // Another key type (P-384) is refused.
        let k384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        let csr384 = csr_for_key(&k384, "x").expect("csr");
        let e = check_csr(&csr384).err().expect("P-384 refused");
        assert!(e.0.contains("P-256"), "{e}");
        // Ed25519 is accepted.
        let ked = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        assert!(check_csr(&csr_for_key(&ked, "x").expect("csr")).is_ok());
    }

    #[test]
    fn toy_cert_has_cn_and_client_auth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = HubPki::load_or_create(dir.path(), &["hearth.local".into()], now()).expect("pki");
        let (_, csr) = make_toy_key_and_csr("ignored-subject").expect("csr");
        let checked = check_csr(&csr).expect("ok");
        let id = ToyId::parse("bear-3f2a").expect("id");
        let (der, _) = pki.issue_toy_cert(&checked, &id, now()).expect("issue");
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).expect("parse");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok());
        assert_eq!(cn, Some("bear-3f2a"));
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert_eq!(cert.public_key().raw, &checked.spki_der[..]);
    }

    fn pem_encode(tag: &str, der: &[u8]) -> String {
        use std::fmt::Write as _;
        let b64 = base64_encode(der);
        let mut s = format!("-----BEGIN {tag}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            let _ = writeln!(s, "{}", String::from_utf8_lossy(chunk));
        }
        let _ = writeln!(s, "-----END {tag}-----");
        s
    }

    fn base64_encode(data: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
