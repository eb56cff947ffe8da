//! Fuzz target: the AMF0 decoder with tight limits (re-encoding must round-trip), the command parser and the metadata parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    native_server::protocol::fuzz_entry::fuzz_amf0(data);
});
