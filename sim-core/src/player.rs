//! Player model: start-up buffer, jitter buffer, rebuffering, optional live-edge catch-up.
//!
//! (Configuration below; the model is being built — see MODELS.md §C.)

use crate::check::Checker;
use serde::{Deserialize, Serialize};

/// Live-edge catch-up (mpegts.js "latency chasing", hls.js liveSync style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatchUpConfig {
    pub enabled: bool,
    /// Start speeding up when the buffer holds more than this (ms).
    pub max_buffer_ms: f64,
    /// Speed up until the buffer is back down to this (ms).
    pub target_buffer_ms: f64,
    /// Playback rate while catching up (e.g. 1.1).
    pub speed: f64,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        CatchUpConfig {
            enabled: false,
            max_buffer_ms: 1500.0,
            target_buffer_ms: 500.0,
            speed: 1.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayerConfig {
    /// Media buffered before playback starts (ms). VLC network-caching 1000; ffplay ~ 0 with
    /// `-fflags nobuffer`.
    pub startup_buffer_ms: f64,
    /// Media buffered before playback resumes after a stall (ms).
    pub rebuffer_ms: f64,
    /// Decode + display time (ms).
    pub decode_ms: f64,
    pub catch_up: CatchUpConfig,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            startup_buffer_ms: 1000.0,
            rebuffer_ms: 1000.0,
            decode_ms: 33.0,
            catch_up: CatchUpConfig::default(),
        }
    }
}

impl PlayerConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.range("startup_buffer_ms", self.startup_buffer_ms, 0.0, 60_000.0);
        c.range("rebuffer_ms", self.rebuffer_ms, 0.0, 60_000.0);
        c.range("decode_ms", self.decode_ms, 0.0, 10_000.0);
        c.section("catch_up", |c| {
            c.positive("max_buffer_ms", self.catch_up.max_buffer_ms);
            c.non_negative("target_buffer_ms", self.catch_up.target_buffer_ms);
            c.ensure(
                self.catch_up.target_buffer_ms <= self.catch_up.max_buffer_ms,
                "target_buffer_ms",
                "must not exceed max_buffer_ms",
            );
            c.range("speed", self.catch_up.speed, 1.0, 4.0);
        });
    }
}
