//! Secret tokens: session tokens (cookie or bearer) and CSRF tokens, made
//! from 32 random bytes. Only the SHA-256 of a session token is stored.

use sha2::{Digest, Sha256};

/// The session cookie. `__Host-` pins it to this origin, Secure, path `/`.
pub const SESSION_COOKIE: &str = "__Host-hearth_session";

/// A fresh random token, 64 hex characters.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two tokens in constant time.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_lowercase_hex_of_32_bytes() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b, "each token is fresh");
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_token() {
        // The FIPS 180-2 example for "abc".
        assert_eq!(
            hex::encode(token_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tokens_are_equal_only_when_identical() {
        let t = new_token();
        assert!(tokens_equal(&t, &t.clone()));
        assert!(!tokens_equal(&t, &new_token()), "same length, other bytes");
        assert!(!tokens_equal("abc", "abcd"), "a prefix is not the token");
        assert!(!tokens_equal("abcd", "abc"));
        assert!(tokens_equal("", ""));
    }
}
