//! Hearth's integration tests: one test binary, one module per area.
//!
//! `netns` is a harness, not tests: a pair of network namespaces for tests
//! that need a real network (see its module docs).

mod discovery;
mod netns;
