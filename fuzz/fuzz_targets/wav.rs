//! Fuzzes the WAV path of an upload: decode, validate, downmix, resample,
//! normalise, encode (what `POST /toy/v1/recordings` does with `audio/wav`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::wav(data));
