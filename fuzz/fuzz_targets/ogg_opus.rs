//! Fuzzes the Ogg Opus path of an upload (a child's recording kept as sent,
//! or re-encoded when stereo) and the plain decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::ogg_opus(data));
