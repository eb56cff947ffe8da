//! The server's HTTP API as the lab reads it (`/api/streams`, `/api/streams/{app}/{key}`), and
//! what the lab derives from it: the scenario that "simulates this stream", and measured series
//! laid over the simulated ones.
//!
//! The types are the server's own, from the `lab-api` crate (serde only, so wasm-safe); reading
//! them is tolerant of missing and unknown fields, so the page keeps working while the API grows.

use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::Trace;

pub use lab_api::{
    FrameClass, FrameInfo, FrameKind, IngestStats, JitterStats, PublisherInfo, StreamDetail,
    StreamSummary, VbvRateSource, VbvStats,
};

/// Parses `/api/streams`.
pub fn parse_streams(json: &str) -> Result<Vec<StreamSummary>, String> {
    serde_json::from_str(json).map_err(|e| format!("unexpected /api/streams reply: {e}"))
}

/// Parses `/api/streams/{app}/{key}`.
pub fn parse_detail(json: &str) -> Result<StreamDetail, String> {
    serde_json::from_str(json).map_err(|e| format!("unexpected stream detail reply: {e}"))
}

/// What "simulate this stream" changed, for the page to say.
pub fn scenario_from_measured(base: &Scenario, ingest: &IngestStats) -> (Scenario, Vec<String>) {
    let mut s = base.clone();
    let mut changed = Vec::new();
    if let (Some(w), Some(h)) = (ingest.width, ingest.height) {
        if w >= 16 && h >= 16 {
            s.encoder.width = w;
            s.encoder.height = h;
            changed.push(format!("resolution {w}×{h}"));
        }
    }
    let fps = ingest
        .declared_fps
        .filter(|f| *f >= 1.0)
        .or(ingest.fps.filter(|f| *f >= 1.0));
    if let Some(fps) = fps {
        s.encoder.fps = (fps * 1000.0).round() / 1000.0;
        changed.push(format!("{} fps", s.encoder.fps));
    }
    let kbps = ingest
        .declared_video_kbps
        .filter(|k| *k > 0.0)
        .or(Some(ingest.video_kbps).filter(|k| *k > 0.0));
    if let Some(kbps) = kbps {
        s.rate_control.bitrate_kbps = kbps.round();
        // OBS's default VBV: one second of the bitrate.
        s.rate_control.vbv_buffer_kbits = kbps.round();
        changed.push(format!("{} kb/s video (VBV = 1 s)", kbps.round()));
    }
    if let Some(a) = ingest.declared_audio_kbps.filter(|k| *k > 0.0) {
        s.audio.bitrate_kbps = a.round().clamp(1.0, 2000.0);
        changed.push(format!("{} kb/s audio", s.audio.bitrate_kbps));
    }
    if let Some(k) = ingest.keyframe_interval_s.filter(|k| *k > 0.0) {
        let frames = (k * s.encoder.fps).round().max(1.0) as u32;
        s.encoder.keyframe_interval_frames = frames;
        changed.push(format!("keyframe every {frames} frames ({k:.2} s)"));
    }
    if ingest.b_frames {
        if s.encoder.bframes == 0 {
            s.encoder.bframes = 2;
        }
        s.encoder.zerolatency = false;
        changed.push(format!("B-frames on ({})", s.encoder.bframes));
    } else if ingest.video_frames > 0 {
        s.encoder.bframes = 0;
        changed.push("no B-frames".into());
    }
    s.name = "measured".into();
    (s, changed)
}

/// Measured and simulated series of one quantity, on a common time axis (s from the first
/// frame of each), ready to draw on one chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub measured: Vec<(f64, f64)>,
    pub simulated: Vec<(f64, f64)>,
}

/// The four overlays of the Measured panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasuredOverlays {
    /// Video frame sizes, bytes.
    pub frame_bytes: Overlay,
    /// Video bitrate per second, kb/s.
    pub bitrate_kbps: Overlay,
    /// VBV fullness, kbit.
    pub vbv_kbit: Overlay,
    /// Arrival jitter of video frames at the server, ms.
    pub jitter_ms: Overlay,
    /// Seconds covered by the measured record (the simulated series are cut to the same span).
    pub span_s: f64,
}

/// Builds the overlays: the measured record (times relative to its first video frame) and the
/// same span of the simulated trace, starting at the same offset into the stream when the sim is
/// long enough (else at 0).
pub fn overlays(frames: &[FrameInfo], trace: &Trace) -> MeasuredOverlays {
    let video: Vec<&FrameInfo> = frames
        .iter()
        .filter(|f| f.is_video() && f.is_media())
        .collect();
    let mut out = MeasuredOverlays::default();
    let Some(first) = video.first() else {
        return out;
    };
    let t0_ms = first.timestamp_ms as f64;
    let span_s = video
        .last()
        .map_or(0.0, |l| (l.timestamp_ms as f64 - t0_ms) / 1e3)
        .max(0.0);
    out.span_s = span_s;
    for f in &video {
        let t = (f.timestamp_ms as f64 - t0_ms) / 1e3;
        out.frame_bytes.measured.push((t, f.size_bytes as f64));
        out.jitter_ms.measured.push((t, f.arrival_jitter_ms));
        if let Some(v) = f.vbv_fullness_bits {
            out.vbv_kbit.measured.push((t, v / 1e3));
        }
    }
    out.bitrate_kbps.measured = per_second_kbps(
        video
            .iter()
            .map(|f| ((f.timestamp_ms as f64 - t0_ms) / 1e3, f.size_bytes as f64)),
    );

    // The simulated stream over the same span, from the same offset into the stream.
    let sim_len_s = trace.duration_us.as_secs_f64();
    let offset_s = if t0_ms / 1e3 + span_s <= sim_len_s {
        t0_ms / 1e3
    } else {
        0.0
    };
    let in_span = |dts_s: f64| dts_s >= offset_s && dts_s <= offset_s + span_s.max(1.0);
    let sim_video: Vec<_> = trace
        .frames
        .iter()
        .filter(|f| f.kind == MediaKind::Video && in_span(f.dts_us.as_secs_f64()))
        .collect();
    // Arrival jitter as the server computes it: (arrival − timestamp) − the smallest so far.
    let mut best = f64::INFINITY;
    for f in &sim_video {
        let t = f.dts_us.as_secs_f64() - offset_s;
        out.frame_bytes.simulated.push((t, f.size_bytes as f64));
        if let Some(a) = f.server_arrival_us {
            let d = a.as_ms_f64() - f.dts_us.as_ms_f64();
            best = best.min(d);
            out.jitter_ms.simulated.push((t, d - best));
        }
    }
    out.bitrate_kbps.simulated = per_second_kbps(
        sim_video
            .iter()
            .map(|f| (f.dts_us.as_secs_f64() - offset_s, f.size_bytes as f64)),
    );
    // The trace's VBV series is in wall time; its first point is the first video frame.
    if let Some((vbv_t0, _)) = trace.vbv.points.first() {
        let start = vbv_t0.as_secs_f64();
        for (at, bits) in &trace.vbv.points {
            let t = at.as_secs_f64() - start - offset_s;
            if (0.0..=span_s.max(1.0)).contains(&t) {
                out.vbv_kbit.simulated.push((t, bits / 1e3));
            }
        }
    }
    out
}

/// kb/s in whole-second buckets of `(t_s, bytes)`.
fn per_second_kbps(frames: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut buckets: Vec<f64> = Vec::new();
    for (t, bytes) in frames {
        if t < 0.0 || !t.is_finite() {
            continue;
        }
        let i = t as usize;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0.0);
        }
        buckets[i] += bytes;
    }
    // The last bucket is usually partial: leave it out unless it is the only one.
    let n = if buckets.len() > 1 {
        buckets.len() - 1
    } else {
        buckets.len()
    };
    buckets[..n]
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b * 8.0 / 1e3))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_of_missing_and_unknown_fields() {
        let list = parse_streams(
            r#"[{"app":"live","key":"obs","players":2,"ingest":{"width":1280,"height":720,
                 "declared_fps":30,"new_field":1}}, {"app":"live","key":"x"}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].ingest.width, Some(1280));
        assert_eq!(list[1].players, 0);
        let d = parse_detail(
            r#"{"app":"live","key":"obs","frames":[{"kind":"video","frame_type":"key",
                "size_bytes":5000,"timestamp_ms":0,"arrival_us":10,"vbv_fullness_bits":1.0}],
                "player_list":[]}"#,
        )
        .unwrap();
        assert_eq!(d.summary.key, "obs");
        assert_eq!(d.frames[0].size_bytes, 5000);
    }

    #[test]
    fn simulate_this_stream_takes_the_metadata() {
        let base = sim_core::scenario::preset("obs-default").unwrap();
        let ingest = IngestStats {
            width: Some(1280),
            height: Some(720),
            declared_fps: Some(60.0),
            declared_video_kbps: Some(4500.0),
            keyframe_interval_s: Some(2.0),
            b_frames: false,
            video_frames: 10,
            ..IngestStats::default()
        };
        let (s, changed) = scenario_from_measured(&base, &ingest);
        assert_eq!((s.encoder.width, s.encoder.height), (1280, 720));
        assert_eq!(s.encoder.fps, 60.0);
        assert_eq!(s.rate_control.bitrate_kbps, 4500.0);
        assert_eq!(s.encoder.keyframe_interval_frames, 120);
        assert_eq!(s.encoder.bframes, 0);
        assert!(changed.len() >= 4);
        assert_eq!(s.check(), vec![]);
    }
}
