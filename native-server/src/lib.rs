//! The library half of `rtmp-lab`: the RTMP protocol codec (our own inbound path: chunk
//! reassembly, AMF0 with a depth limit, message parsing; and the chunk writer used for fan-out).
//! The binary (`main.rs`) is a thin shell over this and `sim-core`.

#[cfg(target_os = "linux")]
pub mod bench;
pub mod emu;
pub mod experiment;
pub mod protocol;
pub mod scenario_file;
pub mod serve;
