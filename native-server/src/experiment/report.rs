//! The experiment's outputs: the comparison table printed at the end, the spans that no single
//! [`Stage`] covers but both traces observe (publisher → server, server → player), the data
//! of the per-frame chart, and the files (`sim.json`, `measured.json`, `compare.json`,
//! `experiment.json`, `scenario.toml`, `fidelity.json`).
//!
//! Every output names the link ([`RunInfo::link`]): a loopback run says
//! "loopback (no impairment)" in the table header, in `measured.json` and `compare.json`
//! (`link`) and in the chart's title.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sim_core::rtmp::StartupBreakdown;
use sim_core::server::MediaKind;
use sim_core::trace::{Comparison, FrameRecord, Percentiles, Stage, Startup, Trace};
use sim_core::Micros;

use super::{Outcome, RunInfo};

/// A span between two timestamps of a frame, compared like a [`Stage`].
#[derive(Debug, Clone, Serialize)]
pub struct SpanComparison {
    pub span: String,
    pub kind: MediaKind,
    pub matched_frames: u64,
    pub simulated: Option<Percentiles>,
    pub measured: Option<Percentiles>,
    /// |simulated − measured| per matched frame, ms.
    pub abs_error: Option<Percentiles>,
    /// Mean of simulated − measured, ms.
    pub bias_ms: f64,
}

type Field = fn(&FrameRecord) -> Option<Micros>;

/// The spans compared beside the stages: what the experiment observes per hop, and the
/// publisher's side whole — capture → encoder output (ffmpeg's capture is estimated and the end
/// of its capture not observed), capture → send (ffmpeg interleaves audio and video before its
/// pipe, the simulator after its encoder, so only the sum compares like with like).
pub const SPANS: [(&str, Field, Field); 4] = [
    (
        "capture→encoder output",
        |f| f.captured_us,
        |f| f.encoded_us,
    ),
    ("capture→publisher send", |f| f.captured_us, |f| f.sent_us),
    ("publisher→server", |f| f.sent_us, |f| f.server_arrival_us),
    (
        "server→player",
        |f| f.server_arrival_us,
        |f| f.player_arrival_us,
    ),
];

/// Compares the [`SPANS`] frame by frame, aligned as `sim_core::trace::compare` aligns
/// (kind, whole-millisecond dts).
pub fn span_comparisons(sim: &Trace, measured: &Trace) -> Vec<SpanComparison> {
    let key = |f: &FrameRecord| (f.kind, f.dts_us.0 / 1000);
    let mut by_key: HashMap<(MediaKind, u64), &FrameRecord> = HashMap::new();
    for f in &sim.frames {
        by_key.entry(key(f)).or_insert(f);
    }
    let mut out = Vec::new();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        for (name, from, to) in SPANS {
            let span = |f: &FrameRecord| Some(to(f)?.diff_ms(from(f)?));
            let pairs: Vec<(f64, f64)> = measured
                .frames
                .iter()
                .filter(|m| m.kind == kind)
                .filter_map(|m| Some((span(by_key.get(&key(m))?)?, span(m)?)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let mut sv: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let mut mv: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let mut ev: Vec<f64> = pairs.iter().map(|p| (p.0 - p.1).abs()).collect();
            let bias = pairs.iter().map(|p| p.0 - p.1).sum::<f64>() / pairs.len() as f64;
            out.push(SpanComparison {
                span: name.to_owned(),
                kind,
                matched_frames: pairs.len() as u64,
                simulated: Percentiles::of(&mut sv),
                measured: Percentiles::of(&mut mv),
                abs_error: Percentiles::of(&mut ev),
                bias_ms: bias,
            });
        }
    }
    out
}

/// Start-up of probe 0 and of the publisher, simulated and measured.
#[derive(Debug, Clone, Serialize)]
pub struct StartupComparison {
    pub simulated: Startup,
    pub measured: Startup,
}

/// Stream-level numbers of both traces.
#[derive(Debug, Clone, Serialize)]
pub struct StreamComparison {
    pub video_frames: [u64; 2],
    pub audio_frames: [u64; 2],
    /// Video frames that reached probe 0.
    pub video_frames_at_player: [u64; 2],
    pub audio_frames_at_player: [u64; 2],
    pub video_kbps_mean: [f64; 2],
    pub video_kbps_max_1s: [f64; 2],
    pub audio_kbps_mean: [f64; 2],
    /// Mean codec bytes of keyframes and of other video frames.
    pub keyframe_bytes_mean: [Option<f64>; 2],
    pub interframe_bytes_mean: [Option<f64>; 2],
    /// Delivery latency over every player's frames.
    pub audience_delivery_ms: [Option<Percentiles>; 2],
}

/// `compare.json`: `sim_core::trace::Comparison` (its fields at the top level, so the file
/// reads as one) plus how the measurement was made and the extra comparisons.
#[derive(Serialize)]
pub struct CompareFile<'a> {
    pub link: &'a str,
    pub publisher: &'a str,
    pub server: &'a str,
    pub players: u32,
    #[serde(flatten)]
    pub comparison: &'a Comparison,
    pub spans: Vec<SpanComparison>,
    pub startup: StartupComparison,
    pub stream: StreamComparison,
    pub notes: &'a [String],
}

/// `measured.json`: the [`Trace`] (its fields at the top level) plus the link it was measured
/// over, so the file alone says so.
#[derive(Serialize)]
pub struct MeasuredFile<'a> {
    #[serde(flatten)]
    pub trace: &'a Trace,
    pub link: &'a str,
    pub publisher: &'a str,
    pub server: &'a str,
}

/// `experiment.json`: the run's record (scenario, how it was measured, publisher writes).
#[derive(Serialize)]
pub struct ExperimentFile<'a> {
    pub scenario: &'a sim_core::scenario::Scenario,
    #[serde(flatten)]
    pub info: &'a RunInfo,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = v.fold((0u64, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

pub fn stream_comparison(sim: &Trace, measured: &Trace) -> StreamComparison {
    let both = |f: &dyn Fn(&Trace) -> u64| [f(sim), f(measured)];
    let count = |kind: MediaKind, at_player: bool| {
        move |t: &Trace| {
            t.frames
                .iter()
                .filter(|f| f.kind == kind && (!at_player || f.player_arrival_us.is_some()))
                .count() as u64
        }
    };
    let sizes = |t: &Trace, key: bool| {
        mean(
            t.frames
                .iter()
                .filter(|f| f.kind == MediaKind::Video && f.keyframe == key)
                .map(|f| f64::from(f.size_bytes)),
        )
    };
    let (ss, ms) = (sim.summary(), measured.summary());
    StreamComparison {
        video_frames: both(&count(MediaKind::Video, false)),
        audio_frames: both(&count(MediaKind::Audio, false)),
        video_frames_at_player: both(&count(MediaKind::Video, true)),
        audio_frames_at_player: both(&count(MediaKind::Audio, true)),
        video_kbps_mean: [ss.video_kbps_mean, ms.video_kbps_mean],
        video_kbps_max_1s: [ss.video_kbps_max_1s, ms.video_kbps_max_1s],
        audio_kbps_mean: [ss.audio_kbps_mean, ms.audio_kbps_mean],
        keyframe_bytes_mean: [sizes(sim, true), sizes(measured, true)],
        interframe_bytes_mean: [sizes(sim, false), sizes(measured, false)],
        audience_delivery_ms: [
            sim.audience.delivery_latency,
            measured.audience.delivery_latency,
        ],
    }
}

/// Writes `sim.json`, `measured.json`, `compare.json`, `experiment.json` and `scenario.toml`
/// into `dir` (created if needed). The chart is drawn by the caller.
pub fn write_files(dir: &Path, o: &Outcome) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("while writing {}", path.display()))
    };
    write("sim.json", o.simulated.to_json())?;
    write(
        "measured.json",
        serde_json::to_string(&MeasuredFile {
            trace: &o.measured,
            link: &o.info.link,
            publisher: &o.info.publisher,
            server: &o.info.server,
        })?,
    )?;
    write(
        "compare.json",
        serde_json::to_string_pretty(&CompareFile {
            link: &o.info.link,
            publisher: &o.info.publisher,
            server: &o.info.server,
            players: o.info.players,
            comparison: &o.comparison,
            spans: span_comparisons(&o.simulated, &o.measured),
            startup: StartupComparison {
                simulated: o.simulated.startup.clone(),
                measured: o.measured.startup.clone(),
            },
            stream: stream_comparison(&o.simulated, &o.measured),
            notes: &o.info.notes,
        })?,
    )?;
    write(
        "experiment.json",
        serde_json::to_string_pretty(&ExperimentFile {
            scenario: &o.scenario,
            info: &o.info,
        })?,
    )?;
    write("scenario.toml", o.scenario.to_toml())?;
    write(
        "fidelity.json",
        serde_json::to_string_pretty(&super::fidelity::fidelity(o))?,
    )?;
    Ok(())
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
        MediaKind::Data => "data",
    }
}

fn p3(p: Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("{:>7.1} {:>7.1} {:>7.1}", p.p50, p.p95, p.p99),
        None => format!("{:>7} {:>7} {:>7}", "-", "-", "-"),
    }
}

fn err2(p: Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("{:>6.1} {:>6.1}", p.p50, p.p95),
        None => format!("{:>6} {:>6}", "-", "-"),
    }
}

fn ms_of(t: Micros) -> f64 {
    t.as_ms_f64()
}

/// The table printed at the end of a run.
pub fn table(o: &Outcome) -> String {
    let mut out = String::new();
    let s = &o.scenario;
    let i = &o.info;
    let _ = writeln!(
        out,
        "rtmp-lab experiment — scenario {} (seed {}), {:.1} s, {} player{}",
        s.name,
        s.seed,
        s.duration_s,
        i.players,
        if i.players == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "link:      {}", i.link);
    if let Some(why) = &i.link_fallback_reason {
        let _ = writeln!(out, "           (emulator unavailable: {why})");
    }
    let _ = writeln!(out, "publisher: {}", i.publisher);
    let _ = writeln!(out, "server:    {}", i.server);
    let _ = writeln!(out, "url:       {}", i.url);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:>6}  {:^23}  {:^23}  {:^13}  {:>6}",
        "per-frame latency, ms",
        "frames",
        "simulated p50 p95 p99",
        "measured p50 p95 p99",
        "|err| p50 p95",
        "bias"
    );
    let replayed = i.publisher == "replay";
    for kind in [MediaKind::Video, MediaKind::Audio] {
        for st in o.comparison.stages.iter().filter(|st| st.kind == kind) {
            let note = match st.stage {
                Stage::Capture | Stage::Encode if replayed => " (replayed)",
                _ => "",
            };
            let label = format!("{} {}{note}", kind_name(kind), st.stage.label());
            let _ = writeln!(
                out,
                "{:<40} {:>6}  {}  {}  {}  {:>+6.1}",
                label,
                st.matched_frames,
                p3(st.simulated),
                p3(st.measured),
                err2(st.abs_error),
                st.bias_ms
            );
        }
        for sp in span_comparisons(&o.simulated, &o.measured)
            .iter()
            .filter(|sp| sp.kind == kind)
        {
            let note = if replayed && sp.span.starts_with("capture") {
                " (replayed)"
            } else {
                ""
            };
            let label = format!("{} {}{note}", kind_name(kind), sp.span);
            let _ = writeln!(
                out,
                "{:<40} {:>6}  {}  {}  {}  {:>+6.1}",
                label,
                sp.matched_frames,
                p3(sp.simulated),
                p3(sp.measured),
                err2(sp.abs_error),
                sp.bias_ms
            );
        }
    }
    let _ = writeln!(
        out,
        "  (stages whose start or end the measurement cannot observe are left out; \
         error = simulated − measured, frame by frame)"
    );

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<30} {:>10} {:>10} {:>10}",
        "start-up, ms", "simulated", "measured", "error"
    );
    let (ss, ms) = (&o.simulated.startup, &o.measured.startup);
    let steps = |b: &StartupBreakdown| {
        [
            b.tcp_connect,
            b.rtmp_handshake,
            b.connect,
            b.create_stream,
            b.publish_or_play,
            b.total,
        ]
    };
    let names = [
        "TCP connect",
        "RTMP handshake",
        "connect → _result",
        "createStream → _result",
        "play → Play.Start",
        "total (probe 0)",
    ];
    for (n, (a, b)) in names
        .iter()
        .zip(steps(&ss.player).into_iter().zip(steps(&ms.player)))
    {
        let (a, b) = (ms_of(a), ms_of(b));
        let _ = writeln!(out, "  {:<28} {:>10.2} {:>10.2} {:>+10.2}", n, a, b, a - b);
    }
    let first_key = |t: &Startup| {
        t.first_keyframe_arrival_us
            .map(|k| k.diff_ms(t.player_join_us))
    };
    match (first_key(ss), first_key(ms)) {
        (Some(a), Some(b)) => {
            let _ = writeln!(
                out,
                "  {:<28} {:>10.2} {:>10.2} {:>+10.2}",
                "join → first keyframe",
                a,
                b,
                a - b
            );
        }
        (a, b) => {
            let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
            let _ = writeln!(
                out,
                "  {:<28} {:>10} {:>10}",
                "join → first keyframe",
                f(a),
                f(b)
            );
        }
    }
    let (a, b) = (ms_of(ss.publisher.total), ms_of(ms.publisher.total));
    if o.measured.frames.iter().any(|f| f.sent_us.is_some()) {
        let _ = writeln!(
            out,
            "  {:<28} {:>10.2} {:>10.2} {:>+10.2}",
            "publisher set-up total",
            a,
            b,
            a - b
        );
    } else {
        let _ = writeln!(
            out,
            "  {:<28} {:>10.2} {:>10}",
            "publisher set-up total", a, "-"
        );
    }

    let st = stream_comparison(&o.simulated, &o.measured);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<30} {:>10} {:>10}",
        "stream", "simulated", "measured"
    );
    let pct = |at: u64, of: u64| {
        if of > 0 {
            format!(" ({:.1} %)", at as f64 * 100.0 / of as f64)
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10}",
        "video frames sent", st.video_frames[0], st.video_frames[1]
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10}{}",
        "video frames at probe 0",
        st.video_frames_at_player[0],
        st.video_frames_at_player[1],
        pct(st.video_frames_at_player[1], st.video_frames[1])
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10}",
        "audio frames sent", st.audio_frames[0], st.audio_frames[1]
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10}",
        "audio frames at probe 0", st.audio_frames_at_player[0], st.audio_frames_at_player[1]
    );
    for (name, v) in [
        ("video kb/s (mean)", st.video_kbps_mean),
        ("video kb/s (max over 1 s)", st.video_kbps_max_1s),
        ("audio kb/s (mean)", st.audio_kbps_mean),
    ] {
        let _ = writeln!(out, "  {:<28} {:>10.0} {:>10.0}", name, v[0], v[1]);
    }
    for (name, v) in [
        ("keyframe bytes (mean)", st.keyframe_bytes_mean),
        ("other frame bytes (mean)", st.interframe_bytes_mean),
    ] {
        let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.0}"));
        let _ = writeln!(out, "  {:<28} {:>10} {:>10}", name, f(v[0]), f(v[1]));
    }
    let d = &st.audience_delivery_ms;
    let f = |p: Option<Percentiles>| p.map_or("-".to_owned(), |p| format!("{:.1}", p.p50));
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10}",
        "all players send→arrival p50",
        f(d[0]),
        f(d[1])
    );
    let drops = o.measured.summary().drops;
    let _ = writeln!(
        out,
        "  measured drops at probe 0: server queue {}, waiting for keyframe {}, in flight at \
         the end {}",
        drops.server_queue, drops.waiting_for_keyframe, drops.in_flight
    );
    let _ = writeln!(out);
    out.push_str(&super::fidelity::table_lines(&super::fidelity::fidelity(o)));
    if let Some(e) = &i.emulator {
        let _ = writeln!(out);
        let _ = writeln!(out, "emulated link:");
        for line in e.to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !i.notes.is_empty() || !i.probe_errors.is_empty() || i.publisher_error.is_some() {
        let _ = writeln!(out);
        let _ = writeln!(out, "notes:");
        for n in i
            .notes
            .iter()
            .chain(&i.probe_errors)
            .chain(&i.publisher_error)
        {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// One line of a chart panel.
#[derive(Debug, Clone)]
pub struct ChartLine {
    pub label: String,
    pub rgb: (u8, u8, u8),
    /// (x, y) = (stream time s, latency ms).
    pub points: Vec<(f64, f64)>,
}

/// One panel of the chart.
#[derive(Debug, Clone)]
pub struct ChartPanel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub lines: Vec<ChartLine>,
}

pub const SIMULATED_RGB: (u8, u8, u8) = (0x33, 0x66, 0xCC);
pub const MEASURED_RGB: (u8, u8, u8) = (0xCC, 0x33, 0x11);

fn span_points(t: &Trace, kind: MediaKind, from: Field, to: Field) -> Vec<(f64, f64)> {
    t.frames
        .iter()
        .filter(|f| f.kind == kind)
        .filter_map(|f| Some((f.dts_us.as_secs_f64(), to(f)?.diff_ms(from(f)?))))
        .collect()
}

/// The chart's title (two lines: the run, then the link) and panels: per-frame video latency,
/// simulated over measured, one panel per span both traces observe (send → player,
/// send → server, server → player).
pub fn chart(o: &Outcome) -> (String, Vec<ChartPanel>) {
    let title = format!(
        "{} (seed {}): per-frame video latency, simulated vs measured\nlink: {}",
        o.scenario.name, o.scenario.seed, o.info.link
    );
    let spans: [(&str, Field, Field); 3] = [
        (
            "publisher send → player arrival",
            |f| f.sent_us,
            |f| f.player_arrival_us,
        ),
        (
            "publisher send → server arrival",
            |f| f.sent_us,
            |f| f.server_arrival_us,
        ),
        (
            "server arrival → player arrival",
            |f| f.server_arrival_us,
            |f| f.player_arrival_us,
        ),
    ];
    let mut panels = Vec::new();
    for (name, from, to) in spans {
        let measured = span_points(&o.measured, MediaKind::Video, from, to);
        if measured.is_empty() {
            continue;
        }
        let simulated = span_points(&o.simulated, MediaKind::Video, from, to);
        panels.push(ChartPanel {
            title: name.to_owned(),
            x_desc: "stream time (dts, s)".into(),
            y_desc: "latency (ms)".into(),
            lines: vec![
                ChartLine {
                    label: "simulated".into(),
                    rgb: SIMULATED_RGB,
                    points: simulated,
                },
                ChartLine {
                    label: format!("measured, {}", o.info.link_short()),
                    rgb: MEASURED_RGB,
                    points: measured,
                },
            ],
        });
    }
    (title, panels)
}

impl RunInfo {
    /// "loopback (no impairment)" or "emulated".
    pub fn link_short(&self) -> &str {
        if self.link.starts_with("emulated") {
            "emulated"
        } else {
            &self.link
        }
    }
}
