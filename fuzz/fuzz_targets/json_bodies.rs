//! Fuzzes the JSON bodies anyone may send: pairing requests (parsed and
//! checked as `POST /toy/v1/pair` does), and the fields of sign-in, setup
//! and reveal bodies through the parsers and rules they meet.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::json_bodies(data));
