//! Pairing, the toy's side of `docs/toy-protocol.md` section 3: commit to a nonce,
//! reveal it, compute and announce the six-digit code, poll until a parent
//! confirms, check what the hub sent, and keep it.
//!
//! Steps 1 to 4 travel over TLS the toy cannot verify yet, so every answer
//! is checked: the CA against mDNS TXT `ca` (when known), the CA of step 4
//! byte for byte against step 1, and the client certificate's signature,
//! issuer and key against that CA and the toy's own key.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::client::{HubAddress, check, classify, json, printable, url_with};
use super::state::{Credentials, ToyState};
use super::{PairingFailure, ToyError, tls};
use crate::domain::{Hex32, PairingCode};

/// How a pairing runs.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// The toy's model (at most 64 bytes), sent in step 1.
    pub model: String,
    /// Pause between step-4 polls; never less than one second.
    pub poll_interval: Duration,
    /// Give up when no parent answered in this time (the hub's own
    /// `expires_in` also bounds it).
    pub timeout: Duration,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            model: concat!("hearth-toy ", env!("CARGO_PKG_VERSION")).into(),
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Given to the caller once the code is known, to announce it.
#[derive(Clone, Debug)]
pub struct CodeReady {
    /// The hub's pairing id.
    pub pairing_id: String,
    /// The code the parent must type.
    pub code: PairingCode,
    /// Seconds the hub keeps the pairing open.
    pub expires_in: u64,
}

#[derive(Deserialize)]
struct Started {
    pairing_id: String,
    hub_nonce: String,
    ca_cert: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Polled {
    status: String,
    #[serde(default)]
    toy_id: Option<String>,
    #[serde(default)]
    client_cert: Option<String>,
    #[serde(default)]
    ca_cert: Option<String>,
}

fn protocol(msg: impl Into<String>) -> ToyError {
    ToyError::Protocol(msg.into())
}

/// Pairs the toy with `hub` and stores the certificate and pinned CA in
/// `state`. `on_code` is called once, when the code is ready to announce.
pub async fn pair(
    state: &mut ToyState,
    hub: &HubAddress,
    opts: &PairOptions,
    on_code: impl FnOnce(&CodeReady),
) -> Result<(), ToyError> {
    let http = hub.http_client(tls::pairing_config()?)?;
    let base = hub.base_url()?;
    let timeout = Duration::from_secs(30);

    // Step 1: commit to a fresh nonce.
    let toy_nonce: [u8; 32] = rand::random();
    let commitment = Hex32::sha256(&toy_nonce).to_hex();
    let csr = state.csr_pem()?;
    let body = json!({
        "toy_id": state.toy_id(),
        "name": state.name(),
        "model": opts.model,
        "csr": csr,
        "commitment": commitment,
    });
    let resp = http
        .post(url_with(&base, &["pair"])?)
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(classify)?;
    let started: Started = match check(resp, false).await {
        Ok(r) => json(r).await?,
        Err(ToyError::Hub { status: 409, .. }) => {
            return Err(ToyError::Pairing(PairingFailure::AlreadyPaired));
        }
        Err(e) => return Err(e),
    };
    let pairing_id = started.pairing_id;
    if pairing_id.is_empty() || pairing_id.len() > 256 || pairing_id.chars().any(char::is_control) {
        return Err(protocol("pairing_id is missing or malformed"));
    }
    let hub_nonce = Hex32::parse("hub_nonce", &started.hub_nonce).map_err(|e| protocol(e.0))?;
    let ca_der =
        tls::cert_from_pem(&started.ca_cert).map_err(|e| protocol(format!("ca_cert: {e}")))?;
    let ca_der = ca_der.as_ref().to_vec();
    X509Certificate::from_der(&ca_der)
        .map_err(|_| protocol("ca_cert is not a valid X.509 certificate"))?;
    if let Some(advertised) = hub.ca_sha256 {
        if Hex32::sha256(&ca_der) != advertised {
            return Err(ToyError::Pairing(PairingFailure::CaMismatch));
        }
    }

    // Step 2: reveal the nonce.
    let resp = http
        .post(url_with(&base, &["pair", &pairing_id, "reveal"])?)
        .json(&json!({"toy_nonce": hex::encode(toy_nonce)}))
        .timeout(timeout)
        .send()
        .await
        .map_err(classify)?;
    match check(resp, false).await {
        Ok(_) => {}
        Err(ToyError::Hub { status: 404, .. }) => {
            return Err(ToyError::Pairing(PairingFailure::Expired));
        }
        Err(e) => return Err(e),
    }

    // Step 3: the code, over the SPKI exactly as it stands in the CSR.
    let code = PairingCode::compute(&ca_der, state.spki_der(), &toy_nonce, &hub_nonce.0);
    let expires_in = started.expires_in.unwrap_or(600).min(3600);
    on_code(&CodeReady {
        pairing_id: pairing_id.clone(),
        code,
        expires_in,
    });

    // Step 4: poll until a parent decides.
    let deadline =
        tokio::time::Instant::now() + opts.timeout.min(Duration::from_secs(expires_in + 5));
    let interval = opts.poll_interval.max(Duration::from_secs(1));
    let poll_url = url_with(&base, &["pair", &pairing_id])?;
    let approved = loop {
        if tokio::time::Instant::now() + interval > deadline {
            return Err(ToyError::Pairing(PairingFailure::TimedOut));
        }
        tokio::time::sleep(interval).await;
        let resp = match http.get(poll_url.clone()).timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) => {
                // A Wi-Fi hiccup while the parent types the code should not
                // end the pairing; the deadline bounds the retries.
                tracing::info!(error = %classify(e), "pairing poll failed; trying again");
                continue;
            }
        };
        let polled: Polled = match check(resp, false).await {
            Ok(r) => json(r).await?,
            Err(ToyError::Hub { status: 404, .. }) => {
                return Err(ToyError::Pairing(PairingFailure::Expired));
            }
            Err(e) if e.is_retryable() => continue,
            Err(e) => return Err(e),
        };
        match polled.status.as_str() {
            "awaiting_reveal" | "awaiting_confirmation" => continue,
            "rejected" => return Err(ToyError::Pairing(PairingFailure::Rejected)),
            "approved" => break polled,
            other => {
                return Err(protocol(format!(
                    "unknown pairing status {:?}",
                    printable(other, 40)
                )));
            }
        }
    };

    let ca_pem_now = approved
        .ca_cert
        .ok_or_else(|| protocol("approved without ca_cert"))?;
    let ca_der_now =
        tls::cert_from_pem(&ca_pem_now).map_err(|e| protocol(format!("ca_cert: {e}")))?;
    if ca_der_now.as_ref() != ca_der.as_slice() {
        return Err(ToyError::Pairing(PairingFailure::CaChanged));
    }
    let cert_pem = approved
        .client_cert
        .ok_or_else(|| protocol("approved without client_cert"))?;
    check_client_cert(&cert_pem, &ca_der, state.spki_der())
        .map_err(|why| ToyError::Pairing(PairingFailure::BadClientCertificate(why)))?;
    if let Some(id) = approved.toy_id.as_deref() {
        if id != state.toy_id().as_str() {
            return Err(ToyError::Pairing(PairingFailure::BadClientCertificate(
                "the hub approved a different toy id".into(),
            )));
        }
    }
    state.set_paired(
        Credentials {
            ca_pem: started.ca_cert,
            cert_pem,
        },
        hub.clone(),
    )
}

/// Checks that `cert_pem` is signed by the CA for the toy's own key.
fn check_client_cert(cert_pem: &str, ca_der: &[u8], spki_der: &[u8]) -> Result<(), String> {
    let der = tls::cert_from_pem(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|_| "not a valid X.509 certificate".to_owned())?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|_| "the CA is not a valid X.509 certificate".to_owned())?;
    if cert.public_key().raw != spki_der {
        return Err("it is for another key than the toy's".into());
    }
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err("it was not issued by the hub CA".into());
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| "its signature does not verify with the hub CA's key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_test_vector_holds() {
        let ca: Vec<u8> = (0x00..=0x0f).collect();
        let key: Vec<u8> = (0x64..=0x83).collect();
        let code = PairingCode::compute(&ca, &key, &[0x11; 32], &[0x22; 32]);
        assert_eq!(code.as_str(), "880298");
        assert_eq!(
            Hex32::sha256(&[0x11; 32]).to_hex(),
            "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"
        );
    }

    #[test]
    fn a_client_cert_for_another_key_or_ca_is_refused() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};
        let ca_key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).expect("ca");
        let other_key = KeyPair::generate().expect("key");
        let other_ca = CertificateParams::default()
            .self_signed(&other_key)
            .expect("ca");
        let toy_key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&p, &ca_key);
        let cert = CertificateParams::new(vec!["toy".into()])
            .expect("params")
            .signed_by(&toy_key, &issuer)
            .expect("cert");
        let spki = toy_key.subject_public_key_info();
        assert_eq!(check_client_cert(&cert.pem(), ca.der(), &spki), Ok(()));
        assert!(
            check_client_cert(&cert.pem(), ca.der(), &other_key.subject_public_key_info()).is_err()
        );
        assert!(check_client_cert(&cert.pem(), other_ca.der(), &spki).is_err());
        assert!(check_client_cert("garbage", ca.der(), &spki).is_err());
    }
}
