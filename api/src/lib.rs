//! The shapes of `rtmp-lab serve`'s HTTP API JSON (`/api/streams`, `/api/streams/{app}/{key}`)
//! and of the counters behind `/metrics`. The server's relay fills them, its `http` module serves
//! them, the browser lab (wasm) reads them: one definition so the three agree.
//!
//! Reading is tolerant: every struct takes defaults for missing fields and ignores unknown ones,
//! so a page and a server of slightly different versions still understand each other.

use serde::{Deserialize, Serialize};

/// One stream in `/api/streams`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSummary {
    pub app: String,
    pub key: String,
    /// The publisher, when one is connected.
    pub publisher: Option<PublisherInfo>,
    /// Players currently subscribed (including those waiting for a publisher).
    pub players: usize,
    /// What the server measured on the incoming stream.
    pub ingest: IngestStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublisherInfo {
    pub peer: String,
    /// Seconds since the publish started.
    pub uptime_s: f64,
    /// Encoder name from the metadata (`encoder` field), if sent.
    pub encoder: Option<String>,
}

/// Live ingest analysis of one stream (what OBS or ffmpeg actually sends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestStats {
    /// Codec names, e.g. "avc1" (H.264), "hvc1", "av01", "vp09", "mp4a" (AAC), "Opus".
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frame rate and bitrates declared in the metadata (`onMetaData`).
    pub declared_fps: Option<f64>,
    pub declared_video_kbps: Option<f64>,
    pub declared_audio_kbps: Option<f64>,
    /// Measured: frames per second of stream time over the recent window.
    pub fps: Option<f64>,
    /// Measured video and audio bitrate over the recent window (kb/s), and overall.
    pub video_kbps: f64,
    pub audio_kbps: f64,
    pub total_kbps_mean: f64,
    /// Mean and last keyframe interval in seconds of stream time.
    pub keyframe_interval_s: Option<f64>,
    pub last_keyframe_interval_s: Option<f64>,
    /// Composition-time offsets seen (B-frames in use).
    pub b_frames: bool,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub keyframes: u64,
    pub bytes: u64,
    /// Largest video frame so far (bytes) and the mean keyframe and non-keyframe sizes.
    pub max_frame_bytes: u64,
    pub mean_keyframe_bytes: Option<f64>,
    pub mean_interframe_bytes: Option<f64>,
    /// Arrival jitter: how far each frame's arrival strays from what its timestamp predicts,
    /// relative to the earliest-so-far offset (ms): p50, p95, max over the ingest record (the
    /// recent frames listed in `/api/streams/{app}/{key}`).
    pub arrival_jitter_ms: Option<JitterStats>,
    /// VBV occupancy computed by `sim_core::rate_control::VbvBuffer` over the real frames at the
    /// declared bitrate (buffer = 1 s of it, as OBS's default), or the measured one when none is
    /// declared (`VbvStats::rate_source`); `None` until a rate is known.
    pub vbv: Option<VbvStats>,
    /// Seconds of stream time received.
    pub stream_time_s: f64,
    /// Seconds of stream time the measured `fps`, `video_kbps` and `audio_kbps` cover: the
    /// window (5 s) once the stream is that long and the ingest record reaches that far back.
    #[serde(default)]
    pub window_s: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JitterStats {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    /// Frames in the sample (the ingest record).
    #[serde(default)]
    pub samples: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VbvStats {
    pub buffer_kbit: f64,
    pub max_rate_kbps: f64,
    pub fullness_kbit: f64,
    pub min_fullness_kbit: f64,
    pub underflows: u64,
    /// Where `max_rate_kbps` came from.
    #[serde(default)]
    pub rate_source: VbvRateSource,
}

/// The bitrate the ingest VBV runs at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VbvRateSource {
    /// `videodatarate` from the stream's metadata.
    #[default]
    Declared,
    /// No usable `videodatarate`: the mean coded-video bitrate over the first 5 s of stream
    /// time, fixed from then on.
    Measured,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    #[default]
    Video,
    Audio,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameClass {
    /// A keyframe (a player can start here).
    Key,
    /// Any other coded frame.
    Inter,
    /// A sequence header / decoder configuration.
    Seq,
    /// Anything else (video info/command frames, unknown packet types).
    #[default]
    #[serde(other)]
    Other,
}

/// One received media frame in the ingest record (a bounded ring buffer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrameInfo {
    pub kind: FrameKind,
    pub frame_type: FrameClass,
    pub size_bytes: u32,
    /// RTMP timestamp (ms) and composition offset (ms, video).
    pub timestamp_ms: u32,
    pub composition_ms: i32,
    /// Arrival time at the server, µs since the publish started.
    pub arrival_us: u64,
    /// VBV fullness (bits) after this frame, when the VBV is being computed (video only).
    pub vbv_fullness_bits: Option<f64>,
    /// How much later than the best-so-far path this frame arrived, given its timestamp (ms):
    /// (arrival − timestamp) minus the least such offset among frames of the same kind so far,
    /// this one included (so never negative).
    #[serde(default)]
    pub arrival_jitter_ms: f64,
}

/// `/api/streams/{app}/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamDetail {
    #[serde(flatten)]
    pub summary: StreamSummary,
    pub player_list: Vec<PlayerInfo>,
    /// The most recent frames, oldest first.
    pub frames: Vec<FrameInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlayerInfo {
    pub peer: String,
    pub connected_s: f64,
    pub queued_bytes: u64,
    pub delivered_messages: u64,
    pub dropped_messages: u64,
}

/// Process-wide counters for `/metrics` (Prometheus text format).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerMetrics {
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_rejected: u64,
    pub handshake_failures: u64,
    pub protocol_errors: u64,
    pub streams: u64,
    pub publishers: u64,
    pub players: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_dropped: u64,
    pub players_disconnected_slow: u64,
}

impl StreamSummary {
    /// `app/key`, as in the RTMP URL.
    pub fn id(&self) -> String {
        format!("{}/{}", self.app, self.key)
    }
}

impl FrameInfo {
    pub fn is_video(&self) -> bool {
        self.kind == FrameKind::Video
    }
    /// A coded media frame (not a sequence header or an info frame).
    pub fn is_media(&self) -> bool {
        matches!(self.frame_type, FrameClass::Key | FrameClass::Inter)
    }
}

impl VbvRateSource {
    pub fn label(self) -> &'static str {
        match self {
            VbvRateSource::Declared => "declared",
            VbvRateSource::Measured => "measured",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_tolerant_of_missing_and_unknown_fields() {
        let d: StreamDetail = serde_json::from_str(
            r#"{"app":"live","key":"k","future":1,"frames":[{"kind":"video","frame_type":"brand_new"}]}"#,
        )
        .unwrap();
        assert_eq!(d.summary.id(), "live/k");
        assert_eq!(d.frames[0].frame_type, FrameClass::Other);
        assert!(d.frames[0].is_video() && !d.frames[0].is_media());
    }

    #[test]
    fn round_trip() {
        let s = StreamSummary {
            app: "live".into(),
            ingest: IngestStats {
                vbv: Some(VbvStats::default()),
                ..IngestStats::default()
            },
            ..StreamSummary::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StreamSummary>(&text).unwrap(), s);
    }
}
