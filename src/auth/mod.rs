//! Accounts: password hashing and rules, session tokens, CSRF tokens,
//! throttling of logins and setup codes, and the one-time setup code.
//!
//! Everything slow here (argon2) runs on the bounded worker threads of
//! `work`, which the use cases await; nothing else here touches the async
//! runtime.

pub mod password;
pub mod setup;
pub mod throttle;
pub mod tokens;
pub mod work;
