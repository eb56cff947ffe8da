//! sim-core: pure, deterministic models of RTMP live-streaming latency.
//!
//! Every model here is a plain state machine that takes time as an argument and returns
//! decisions (the sans-IO style of quinn-proto). Nothing reads a clock, a socket or a file, and
//! nothing spawns a thread, so the crate builds for `wasm32-unknown-unknown` and gives the same
//! trace for the same scenario and seed on every platform. The simulator ([`engine`]) drives these
//! state machines from a discrete-event queue; the real server (`native-server`) drives the same
//! ones ([`server`], [`rate_control::VbvBuffer`]) from real sockets.

pub mod check;
pub mod rng;
pub mod units;

pub use units::Micros;

pub mod encoder;
pub mod engine;
pub mod link;
pub mod net;
pub mod player;
pub mod rate_control;
pub mod rtmp;
pub mod scenario;
pub mod seed;
pub mod server;
pub mod trace;
