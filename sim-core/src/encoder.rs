//! Encoder model: GOP structure, I/P/B frame sizes, QP→bits, complexity, scene cuts, pipeline delay.
//!
//! (Configuration below; the frame-size generator is being built — see MODELS.md §B4, §C.)

use crate::check::Checker;
use serde::{Deserialize, Serialize};

/// Relative sizes of I, P and B frames at equal QP and complexity (MPEG-2 TM5: ≈ 5.3 : 2 : 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSizeRatio {
    pub i: f64,
    pub p: f64,
    pub b: f64,
}

impl Default for FrameSizeRatio {
    fn default() -> Self {
        FrameSizeRatio {
            i: 5.3,
            p: 2.0,
            b: 1.0,
        }
    }
}

/// Video source and encoder settings (x264 vocabulary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    pub width: u32,
    pub height: u32,
    /// Frames per second of the source and the stream.
    pub fps: f64,
    /// x264 `keyint`: frames from one IDR frame to the next (250 = x264's default).
    pub keyframe_interval_frames: u32,
    /// Consecutive B-frames between references (x264 `bframes`; 0 with zerolatency).
    pub bframes: u32,
    pub size_ratio: FrameSizeRatio,
    /// Standard deviation of ln(complexity) in the log-normal AR(1) complexity process.
    pub complexity_sigma: f64,
    /// Frame-to-frame correlation of ln(complexity), 0 ≤ ρ < 1.
    pub complexity_rho: f64,
    /// Mean scene cuts per minute (Poisson).
    pub scene_cuts_per_min: f64,
    /// x264 `scenecut` on: a cut forces an I-frame. Off (`scenecut=0`): the cut is an I-sized P-frame.
    pub scenecut: bool,
    /// x264 `rc-lookahead` in frames (veryfast: 10; default preset: 40; zerolatency: 0).
    pub lookahead_frames: u32,
    /// x264 `--tune zerolatency`: no lookahead, no B-frames, sliced threads, no frame-thread delay.
    pub zerolatency: bool,
    /// Frame threads (x264 default ≈ 1.5 × logical cores); each adds one frame of delay.
    pub threads: u32,
    /// Wall time to encode one frame once its turn comes, in ms.
    pub encode_time_ms: f64,
    /// Capture + compositing delay before the encoder sees a frame, in frame periods (1–2).
    pub capture_delay_frames: f64,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            width: 1920,
            height: 1080,
            fps: 30.0,
            keyframe_interval_frames: 250,
            bframes: 3,
            size_ratio: FrameSizeRatio::default(),
            complexity_sigma: 0.15,
            complexity_rho: 0.9,
            scene_cuts_per_min: 2.0,
            scenecut: true,
            lookahead_frames: 10,
            zerolatency: false,
            threads: 12,
            encode_time_ms: 8.0,
            capture_delay_frames: 1.0,
        }
    }
}

impl EncoderConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.int_range("width", self.width as u64, 16, 16_384);
        c.int_range("height", self.height as u64, 16, 16_384);
        c.range("fps", self.fps, 1.0, 240.0);
        c.int_range(
            "keyframe_interval_frames",
            self.keyframe_interval_frames as u64,
            1,
            100_000,
        );
        c.int_range("bframes", self.bframes as u64, 0, 16);
        c.positive("size_ratio.i", self.size_ratio.i);
        c.positive("size_ratio.p", self.size_ratio.p);
        c.positive("size_ratio.b", self.size_ratio.b);
        c.range("complexity_sigma", self.complexity_sigma, 0.0, 2.0);
        c.range("complexity_rho", self.complexity_rho, 0.0, 0.999);
        c.range("scene_cuts_per_min", self.scene_cuts_per_min, 0.0, 600.0);
        c.int_range("lookahead_frames", self.lookahead_frames as u64, 0, 250);
        c.int_range("threads", self.threads as u64, 1, 128);
        c.range("encode_time_ms", self.encode_time_ms, 0.0, 10_000.0);
        c.range("capture_delay_frames", self.capture_delay_frames, 0.0, 100.0);
    }
}

/// Audio encoder settings (AAC-LC by default: 1024 samples per frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    pub enabled: bool,
    pub bitrate_kbps: f64,
    pub sample_rate_hz: u32,
    /// Samples per coded frame (AAC: 1024).
    pub samples_per_frame: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            enabled: true,
            bitrate_kbps: 160.0,
            sample_rate_hz: 48_000,
            samples_per_frame: 1024,
        }
    }
}

impl AudioConfig {
    pub fn validate(&self, c: &mut Checker) {
        if self.enabled {
            c.range("bitrate_kbps", self.bitrate_kbps, 1.0, 2_000.0);
            c.int_range("sample_rate_hz", self.sample_rate_hz as u64, 8_000, 192_000);
            c.int_range("samples_per_frame", self.samples_per_frame as u64, 64, 8192);
        }
    }
}
