//! What the charts draw, derived from a [`Trace`] once per run: per-frame latency series, buffer
//! series with their events, bitrate against capacity, the per-stage breakdown and the start-up
//! timeline. Pure (no DOM), so it is tested natively; `charts.rs` only draws it.
//!
//! Long runs have hundreds of thousands of frames; a chart is ~1000 px wide, so each series is
//! decimated to at most [`MAX_POINTS`] points by keeping the minimum and maximum of each bucket
//! (a 40 ms stall survives decimation; an average would hide it).

use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::{DropSite, Percentiles, Stage, Trace};
use sim_core::units::Micros;

/// Largest number of points drawn per series.
pub const MAX_POINTS: usize = 1600;

/// The stages that add up to glass-to-glass, in pipeline order (sim-core's list: every
/// per-stage array of the page is sized by [`STAGE_COUNT`], so a new stage cannot be missed).
pub const PIPELINE: [Stage; STAGE_COUNT] = Stage::PIPELINE;

/// Number of pipeline stages.
pub const STAGE_COUNT: usize = Stage::PIPELINE_LEN;

pub type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyChart {
    /// (capture time s, glass-to-glass ms) of shown frames.
    pub video_g2g: Points,
    pub audio_g2g: Points,
    /// Per-stage latency of video frames, in [`PIPELINE`] order.
    pub video_stages: Vec<(Stage, Points)>,
    /// Capture times (s) of video frames that were never shown, by where they were lost.
    pub video_drops: Vec<(f64, DropSite)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VbvChart {
    /// (wall s, fullness kbit) after each frame's removal.
    pub fullness_kbit: Points,
    /// VBV size (0 = no VBV).
    pub buffer_kbit: f64,
    /// Frames that needed more bits than the buffer held (fullness clamped to 0).
    pub underflows: Vec<f64>,
    /// Frames before which the bucket was full (filler written, or bits clipped).
    pub overflows: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BitrateChart {
    /// (stream s, kb/s) per 1 s bucket.
    pub video_kbps: Points,
    pub audio_kbps: Points,
    /// Uplink capacity, kb/s (0 = unlimited).
    pub capacity_kbps: f64,
    pub target_kbps: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BufferChart {
    /// (wall s, buffered ms) of the probe player.
    pub level_ms: Points,
    /// Rebuffer intervals (start s, end s).
    pub rebuffers: Vec<(f64, f64)>,
    pub startup_buffer_ms: f64,
}

/// p50 of each pipeline stage (ms), for one media kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    pub video: Vec<(Stage, f64)>,
    pub audio: Vec<(Stage, f64)>,
    pub video_g2g_p50: Option<f64>,
    pub audio_g2g_p50: Option<f64>,
}

/// One bar of the start-up timeline: (label, start ms, end ms) relative to the player's join.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub label: &'static str,
    pub start_ms: f64,
    pub end_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartupChart {
    /// The player's set-up steps, then waiting for a keyframe, then filling the buffer.
    pub player: Vec<Span>,
    /// The publisher's set-up steps (relative to its own start).
    pub publisher: Vec<Span>,
    pub gop_cache: bool,
    pub join_to_first_frame_ms: Option<f64>,
    pub keyframe_interval_ms: f64,
}

/// The numbers shown above the charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headline {
    pub video_g2g: Option<Percentiles>,
    pub audio_g2g: Option<Percentiles>,
    pub join_to_first_frame_ms: Option<f64>,
    pub rebuffers: usize,
    pub rebuffer_ms: f64,
    pub video_frames: usize,
    pub dropped_video: usize,
    pub audience_players: u32,
    pub audience_g2g: Option<Percentiles>,
    pub audience_disconnected: u32,
}

/// Everything the charts draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartData {
    pub duration_s: f64,
    pub latency: LatencyChart,
    pub vbv: VbvChart,
    pub bitrate: BitrateChart,
    pub buffer: BufferChart,
    pub breakdown: Breakdown,
    pub startup: StartupChart,
    pub headline: Headline,
    /// [`latency_digest`] of the full (not decimated) glass-to-glass series.
    pub latency_digest: u64,
}

/// Keeps at most `max` points: per bucket of consecutive points, its minimum and maximum (in
/// time order).
pub fn decimate(points: &[(f64, f64)], max: usize) -> Points {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(bucket) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[lo].1 {
                lo = i;
            }
            if p.1 > chunk[hi].1 {
                hi = i;
            }
        }
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(chunk[a]);
        if b != a {
            out.push(chunk[b]);
        }
    }
    out
}

fn secs(m: Micros) -> f64 {
    m.as_secs_f64()
}

impl ChartData {
    pub fn from_trace(trace: &Trace, s: &Scenario) -> ChartData {
        let mut video_g2g = Vec::new();
        let mut audio_g2g = Vec::new();
        let mut stages: Vec<Points> = vec![Vec::new(); PIPELINE.len()];
        let mut drops = Vec::new();
        let mut video_frames = 0;
        for f in &trace.frames {
            let Some(cap) = f.captured_us else { continue };
            let t = secs(cap);
            match f.kind {
                MediaKind::Video => {
                    video_frames += 1;
                    if let Some(ms) = Stage::GlassToGlass.latency_ms(f) {
                        video_g2g.push((t, ms));
                    } else if let Some(site) = f.dropped {
                        if site != DropSite::BeforeJoin && site != DropSite::InFlight {
                            drops.push((t, site));
                        }
                    }
                    for (i, st) in PIPELINE.iter().enumerate() {
                        if let Some(ms) = st.latency_ms(f) {
                            stages[i].push((t, ms));
                        }
                    }
                }
                MediaKind::Audio => {
                    if let Some(ms) = Stage::GlassToGlass.latency_ms(f) {
                        audio_g2g.push((t, ms));
                    }
                }
                MediaKind::Data => {}
            }
        }
        let dropped_video = drops.len();
        drops.truncate(MAX_POINTS);
        let latency_digest = latency_digest(&video_g2g, &audio_g2g);
        let (breakdown, video_g2g_pct, audio_g2g_pct) = breakdown(trace);
        let latency = LatencyChart {
            video_g2g: decimate(&video_g2g, MAX_POINTS),
            audio_g2g: decimate(&audio_g2g, MAX_POINTS),
            video_stages: PIPELINE
                .iter()
                .zip(stages)
                .map(|(st, p)| (*st, decimate(&p, MAX_POINTS)))
                .collect(),
            video_drops: drops,
        };

        ChartData {
            duration_s: s.duration_s,
            latency,
            vbv: vbv_chart(trace, s),
            bitrate: BitrateChart {
                video_kbps: whole_seconds(trace, MediaKind::Video),
                audio_kbps: whole_seconds(trace, MediaKind::Audio),
                capacity_kbps: trace.uplink_capacity_kbps,
                target_kbps: s.rate_control.bitrate_kbps,
            },
            buffer: BufferChart {
                level_ms: decimate(
                    &trace
                        .player_buffer
                        .points
                        .iter()
                        .map(|(t, v)| (secs(*t), *v))
                        .collect::<Vec<_>>(),
                    MAX_POINTS,
                ),
                rebuffers: trace
                    .rebuffers
                    .iter()
                    .map(|(a, b)| (secs(*a), secs(*b)))
                    .collect(),
                startup_buffer_ms: s.player.startup_buffer_ms,
            },
            breakdown,
            startup: startup_chart(trace, s),
            headline: Headline {
                video_g2g: video_g2g_pct,
                audio_g2g: audio_g2g_pct,
                join_to_first_frame_ms: trace
                    .startup
                    .first_frame_played_us
                    .map(|t| t.diff_ms(trace.startup.player_join_us)),
                rebuffers: trace.rebuffers.len(),
                rebuffer_ms: trace.rebuffers.iter().map(|(a, b)| b.diff_ms(*a)).sum(),
                video_frames,
                dropped_video,
                audience_players: trace.audience.players,
                audience_g2g: trace.audience.glass_to_glass,
                audience_disconnected: trace.audience.disconnected,
            },
            latency_digest,
        }
    }

    /// Changes whenever the latency chart's data does (the end-to-end test reads it from the
    /// canvas's `data-digest`): [`latency_digest`] of every frame's glass-to-glass latency,
    /// computed before decimation, so a change hidden by decimation still shows.
    pub fn digest(&self) -> u64 {
        self.latency_digest
    }
}

/// FNV-1a over the (capture s, latency ms) points of video then audio.
pub fn latency_digest(video: &[(f64, f64)], audio: &[(f64, f64)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: f64| {
        for b in x.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (t, v) in video.iter().chain(audio) {
        eat(*t);
        eat(*v);
    }
    h
}

/// Bitrate per whole second of stream time, plotted at the middle of each second (the last,
/// partial second left out: it would read as a drop to zero).
fn whole_seconds(trace: &Trace, kind: MediaKind) -> Points {
    let end = secs(trace.duration_us);
    trace
        .bitrate_series(kind, Micros(1_000_000))
        .points
        .iter()
        .map(|(t, v)| (secs(*t), *v))
        .filter(|(t, _)| t + 1.0 <= end + 1e-9)
        .map(|(t, v)| (t + 0.5, v))
        .collect()
}

fn vbv_chart(trace: &Trace, s: &Scenario) -> VbvChart {
    let rc = &s.rate_control;
    let buffer_kbit = rc.vbv_buffer_kbits;
    let max_rate_kbps = if rc.max_rate_kbps > 0.0 {
        rc.max_rate_kbps
    } else {
        rc.bitrate_kbps
    };
    let pts: Points = trace
        .vbv
        .points
        .iter()
        .map(|(t, b)| (secs(*t), b / 1e3))
        .collect();
    let mut underflows = Vec::new();
    let mut overflows = Vec::new();
    if buffer_kbit > 0.0 {
        let mut prev: Option<(f64, f64)> = None;
        for &(t, f) in &pts {
            if f <= 0.0 {
                underflows.push(t);
            }
            // The refill since the previous frame would have passed the top of the bucket.
            if let Some((pt, pf)) = prev {
                if pf + max_rate_kbps * (t - pt) > buffer_kbit * (1.0 + 1e-9) {
                    overflows.push(t);
                }
            }
            prev = Some((t, f));
        }
    }
    underflows.truncate(MAX_POINTS);
    overflows.truncate(MAX_POINTS);
    VbvChart {
        fullness_kbit: decimate(&pts, MAX_POINTS),
        buffer_kbit,
        underflows,
        overflows,
    }
}

/// The per-stage medians and the glass-to-glass percentiles of video and audio, in one pass
/// over the frames (the same samples as `Trace::stage_latency`, which passes over them once
/// per stage and sorts each sample in full).
fn breakdown(trace: &Trace) -> (Breakdown, Option<Percentiles>, Option<Percentiles>) {
    // [kind][stage]: video 0, audio 1; stages in PIPELINE order.
    let mut samples: [Vec<Vec<f64>>; 2] = std::array::from_fn(|_| {
        (0..STAGE_COUNT)
            .map(|_| Vec::with_capacity(trace.frames.len()))
            .collect()
    });
    let mut g2g: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for f in &trace.frames {
        let k = match f.kind {
            MediaKind::Video => 0,
            MediaKind::Audio => 1,
            MediaKind::Data => continue,
        };
        for (i, st) in PIPELINE.iter().enumerate() {
            if let Some(ms) = st.latency_ms(f) {
                samples[k][i].push(ms);
            }
        }
        if let Some(ms) = Stage::GlassToGlass.latency_ms(f) {
            g2g[k].push(ms);
        }
    }
    let [video, audio] = samples.map(|per_stage| {
        PIPELINE
            .iter()
            .zip(per_stage)
            .map(|(st, mut v)| (*st, median(&mut v).unwrap_or(0.0).max(0.0)))
            .collect::<Vec<_>>()
    });
    let [video_g2g, audio_g2g] = g2g.map(|mut v| Percentiles::of(&mut v));
    (
        Breakdown {
            video,
            audio,
            video_g2g_p50: video_g2g.map(|p| p.p50),
            audio_g2g_p50: audio_g2g.map(|p| p.p50),
        },
        video_g2g,
        audio_g2g,
    )
}

/// The nearest-rank median (what [`Percentiles::of`] calls p50), without sorting in full.
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let rank = ((0.5 * n as f64).ceil() as usize).clamp(1, n);
    Some(*v.select_nth_unstable_by(rank - 1, f64::total_cmp).1)
}

fn steps(b: &sim_core::rtmp::StartupBreakdown, last: &'static str) -> Vec<Span> {
    let parts = [
        ("TCP connect", b.tcp_connect),
        ("RTMP handshake", b.rtmp_handshake),
        ("connect", b.connect),
        ("createStream", b.create_stream),
        (last, b.publish_or_play),
    ];
    let mut at = 0.0;
    let mut out = Vec::new();
    for (label, d) in parts {
        let d = d.as_ms_f64();
        out.push(Span {
            label,
            start_ms: at,
            end_ms: at + d,
        });
        at += d;
    }
    out
}

fn startup_chart(trace: &Trace, s: &Scenario) -> StartupChart {
    let st = &trace.startup;
    let join = st.player_join_us;
    let rel = |t: Micros| t.diff_ms(join);
    let mut player = steps(&st.player, "play");
    let setup_end = player.last().map_or(0.0, |p| p.end_ms);
    let ready = st.player_ready_us.map(rel).unwrap_or(setup_end);
    if let Some(k) = st.first_keyframe_arrival_us.map(rel) {
        player.push(Span {
            label: if s.server.gop_cache {
                "cached GOP arrives"
            } else {
                "waiting for a keyframe"
            },
            start_ms: ready,
            end_ms: k.max(ready),
        });
        if let Some(f) = st.first_frame_played_us.map(rel) {
            player.push(Span {
                label: "filling the buffer, decode",
                start_ms: k.max(ready),
                end_ms: f.max(k),
            });
        }
    }
    StartupChart {
        player,
        publisher: steps(&st.publisher, "publish"),
        gop_cache: s.server.gop_cache,
        join_to_first_frame_ms: st.first_frame_played_us.map(rel),
        keyframe_interval_ms: s.encoder.keyframe_interval_frames as f64 / s.encoder.fps * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim_core::engine::Engine;
    use sim_core::scenario::preset;

    #[test]
    fn decimation_keeps_extremes_and_bounds_size() {
        let pts: Points = (0..100_000)
            .map(|i| (i as f64, if i == 50_123 { 1e6 } else { (i % 7) as f64 }))
            .collect();
        let d = decimate(&pts, 1000);
        assert!(d.len() <= 1002, "{}", d.len());
        assert!(d.iter().any(|p| p.1 == 1e6));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn one_pass_breakdown_matches_the_trace_percentiles() {
        for name in ["obs-default", "mobile-3g", "lan"] {
            let mut s = preset(name).unwrap();
            s.duration_s = 20.0;
            let t = Engine::run(&s);
            let c = ChartData::from_trace(&t, &s);
            for (kind, row) in [
                (MediaKind::Video, &c.breakdown.video),
                (MediaKind::Audio, &c.breakdown.audio),
            ] {
                for (st, ms) in row {
                    let p50 = t.stage_latency(*st, kind).map_or(0.0, |p| p.p50.max(0.0));
                    assert_eq!(*ms, p50, "{name} {kind:?} {st:?}");
                }
            }
            let g2g = |k| t.stage_latency(Stage::GlassToGlass, k);
            assert_eq!(c.headline.video_g2g, g2g(MediaKind::Video));
            assert_eq!(c.headline.audio_g2g, g2g(MediaKind::Audio));
            assert_eq!(
                c.breakdown.video_g2g_p50,
                g2g(MediaKind::Video).map(|p| p.p50)
            );
        }
        let mut odd = vec![3.0, 1.0, 2.0, 5.0, 4.0];
        assert_eq!(median(&mut odd), Some(3.0));
        let mut even = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), Some(2.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_digest_sees_changes_that_decimation_hides() {
        let pts: Points = (0..10_000).map(|i| (i as f64, (i % 2) as f64)).collect();
        let mut other = pts.clone();
        other[5_000].1 = 0.5; // within its bucket's min and max: the decimated series is equal
        assert_eq!(decimate(&pts, MAX_POINTS), decimate(&other, MAX_POINTS));
        assert_ne!(latency_digest(&pts, &[]), latency_digest(&other, &[]));
    }

    #[test]
    fn chart_data_of_a_preset() {
        let mut s = preset("obs-default").unwrap();
        s.duration_s = 20.0;
        let t = Engine::run(&s);
        let c = ChartData::from_trace(&t, &s);
        assert!(!c.latency.video_g2g.is_empty());
        assert!(!c.latency.audio_g2g.is_empty());
        assert_eq!(c.breakdown.video.len(), STAGE_COUNT);
        assert_eq!(c.latency.video_stages.len(), STAGE_COUNT);
        // The stacked medians are the pipeline's stages, each non-negative.
        assert!(c.breakdown.video.iter().all(|(_, ms)| *ms >= 0.0));
        let names: Vec<&str> = c.breakdown.video.iter().map(|(st, _)| st.label()).collect();
        assert_eq!(
            names,
            [
                "capture",
                "encode",
                "VBV queue",
                "socket",
                "network",
                "server",
                "downlink",
                "player buffer",
                "decode"
            ]
        );
        assert!(c.breakdown.video_g2g_p50.unwrap() > 0.0);
        assert!(c.startup.player.len() >= 6);
        assert!(c.headline.join_to_first_frame_ms.is_some());
        // Same trace, same digest; another RTT, another digest.
        assert_eq!(c.digest(), ChartData::from_trace(&t, &s).digest());
        s.uplink.propagation_ms = 150.0;
        let c2 = ChartData::from_trace(&Engine::run(&s), &s);
        assert_ne!(c.digest(), c2.digest());
    }
}
