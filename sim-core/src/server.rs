//! Server state machines — the ones `native-server` runs on real streams: GOP cache, bounded
//! per-subscriber queue with a drop policy, write coalescing.
//!
//! (Configuration below; the state machines are being built — see MODELS.md §C.)

use crate::check::Checker;
use serde::{Deserialize, Serialize};

/// What a subscriber queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Drop non-key video frames (and, if still full, audio) then skip to the next keyframe.
    DropToKeyframe,
    /// Disconnect the subscriber.
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Keep the last GOP and send it to joining players (SRS `gop_cache`; nginx-rtmp has none).
    pub gop_cache: bool,
    /// Upper bound on the cached GOP in bytes (a pathological keyint cannot exhaust memory).
    pub gop_cache_max_bytes: u64,
    /// Per-subscriber queue bound in bytes of media waiting to be written.
    pub queue_max_bytes: u64,
    /// Per-subscriber queue bound in media time (newest − oldest timestamp), ms.
    pub queue_max_ms: f64,
    pub drop_policy: DropPolicy,
    /// Disconnect a subscriber that stays over its bound for this long (ms), whatever the policy.
    pub disconnect_after_ms: f64,
    /// Write-coalescing window in ms (SRS "merged write"); 0 = write each message at once.
    pub coalesce_ms: f64,
    /// Outbound RTMP chunk size in bytes (nginx-rtmp and OBS: 4096; spec default 128).
    pub chunk_size: u32,
    /// `TCP_NODELAY` on player sockets.
    pub nodelay: bool,
    /// Per-message processing time in the server, µs.
    pub processing_us: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            gop_cache: true,
            gop_cache_max_bytes: 64 * 1024 * 1024,
            queue_max_bytes: 8 * 1024 * 1024,
            queue_max_ms: 10_000.0,
            drop_policy: DropPolicy::DropToKeyframe,
            disconnect_after_ms: 30_000.0,
            coalesce_ms: 0.0,
            chunk_size: 4096,
            nodelay: true,
            processing_us: 20.0,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.ensure(self.gop_cache_max_bytes > 0, "gop_cache_max_bytes", "must be greater than 0");
        c.ensure(self.queue_max_bytes > 0, "queue_max_bytes", "must be greater than 0");
        c.positive("queue_max_ms", self.queue_max_ms);
        c.positive("disconnect_after_ms", self.disconnect_after_ms);
        c.range("coalesce_ms", self.coalesce_ms, 0.0, 10_000.0);
        c.int_range("chunk_size", self.chunk_size as u64, 128, 0x7FFF_FFFF);
        c.range("processing_us", self.processing_us, 0.0, 1e6);
    }
}
