//! What a run produced: one record per video and audio frame with the time it passed each stage,
//! buffer time series, and the summaries computed from them (per-stage latency percentiles,
//! start-up breakdown, bitrate, drops, rebuffering). Plus [`compare`], which aligns a simulated
//! trace with a measured one frame by frame.
//!
//! The simulator writes these; the server's measurements (later) are written in the same format
//! with the fields it cannot observe left empty (`None`), so one `compare` serves both.

use crate::encoder::FrameType;
use crate::rtmp::StartupBreakdown;
use crate::server::MediaKind;
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// Where a frame was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropSite {
    /// The encoder's output queue backed up and the encoder dropped it (OBS rule).
    Encoder,
    /// The server's queue for this player was full (drop policy).
    ServerQueue,
    /// The player joined without a cached GOP and the server skipped to the next keyframe.
    WaitingForKeyframe,
    /// The player was disconnected for falling too far behind.
    Disconnected,
    /// The player skipped it (live-edge catch-up or hopelessly late).
    Player,
    /// It was sent before this player joined (not a loss, but not shown either).
    BeforeJoin,
    /// The run ended before it arrived.
    InFlight,
}

/// One video or audio frame's journey, for the probe player (player 0). Times are µs since the
/// start of the run; `None` where the frame never reached that stage (or it is not observable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub kind: MediaKind,
    /// Index within its kind, in the order sent (decode order for video).
    pub index: u64,
    pub frame_type: Option<FrameType>,
    pub keyframe: bool,
    pub size_bytes: u32,
    /// Stream timestamps (decode and presentation).
    pub dts_us: Micros,
    pub pts_us: Micros,
    /// The picture was taken (video) or the frame's first sample (audio).
    pub captured_us: Option<Micros>,
    /// Capture finished: the picture is read out and composited and handed to the encoder
    /// (video: `captured_us` + [`EncoderConfig::capture_delay_frames`] frame periods), or the
    /// frame's last sample is in (audio).
    ///
    /// [`EncoderConfig::capture_delay_frames`]: crate::encoder::EncoderConfig::capture_delay_frames
    #[serde(default)]
    pub capture_done_us: Option<Micros>,
    /// The encoder output the coded frame.
    pub encoded_us: Option<Micros>,
    /// Written to the publisher's socket.
    pub sent_us: Option<Micros>,
    /// The frame's first byte left the publisher (after the socket backlog ahead of it, the
    /// slow-start window and, for a frame that is one sub-MSS segment, Nagle's hold).
    #[serde(default)]
    pub first_departure_us: Option<Micros>,
    /// Last byte arrived at the server.
    pub server_arrival_us: Option<Micros>,
    /// Written to the player's socket.
    pub server_departure_us: Option<Micros>,
    /// Last byte arrived at the player.
    pub player_arrival_us: Option<Micros>,
    /// The frame left the player's buffer for the decoder.
    #[serde(default)]
    pub decode_start_us: Option<Micros>,
    /// Shown (video, at its presentation time) or heard (audio).
    pub played_us: Option<Micros>,
    pub dropped: Option<DropSite>,
}

/// A `(time, value)` series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub points: Vec<(Micros, f64)>,
}

impl Series {
    pub fn new(name: &str, unit: &str) -> Self {
        Series {
            name: name.into(),
            unit: unit.into(),
            points: Vec::new(),
        }
    }
    pub fn push(&mut self, at: Micros, value: f64) {
        self.points.push((at, value));
    }
}

/// Start-up of the probe player, and of the publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Startup {
    pub publisher: StartupBreakdown,
    pub player: StartupBreakdown,
    /// When the player began connecting.
    pub player_join_us: Micros,
    /// When its play request was answered and media could start flowing.
    pub player_ready_us: Option<Micros>,
    /// When the first video keyframe reached the player.
    pub first_keyframe_arrival_us: Option<Micros>,
    /// When the first video frame was shown (audio may start earlier: a server waiting for a
    /// keyframe lets audio through).
    pub first_frame_played_us: Option<Micros>,
}

/// Counts over all players (not just the probe).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceSummary {
    pub players: u32,
    pub disconnected: u32,
    /// Per-frame latency from publisher send to player arrival, over all players' frames (ms).
    pub delivery_latency: Option<Percentiles>,
    /// Glass-to-glass (capture → played) over all players' frames (ms).
    pub glass_to_glass: Option<Percentiles>,
    pub frames_delivered: u64,
    pub frames_dropped_server: u64,
    pub rebuffer_count: u64,
    /// Bytes written by the server to all players.
    pub egress_bytes: u64,
}

/// The complete result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Name of the scenario and its seed, to find what produced it.
    pub scenario: String,
    pub seed: u64,
    /// "simulated" or "measured".
    pub source: String,
    pub duration_us: Micros,
    pub frames: Vec<FrameRecord>,
    pub startup: Startup,
    /// VBV fullness (bits) at each video frame.
    pub vbv: Series,
    /// Publisher socket backlog (bytes) at each write.
    pub send_queue: Series,
    /// Probe player's buffer (ms of media).
    pub player_buffer: Series,
    /// Rebuffer intervals of the probe player (start, end).
    pub rebuffers: Vec<(Micros, Micros)>,
    pub audience: AudienceSummary,
    /// The path's capacity (uplink), kb/s, for drawing beside the sent bitrate (0 = unlimited).
    pub uplink_capacity_kbps: f64,
}

/// p50/p95/p99/max/mean of a sample, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted in place). `None` for an empty sample.
    pub fn of(values: &mut [f64]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |q: f64| -> f64 {
            let r = libm::ceil(q * n as f64) as usize;
            values[r.clamp(1, n) - 1]
        };
        let sum: f64 = values.iter().sum();
        Some(Percentiles {
            count: n as u64,
            mean: sum / n as f64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: values[n - 1],
        })
    }
}

/// A stage of the pipeline: latency between two timestamps of a [`FrameRecord`].
///
/// The nine stages of [`Stage::PIPELINE`] follow one another without gap or overlap, so for a
/// played frame they sum exactly to [`Stage::GlassToGlass`] (tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Capture → handed to the encoder: sensor readout, compositing (OBS renders a frame per
    /// frame period), audio sample accumulation. MODELS §C: 1–2 frame periods.
    Capture,
    /// Handed to the encoder → encoder output: lookahead, B-frame reordering, frame threads,
    /// encode time (MODELS §C, \[X1\]).
    Encode,
    /// Encoder output → written to the socket: the encoder's send queue. In this model the
    /// output waits here only for the muxer's interleaving (a packet is written once the other
    /// track has a later one, as OBS's and FFmpeg's muxers do); the bits the VBV lets the encoder
    /// send ahead of the channel wait in the socket (next stage), since OBS writes every packet
    /// at once.
    #[serde(alias = "send_queue")]
    VbvQueue,
    /// Written → the frame's first byte leaves the publisher: the socket backlog (earlier
    /// frames still going through the bottleneck), the slow-start window at connection start,
    /// and Nagle's hold of a frame that is one sub-MSS segment.
    Socket,
    /// First byte leaves the publisher → last byte at the server: serialization at the
    /// bottleneck, propagation, jitter, loss recovery, and Nagle's hold of a frame's tail.
    Network,
    /// Arrived at the server → written to the player's socket (server queue, coalescing).
    Server,
    /// Written by the server → arrived at the player (the server's socket and the downlink).
    Downlink,
    /// Arrived at the player → out of its buffer into the decoder (start-up buffer, jitter
    /// buffer, stalls; standing latency).
    PlayerBuffer,
    /// Into the decoder → shown: decode + display ([`PlayerConfig::decode_ms`]; MODELS §C:
    /// 1–2 frames + vsync), plus the presentation delay of reordered video (pts − dts).
    ///
    /// [`PlayerConfig::decode_ms`]: crate::player::PlayerConfig::decode_ms
    Decode,
    /// Publisher send → player arrival: what `rtmp-lab experiment` measures end to end.
    Delivery,
    /// Capture → played.
    GlassToGlass,
}

impl Stage {
    /// Number of stages in [`Stage::PIPELINE`].
    pub const PIPELINE_LEN: usize = 9;

    /// The stages that add up to glass-to-glass, in pipeline order.
    pub const PIPELINE: [Stage; Stage::PIPELINE_LEN] = [
        Stage::Capture,
        Stage::Encode,
        Stage::VbvQueue,
        Stage::Socket,
        Stage::Network,
        Stage::Server,
        Stage::Downlink,
        Stage::PlayerBuffer,
        Stage::Decode,
    ];

    /// The pipeline, then the two totals.
    pub const ALL: [Stage; Stage::PIPELINE_LEN + 2] = [
        Stage::Capture,
        Stage::Encode,
        Stage::VbvQueue,
        Stage::Socket,
        Stage::Network,
        Stage::Server,
        Stage::Downlink,
        Stage::PlayerBuffer,
        Stage::Decode,
        Stage::Delivery,
        Stage::GlassToGlass,
    ];

    /// Position in [`Stage::PIPELINE`] (`None` for the totals).
    pub const fn pipeline_index(self) -> Option<usize> {
        match self {
            Stage::Capture => Some(0),
            Stage::Encode => Some(1),
            Stage::VbvQueue => Some(2),
            Stage::Socket => Some(3),
            Stage::Network => Some(4),
            Stage::Server => Some(5),
            Stage::Downlink => Some(6),
            Stage::PlayerBuffer => Some(7),
            Stage::Decode => Some(8),
            Stage::Delivery | Stage::GlassToGlass => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Encode => "encode",
            Stage::VbvQueue => "VBV queue",
            Stage::Socket => "socket",
            Stage::Network => "network",
            Stage::Server => "server",
            Stage::Downlink => "downlink",
            Stage::PlayerBuffer => "player buffer",
            Stage::Decode => "decode",
            Stage::Delivery => "send→arrival",
            Stage::GlassToGlass => "glass-to-glass",
        }
    }

    /// The stage's (start, end) timestamps of a frame, when both exist.
    pub fn span(self, f: &FrameRecord) -> Option<(Micros, Micros)> {
        let (a, b) = match self {
            Stage::Capture => (f.captured_us, f.capture_done_us),
            Stage::Encode => (f.capture_done_us, f.encoded_us),
            Stage::VbvQueue => (f.encoded_us, f.sent_us),
            Stage::Socket => (f.sent_us, f.first_departure_us),
            Stage::Network => (f.first_departure_us, f.server_arrival_us),
            Stage::Server => (f.server_arrival_us, f.server_departure_us),
            Stage::Downlink => (f.server_departure_us, f.player_arrival_us),
            Stage::PlayerBuffer => (f.player_arrival_us, f.decode_start_us),
            Stage::Decode => (f.decode_start_us, f.played_us),
            Stage::Delivery => (f.sent_us, f.player_arrival_us),
            Stage::GlassToGlass => (f.captured_us, f.played_us),
        };
        Some((a?, b?))
    }

    /// Latency of the stage in ms (signed: measured clocks may disagree).
    pub fn latency_ms(self, f: &FrameRecord) -> Option<f64> {
        self.span(f).map(|(a, b)| b.diff_ms(a))
    }
}

/// Per-stage latency percentiles for one media kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: Stage,
    pub kind: MediaKind,
    pub latency_ms: Option<Percentiles>,
}

/// Drop counts by site for the probe player.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DropCounts {
    pub encoder: u64,
    pub server_queue: u64,
    pub waiting_for_keyframe: u64,
    pub disconnected: u64,
    pub player: u64,
    pub in_flight: u64,
}

/// The numbers a person reads first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub duration_s: f64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub stages: Vec<StageSummary>,
    /// Mean encoded video bitrate (kb/s) and the largest over any 1 s window.
    pub video_kbps_mean: f64,
    pub video_kbps_max_1s: f64,
    pub audio_kbps_mean: f64,
    pub drops: DropCounts,
    pub rebuffer_count: u64,
    pub rebuffer_ms: f64,
    /// Join → first frame shown, ms, and its parts.
    pub startup: Startup,
    pub join_to_first_frame_ms: Option<f64>,
    pub audience: AudienceSummary,
}

impl Trace {
    /// Latency percentiles of `stage` over frames of `kind` that passed it.
    pub fn stage_latency(&self, stage: Stage, kind: MediaKind) -> Option<Percentiles> {
        let mut v: Vec<f64> = self
            .frames
            .iter()
            .filter(|f| f.kind == kind)
            .filter_map(|f| stage.latency_ms(f))
            .collect();
        Percentiles::of(&mut v)
    }

    /// Mean bitrate of `kind` over the run, kb/s, from frame sizes and the span of their dts.
    fn mean_kbps(&self, kind: MediaKind) -> f64 {
        let bytes: u64 = self
            .frames
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.size_bytes as u64)
            .sum();
        let secs = self.duration_us.as_secs_f64();
        if secs > 0.0 {
            bytes as f64 * 8.0 / secs / 1e3
        } else {
            0.0
        }
    }

    /// Bitrate of `kind` per `bucket` of stream time (dts), kb/s.
    pub fn bitrate_series(&self, kind: MediaKind, bucket: Micros) -> Series {
        let mut s = Series::new("bitrate", "kb/s");
        if bucket.0 == 0 {
            return s;
        }
        let n = (self.duration_us.0 / bucket.0 + 1) as usize;
        let mut bytes = vec![0u64; n];
        for f in self.frames.iter().filter(|f| f.kind == kind) {
            let i = (f.dts_us.0 / bucket.0) as usize;
            if i < n {
                bytes[i] += f.size_bytes as u64;
            }
        }
        for (i, b) in bytes.into_iter().enumerate() {
            let t = Micros(i as u64 * bucket.0);
            s.push(t, b as f64 * 8.0 / bucket.as_secs_f64() / 1e3);
        }
        s
    }

    pub fn summary(&self) -> Summary {
        let mut stages = Vec::new();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            for stage in Stage::ALL {
                stages.push(StageSummary {
                    stage,
                    kind,
                    latency_ms: self.stage_latency(stage, kind),
                });
            }
        }
        let mut drops = DropCounts::default();
        for f in &self.frames {
            match f.dropped {
                Some(DropSite::Encoder) => drops.encoder += 1,
                Some(DropSite::ServerQueue) => drops.server_queue += 1,
                Some(DropSite::WaitingForKeyframe) => drops.waiting_for_keyframe += 1,
                Some(DropSite::Disconnected) => drops.disconnected += 1,
                Some(DropSite::Player) => drops.player += 1,
                Some(DropSite::InFlight) => drops.in_flight += 1,
                Some(DropSite::BeforeJoin) | None => {}
            }
        }
        // The largest 1 s window of video bytes, over windows starting at each frame.
        let video: Vec<&FrameRecord> = self
            .frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        let mut max_window_bytes = 0u64;
        let mut window_bytes = 0u64;
        let mut lo = 0usize;
        for hi in 0..video.len() {
            window_bytes += video[hi].size_bytes as u64;
            while video[hi].dts_us.0.saturating_sub(video[lo].dts_us.0) >= 1_000_000 {
                window_bytes -= video[lo].size_bytes as u64;
                lo += 1;
            }
            max_window_bytes = max_window_bytes.max(window_bytes);
        }
        // (`+ 0.0`: an empty float sum is −0.0.)
        let rebuffer_ms = self
            .rebuffers
            .iter()
            .map(|(a, b)| b.diff_ms(*a))
            .sum::<f64>()
            + 0.0;
        Summary {
            scenario: self.scenario.clone(),
            seed: self.seed,
            duration_s: self.duration_us.as_secs_f64(),
            video_frames: video.len() as u64,
            audio_frames: self
                .frames
                .iter()
                .filter(|f| f.kind == MediaKind::Audio)
                .count() as u64,
            stages,
            video_kbps_mean: self.mean_kbps(MediaKind::Video),
            video_kbps_max_1s: max_window_bytes as f64 * 8.0 / 1e3,
            audio_kbps_mean: self.mean_kbps(MediaKind::Audio),
            drops,
            rebuffer_count: self.rebuffers.len() as u64,
            rebuffer_ms,
            join_to_first_frame_ms: self
                .startup
                .first_frame_played_us
                .map(|t| t.diff_ms(self.startup.player_join_us)),
            startup: self.startup.clone(),
            audience: self.audience.clone(),
        }
    }

    /// The frames as CSV: one row per frame, times in µs, empty cells where a stage was not reached.
    pub fn frames_csv(&self) -> String {
        let mut out = String::with_capacity(self.frames.len() * 120 + 256);
        out.push_str(
            "kind,index,frame_type,keyframe,size_bytes,dts_us,pts_us,captured_us,capture_done_us,\
             encoded_us,sent_us,first_departure_us,server_arrival_us,server_departure_us,\
             player_arrival_us,decode_start_us,played_us,dropped\n",
        );
        let t = |v: Option<Micros>| v.map(|m| m.0.to_string()).unwrap_or_default();
        for f in &self.frames {
            let kind = match f.kind {
                MediaKind::Video => "video",
                MediaKind::Audio => "audio",
                MediaKind::Data => "data",
            };
            let ft = match f.frame_type {
                Some(FrameType::I) => "I",
                Some(FrameType::P) => "P",
                Some(FrameType::B) => "B",
                None => "",
            };
            let dropped = f
                .dropped
                .map(|d| {
                    serde_json::to_value(d)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "{kind},{},{ft},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{dropped}\n",
                f.index,
                f.keyframe as u8,
                f.size_bytes,
                f.dts_us.0,
                f.pts_us.0,
                t(f.captured_us),
                t(f.capture_done_us),
                t(f.encoded_us),
                t(f.sent_us),
                t(f.first_departure_us),
                t(f.server_arrival_us),
                t(f.server_departure_us),
                t(f.player_arrival_us),
                t(f.decode_start_us),
                t(f.played_us),
            ));
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn from_json(text: &str) -> Result<Trace, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// One frame present in both traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameError {
    pub kind: MediaKind,
    pub dts_us: Micros,
    pub simulated_ms: f64,
    pub measured_ms: f64,
    /// simulated − measured, ms.
    pub error_ms: f64,
}

/// How well a simulated trace matches a measured one for one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageComparison {
    pub stage: Stage,
    pub kind: MediaKind,
    pub matched_frames: u64,
    pub simulated: Option<Percentiles>,
    pub measured: Option<Percentiles>,
    /// Percentiles of |simulated − measured| per matched frame, ms.
    pub abs_error: Option<Percentiles>,
    /// Mean signed error (bias), ms.
    pub bias_ms: f64,
    /// Relative error of p50 and p95 (simulated/measured − 1).
    pub p50_rel_error: Option<f64>,
    pub p95_rel_error: Option<f64>,
    pub per_frame: Vec<FrameError>,
}

/// The comparison of two traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub simulated: String,
    pub measured: String,
    pub stages: Vec<StageComparison>,
    /// Frames of the measured trace with no counterpart in the simulated one, and vice versa.
    pub unmatched_measured: u64,
    pub unmatched_simulated: u64,
}

/// Aligns `sim` and `measured` by (kind, dts) — the stream timestamp is what both sides share,
/// whatever frames either side dropped — and reports, for each stage both traces observed, the
/// per-frame error and summary error.
pub fn compare(sim: &Trace, measured: &Trace) -> Comparison {
    use std::collections::HashMap;
    // Measured timestamps arrive in ms (RTMP); align on whole milliseconds.
    let key = |f: &FrameRecord| (f.kind, f.dts_us.0 / 1000);
    let mut sim_by_key: HashMap<(MediaKind, u64), &FrameRecord> = HashMap::new();
    for f in &sim.frames {
        sim_by_key.entry(key(f)).or_insert(f);
    }
    let mut matched: Vec<(&FrameRecord, &FrameRecord)> = Vec::new();
    let mut unmatched_measured = 0u64;
    for m in &measured.frames {
        match sim_by_key.get(&key(m)) {
            Some(s) => matched.push((s, m)),
            None => unmatched_measured += 1,
        }
    }
    let unmatched_simulated = (sim.frames.len() as u64).saturating_sub(matched.len() as u64);

    let mut stages = Vec::new();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        for stage in Stage::ALL {
            let mut per_frame = Vec::new();
            for (s, m) in matched.iter().filter(|(s, _)| s.kind == kind) {
                if let (Some(a), Some(b)) = (stage.latency_ms(s), stage.latency_ms(m)) {
                    per_frame.push(FrameError {
                        kind,
                        dts_us: m.dts_us,
                        simulated_ms: a,
                        measured_ms: b,
                        error_ms: a - b,
                    });
                }
            }
            if per_frame.is_empty() {
                continue;
            }
            let mut sv: Vec<f64> = per_frame.iter().map(|e| e.simulated_ms).collect();
            let mut mv: Vec<f64> = per_frame.iter().map(|e| e.measured_ms).collect();
            let mut ev: Vec<f64> = per_frame.iter().map(|e| e.error_ms.abs()).collect();
            let bias = per_frame.iter().map(|e| e.error_ms).sum::<f64>() / per_frame.len() as f64;
            let simulated = Percentiles::of(&mut sv);
            let measured_p = Percentiles::of(&mut mv);
            let rel = |a: f64, b: f64| if b != 0.0 { Some(a / b - 1.0) } else { None };
            let (p50_rel_error, p95_rel_error) = match (simulated, measured_p) {
                (Some(s), Some(m)) => (rel(s.p50, m.p50), rel(s.p95, m.p95)),
                _ => (None, None),
            };
            stages.push(StageComparison {
                stage,
                kind,
                matched_frames: per_frame.len() as u64,
                simulated,
                measured: measured_p,
                abs_error: Percentiles::of(&mut ev),
                bias_ms: bias,
                p50_rel_error,
                p95_rel_error,
                per_frame,
            });
        }
    }
    Comparison {
        simulated: sim.source.clone(),
        measured: measured.source.clone(),
        stages,
        unmatched_measured,
        unmatched_simulated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(p.mean, 50.5);
        assert_eq!(Percentiles::of(&mut []), None);
        let mut one = [7.0];
        assert_eq!(Percentiles::of(&mut one).unwrap().p99, 7.0);
    }

    #[test]
    fn records_written_before_the_stage_split_still_load() {
        // A frame as traces stored it before capture_done/first_departure/decode_start existed.
        let old = r#"{"kind":"video","index":3,"frame_type":"p","keyframe":false,
            "size_bytes":1000,"dts_us":100000,"pts_us":133333,"captured_us":1000,
            "encoded_us":2000,"sent_us":2500,"server_arrival_us":30000,
            "server_departure_us":30100,"player_arrival_us":55000,"played_us":90000,
            "dropped":null}"#;
        let f: FrameRecord = serde_json::from_str(old).unwrap();
        assert_eq!(f.capture_done_us, None);
        assert_eq!(Stage::Capture.latency_ms(&f), None);
        assert_eq!(Stage::Server.latency_ms(&f), Some(0.1));
        assert_eq!(Stage::GlassToGlass.latency_ms(&f), Some(89.0));
        // The old name of the VBV queue stage.
        let st: Stage = serde_json::from_str("\"send_queue\"").unwrap();
        assert_eq!(st, Stage::VbvQueue);
    }
}

/// A log-linear latency histogram for large samples (all players' frames), so percentiles over
/// tens of millions of values need no sort and little memory: values are kept in microseconds,
/// exactly below 256 µs and with 256 buckets per power of two above (relative error < 0.4 %).
/// About 14,000 buckets (110 KB) cover 0 to 2^64 µs, so recording stays in cache.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u128,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// log2 of the sub-buckets per power of two.
    const SUB_BITS: u32 = 8;
    const SUB: u64 = 1 << Self::SUB_BITS;
    const BUCKETS: usize = ((64 - Self::SUB_BITS as usize) + 1) * Self::SUB as usize;

    pub fn new() -> Self {
        LatencyHistogram {
            counts: Vec::new(),
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }

    #[inline(always)]
    fn bucket(us: u64) -> usize {
        if us < Self::SUB {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros(); // ≥ SUB_BITS
        let shift = exp - Self::SUB_BITS;
        let mantissa = (us >> shift) - Self::SUB; // 0..SUB
        ((shift as u64 + 1) * Self::SUB + mantissa) as usize
    }

    /// The largest value (µs) that falls in bucket `i`.
    fn bucket_upper_us(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::SUB {
            return i;
        }
        let shift = i / Self::SUB - 1;
        let mantissa = i % Self::SUB;
        ((Self::SUB + mantissa + 1) << shift) - 1
    }

    /// Records one latency in ms; negative values count as 0, NaN is ignored.
    pub fn record(&mut self, ms: f64) {
        if ms.is_nan() {
            return;
        }
        let ms = ms.max(0.0);
        self.record_us((ms * 1e3) as u64); // saturating cast
    }

    /// Records one latency in whole microseconds (the engine's hot path).
    #[inline(always)]
    pub fn record_us(&mut self, us: u64) {
        if self.counts.is_empty() {
            self.allocate();
        }
        if let Some(c) = self.counts.get_mut(Self::bucket(us)) {
            *c += 1;
        }
        self.count += 1;
        // (Cannot overflow: 2⁶⁴ values of at most 2⁶⁴ µs.)
        self.sum_us = self.sum_us.wrapping_add(us as u128);
        self.max_us = self.max_us.max(us);
    }

    #[cold]
    #[inline(never)]
    fn allocate(&mut self) {
        self.counts = vec![0; Self::BUCKETS];
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Nearest-rank percentiles; each is the upper edge of its bucket (never above the maximum).
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.count == 0 {
            return None;
        }
        let max_ms = self.max_us as f64 / 1e3;
        let at = |q: f64| -> f64 {
            let rank = (libm::ceil(q * self.count as f64) as u64).max(1);
            let mut seen = 0u64;
            for (i, c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return (Self::bucket_upper_us(i) as f64 / 1e3).min(max_ms);
                }
            }
            max_ms
        };
        Some(Percentiles {
            count: self.count,
            mean: self.sum_us as f64 / 1e3 / self.count as f64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: max_ms,
        })
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev_upper = None::<u64>;
        for i in 0..LatencyHistogram::BUCKETS - 1 {
            let upper = LatencyHistogram::bucket_upper_us(i);
            if let Some(p) = prev_upper {
                assert!(upper > p, "bucket {i}");
                // The first value of bucket i is the previous upper + 1 and maps to i.
                assert_eq!(LatencyHistogram::bucket(p + 1), i);
            }
            assert_eq!(LatencyHistogram::bucket(upper), i, "upper of {i}");
            prev_upper = Some(upper);
        }
    }

    #[test]
    fn percentiles_within_half_a_percent() {
        let mut h = LatencyHistogram::new();
        let mut exact = Vec::new();
        for i in 1..=10_000 {
            let ms = i as f64 * 0.375;
            h.record(ms);
            exact.push(ms);
        }
        let e = Percentiles::of(&mut exact).unwrap();
        let p = h.percentiles().unwrap();
        for (a, b) in [(p.p50, e.p50), (p.p95, e.p95), (p.p99, e.p99)] {
            assert!((a - b).abs() <= b * 0.005 + 0.001, "{a} vs {b}");
        }
        assert_eq!(p.max, e.max);
        assert_eq!(p.count, 10_000);
        h.record(f64::NAN);
        h.record(-5.0);
        assert_eq!(h.count(), 10_001);
    }
}
