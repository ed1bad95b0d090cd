//! Accounts: password hashing and rules, session tokens, CSRF tokens,
//! throttling of logins and setup codes, and the one-time setup code.
//!
//! Everything slow here (argon2) is called from blocking threads by the
//! use cases; nothing in this module touches the async runtime.

pub mod password;
pub mod setup;
pub mod throttle;
pub mod tokens;
