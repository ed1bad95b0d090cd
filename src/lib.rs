//! Hearth: a private voice hub for families.
//!
//! The library holds everything; the binaries `hearth` (the hub) and
//! `hearth-toy` (the reference toy) are thin layers over it. See
//! `docs/ARCHITECTURE.md` for the map of modules and the rules between them.

pub mod audio;
pub mod domain;
