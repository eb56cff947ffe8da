//! The human summary printed by `rtmp-lab simulate`.

use sim_core::rtmp::StartupBreakdown;
use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::{Percentiles, Stage, Summary};
use std::fmt::Write;

fn ms(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 100.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

fn row(out: &mut String, label: &str, p: Option<Percentiles>) {
    match p {
        Some(p) => {
            let _ = writeln!(
                out,
                "  {label:<16} {:>9} {:>9} {:>9} {:>9} {:>8}",
                ms(p.p50),
                ms(p.p95),
                ms(p.p99),
                ms(p.max),
                p.count
            );
        }
        None => {
            let _ = writeln!(out, "  {label:<16} {:>9}", "—");
        }
    }
}

fn startup_line(b: &StartupBreakdown) -> String {
    format!(
        "TCP {} + RTMP handshake {} + connect {} + createStream {} + publish/play {} = {} ms",
        ms(b.tcp_connect.as_ms_f64()),
        ms(b.rtmp_handshake.as_ms_f64()),
        ms(b.connect.as_ms_f64()),
        ms(b.create_stream.as_ms_f64()),
        ms(b.publish_or_play.as_ms_f64()),
        ms(b.total.as_ms_f64()),
    )
}

/// The summary as a plain-text table.
pub fn summary_table(s: &Scenario, sum: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} (seed {}): {:.1} s simulated, {} video + {} audio frames, {} player(s)",
        sum.scenario,
        sum.seed,
        sum.duration_s,
        sum.video_frames,
        sum.audio_frames,
        sum.audience.players
    );
    let _ = writeln!(
        out,
        "  {}x{} @ {} fps, {:?} {} kb/s, VBV {} kbit, keyint {}, B-frames {}{}; uplink RTT {} ms",
        s.encoder.width,
        s.encoder.height,
        s.encoder.fps,
        s.rate_control.mode,
        s.rate_control.bitrate_kbps,
        s.rate_control.vbv_buffer_kbits,
        s.encoder.keyframe_interval_frames,
        s.encoder.bframes,
        if s.encoder.zerolatency {
            ", zerolatency"
        } else {
            ""
        },
        ms(s.uplink_rtt_ms()),
    );
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let _ = writeln!(
            out,
            "\nlatency per stage, {} (probe player), ms    p50       p95       p99       max   frames",
            if kind == MediaKind::Video {
                "video"
            } else {
                "audio"
            }
        );
        for st in sum.stages.iter().filter(|st| st.kind == kind) {
            if st.stage == Stage::Delivery {
                // Above: the pipeline, whose stages sum to glass-to-glass frame by frame.
                let _ = writeln!(out, "  {:-<16}", "");
            }
            row(&mut out, st.stage.label(), st.latency_ms);
        }
    }
    let st = &sum.startup;
    let _ = writeln!(out, "\nstart-up");
    let _ = writeln!(out, "  publisher: {}", startup_line(&st.publisher));
    let _ = writeln!(
        out,
        "  player joins at {:.3} s: {}",
        st.player_join_us.as_secs_f64(),
        startup_line(&st.player)
    );
    let rel = |t: Option<sim_core::Micros>| {
        t.map(|t| format!("+{} ms", ms(t.diff_ms(st.player_join_us))))
            .unwrap_or_else(|| "never".into())
    };
    let _ = writeln!(
        out,
        "  after joining: first keyframe arrives {}, first frame shown {}",
        rel(st.first_keyframe_arrival_us),
        rel(st.first_frame_played_us)
    );
    let _ = writeln!(
        out,
        "\nbitrate: video {:.0} kb/s mean, {:.0} kb/s in the busiest second; audio {:.0} kb/s",
        sum.video_kbps_mean, sum.video_kbps_max_1s, sum.audio_kbps_mean
    );
    let d = &sum.drops;
    let _ = writeln!(
        out,
        "drops (probe): encoder {}, server queue {}, waiting for keyframe {}, disconnected {}, player {}, in flight at end {}",
        d.encoder, d.server_queue, d.waiting_for_keyframe, d.disconnected, d.player, d.in_flight
    );
    let _ = writeln!(
        out,
        "rebuffering (probe): {} stalls, {} ms",
        sum.rebuffer_count,
        ms(sum.rebuffer_ms)
    );
    let a = &sum.audience;
    if a.players > 1 {
        let p = |p: Option<Percentiles>| {
            p.map(|p| format!("p50 {} / p99 {} ms", ms(p.p50), ms(p.p99)))
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            out,
            "audience ({} players): send→arrival {}, glass-to-glass {}; {} disconnected, {} server drops, {} stalls, {:.1} MB sent",
            a.players,
            p(a.delivery_latency),
            p(a.glass_to_glass),
            a.disconnected,
            a.frames_dropped_server,
            a.rebuffer_count,
            a.egress_bytes as f64 / 1e6
        );
    }
    out
}
