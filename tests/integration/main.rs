//! The integration tests: one binary, one module per area. Each test
//! starts a real hub on 127.0.0.1:0 over real TLS with a temporary data
//! directory (see `harness`). `netns` is a harness too: a pair of network
//! namespaces for tests that need a real network (see its module docs).
//! A test that cannot run here calls `skips::skip`, which makes the skip
//! visible in the plain `cargo test` output and in the summary printed by
//! the `skipped` target at the end of the run.

mod browser;
mod characters;
mod contract;
mod discovery;
mod durability;
mod expect_continue;
mod family;
mod first_start;
mod foundation;
mod fuzz_regressions;
mod hardening;
mod harness;
mod head;
mod lan_guard;
mod look;
mod members;
mod messages;
mod mqtt;
mod netns;
mod pairing;
mod prerequisites;
mod proc_hub;
mod relay;
mod relay_egress;
mod restore;
mod setup_code;
mod skipping;
#[path = "../support/skips.rs"]
mod skips;
mod toy_client;
mod toy_polls;
mod unread;
mod yourdata;
