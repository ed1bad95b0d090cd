//! Fuzzes the mDNS TXT parsers (toy records read by the hub, hub records
//! read by toys); the input is TXT rdata (length-prefixed strings).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth::fuzzing::mdns_txt(data));
