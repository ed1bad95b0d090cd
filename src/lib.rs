//! Hearth: a private voice hub for families.
//!
//! The library holds everything; the binaries `hearth` (the hub) and
//! `hearth-toy` (the reference toy) are thin layers over it. See
//! `docs/ARCHITECTURE.md` for the map of modules and the rules between them.

pub mod accounts;
pub mod app;
pub mod audio;
pub mod auth;
pub mod character;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data;
pub mod datadir;
pub mod discovery;
pub mod doctor;
pub mod domain;
pub mod error;
pub mod events;
pub mod family;
pub mod fuzzing;
pub mod http;
pub mod ledger;
pub mod messaging;
pub mod mqtt;
pub mod onboarding;
pub mod pairing;
pub mod pki;
pub mod qr;
pub mod relay;
pub mod state;
pub mod store;
pub mod toy;
pub mod toy_api;
pub mod toys;
pub mod urls;
pub mod web;
