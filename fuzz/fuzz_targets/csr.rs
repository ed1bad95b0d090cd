//! Fuzzes the CSR check of pairing step 1 (PEM text, and DER wrapped in PEM).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::csr(data));
