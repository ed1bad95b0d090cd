//! The integration tests: one binary, one module per area. Each test
//! starts a real hub on 127.0.0.1:0 over real TLS with a temporary data
//! directory (see `harness`). `netns` is a harness too: a pair of network
//! namespaces for tests that need a real network (see its module docs).

mod browser;
mod discovery;
mod family;
mod foundation;
mod hardening;
mod harness;
mod messages;
mod netns;
mod pairing;
mod toy_client;
