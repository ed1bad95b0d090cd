//! The reference toy client (placeholder).
