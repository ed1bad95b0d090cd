//! Tests for the audio module.
