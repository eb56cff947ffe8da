//! `rtmp-lab serve`: the real RTMP server (tokio) and its HTTP API (axum).
//!
//! Being built (issue #3). Layout:
//! - `api` — JSON shapes shared by the relay, the HTTP API and the web lab.
//! - `config` — `Settings` (TOML, defaults that work), limits and socket options.
//! - `ingest` — pure analysis of an incoming stream (bitrate, GOP, jitter, VBV over real frames).
//! - the listener, handshake, session, relay and fan-out writer; `http` for the API.

pub mod api;
