//! Fuzz target: the FLV audio/video tag parsers (legacy and Enhanced RTMP) and the AVC/HEVC/AAC configuration parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    native_server::protocol::fuzz_entry::fuzz_flv(data);
});
