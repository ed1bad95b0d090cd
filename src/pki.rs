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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::datadir::{DataDir, DataFile, write_private_file};
use crate::domain::{Hex32, Invalid, ToyId};

/// How long a server leaf is valid, in days, counted from its start (a day
/// before it is issued): under the 366 of Mozilla's intermediate profile;
/// phones are stricter with long-lived certificates than with short ones.
pub const LEAF_DAYS: i64 = 365;
/// A leaf this close to its end is replaced, at start and by the hourly job.
pub const LEAF_RENEW_DAYS: i64 = 30;
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

/// The files of the hub's keys and certificates: what a household deletion
/// shreds and a restore replaces.
const KEY_FILES: [DataFile; 5] = [
    DataFile::CaKey,
    DataFile::CaCert,
    DataFile::CaPrevious,
    DataFile::ServerKey,
    DataFile::ServerCert,
];

/// The hub's certificates and keys, loaded or made at start.
pub struct HubPki {
    /// The CA; replaced whole by [`HubPki::replace_ca`].
    ca: RwLock<Arc<Ca>>,
    /// What the TLS listener presents; swapped on renewal.
    resolver: Arc<LeafResolver>,
    /// How the TLS listener checks client certificates; swapped with the CA.
    verifier: Arc<LiveClientVerifier>,
    /// How to make the next leaf. Held while a leaf or CA is being made, so
    /// that a renewal cannot install a leaf of a CA that was just replaced,
    /// and a host name change cannot be lost to a renewal.
    leaf: Mutex<Leaf>,
}

/// The hub CA: its key and certificate.
struct Ca {
    key: KeyPair,
    der: CertificateDer<'static>,
    pem: String,
    /// SHA-256 of the certificate (DER): TXT `ca` and the pairing code input.
    sha256: Hex32,
}

impl Ca {
    fn from_pem(key: KeyPair, pem: String, path: &Path) -> Result<Self, PkiError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Corrupt(format!("{}: {e}", path.display())))?;
        let sha256 = Hex32::sha256(der.as_ref());
        Ok(Self {
            key,
            der,
            pem,
            sha256,
        })
    }
}

impl HubPki {
    /// Loads the CA and leaf from `dir`, making what is missing. `names` are
    /// the DNS names and IP addresses the leaf must cover.
    pub fn load_or_create(
        dir: &Path,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let ca_key_path = DataDir::new(dir).path(DataFile::CaKey);
        let ca_crt_path = DataDir::new(dir).path(DataFile::CaCert);
        let permitted = ca_permitted(names);
        let (ca_key, ca_pem) = if ca_key_path.exists() && ca_crt_path.exists() {
            let key_pem = std::fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
            let crt_pem = std::fs::read_to_string(&ca_crt_path).map_err(io_err(&ca_crt_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let old_der = CertificateDer::from_pem_slice(crt_pem.as_bytes())
                .map_err(|e| PkiError::Corrupt(format!("{}: {e}", ca_crt_path.display())))?;
            if ca_constraints_of(old_der.as_ref()).is_some() {
                (key, crt_pem)
            } else {
                let pem = reissue_ca(dir, &key, &old_der, &crt_pem, &permitted)?;
                (key, pem)
            }
        } else {
            make_ca(dir, &permitted, now)?
        };
        let ca = Ca::from_pem(ca_key, ca_pem, &ca_crt_path)?;
        let ca_der = ca.der.clone();

        // A toy that pinned this CA checks every name of the leaf against
        // the CA's constraints: a name outside them would cut off every such
        // toy, so it is left out (and said why) instead.
        let permits = ca_constraints_of(ca_der.as_ref()).unwrap_or(permitted);
        let wanted: BTreeSet<String> = names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .filter(|n| {
                let ok = is_permitted(&permits, n);
                if !ok {
                    tracing::warn!(
                        name = %n,
                        "left out of the server certificate: the hub CA may only vouch for names under .local, localhost, home addresses and the names configured when it was made; paired toys would refuse a certificate with it"
                    );
                }
                ok
            })
            .collect();
        let leaf = Leaf {
            dir: dir.to_owned(),
            names: names.to_vec(),
            common_name: names
                .first()
                .cloned()
                .unwrap_or_else(|| "hearth.local".into()),
            wanted,
        };
        let current = leaf.load_or_issue(&ca.der, &ca.key, now)?;
        let verifier = Arc::new(LiveClientVerifier {
            current: RwLock::new(client_verifier(&ca.der)?),
        });
        Ok(Self {
            ca: RwLock::new(Arc::new(ca)),
            resolver: Arc::new(LeafResolver {
                current: RwLock::new(current),
            }),
            verifier,
            leaf: Mutex::new(leaf),
        })
    }

    /// Replaces the CA and the server leaf with new ones, for a household
    /// that was deleted: the old keys and certificates (`ca.key`, `ca.crt`,
    /// `ca-previous.pem`, `server.key`, `server.crt`) are overwritten with
    /// zeros, synced and removed, then a new CA (same name constraints) and
    /// leaf are made and stored. New TLS connections get the new leaf and
    /// check client certificates against the new CA at once; nothing
    /// restarts. Blocking (writes and fsyncs files).
    pub fn replace_ca(&self, now: OffsetDateTime) -> Result<(), PkiError> {
        let spec = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = &spec.dir;
        let old = self.ca();
        let permitted = ca_constraints_of(old.der.as_ref())
            .ok_or_else(|| PkiError::Corrupt("ca.crt: no name constraints".into()))?;
        for file in KEY_FILES {
            let path = DataDir::new(dir).path(file);
            shred_file(&path).map_err(io_err(&path))?;
        }
        let (key, pem) = make_ca(dir, &permitted, now)?;
        let ca = Ca::from_pem(key, pem, &DataDir::new(dir).path(DataFile::CaCert))?;
        let (leaf, _) = spec.issue(&ca.der, &ca.key, now)?;
        let verifier = client_verifier(&ca.der)?;
        *self.ca.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ca);
        self.resolver.set(leaf);
        self.verifier.set(verifier);
        tracing::warn!("replaced the hub certificate authority and the server certificate");
        Ok(())
    }

    /// Checks the keys and certificates of a restored backup in `from` (a
    /// scratch directory) and makes them ready to install: the CA key must
    /// match its certificate, and a server leaf for this hub's names is
    /// issued there when the backup's does not cover them or is due.
    /// Nothing of the running hub changes. Blocking.
    pub fn stage_restore(&self, from: &Path, now: OffsetDateTime) -> Result<HubPki, PkiError> {
        let key_path = DataDir::new(from).path(DataFile::CaKey);
        let crt_path = DataDir::new(from).path(DataFile::CaCert);
        let key =
            KeyPair::from_pem(&std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?)?;
        let crt = std::fs::read(&crt_path).map_err(io_err(&crt_path))?;
        let der = CertificateDer::from_pem_slice(&crt)
            .map_err(|e| PkiError::Corrupt(format!("ca.crt: {e}")))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            .map_err(|e| PkiError::Corrupt(format!("ca.crt: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::Corrupt(
                "the certificate authority's certificate does not belong to its key".into(),
            ));
        }
        let names = self
            .leaf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .names
            .clone();
        HubPki::load_or_create(from, &names, now)
    }

    /// Installs what [`HubPki::stage_restore`] prepared: its files replace
    /// this hub's (renamed over them in the data directory, which is then
    /// synced), and CA, leaf and client verifier are swapped live, so new
    /// TLS connections get the restored chain and toys with certificates of
    /// the restored CA are let in. Blocking.
    pub fn install(&self, staged: HubPki) -> Result<(), PkiError> {
        let mut here = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let (from, wanted) = {
            let theirs = staged.leaf.lock().unwrap_or_else(PoisonError::into_inner);
            (theirs.dir.clone(), theirs.wanted.clone())
        };
        for file in KEY_FILES {
            let (src, dst) = (
                DataDir::new(&from).path(file),
                DataDir::new(&here.dir).path(file),
            );
            if src.exists() {
                std::fs::rename(&src, &dst).map_err(io_err(&dst))?;
            } else {
                match std::fs::remove_file(&dst) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err(&dst)(e));
                    }
                    _ => {}
                }
            }
        }
        std::fs::File::open(&here.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&here.dir))?;
        here.wanted = wanted;
        *self.ca.write().unwrap_or_else(PoisonError::into_inner) = staged.ca();
        self.resolver.set(staged.resolver.get());
        self.verifier.set(staged.verifier.get());
        tracing::warn!(
            "installed the certificate authority and server certificate of a restored backup"
        );
        Ok(())
    }

    fn ca(&self) -> Arc<Ca> {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SHA-256 of the CA certificate (DER): TXT `ca` and the pairing code input.
    pub fn ca_sha256(&self) -> Hex32 {
        self.ca().sha256
    }

    /// Replaces the server leaf when it is due (fewer than
    /// [`LEAF_RENEW_DAYS`] days left at `now`, or not valid yet), from the
    /// same CA; new TLS connections get the new one at once, open ones keep
    /// theirs. Returns the new leaf's end when it renewed, `None` otherwise.
    /// Blocking (writes and fsyncs two files).
    pub fn renew_if_due(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, PkiError> {
        let spec = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.resolver.get();
        let chain = &current.cert;
        let ca = self.ca();
        if chain
            .first()
            .is_some_and(|l| leaf_is_current(l.as_ref(), &spec.wanted, ca.der.as_ref(), now))
        {
            return Ok(None);
        }
        let (fresh, not_after) = spec.issue(&ca.der, &ca.key, now)?;
        self.resolver.set(fresh);
        Ok(Some(not_after))
    }

    /// Makes the server leaf cover the mDNS host name `host` (e.g.
    /// `hearth-2.local`, a trailing dot ignored) in place of the one it was
    /// made for: a new leaf from the same CA, stored, and presented to new
    /// TLS connections before this returns, so the caller may announce the
    /// name at once. Returns whether a new leaf was needed. Refuses a name
    /// the CA may not vouch for (toys that pinned the CA would refuse the
    /// leaf). Blocking (writes and fsyncs two files).
    pub fn set_host_name(&self, host: &str, now: OffsetDateTime) -> Result<bool, PkiError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut spec = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let ca = self.ca();
        let permits = ca_constraints_of(ca.der.as_ref())
            .ok_or_else(|| PkiError::Corrupt("ca.crt: no name constraints".into()))?;
        if host.is_empty() || !is_permitted(&permits, &host) {
            return Err(PkiError::Corrupt(format!(
                "the hub CA may not vouch for the host name {host:?}"
            )));
        }
        if spec.common_name.eq_ignore_ascii_case(&host) {
            return Ok(false);
        }
        let old = spec.common_name.to_ascii_lowercase();
        let mut wanted = spec.wanted.clone();
        wanted.remove(&old);
        wanted.insert(host.clone());
        let next = Leaf {
            dir: spec.dir.clone(),
            names: spec.names.clone(),
            common_name: host,
            wanted,
        };
        let (fresh, _) = next.issue(&ca.der, &ca.key, now)?;
        self.resolver.set(fresh);
        *spec = next;
        Ok(true)
    }

    /// The mDNS host name the server leaf is made for (its common name).
    pub fn host_name(&self) -> String {
        self.leaf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .common_name
            .clone()
    }

    /// When the current server leaf ends.
    pub fn server_not_after(&self) -> Option<OffsetDateTime> {
        let current = self.resolver.get();
        let leaf = current.cert.first()?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).ok()?;
        Some(cert.validity().not_after.to_datetime())
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca().der.to_vec()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca().pem.clone()
    }

    /// The server's current chain `[leaf, CA]`.
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        self.resolver.get().cert.clone()
    }

    /// The rustls configuration: ring provider, TLS 1.2 and 1.3, client
    /// certificates optional but, when presented, verified against the hub CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(self.verifier.clone())
            .with_cert_resolver(self.resolver.clone());
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
        let ca = self.ca();
        let issuer = Issuer::from_ca_cert_der(&ca.der, &ca.key)?;
        let cert = req.signed_by(&issuer)?;
        Ok((cert.der().to_vec(), cert.pem()))
    }
}

/// The server leaf the TLS listener presents. Held behind a lock so that a
/// renewal reaches new connections without restarting the listener.
#[derive(Debug)]
struct LeafResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl LeafResolver {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, fresh: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Client certificates optional but, when presented, verified against the
/// CA `ca_der`.
fn client_verifier(
    ca_der: &CertificateDer<'static>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone())?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Corrupt(format!("client verifier: {e}")))
}

/// The client-certificate check the TLS listener uses, behind a lock so
/// that a new CA reaches new connections without restarting the listener.
/// It names no acceptable CAs in its certificate request (the names would
/// have to outlive the lock): toys present their one certificate anyway.
#[derive(Debug)]
struct LiveClientVerifier {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl LiveClientVerifier {
    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, fresh: Arc<dyn ClientCertVerifier>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }
}

impl ClientCertVerifier for LiveClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.get().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.get().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

/// Makes a new hub CA limited to `permitted` and stores its key and
/// certificate. Returns the key and the certificate (PEM).
fn make_ca(
    dir: &Path,
    permitted: &BTreeSet<Permitted>,
    now: OffsetDateTime,
) -> Result<(KeyPair, String), PkiError> {
    let ca_key_path = DataDir::new(dir).path(DataFile::CaKey);
    let ca_crt_path = DataDir::new(dir).path(DataFile::CaCert);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let tag = hex::encode(rand::random::<[u8; 4]>());
    dn.push(DnType::CommonName, format!("Hearth hub CA {tag}"));
    dn.push(DnType::OrganizationName, "Hearth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_key_usages();
    params.name_constraints = Some(to_name_constraints(permitted));
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365 * CA_YEARS);
    let cert = params.self_signed(&key)?;
    write_private_file(&ca_key_path, key.serialize_pem().as_bytes())
        .map_err(io_err(&ca_key_path))?;
    write_private_file(&ca_crt_path, cert.pem().as_bytes()).map_err(io_err(&ca_crt_path))?;
    tracing::info!("created the hub certificate authority");
    Ok((key, cert.pem()))
}

/// Overwrites a file with zeros in place, syncs it and removes it (a file
/// that is not there is fine). The flash controller of an SD card may keep
/// old blocks, which no file system call reaches; this is the most a
/// program can do.
fn shred_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The server leaf's names and where its files live.
struct Leaf {
    dir: PathBuf,
    /// The names the hub was asked to cover, before the CA's constraints.
    names: Vec<String>,
    common_name: String,
    wanted: BTreeSet<String>,
}

impl Leaf {
    /// The stored leaf when it is still current, else a new one.
    fn load_or_issue(
        &self,
        ca_der: &CertificateDer<'static>,
        ca_key: &KeyPair,
        now: OffsetDateTime,
    ) -> Result<Arc<CertifiedKey>, PkiError> {
        let srv_key_path = DataDir::new(&self.dir).path(DataFile::ServerKey);
        let srv_crt_path = DataDir::new(&self.dir).path(DataFile::ServerCert);
        if let (Ok(k), Ok(c)) = (
            std::fs::read_to_string(&srv_key_path),
            std::fs::read(&srv_crt_path),
        ) {
            if let Ok(der) = CertificateDer::from_pem_slice(&c) {
                if leaf_is_current(der.as_ref(), &self.wanted, ca_der.as_ref(), now) {
                    return certified(vec![der, ca_der.clone()], &k, &srv_key_path);
                }
            }
        }
        Ok(self.issue(ca_der, ca_key, now)?.0)
    }

    /// Issues a leaf valid from a day before `now` for [`LEAF_DAYS`] days,
    /// and stores it. Returns it with its end.
    fn issue(
        &self,
        ca_der: &CertificateDer<'static>,
        ca_key: &KeyPair,
        now: OffsetDateTime,
    ) -> Result<(Arc<CertifiedKey>, OffsetDateTime), PkiError> {
        let srv_key_path = DataDir::new(&self.dir).path(DataFile::ServerKey);
        let srv_crt_path = DataDir::new(&self.dir).path(DataFile::ServerCert);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.common_name.clone());
        params.distinguished_name = dn;
        params.subject_alt_names = self
            .wanted
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Whole seconds: what the certificate can hold.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        params.not_before = now - Duration::days(1);
        params.not_after = params.not_before + Duration::days(LEAF_DAYS);
        let not_after = params.not_after;
        let issuer = Issuer::from_ca_cert_der(ca_der, ca_key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let key_pem = key.serialize_pem();
        write_private_file(&srv_key_path, key_pem.as_bytes()).map_err(io_err(&srv_key_path))?;
        write_private_file(&srv_crt_path, cert.pem().as_bytes()).map_err(io_err(&srv_crt_path))?;
        tracing::info!(names = ?self.wanted, not_after = %not_after, "issued a new server certificate");
        let ck = certified(
            vec![cert.der().clone(), ca_der.clone()],
            &key_pem,
            &srv_key_path,
        )?;
        Ok((ck, not_after))
    }
}

/// A chain and its key, ready for rustls.
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key_pem: &str,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, PkiError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::Corrupt(format!("{}: {e}", key_path.display())))?;
    let provider = rustls::crypto::ring::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider)?))
}

/// The key usages of the hub CA.
fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

/// One permitted subtree of the CA's nameConstraints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permitted {
    /// A DNS name and every name below it (`local` covers `hearth.local`).
    Dns(String),
    /// An address range: network address and prefix length.
    Net(IpAddr, u8),
}

/// The address ranges a home network uses, which the CA may always vouch
/// for: loopback, RFC 1918, IPv4 link-local, IPv6 unique-local and link-local.
const HOME_RANGES: [(&str, u8); 8] = [
    ("127.0.0.0", 8),
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("169.254.0.0", 16),
    ("::1", 128),
    ("fc00::", 7),
    ("fe80::", 10),
];

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// What the hub CA may vouch for, given the names its server certificate
/// covers: every mDNS name (`local`: the protocol lets the host name change
/// within `.local`, and toys that pinned the CA must keep accepting the
/// hub), `localhost`, the home address ranges, and any configured name or
/// address outside those. Nothing else: a certificate for any other site
/// signed with `ca.key` fails verification on every phone that trusts the CA.
pub fn ca_permitted(names: &[String]) -> BTreeSet<Permitted> {
    let mut out: BTreeSet<Permitted> = ["local", "localhost"]
        .iter()
        .map(|d| Permitted::Dns((*d).to_owned()))
        .collect();
    let ranges: Vec<(IpAddr, u8)> = HOME_RANGES
        .iter()
        .filter_map(|(a, p)| a.parse().ok().map(|ip| (ip, *p)))
        .collect();
    out.extend(ranges.iter().map(|(ip, p)| Permitted::Net(*ip, *p)));
    for n in names {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.parse::<IpAddr>() {
            Ok(ip) => {
                if !ranges.iter().any(|(net, p)| in_net(ip, *net, *p)) {
                    out.insert(Permitted::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
                }
            }
            Err(_) => {
                let covered = n == "local"
                    || n.ends_with(".local")
                    || n == "localhost"
                    || n.ends_with(".localhost");
                if !covered && !n.is_empty() {
                    out.insert(Permitted::Dns(n));
                }
            }
        }
    }
    out
}

/// Whether the CA's permitted subtrees cover `name` (a DNS name or an address).
pub fn is_permitted(permits: &BTreeSet<Permitted>, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match name.parse::<IpAddr>() {
        Ok(ip) => permits.iter().any(|p| match p {
            Permitted::Net(net, prefix) => in_net(ip, *net, *prefix),
            Permitted::Dns(_) => false,
        }),
        Err(_) => permits.iter().any(|p| match p {
            Permitted::Dns(d) => name == *d || name.ends_with(&format!(".{d}")),
            Permitted::Net(..) => false,
        }),
    }
}

fn to_name_constraints(permitted: &BTreeSet<Permitted>) -> rcgen::NameConstraints {
    rcgen::NameConstraints {
        permitted_subtrees: permitted
            .iter()
            .map(|p| match p {
                Permitted::Dns(d) => rcgen::GeneralSubtree::DnsName(d.clone()),
                Permitted::Net(ip, prefix) => rcgen::GeneralSubtree::IpAddress(
                    rcgen::CidrSubnet::from_addr_prefix(*ip, *prefix),
                ),
            })
            .collect(),
        excluded_subtrees: Vec::new(),
    }
}

/// The permitted subtrees of a CA certificate's nameConstraints, when the
/// extension is present, critical and lists only DNS names and address
/// ranges; `None` otherwise (an unconstrained CA from before 0.2).
pub fn ca_constraints_of(der: &[u8]) -> Option<BTreeSet<Permitted>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let ext = cert.name_constraints().ok()??;
    if !ext.critical || ext.value.excluded_subtrees.is_some() {
        return None;
    }
    let mut out = BTreeSet::new();
    for sub in ext.value.permitted_subtrees.as_ref()? {
        match sub.base {
            GeneralName::DNSName(d) => {
                out.insert(Permitted::Dns(d.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(b) if b.len() == 8 => {
                let ip = <[u8; 4]>::try_from(&b[..4]).ok()?;
                let mask = u32::from_be_bytes(<[u8; 4]>::try_from(&b[4..]).ok()?);
                out.insert(Permitted::Net(IpAddr::from(ip), mask.count_ones() as u8));
            }
            GeneralName::IPAddress(b) if b.len() == 32 => {
                let ip = <[u8; 16]>::try_from(&b[..16]).ok()?;
                let mask = u128::from_be_bytes(<[u8; 16]>::try_from(&b[16..]).ok()?);
                out.insert(Permitted::Net(IpAddr::from(ip), mask.count_ones() as u8));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Reissues the hub CA certificate with the SAME key pair, subject and
/// validity, and the given nameConstraints. Certificates the old CA signed
/// (toys' client certificates, the server leaf) still verify against it, and
/// toys that pinned the old CA certificate still accept server leaves it
/// signs: a trust anchor is its subject and public key, both unchanged. The
/// old certificate is appended to `ca-previous.pem`, and its SHA-256 is
/// advertised in TXT `ca_prev` so paired toys still recognise the hub.
fn reissue_ca(
    dir: &Path,
    key: &KeyPair,
    old_der: &CertificateDer<'_>,
    old_pem: &str,
    permitted: &BTreeSet<Permitted>,
) -> Result<String, PkiError> {
    let corrupt = |m: &str| PkiError::Corrupt(format!("ca.crt: {m}"));
    let (_, old) = x509_parser::certificate::X509Certificate::from_der(old_der.as_ref())
        .map_err(|e| corrupt(&e.to_string()))?;
    if old.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(corrupt("the certificate does not belong to ca.key"));
    }
    let mut dn = DistinguishedName::new();
    for rdn in old.subject().iter() {
        for attr in rdn.iter() {
            let value = attr
                .as_str()
                .map_err(|_| corrupt("the subject is not plain text"))?;
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| corrupt("the subject has an unknown attribute"))?
                .collect();
            dn.push(DnType::from_oid(&oid), value);
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_key_usages();
    params.name_constraints = Some(to_name_constraints(permitted));
    params.not_before = old.validity().not_before.to_datetime();
    params.not_after = old.validity().not_after.to_datetime();
    let cert = params.self_signed(key)?;
    let (_, new) = x509_parser::certificate::X509Certificate::from_der(cert.der().as_ref())
        .map_err(|e| corrupt(&e.to_string()))?;
    // A trust anchor is matched by subject bytes: a different encoding would
    // cut off every paired toy, so keep the old certificate instead.
    if new.subject().as_raw() != old.subject().as_raw() {
        return Err(corrupt(
            "cannot reissue the CA with an identical subject; keeping the old one",
        ));
    }
    let prev_path = DataDir::new(dir).path(DataFile::CaPrevious);
    let mut prev = std::fs::read_to_string(&prev_path).unwrap_or_default();
    prev.push_str(old_pem);
    write_private_file(&prev_path, prev.as_bytes()).map_err(io_err(&prev_path))?;
    let ca_crt_path = DataDir::new(dir).path(DataFile::CaCert);
    write_private_file(&ca_crt_path, cert.pem().as_bytes()).map_err(io_err(&ca_crt_path))?;
    tracing::info!(
        "reissued the hub certificate authority with the same key, limited to the hub's own names (paired toys keep working; phones should install the new certificate)"
    );
    Ok(cert.pem())
}

/// SHA-256 of each earlier CA certificate kept in `ca-previous.pem`, newest last.
pub fn previous_ca_hashes(dir: &Path) -> Vec<Hex32> {
    let Ok(pem) = std::fs::read(DataDir::new(dir).path(DataFile::CaPrevious)) else {
        return Vec::new();
    };
    CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .map(|d| Hex32::sha256(d.as_ref()))
        .collect()
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
    // Due for renewal, not valid yet (the clock went back), or issued for
    // longer than hubs issue now (800 days before 0.2).
    let (start, end) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    if end - now.unix_timestamp() < LEAF_RENEW_DAYS * 86_400
        || start > now.unix_timestamp()
        || end - start > LEAF_DAYS * 86_400
    {
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
        let a_chain = a.server_chain();
        let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(a_chain[0].as_ref())
            .expect("leaf parses");
        let mut got = cert_names(&leaf);
        got.sort();
        assert_eq!(got, vec!["127.0.0.1", "hearth.local", "localhost"]);
        let a_ca = a.ca_der();
        let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&a_ca).expect("ca");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        // The same names: nothing new. Other names: a new leaf from the same CA.
        let b = HubPki::load_or_create(dir.path(), &names, now()).expect("reload");
        assert_eq!(a.server_chain()[0], b.server_chain()[0]);
        let more = server_names("den.local", "0.0.0.0".parse().expect("ip"), &[]);
        let c = HubPki::load_or_create(dir.path(), &more, now()).expect("rename");
        assert_ne!(a.server_chain()[0], c.server_chain()[0]);
        assert_eq!(a.ca_sha256(), c.ca_sha256());
    }

    /// A leaf for `names` (DNS names and addresses), valid `from`..`to`,
    /// signed by the CA given.
    fn leaf_with(
        ca: (&KeyPair, &CertificateDer<'static>),
        names: &[&str],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("dns name")),
            })
            .collect();
        p.not_before = from;
        p.not_after = to;
        let issuer = Issuer::from_ca_cert_der(ca.1, ca.0).expect("issuer");
        p.signed_by(&key, &issuer).expect("leaf").der().to_vec()
    }

    #[test]
    fn a_stored_leaf_is_kept_only_while_current_from_this_ca_and_for_these_names() {
        let names = ["hearth.local", "127.0.0.1", "fd00::7"];
        let t0 = now().replace_nanosecond(0).expect("whole seconds");
        let made = |dir: &Path| {
            let permitted = ca_permitted(&names.map(String::from));
            let (key, pem) = make_ca(dir, &permitted, t0).expect("ca");
            (
                key,
                CertificateDer::from_pem_slice(pem.as_bytes()).expect("ca pem"),
            )
        };
        let (dir, other_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (ca_key, ca_der) = made(dir.path());
        let (other_key, other_der) = made(other_dir.path());
        let ca = (&ca_key, &ca_der);
        let wanted: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        let current =
            |der: &[u8], at: OffsetDateTime| leaf_is_current(der, &wanted, ca_der.as_ref(), at);
        let (start, end) = (t0, t0 + Duration::days(LEAF_DAYS));
        let leaf = leaf_with(ca, &names, start, end);
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&leaf).expect("leaf");
        let mut got = cert_names(&parsed);
        got.sort();
        assert_eq!(
            got,
            ["127.0.0.1", "fd00::7", "hearth.local"],
            "both address families read"
        );

        assert!(current(&leaf, start));
        assert!(
            !current(&leaf, start - Duration::seconds(1)),
            "not valid yet: the clock went back"
        );
        let renew_at = end - Duration::days(LEAF_RENEW_DAYS);
        assert!(
            current(&leaf, renew_at),
            "renewed when fewer than 30 days are left"
        );
        assert!(!current(&leaf, renew_at + Duration::seconds(1)));
        let long = leaf_with(ca, &names, start, end + Duration::seconds(1));
        assert!(
            !current(&long, start),
            "valid for longer than hubs issue now"
        );
        for other in [
            &names[..2],
            &["hearth.local", "127.0.0.1", "fd00::7", "den.local"][..],
        ] {
            assert!(
                !current(&leaf_with(ca, other, start, end), start),
                "{other:?}"
            );
        }
        let foreign = leaf_with((&other_key, &other_der), &names, start, end);
        assert!(!current(&foreign, start), "signed by another CA");
        assert!(!current(b"not a certificate", start));
        assert!(!leaf_is_current(&leaf, &wanted, b"no CA", start));
    }

    #[test]
    fn a_name_the_ca_may_not_vouch_for_is_left_out_and_said_why() {
        #[derive(Clone, Default)]
        struct Log(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let first = vec!["hearth.local".to_string()];
        HubPki::load_or_create(dir.path(), &first, now()).expect("create");
        let log = Log::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let names = vec!["hearth.local".to_string(), "hub.example.com".to_string()];
        let pki = tracing::subscriber::with_default(subscriber, || {
            HubPki::load_or_create(dir.path(), &names, now()).expect("reload")
        });
        let chain = pki.server_chain();
        let (_, leaf) =
            x509_parser::certificate::X509Certificate::from_der(chain[0].as_ref()).expect("leaf");
        assert_eq!(cert_names(&leaf), ["hearth.local"]);
        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
        let warnings: Vec<_> = text.lines().filter(|l| l.contains("left out")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("hub.example.com"), "{text}");
    }

    #[test]
    fn a_ca_key_without_its_certificate_gets_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["hearth.local".to_string()];
        let a = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        std::fs::remove_file(DataDir::new(dir.path()).path(DataFile::CaCert)).expect("rm");
        let b = HubPki::load_or_create(dir.path(), &names, now()).expect("a new CA");
        assert_ne!(a.ca_sha256(), b.ca_sha256());
        assert!(DataDir::new(dir.path()).path(DataFile::CaCert).exists());
    }

    #[test]
    fn only_permitted_names_and_ranges_are_constraints_the_hub_reads() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let ca_with = |permitted: Vec<rcgen::GeneralSubtree>, excluded| {
            let mut p = CertificateParams::default();
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.name_constraints = Some(rcgen::NameConstraints {
                permitted_subtrees: permitted,
                excluded_subtrees: excluded,
            });
            p.self_signed(&key).expect("ca").der().to_vec()
        };
        let local = || rcgen::GeneralSubtree::DnsName("Local".into());
        let v4 = rcgen::CidrSubnet::from_addr_prefix("10.0.0.0".parse().expect("ip"), 8);
        let v6 = rcgen::CidrSubnet::from_addr_prefix("fd00::".parse().expect("ip"), 8);
        let ours = ca_with(
            vec![
                local(),
                rcgen::GeneralSubtree::IpAddress(v4),
                rcgen::GeneralSubtree::IpAddress(v6),
            ],
            vec![],
        );
        let want: BTreeSet<Permitted> = [
            Permitted::Dns("local".into()),
            Permitted::Net("10.0.0.0".parse().expect("ip"), 8),
            Permitted::Net("fd00::".parse().expect("ip"), 8),
        ]
        .into();
        assert_eq!(ca_constraints_of(&ours), Some(want));
        let excluding = ca_with(
            vec![local()],
            vec![rcgen::GeneralSubtree::DnsName("x.local".into())],
        );
        assert_eq!(
            ca_constraints_of(&excluding),
            None,
            "excluded subtrees are not ours"
        );
        let directory = ca_with(
            vec![
                local(),
                rcgen::GeneralSubtree::DirectoryName(DistinguishedName::new()),
            ],
            vec![],
        );
        assert_eq!(
            ca_constraints_of(&directory),
            None,
            "a kind the hub does not issue"
        );
        assert_eq!(ca_constraints_of(b"not a certificate"), None);
        // An address without its mask (4 bytes: iPAddress [7] 10.0.0.1),
        // which rcgen does not write: NameConstraints { permittedSubtrees
        // [0] { GeneralSubtree { base } } }, by hand.
        let mut odd = rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 30],
            vec![0x30, 0x0a, 0xa0, 0x08, 0x30, 0x06, 0x87, 0x04, 10, 0, 0, 1],
        );
        odd.set_criticality(true);
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.custom_extensions = vec![odd];
        let der = p.self_signed(&key).expect("ca").der().to_vec();
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&der).expect("ca");
        let nc = parsed.name_constraints().expect("parses").expect("present");
        assert!(
            matches!(
                nc.value.permitted_subtrees.as_deref(),
                Some([sub]) if matches!(sub.base, x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4)
            ),
            "the crafted extension reads as one 4-byte address"
        );
        assert_eq!(ca_constraints_of(&der), None, "an address without a mask");
    }

    #[test]
    fn a_new_host_name_gets_a_leaf_from_the_same_ca_before_the_call_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        let ca = pki.ca_der();
        let before = pki.server_chain();
        assert!(webpki_verify(&ca, &before, "hearth.local").is_ok());
        assert!(webpki_verify(&ca, &before, "hearth-2.local").is_err());

        assert!(pki.set_host_name("hearth-2.local.", now()).expect("rename"));
        let after = pki.server_chain();
        assert_eq!(pki.ca_der(), ca, "the same CA");
        assert!(webpki_verify(&ca, &after, "hearth-2.local").is_ok());
        assert!(webpki_verify(&ca, &after, "hearth.local").is_err());
        assert!(webpki_verify(&ca, &after, "localhost").is_ok());
        assert_eq!(pki.host_name(), "hearth-2.local");
        // The same name again: nothing new.
        assert!(!pki.set_host_name("HEARTH-2.local", now()).expect("again"));
        assert_eq!(pki.server_chain()[0], after[0]);
        // What was stored is what is served: a restart with the new name
        // keeps the leaf.
        let names2 = server_names("hearth-2.local", "0.0.0.0".parse().expect("ip"), &[]);
        let reloaded = HubPki::load_or_create(dir.path(), &names2, now()).expect("reload");
        assert_eq!(reloaded.server_chain()[0], after[0]);
        // A name the CA may not vouch for is refused and changes nothing.
        assert!(pki.set_host_name("www.examplebank.com", now()).is_err());
        assert_eq!(pki.server_chain()[0], after[0]);
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

    /// Signs a server leaf for `name` with the CA key in `dir`, as whoever
    /// copied `ca.key` off the SD card could.
    fn leaf_signed_with_ca_key(dir: &Path, name: &str) -> CertificateDer<'static> {
        let key = KeyPair::from_pem(
            &std::fs::read_to_string(DataDir::new(dir).path(DataFile::CaKey)).expect("key"),
        )
        .expect("ca key");
        let ca = CertificateDer::from_pem_slice(
            &std::fs::read(DataDir::new(dir).path(DataFile::CaCert)).expect("crt"),
        )
        .expect("ca pem");
        let issuer = Issuer::from_ca_cert_der(&ca, &key).expect("issuer");
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params
            .signed_by(&leaf_key, &issuer)
            .expect("sign")
            .der()
            .clone()
    }

    /// rustls-webpki, as a phone or a toy would check a server: `anchor`
    /// is the trusted CA certificate.
    fn webpki_verify(
        anchor: &[u8],
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(anchor.to_vec()))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &server_name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
    }

    /// `openssl verify` with the hub CA as the only trusted root; `None`
    /// when openssl is not installed.
    fn openssl_verify(dir: &Path, leaf: &CertificateDer<'_>) -> Option<bool> {
        let leaf_path = dir.join("leaf-under-test.pem");
        std::fs::write(&leaf_path, pem_encode("CERTIFICATE", leaf.as_ref())).expect("write");
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(DataDir::new(dir).path(DataFile::CaCert))
            .arg(&leaf_path)
            .output()
            .ok()?;
        Some(out.status.success())
    }

    #[test]
    fn a_leaf_for_another_site_signed_with_the_ca_key_fails_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        // The hub's own leaf verifies, for each name it covers.
        for name in ["hearth.local", "localhost", "127.0.0.1"] {
            webpki_verify(&pki.ca_der(), &pki.server_chain(), name)
                .unwrap_or_else(|e| panic!("the hub's own leaf for {name}: {e}"));
        }
        // Names the hub may take later (another .local host name) and home
        // addresses verify too.
        for name in ["den.local", "192.168.1.20", "10.0.0.7", "fd00::20"] {
            let leaf = leaf_signed_with_ca_key(dir.path(), name);
            webpki_verify(&pki.ca_der(), &[leaf], name)
                .unwrap_or_else(|e| panic!("a leaf for {name}: {e}"));
        }
        // Anything else is refused by webpki and by openssl.
        for name in ["www.examplebank.com", "8.8.8.8", "2001:db8::1"] {
            let leaf = leaf_signed_with_ca_key(dir.path(), name);
            let err = webpki_verify(&pki.ca_der(), std::slice::from_ref(&leaf), name)
                .expect_err("a leaf for another site must not verify");
            assert!(
                format!("{err:?}").contains("NameConstraint"),
                "{name}: {err:?}"
            );
            match openssl_verify(dir.path(), &leaf) {
                Some(ok) => assert!(!ok, "openssl verified a leaf for {name}"),
                None => eprintln!("skipped: openssl is not installed"),
            }
        }
        let bank = leaf_signed_with_ca_key(dir.path(), "hearth.local");
        if let Some(ok) = openssl_verify(dir.path(), &bank) {
            assert!(ok, "openssl must accept a leaf for hearth.local");
        }
    }

    /// Makes the CA the way hubs before 0.2 did: no nameConstraints.
    fn legacy_ca(dir: &Path) -> (KeyPair, CertificateDer<'static>) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Hearth hub CA 0a1b2c3d");
        dn.push(DnType::OrganizationName, "Hearth");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_key_usages();
        params.not_before = now() - Duration::days(400);
        params.not_after = now() + Duration::days(365 * 20);
        let cert = params.self_signed(&key).expect("ca");
        write_private_file(
            &DataDir::new(dir).path(DataFile::CaKey),
            key.serialize_pem().as_bytes(),
        )
        .expect("key");
        write_private_file(
            &DataDir::new(dir).path(DataFile::CaCert),
            cert.pem().as_bytes(),
        )
        .expect("crt");
        (key, cert.der().clone())
    }

    #[test]
    fn an_unconstrained_ca_is_reissued_with_the_same_key_and_paired_toys_keep_working() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, old_ca) = legacy_ca(dir.path());
        assert_eq!(ca_constraints_of(old_ca.as_ref()), None);
        // A toy paired before the upgrade holds a certificate from the old CA.
        let old_hub = {
            let (_, csr) = make_toy_key_and_csr("bear-1").expect("csr");
            let checked = check_csr(&csr).expect("csr ok");
            let key = KeyPair::from_pem(
                &std::fs::read_to_string(DataDir::new(dir.path()).path(DataFile::CaKey))
                    .expect("key"),
            )
            .expect("key");
            let issuer = Issuer::from_ca_cert_der(&old_ca, &key).expect("issuer");
            let mut req =
                CertificateSigningRequestParams::from_der(&checked.der.clone().into()).expect("r");
            req.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            req.signed_by(&issuer).expect("toy cert").der().clone()
        };

        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("upgrade");
        assert_ne!(
            &pki.ca_der(),
            old_ca.as_ref(),
            "the CA certificate is reissued"
        );
        assert_eq!(ca_constraints_of(&pki.ca_der()), Some(ca_permitted(&names)));
        let new_ca = pki.ca_der();
        let (_, new) = x509_parser::certificate::X509Certificate::from_der(&new_ca).expect("n");
        let (_, old) = x509_parser::certificate::X509Certificate::from_der(&old_ca).expect("o");
        assert_eq!(new.public_key().raw, old.public_key().raw, "same key pair");
        assert_eq!(
            new.subject().as_raw(),
            old.subject().as_raw(),
            "same subject"
        );
        assert!(
            new.name_constraints()
                .expect("nc")
                .expect("present")
                .critical
        );
        assert_eq!(previous_ca_hashes(dir.path()), vec![Hex32::sha256(&old_ca)]);

        // A toy that pinned the old CA certificate still accepts the hub.
        webpki_verify(&old_ca, &pki.server_chain(), "hearth.local")
            .expect("the old pinned CA accepts the new chain");
        webpki_verify(&pki.ca_der(), &pki.server_chain(), "hearth.local").expect("new CA");
        // The hub still accepts the toy's certificate from the old CA.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from(pki.ca_der())).expect("root");
            Arc::new(r)
        };
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        client_verifier
            .verify_client_cert(&old_hub, &[], rustls::pki_types::UnixTime::now())
            .expect("a toy certificate from before the upgrade still verifies");

        // Loading again changes nothing, also with a name the CA may not
        // vouch for: it is left out of the leaf, the CA stays.
        let more = server_names(
            "hearth.local",
            "0.0.0.0".parse().expect("ip"),
            &["hub.example.net".into(), "192.168.7.7".into()],
        );
        let again = HubPki::load_or_create(dir.path(), &more, now()).expect("reload");
        assert_eq!(again.ca_der(), pki.ca_der());
        assert_eq!(previous_ca_hashes(dir.path()).len(), 1);
        let again_chain = again.server_chain();
        let (_, leaf) =
            x509_parser::certificate::X509Certificate::from_der(again_chain[0].as_ref())
                .expect("leaf");
        let mut got = cert_names(&leaf);
        got.sort();
        assert_eq!(
            got,
            vec!["127.0.0.1", "192.168.7.7", "hearth.local", "localhost"]
        );
        webpki_verify(&old_ca, &again.server_chain(), "192.168.7.7").expect("old pin");
        webpki_verify(&pki.ca_der(), &again.server_chain(), "hearth.local").expect("new pin");
    }

    fn validity(der: &[u8]) -> (OffsetDateTime, OffsetDateTime) {
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).expect("cert");
        (
            c.validity().not_before.to_datetime(),
            c.validity().not_after.to_datetime(),
        )
    }

    #[test]
    fn installing_a_restore_reports_a_file_it_cannot_remove() {
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let (old_dir, dir) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        HubPki::load_or_create(old_dir.path(), &names, now()).expect("old hub");
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("hub");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).expect("scratch");
        for f in [
            DataFile::CaKey,
            DataFile::CaCert,
            DataFile::ServerKey,
            DataFile::ServerCert,
        ] {
            std::fs::copy(
                DataDir::new(old_dir.path()).path(f),
                DataDir::new(&scratch).path(f),
            )
            .expect("copy");
        }
        let staged = pki.stage_restore(&scratch, now()).expect("staged");
        // The backup has no ca-previous.pem, so this hub's is removed; a
        // directory in its place cannot be, and that is told.
        let previous = DataDir::new(dir.path()).path(DataFile::CaPrevious);
        std::fs::create_dir(&previous).expect("dir");
        std::fs::write(previous.join("x"), "").expect("file");
        let e = pki.install(staged).expect_err("a directory in the way");
        assert!(e.to_string().contains("ca-previous.pem"), "{e}");
    }

    #[test]
    fn toy_certificates_last_twenty_years_and_the_ca_twenty_five() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = now().replace_nanosecond(0).expect("whole seconds");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, t0).expect("create");
        let validity = |der: &[u8]| {
            let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).expect("cert");
            let v = c.validity();
            (
                v.not_before.timestamp() - t0.unix_timestamp(),
                v.not_after.timestamp() - t0.unix_timestamp(),
            )
        };
        const DAY: i64 = 86_400;
        assert_eq!(
            validity(&pki.ca_der()),
            (-DAY, 9_125 * DAY),
            "25 years from a day before"
        );
        let ca_der = pki.ca_der();
        let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der).expect("ca");
        let usage = ca.key_usage().expect("parses").expect("a key usage");
        assert!(usage.critical);
        let u = usage.value;
        assert!(
            u.key_cert_sign() && u.crl_sign() && u.digital_signature(),
            "{u:?}"
        );
        assert!(!u.key_encipherment() && !u.data_encipherment() && !u.key_agreement());
        let (_, csr) = make_toy_key_and_csr("bear-3f2a").expect("csr");
        let checked = check_csr(&csr).expect("valid");
        let id = ToyId::parse("bear-3f2a").expect("id");
        let (der, _) = pki.issue_toy_cert(&checked, &id, t0).expect("issue");
        assert_eq!(
            validity(&der),
            (-DAY, 7_300 * DAY),
            "20 years, from a day before"
        );
    }

    #[test]
    fn shredding_a_missing_file_is_fine_and_other_failures_are_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.key");
        std::fs::write(&file, "secret").expect("write");
        shred_file(&file).expect("shredded");
        assert!(!file.exists());
        shred_file(&file).expect("a file that is not there is fine");
        let sub = dir.path().join("a-directory");
        std::fs::create_dir(&sub).expect("dir");
        assert!(
            shred_file(&sub).is_err(),
            "a directory cannot be opened for writing"
        );
    }

    #[test]
    fn the_leaf_covers_the_host_name_localhost_and_an_address_the_hub_was_given() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            server_names("hearth.local", ip("0.0.0.0"), &[]),
            ["hearth.local", "localhost", "127.0.0.1"]
        );
        assert_eq!(
            server_names("hearth.local", ip("192.168.1.20"), &[]),
            ["hearth.local", "localhost", "127.0.0.1", "192.168.1.20"]
        );
        assert_eq!(
            server_names("hearth.local", ip("127.0.0.2"), &[]),
            ["hearth.local", "localhost", "127.0.0.1"],
            "a loopback listener adds nothing"
        );
        assert_eq!(
            server_names(
                "hearth.local",
                ip("::"),
                &["HEARTH.local".into(), "pi.lan".into()]
            ),
            ["hearth.local", "localhost", "127.0.0.1", "pi.lan"],
            "extra names, without repeats in any case"
        );
    }

    #[test]
    fn a_csr_for_a_stored_key_names_the_toy_and_carries_that_key() {
        let (key_pem, first) = make_toy_key_and_csr("bear-3f2a").expect("key");
        let again = csr_for_key_pem(&key_pem, "bear-3f2a").expect("csr");
        let (a, b) = (
            check_csr(&first).expect("valid"),
            check_csr(&again).expect("valid"),
        );
        assert_eq!(a.key_fp(), b.key_fp(), "the same key");
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(again.as_bytes())
            .expect("pem");
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .expect("der");
        let cn: Vec<_> = req
            .certification_request_info
            .subject
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cn, ["bear-3f2a"]);
        assert!(csr_for_key_pem("not a key", "bear-3f2a").is_err());
    }

    /// Runs a TLS handshake between two in-memory connections.
    fn handshake(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) -> Result<(), String> {
        for _ in 0..20 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).map_err(|e| e.to_string())?;
            }
            if !wire.is_empty() {
                server.read_tls(&mut &wire[..]).map_err(|e| e.to_string())?;
                server
                    .process_new_packets()
                    .map_err(|e| format!("server: {e}"))?;
            }
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).map_err(|e| e.to_string())?;
            }
            if !wire.is_empty() {
                client.read_tls(&mut &wire[..]).map_err(|e| e.to_string())?;
                client
                    .process_new_packets()
                    .map_err(|e| format!("client: {e}"))?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err("the handshake did not finish".into())
    }

    #[test]
    fn the_listener_presents_the_leaf_and_takes_a_toy_certificate_but_asks_no_browser_for_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        let server_config = Arc::new(pki.server_config().expect("server config"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.ca_der())).expect("root");
        let client = || {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots.clone())
        };
        let name = rustls::pki_types::ServerName::try_from("hearth.local").expect("name");

        // A toy: its certificate is asked for, sent and verified.
        let (key_pem, csr) = make_toy_key_and_csr("bear-3f2a").expect("csr");
        let checked = check_csr(&csr).expect("valid");
        let id = ToyId::parse("bear-3f2a").expect("id");
        let toy_cert =
            CertificateDer::from(pki.issue_toy_cert(&checked, &id, now()).expect("cert").0);
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let toy = client()
            .with_client_auth_cert(vec![toy_cert.clone()], key)
            .expect("client auth");
        let mut c = rustls::ClientConnection::new(Arc::new(toy), name.clone()).expect("client");
        let mut s = rustls::ServerConnection::new(server_config.clone()).expect("server");
        handshake(&mut c, &mut s).expect("a toy's handshake");
        assert_eq!(s.peer_certificates(), Some(&[toy_cert][..]));
        assert_eq!(
            c.peer_certificates().map(|p| p[0].clone()),
            Some(pki.server_chain()[0].clone()),
            "the hub's leaf"
        );

        // A browser has no certificate: not required.
        let browser = client().with_no_client_auth();
        let mut c = rustls::ClientConnection::new(Arc::new(browser), name).expect("client");
        let mut s = rustls::ServerConnection::new(server_config).expect("server");
        handshake(&mut c, &mut s).expect("a browser's handshake");
        assert_eq!(s.peer_certificates(), None);

        // The certificate request names no CA (see `LiveClientVerifier`):
        // a toy holds one certificate and sends it anyway, as above.
        assert!(pki.verifier.root_hint_subjects().is_empty());
    }

    #[test]
    fn a_certificate_is_known_by_the_sha256_of_its_der() {
        // FIPS 180-2's "abc" vector: any bytes are hashed as they are.
        assert_eq!(
            hex::encode(cert_sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_restored_ca_is_checked_before_it_is_installed_live() {
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let (old_dir, dir) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let old = HubPki::load_or_create(old_dir.path(), &names, now()).expect("old hub");
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("new hub");
        let id = ToyId::parse("bear-3f2a").expect("id");
        let (_, csr) = make_toy_key_and_csr("bear-3f2a").expect("csr");
        let checked = check_csr(&csr).expect("valid");
        let old_toy =
            CertificateDer::from(old.issue_toy_cert(&checked, &id, now()).expect("issue").0);
        let t = rustls::pki_types::UnixTime::now();
        pki.verifier
            .verify_client_cert(&old_toy, &[], t)
            .expect_err("another hub's toy");
        let copy_into = |scratch: &Path, key_from: &Path| {
            std::fs::create_dir(scratch).expect("scratch");
            for f in [DataFile::CaCert, DataFile::ServerKey, DataFile::ServerCert] {
                std::fs::copy(
                    DataDir::new(old_dir.path()).path(f),
                    DataDir::new(scratch).path(f),
                )
                .expect("copy");
            }
            std::fs::copy(
                DataDir::new(key_from).path(DataFile::CaKey),
                DataDir::new(scratch).path(DataFile::CaKey),
            )
            .expect("copy");
        };
        // A CA certificate with another key is refused before anything moves.
        let wrong = dir.path().join("wrong");
        copy_into(&wrong, dir.path());
        let before = pki.ca_der();
        assert!(pki.stage_restore(&wrong, now()).is_err());
        assert_eq!(pki.ca_der(), before, "nothing changed");

        let scratch = dir.path().join("scratch");
        copy_into(&scratch, old_dir.path());
        let staged = pki.stage_restore(&scratch, now()).expect("stage");
        assert_eq!(pki.ca_der(), before, "staging changes nothing live");
        pki.install(staged).expect("install");
        assert_eq!(pki.ca_der(), old.ca_der());
        assert_eq!(pki.ca_sha256(), old.ca_sha256());
        let file = |d: &Path, f| std::fs::read(DataDir::new(d).path(f)).expect("file");
        assert_eq!(
            file(dir.path(), DataFile::CaKey),
            file(old_dir.path(), DataFile::CaKey)
        );
        assert!(
            !DataDir::new(&scratch).path(DataFile::CaKey).exists(),
            "moved, not copied"
        );
        let leaf = pki.server_chain()[0].clone();
        webpki_verify(&old.ca_der(), &[leaf], "hearth.local").expect("the restored CA's leaf");
        pki.verifier
            .verify_client_cert(&old_toy, &[], t)
            .expect("a toy of the restored CA gets in");
    }

    #[test]
    fn replacing_the_ca_shreds_the_old_keys_and_swaps_everything_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        let file = |f| DataDir::new(dir.path()).path(f);
        std::fs::write(file(DataFile::CaPrevious), "an earlier CA").expect("write");
        let (old_ca, old_leaf) = (pki.ca_der(), pki.server_chain()[0].clone());
        let old_key = std::fs::read(file(DataFile::CaKey)).expect("key");
        let id = ToyId::parse("bear-3f2a").expect("id");
        let toy_cert = |pki: &HubPki| {
            let (_, csr) = make_toy_key_and_csr("bear-3f2a").expect("csr");
            let checked = check_csr(&csr).expect("valid");
            CertificateDer::from(pki.issue_toy_cert(&checked, &id, now()).expect("issue").0)
        };
        let old_toy = toy_cert(&pki);
        let t = rustls::pki_types::UnixTime::now();
        pki.verifier
            .verify_client_cert(&old_toy, &[], t)
            .expect("the old CA's toy");

        pki.replace_ca(now()).expect("replace");

        let new_ca = pki.ca_der();
        assert_ne!(new_ca, old_ca);
        assert_eq!(pki.ca_sha256(), Hex32::sha256(&new_ca));
        assert_eq!(ca_constraints_of(&new_ca), ca_constraints_of(&old_ca));
        let leaf = pki.server_chain()[0].clone();
        assert_ne!(leaf, old_leaf);
        webpki_verify(&new_ca, std::slice::from_ref(&leaf), "hearth.local").expect("new CA");
        webpki_verify(&old_ca, &[leaf], "hearth.local").expect_err("not the old CA");
        assert!(!file(DataFile::CaPrevious).exists(), "ca-previous.pem gone");
        assert_ne!(std::fs::read(file(DataFile::CaKey)).expect("key"), old_key);
        let stored = std::fs::read_to_string(file(DataFile::CaCert)).expect("crt");
        assert_eq!(stored, pki.ca_pem());
        pki.verifier
            .verify_client_cert(&old_toy, &[], t)
            .expect_err("the old CA's toy is refused at once");
        pki.verifier
            .verify_client_cert(&toy_cert(&pki), &[], t)
            .expect("the new CA's toy");
        // A restart loads the new CA.
        drop(pki);
        let again = HubPki::load_or_create(dir.path(), &names, now()).expect("load");
        assert_eq!(again.ca_der(), new_ca);
    }

    #[test]
    fn the_leaf_lives_365_days_and_is_renewed_30_days_before_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let t0 = now().replace_nanosecond(0).expect("whole seconds");
        let pki = HubPki::load_or_create(dir.path(), &names, t0).expect("create");
        let first = pki.server_chain()[0].clone();
        let (start, end) = validity(first.as_ref());
        assert_eq!(
            end - start,
            Duration::days(365),
            "Mozilla's profile wants < 366 days"
        );
        assert_eq!(pki.server_not_after(), Some(end));
        // Not due: nothing changes, up to exactly 30 days left.
        for day in [0, 200, 334] {
            assert_eq!(
                pki.renew_if_due(t0 + Duration::days(day)).expect("check"),
                None
            );
        }
        assert_eq!(pki.server_chain()[0], first);
        // 29 days left: a new leaf from the same CA, served at once and stored.
        let later = t0 + Duration::days(335);
        let new_end = pki.renew_if_due(later).expect("renew").expect("renewed");
        let chain = pki.server_chain();
        assert_ne!(chain[0], first);
        assert_eq!(chain[1].as_ref(), &pki.ca_der());
        assert_eq!(
            validity(chain[0].as_ref()),
            (later - Duration::days(1), new_end)
        );
        assert_eq!(new_end - later, Duration::days(364));
        let (_, leaf) =
            x509_parser::certificate::X509Certificate::from_der(chain[0].as_ref()).expect("leaf");
        let ca_der = pki.ca_der();
        let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der).expect("ca");
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        let stored = CertificateDer::from_pem_slice(
            &std::fs::read(DataDir::new(dir.path()).path(DataFile::ServerCert))
                .expect("server.crt"),
        )
        .expect("pem");
        assert_eq!(stored, chain[0]);
        // A restart then reuses it.
        let again = HubPki::load_or_create(dir.path(), &names, later).expect("reload");
        assert_eq!(again.server_chain()[0], chain[0]);
        assert_eq!(again.renew_if_due(later).expect("check"), None);
    }

    #[test]
    fn a_leaf_issued_for_800_days_is_replaced_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = server_names("hearth.local", "0.0.0.0".parse().expect("ip"), &[]);
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("create");
        // What hubs before 0.2 issued.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let ca_key = KeyPair::from_pem(
            &std::fs::read_to_string(DataDir::new(dir.path()).path(DataFile::CaKey)).expect("key"),
        )
        .expect("ca key");
        let ca = CertificateDer::from(pki.ca_der());
        let issuer = Issuer::from_ca_cert_der(&ca, &ca_key).expect("issuer");
        let mut params = CertificateParams::new(vec![
            "hearth.local".into(),
            "localhost".into(),
            "127.0.0.1".into(),
        ])
        .expect("params");
        params.not_before = now() - Duration::days(1);
        params.not_after = now() + Duration::days(800);
        let old = params.signed_by(&key, &issuer).expect("leaf");
        write_private_file(
            &DataDir::new(dir.path()).path(DataFile::ServerCert),
            old.pem().as_bytes(),
        )
        .expect("w");
        write_private_file(
            &DataDir::new(dir.path()).path(DataFile::ServerKey),
            key.serialize_pem().as_bytes(),
        )
        .expect("w");
        let pki = HubPki::load_or_create(dir.path(), &names, now()).expect("reload");
        assert_ne!(&pki.server_chain()[0], old.der());
        let (start, end) = validity(pki.server_chain()[0].as_ref());
        assert_eq!(end - start, Duration::days(365));
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

    #[test]
    fn a_p256_key_must_be_an_uncompressed_point() {
        // Found by cargo-mutants: with the point check's `||` made `&&`, a
        // 65-byte point that does not start with 0x04 (the hybrid form 0x06)
        // passed the key check and was refused later for another reason.
        let (_, csr) = make_toy_key_and_csr("bear-1").expect("csr");
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .expect("pem");
        let mut bytes = der.as_ref().to_vec();
        // The BIT STRING of 66 bytes: no unused bits, then 0x04 and X, Y.
        let at = bytes
            .windows(4)
            .position(|w| w == [0x03, 0x42, 0x00, 0x04])
            .expect("the point's BIT STRING");
        bytes[at + 3] = 0x06;
        let e = check_csr(&pem_encode("CERTIFICATE REQUEST", &bytes))
            .err()
            .expect("a hybrid point is refused");
        assert!(e.0.contains("uncompressed point"), "{e}");
    }

    #[test]
    fn address_ranges_and_names_the_ca_may_vouch_for() {
        // Found by cargo-mutants: `in_net` returning `true`, its IPv6 arm
        // deleted, `32 - prefix` as `32 + prefix` and `==` as `!=` all
        // lived; no test asked about an address outside the home ranges.
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(in_net(ip("172.31.255.255"), ip("172.16.0.0"), 12));
        assert!(!in_net(ip("172.32.0.0"), ip("172.16.0.0"), 12));
        assert!(!in_net(ip("172.15.255.255"), ip("172.16.0.0"), 12));
        assert!(in_net(ip("10.9.9.9"), ip("10.9.9.9"), 32));
        assert!(!in_net(ip("10.9.9.8"), ip("10.9.9.9"), 32));
        assert!(in_net(ip("8.8.8.8"), ip("0.0.0.0"), 0));
        assert!(in_net(ip("fdff::1"), ip("fc00::"), 7));
        assert!(!in_net(ip("fe00::1"), ip("fc00::"), 7));
        assert!(in_net(ip("::1"), ip("::1"), 128));
        assert!(!in_net(ip("::2"), ip("::1"), 128));
        assert!(!in_net(ip("10.0.0.1"), ip("::ffff:10.0.0.0"), 104));
        // Configured names outside the home ranges are permitted by name;
        // those inside are covered by their range.
        let names: Vec<String> = [
            "hub.example.org.",
            "HEARTH.local",
            "203.0.113.5",
            "192.168.1.9",
            "2001:db8::5",
            "box.localhost",
        ]
        .map(String::from)
        .to_vec();
        let p = ca_permitted(&names);
        for yes in [
            "hearth.local",
            "x.y.local",
            "localhost",
            "hub.example.org",
            "HUB.example.org.",
            "a.hub.example.org",
            "203.0.113.5",
            "192.168.200.1",
            "2001:db8::5",
            "fe80::1",
            "fd00::20",
        ] {
            assert!(is_permitted(&p, yes), "{yes} is permitted");
        }
        for no in [
            "example.org",
            "evilhub.example.org",
            "local.evil.example",
            "203.0.113.6",
            "8.8.8.8",
            "2001:db8::6",
        ] {
            assert!(!is_permitted(&p, no), "{no} is not permitted");
        }
        assert!(p.contains(&Permitted::Net(ip("203.0.113.5"), 32)));
        assert!(p.contains(&Permitted::Net(ip("2001:db8::5"), 128)));
        assert!(!p.contains(&Permitted::Net(ip("192.168.1.9"), 32)));
        assert!(!p.contains(&Permitted::Dns("hearth.local".into())));
        assert!(!p.contains(&Permitted::Dns("box.localhost".into())));
    }
}
