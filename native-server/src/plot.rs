//! Charts of a trace, drawn with plotters to SVG: per-frame latency (glass-to-glass and
//! send→arrival, video and audio), VBV occupancy, the publisher's socket backlog and the probe
//! player's buffer, on one shared time axis.

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use sim_core::server::MediaKind;
use sim_core::trace::{Series, Stage, Trace};
use std::path::Path;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// Points of `stage` latency (ms) over capture time (s) for frames of `kind`.
fn latency_points(trace: &Trace, stage: Stage, kind: MediaKind) -> Vec<(f64, f64)> {
    trace
        .frames
        .iter()
        .filter(|f| f.kind == kind)
        .filter_map(|f| {
            let t = f.captured_us?.as_secs_f64();
            Some((t, stage.latency_ms(f)?))
        })
        .collect()
}

fn series_points(s: &Series, scale: f64) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .map(|(t, v)| (t.as_secs_f64(), v * scale))
        .collect()
}

fn max_y(sets: &[&[(f64, f64)]]) -> f64 {
    let m = sets
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    if m > 0.0 {
        m * 1.1
    } else {
        1.0
    }
}

/// Draws the four panels to `path` (SVG).
pub fn latency_svg(trace: &Trace, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((4, 1));
    let t_end = trace
        .frames
        .iter()
        .filter_map(|f| f.played_us.or(f.player_arrival_us).or(f.captured_us))
        .max()
        .map(|t| t.as_secs_f64())
        .unwrap_or(1.0)
        .max(1.0);

    // 1. Per-frame latency.
    let g2g_v = latency_points(trace, Stage::GlassToGlass, MediaKind::Video);
    let g2g_a = latency_points(trace, Stage::GlassToGlass, MediaKind::Audio);
    let del_v = latency_points(trace, Stage::Delivery, MediaKind::Video);
    let y = max_y(&[&g2g_v, &g2g_a, &del_v]);
    let title = format!(
        "{} (seed {}): per-frame latency",
        trace.scenario, trace.seed
    );
    let mut chart = time_chart(
        &panels[0],
        &title,
        20,
        "capture time (s)",
        "latency (ms)",
        t_end,
        y,
    )?;
    for (pts, color, label) in [
        (&g2g_v, RED, "video glass-to-glass"),
        (&g2g_a, BLUE, "audio glass-to-glass"),
        (&del_v, GREEN, "video send→player arrival"),
    ] {
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(1)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    // 2. VBV fullness, kbit.
    let vbv = series_points(&trace.vbv, 1e-3);
    draw_series_panel(
        &panels[1],
        "VBV buffer fullness",
        "kbit",
        t_end,
        &vbv,
        MAGENTA,
    )?;
    // 3. Publisher socket backlog, KB.
    let backlog = series_points(&trace.send_queue, 1e-3);
    draw_series_panel(
        &panels[2],
        "publisher socket backlog",
        "KB",
        t_end,
        &backlog,
        CYAN,
    )?;
    // 4. Player buffer, ms.
    let buf = series_points(&trace.player_buffer, 1.0);
    draw_series_panel(&panels[3], "probe player buffer", "ms", t_end, &buf, BLACK)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_series_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    t_end: f64,
    pts: &[(f64, f64)],
    color: RGBColor,
) -> Result<()> {
    let y = max_y(&[pts]);
    let mut chart = time_chart(area, title, 16, "time (s)", unit, t_end, y)?;
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(1)))
        .map_err(err)?;
    Ok(())
}

type TimeChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart over `0..t_end` seconds and `0..y_max`, with its caption and labelled axes drawn.
fn time_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    title_size: u32,
    x_desc: &str,
    y_desc: &str,
    t_end: f64,
    y_max: f64,
) -> Result<TimeChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", title_size))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_end, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    Ok(chart)
}
