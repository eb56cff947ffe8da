//! Prints a digest of the trace of every preset (20 simulated seconds each), one line per preset.
//!
//! A bin, not an example, so that it builds for wasm32 without the dev-dependencies.
//! `cargo xtask test` runs this natively and as `wasm32-wasip1` under Node's WASI and requires
//! identical output: the "same scenario + seed → same trace, bit for bit, native and wasm" rule,
//! checked on the real code rather than assumed.

use sim_core::engine::Engine;
use sim_core::scenario::{preset, PRESET_NAMES};

/// FNV-1a, 64 bit: tiny, portable, and enough to tell two traces apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn main() {
    for name in PRESET_NAMES {
        let mut s = preset(name).expect("preset exists");
        s.duration_s = 20.0;
        s.players.count = s.players.count.min(10);
        let trace = Engine::run(&s);
        let json = trace.to_json();
        println!(
            "{name} frames={} bytes={} fnv1a={:016x}",
            trace.frames.len(),
            json.len(),
            fnv1a(json.as_bytes())
        );
    }
}
