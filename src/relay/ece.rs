//! RFC 8188 `aes128gcm` content coding, as RELAY.md section 2 uses it:
//! input keying material `K` (the link secret), an empty key id, a fresh
//! random 16-byte salt per object and records of 4096 bytes. What the hub
//! uploads is decrypted by the player with WebCrypto, and what the player
//! uploads (a reply) is decrypted here.
//!
//! Built on RustCrypto's `hkdf` and `aes-gcm`; no I/O.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The record size the hub writes.
pub const RECORD_SIZE: u32 = 4096;
/// Length of the salt.
const SALT_LEN: usize = 16;
/// Length of the header with an empty key id: salt, record size, id length.
const HEADER_LEN: usize = SALT_LEN + 4 + 1;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// Why a body could not be decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    /// Shorter than a header, or a record size RFC 8188 forbids.
    #[error("not an aes128gcm body: {0}")]
    Malformed(&'static str),
    /// A record failed authentication (wrong key or altered bytes).
    #[error("a record does not decrypt with this link's key")]
    Authentication,
    /// The records' delimiters or padding break RFC 8188.
    #[error("the records are not framed as RFC 8188 requires: {0}")]
    Framing(&'static str),
}

fn keys(ikm: &[u8], salt: &[u8]) -> (Aes128Gcm, [u8; 12]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    // Both lengths are far below HKDF's limit of 255 blocks: these cannot fail.
    let _ = hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek);
    let _ = hk.expand(b"Content-Encoding: nonce\0", &mut nonce);
    let cipher = match Aes128Gcm::new_from_slice(&cek) {
        Ok(c) => c,
        Err(_) => unreachable_key(),
    };
    (cipher, nonce)
}

#[cold]
fn unreachable_key() -> ! {
    // A 16-byte key is always valid for AES-128.
    panic!("AES-128 refused a 16-byte key")
}

fn record_nonce(base: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *base;
    for (i, b) in seq.to_be_bytes().iter().enumerate() {
        n[4 + i] ^= b;
    }
    n
}

/// Encrypts `plain` with the link secret `ikm` and a fresh random salt.
pub fn encrypt(ikm: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    encrypt_with_salt(ikm, &rand::random::<[u8; SALT_LEN]>(), plain)
}

/// [`encrypt`] with a given salt (for tests with fixed vectors).
pub fn encrypt_with_salt(ikm: &[u8; 16], salt: &[u8; SALT_LEN], plain: &[u8]) -> Vec<u8> {
    let (cipher, base) = keys(ikm, salt);
    let chunk = RECORD_SIZE as usize - TAG_LEN - 1;
    let records = plain.len() / chunk + 1;
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + records * (TAG_LEN + 1));
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(0);
    // Every record but the last carries exactly `chunk` bytes; the last one
    // (possibly empty) ends with the delimiter 2.
    let mut rest = plain;
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(chunk + 1);
    loop {
        let last = rest.len() < chunk;
        let take = if last { rest.len() } else { chunk };
        buf.clear();
        buf.extend_from_slice(&rest[..take]);
        buf.push(if last { 2 } else { 1 });
        rest = &rest[take..];
        let nonce = record_nonce(&base, seq);
        let sealed = match cipher.encrypt(&Nonce::from(nonce), buf.as_slice()) {
            Ok(s) => s,
            Err(_) => unreachable_key(),
        };
        out.extend_from_slice(&sealed);
        seq += 1;
        if last {
            break;
        }
    }
    out
}

/// Decrypts an `aes128gcm` body with the link secret `ikm`.
pub fn decrypt(ikm: &[u8; 16], body: &[u8]) -> Result<Vec<u8>, EceError> {
    if body.len() < HEADER_LEN {
        return Err(EceError::Malformed("shorter than its header"));
    }
    let salt = &body[..SALT_LEN];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let idlen = body[20] as usize;
    if rs < TAG_LEN + 2 {
        return Err(EceError::Malformed("record size below 18"));
    }
    let start = HEADER_LEN + idlen;
    if body.len() < start {
        return Err(EceError::Malformed("shorter than its key id"));
    }
    let (cipher, base) = keys(ikm, salt);
    let records = &body[start..];
    if records.is_empty() {
        return Err(EceError::Framing("no record"));
    }
    let mut out = Vec::with_capacity(records.len());
    let mut seq = 0u64;
    let mut chunks = records.chunks(rs).peekable();
    while let Some(rec) = chunks.next() {
        let last = chunks.peek().is_none();
        if rec.len() <= TAG_LEN {
            return Err(EceError::Framing("a record too short for its tag"));
        }
        let nonce = record_nonce(&base, seq);
        let mut plain = cipher
            .decrypt(&Nonce::from(nonce), rec)
            .map_err(|_| EceError::Authentication)?;
        // Strip the padding (zeros) and find the delimiter.
        while plain.last() == Some(&0) {
            plain.pop();
        }
        match (plain.pop(), last) {
            (Some(2), true) | (Some(1), false) => {}
            (Some(1), true) => return Err(EceError::Framing("the last record is not marked last")),
            (Some(2), false) => {
                return Err(EceError::Framing(
                    "a record marked last is followed by more",
                ));
            }
            _ => return Err(EceError::Framing("a record without its delimiter")),
        }
        out.extend_from_slice(&plain);
        seq += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8188 section 3.1: "I am the walrus" with the published key and salt.
    #[test]
    fn rfc8188_example_decrypts() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let ikm: [u8; 16] = b64
            .decode("yqdlZ-tYemfogSmv7Ws5PQ")
            .expect("key")
            .try_into()
            .expect("16 bytes");
        let body = b64
            .decode("I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg")
            .expect("body");
        assert_eq!(decrypt(&ikm, &body).expect("decrypts"), b"I am the walrus");
        let salt: [u8; 16] = body[..16].try_into().expect("salt");
        assert_eq!(encrypt_with_salt(&ikm, &salt, b"I am the walrus"), body);
    }

    #[test]
    fn round_trips_across_record_boundaries_and_refuses_damage() {
        let k = [7u8; 16];
        for n in [0usize, 1, 4078, 4079, 4080, 3 * 4079, 10_000] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let enc = encrypt(&k, &plain);
            assert_eq!(decrypt(&k, &enc).expect("decrypts"), plain, "n = {n}");
        }
        let mut enc = encrypt(&k, b"hello");
        assert_eq!(decrypt(&[8u8; 16], &enc), Err(EceError::Authentication));
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert_eq!(decrypt(&k, &enc), Err(EceError::Authentication));
        assert!(decrypt(&k, b"short").is_err());
        // A body cut at a record boundary loses its last record: refused.
        let long = encrypt(&k, &[1u8; 5000]);
        assert!(decrypt(&k, &long[..HEADER_LEN + 4096]).is_err());
    }
}
