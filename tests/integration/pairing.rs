//! Pairing (docs/toy-protocol.md section 3) over real TLS, every edge case, and the
//! toy identity rules of section 4.

use serde_json::{Value, json};

use crate::harness::{Hub, TestToy};

#[actix_web::test]
async fn full_pairing_then_whoami_status_rename_and_removal() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-3f2a");
    assert_eq!(toy.request(&hub).await, 201);
    let (_, v) = toy.poll(&hub).await;
    assert_eq!(v["status"], "awaiting_reveal");
    let listing = parent.json("/api/v1/toys").await;
    assert_eq!(listing["pending"][0]["toy_id"], "bear-3f2a");
    assert_eq!(listing["pending"][0]["awaiting"], "reveal");
    assert_eq!(toy.reveal(&hub).await, 200);
    let listing = parent.json("/api/v1/toys").await;
    assert_eq!(listing["pending"][0]["awaiting"], "confirmation");
    let (_, v) = toy.poll(&hub).await;
    assert_eq!(v["status"], "awaiting_confirmation");
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": toy.code()}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (_, v) = toy.poll(&hub).await;
    assert_eq!(v["status"], "approved");
    assert_eq!(
        v["ca_cert"].as_str(),
        Some(toy.ca_pem.as_str()),
        "the CA of step 4 is the CA of step 1"
    );
    // The certificate: CN = toy id, clientAuth, for the toy's own key.
    {
        use x509_parser::prelude::FromDer;
        let pem = toy.cert_pem.clone().expect("cert");
        let der: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("pem");
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(der.as_ref()).expect("parse");
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok()),
            Some("bear-3f2a")
        );
        assert!(
            cert.extended_key_usage()
                .expect("eku")
                .expect("present")
                .value
                .client_auth
        );
        let spki = crate::harness::csr_spki_der(&toy.csr_pem);
        assert_eq!(cert.public_key().raw, &spki[..]);
    }
    let c = toy.client(&hub);
    let who: Value = c
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(who["toy_id"], "bear-3f2a");
    assert_eq!(who["name"], "Bear");
    let r = c
        .post(hub.url("/toy/v1/status"))
        .json(&json!({"battery": 80, "firmware": "1.2.3"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 204);
    let r = c
        .post(hub.url("/toy/v1/status"))
        .json(&json!({"battery": 180}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    let listing = parent.json("/api/v1/toys").await;
    assert_eq!(listing["paired"][0]["battery"], 80);
    assert_eq!(listing["paired"][0]["online"], true);
    assert!(listing["pending"].as_array().expect("list").is_empty());
    // Rename shows in whoami.
    let r = parent
        .patch("/api/v1/toys/bear-3f2a", json!({"name": "Mr Bear"}))
        .await;
    assert_eq!(r.status(), 200);
    let who: Value = c
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(who["name"], "Mr Bear");
    // A second pairing request for a paired toy is 409.
    let mut again = TestToy::new("bear-3f2a");
    assert_eq!(again.request(&hub).await, 409);
    // Removal locks it out at once.
    assert_eq!(parent.delete("/api/v1/toys/bear-3f2a").await.status(), 204);
    let r = c.get(hub.url("/toy/v1/whoami")).send().await.expect("req");
    assert_eq!(r.status(), 403);
    // It pairs again with a new key; the old certificate stays refused.
    let mut renewed = TestToy::new("bear-3f2a");
    renewed.pair(&hub, &parent).await;
    assert_eq!(
        renewed
            .client(&hub)
            .get(hub.url("/toy/v1/whoami"))
            .send()
            .await
            .expect("req")
            .status(),
        200
    );
    assert_eq!(
        c.get(hub.url("/toy/v1/whoami"))
            .send()
            .await
            .expect("req")
            .status(),
        403,
        "the old certificate is refused"
    );
    // The audit log holds the outcomes.
    let entries = hub
        .state
        .store
        .read(|c| hearth::store::audit::recent(c, 50))
        .await
        .expect("audit");
    assert!(entries.iter().any(|e| e.action == "toy_paired"
        && e.outcome == "success"
        && e.actor.as_deref() == Some("mum")));
    assert!(entries.iter().any(|e| e.action == "toy_removed"));
}

#[actix_web::test]
async fn toy_endpoints_refuse_missing_and_foreign_certificates() {
    let hub = Hub::start().await;
    let r = hub
        .anon()
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "unauthorized");
    // A certificate from another hub's CA: the handshake fails or the answer is 401.
    let other = Hub::start().await;
    let other_parent = other.parent().await;
    let mut stranger = TestToy::new("stranger");
    stranger.pair(&other, &other_parent).await;
    let res = hub
        .with_cert(
            stranger.cert_pem.as_deref().expect("cert"),
            &stranger.key_pem,
        )
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await;
    // Only a TLS refusal of the certificate counts, not any error at all.
    match res {
        Err(e) => {
            let mut chain = format!("{e:?}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(&format!(" / {s:?}"));
                src = s.source();
            }
            assert!(
                chain.contains("AlertReceived(UnknownCA)")
                    || chain.contains("AlertReceived(BadCertificate)")
                    || chain.contains("AlertReceived(CertificateUnknown)"),
                "the hub must refuse the certificate with a TLS alert: {chain}"
            );
        }
        Ok(r) => assert_eq!(r.status(), 401),
    }
}

#[actix_web::test]
async fn wrong_codes_reveal_rules_and_replacement() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("owl");
    assert_eq!(toy.request(&hub).await, 201);
    // Confirm before reveal: 409.
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": "123456"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(toy.reveal(&hub).await, 200);
    assert_eq!(toy.reveal(&hub).await, 409, "a second reveal");
    let right = toy.code();
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    // Not six digits: refused, does not count.
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": "12ab"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    for left in [2, 1, 0] {
        let r = parent
            .post(
                &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
                json!({"code": wrong}),
            )
            .await;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["attempts_left"], left);
        assert_eq!(v["error"]["code"], "wrong_code");
    }
    let (_, v) = toy.poll(&hub).await;
    assert_eq!(v["status"], "rejected");
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": right}),
        )
        .await;
    assert_eq!(r.status(), 409, "a rejected pairing cannot be confirmed");

    // Reveal mismatch discards the pairing.
    let mut liar = TestToy::new("liar");
    assert_eq!(liar.request(&hub).await, 201);
    liar.nonce[0] ^= 1;
    assert_eq!(liar.reveal(&hub).await, 422);
    assert_eq!(liar.poll(&hub).await.0, 404);

    // A new request for the same toy replaces the old one.
    let mut first = TestToy::new("cat");
    assert_eq!(first.request(&hub).await, 201);
    let old_id = first.pairing_id.clone();
    assert_eq!(first.request(&hub).await, 201);
    assert_ne!(first.pairing_id, old_id);
    let r = hub
        .anon()
        .get(hub.url(&format!("/toy/v1/pair/{old_id}")))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 404);
    // Reject.
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/reject", first.pairing_id),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(first.poll(&hub).await.1["status"], "rejected");
    let entries = hub
        .state
        .store
        .read(|c| hearth::store::audit::recent(c, 50))
        .await
        .expect("audit");
    assert!(
        entries
            .iter()
            .filter(|e| e.action == "pairing_code_wrong" && e.outcome == "failure")
            .count()
            >= 3
    );
    assert!(entries.iter().any(|e| e.action == "pairing_rejected"));
}

#[actix_web::test]
async fn expiry_and_pending_limit() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("slow");
    assert_eq!(toy.request(&hub).await, 201);
    hub.clock.advance(time::Duration::seconds(601));
    assert_eq!(toy.poll(&hub).await.0, 404);
    assert_eq!(toy.reveal(&hub).await, 404);
    let r = parent
        .post(
            &format!("/api/v1/pairings/{}/confirm", toy.pairing_id),
            json!({"code": "123456"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    for i in 0..8 {
        assert_eq!(TestToy::new(&format!("t{i}")).request(&hub).await, 201);
    }
    let r = hub
        .anon()
        .post(hub.url("/toy/v1/pair"))
        .json(&TestToy::new("ninth").request_body())
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_requests");
}

#[actix_web::test]
async fn malformed_pairing_requests_get_400_or_413() {
    let hub = Hub::start().await;
    let toy = TestToy::new("good");
    let good = toy.request_body();
    let post = |body: String| {
        let (c, url) = (hub.anon(), hub.url("/toy/v1/pair"));
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("req")
        }
    };
    let mut cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid_json"),
        ("[]".into(), "invalid_json"),
    ];
    let mut with = |k: &str, v: Value, code: &'static str| {
        let mut b = good.clone();
        b[k] = v;
        cases.push((b.to_string(), code));
    };
    with(
        "csr",
        json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
        "invalid_pairing_request",
    );
    with("csr", json!("garbage"), "invalid_pairing_request");
    with("commitment", json!("abc"), "invalid_pairing_request");
    with(
        "commitment",
        json!("zz".repeat(32)),
        "invalid_pairing_request",
    );
    with("toy_id", json!("bad id!"), "invalid_pairing_request");
    with("toy_id", json!("x".repeat(65)), "invalid_pairing_request");
    with("name", json!(""), "invalid_pairing_request");
    for (body, code) in cases {
        let r = post(body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], code, "{body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let mut huge = good.clone();
    huge["model"] = json!("x".repeat(20 * 1024));
    let r = post(huge.to_string()).await;
    assert_eq!(r.status(), 413);
    // Reveal with a malformed nonce.
    let mut t = TestToy::new("nonce");
    assert_eq!(t.request(&hub).await, 201);
    let r = hub
        .anon()
        .post(hub.url(&format!("/toy/v1/pair/{}/reveal", t.pairing_id)))
        .json(&json!({"toy_nonce": "12"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    t.nonce = [0; 32];
    assert_eq!(
        t.poll(&hub).await.1["status"],
        "awaiting_reveal",
        "a bad reveal harms nothing"
    );
}

/// A P-256 key whose SubjectPublicKeyInfo carries the compressed point
/// (0x02/0x03 || X), signing with the real key, so the CSR's signature is
/// valid for the point it names.
struct CompressedP256 {
    key: rcgen::KeyPair,
    point: Vec<u8>,
}

impl rcgen::PublicKeyData for CompressedP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl rcgen::SigningKey for CompressedP256 {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg)
    }
}

#[actix_web::test]
async fn a_csr_with_a_compressed_point_is_refused_with_400() {
    use rcgen::PublicKeyData;
    let hub = Hub::start().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let full = key.der_bytes().to_vec();
    assert_eq!((full.len(), full[0]), (65, 4), "an uncompressed point");
    let mut point = vec![2 + (full[64] & 1)];
    point.extend_from_slice(&full[1..33]);
    let signer = CompressedP256 { key, point };
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&signer)
        .expect("csr")
        .pem()
        .expect("pem");
    assert_eq!(
        crate::harness::csr_spki_der(&csr).len(),
        59,
        "a compressed SPKI"
    );
    let mut toy = TestToy::new("squeezed");
    toy.csr_pem = csr;
    let r = hub
        .anon()
        .post(hub.url("/toy/v1/pair"))
        .json(&toy.request_body())
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_pairing_request", "{v}");
    // The same key uncompressed pairs (the refusal is about the encoding).
    let plain = rcgen::CertificateParams::default()
        .serialize_request(&signer.key)
        .expect("csr")
        .pem()
        .expect("pem");
    toy.csr_pem = plain;
    assert_eq!(toy.request(&hub).await, 201);
}

/// The name a parent gave a toy on the hub outlives its removal and a new
/// pairing by the same toy id, with its old key and with a new one (a
/// reset toy); a toy never seen before takes the name it announces.
#[actix_web::test]
async fn a_name_given_on_the_hub_survives_pairing_again() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-5d1c");
    toy.pair(&hub, &parent).await;
    let name = |v: &Value| v["paired"][0]["name"].as_str().map(str::to_owned);
    assert_eq!(
        name(&parent.json("/api/v1/toys").await).as_deref(),
        Some("Bear")
    );
    let r = parent
        .patch("/api/v1/toys/bear-5d1c", json!({"name": "Mia's bear"}))
        .await;
    assert_eq!(r.status(), 200);
    // Removed, then paired again with the same key (a new exchange).
    assert_eq!(parent.delete("/api/v1/toys/bear-5d1c").await.status(), 204);
    let mut same_key = TestToy::new("bear-5d1c");
    same_key.key_pem = toy.key_pem.clone();
    same_key.csr_pem = toy.csr_pem.clone();
    same_key.pair(&hub, &parent).await;
    let listing = parent.json("/api/v1/toys").await;
    assert_eq!(name(&listing).as_deref(), Some("Mia's bear"), "{listing}");
    // Removed, then paired again with a new key.
    assert_eq!(parent.delete("/api/v1/toys/bear-5d1c").await.status(), 204);
    let mut new_key = TestToy::new("bear-5d1c");
    new_key.pair(&hub, &parent).await;
    let listing = parent.json("/api/v1/toys").await;
    assert_eq!(name(&listing).as_deref(), Some("Mia's bear"), "{listing}");
    let who: Value = new_key
        .client(&hub)
        .get(hub.url("/toy/v1/whoami"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(who["name"], "Mia's bear", "the toy learns its hub name");
}
