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
