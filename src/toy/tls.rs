//! The two TLS client configurations of a toy (`docs/toy-protocol.md` sections 2 and 3),
//! both on the ring provider, TLS 1.2 and 1.3 only.
//!
//! - [`pairing_config`]: before pairing the toy has no trust anchor, so it
//!   accepts any server certificate (it still checks the handshake
//!   signature). That is safe only because the parent compares the pairing
//!   code, which a machine in the middle cannot make match; the toy also
//!   checks the CA against mDNS TXT `ca` and the step-4 answer against step 1.
//! - [`paired_config`]: afterwards the pinned hub CA is the *only* trust
//!   anchor, the server name is checked against the leaf, and the toy
//!   presents its client certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::ToyError;
use super::state::Credentials;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> ToyError {
    ToyError::Local(format!("cannot set up TLS: {e}"))
}

/// Accepts any server certificate but checks that the server holds its key.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No trust anchor exists yet; see the module documentation.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The configuration for pairing steps 1 to 4: no trust anchor, no client certificate.
pub fn pairing_config() -> Result<ClientConfig, ToyError> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyServerCert {
        algs: provider.signature_verification_algorithms,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Parses one PEM certificate.
pub fn cert_from_pem(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| "not a PEM certificate".to_owned())
}

/// The configuration of a paired toy: the pinned CA as the only root, the
/// server name checked against the leaf, the client certificate presented.
pub fn paired_config(credentials: &Credentials, key_pem: &str) -> Result<ClientConfig, ToyError> {
    let provider = provider();
    let ca = cert_from_pem(&credentials.ca_pem).map_err(|e| tls_err(format!("pinned CA: {e}")))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| tls_err(format!("pinned CA: {e}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(tls_err)?;
    let cert = cert_from_pem(&credentials.cert_pem)
        .map_err(|e| tls_err(format!("client certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| tls_err("the toy key is not a PEM private key"))?;
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(tls_err)
}
