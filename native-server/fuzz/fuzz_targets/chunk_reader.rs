//! Fuzz target: the chunk reader, fed in pieces whose size the first byte picks, and every message it yields parsed as the server would (commands, metadata, FLV tags, aggregates).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    native_server::protocol::fuzz_entry::fuzz_chunk_reader(data);
});
