//! Charts of a trace, drawn with plotters to SVG: per-frame latency (glass-to-glass and
//! send→arrival, video and audio), VBV occupancy, the publisher's socket backlog and the probe
//! player's buffer, on one shared time axis; then where the latency goes: the median of each
//! pipeline stage, stacked.

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

/// Draws the five panels to `path` (SVG).
pub fn latency_svg(trace: &Trace, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 1350)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (time_panels, breakdown) = root.split_vertically(1100);
    let panels = time_panels.split_evenly((4, 1));
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
    // 5. Where the latency goes.
    draw_breakdown(&breakdown, trace)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One colour per pipeline stage (Paul Tol's "muted" scheme, as in the web lab).
const STAGE_COLORS: [RGBColor; Stage::PIPELINE_LEN] = [
    RGBColor(0x33, 0x22, 0x88),
    RGBColor(0xdd, 0xcc, 0x77),
    RGBColor(0x88, 0x22, 0x55),
    RGBColor(0x88, 0xcc, 0xee),
    RGBColor(0x11, 0x77, 0x33),
    RGBColor(0xcc, 0x66, 0x77),
    RGBColor(0x44, 0xaa, 0x99),
    RGBColor(0x99, 0x99, 0x33),
    RGBColor(0xaa, 0x44, 0x99),
];

/// Horizontal bars, video and audio: the p50 of each pipeline stage, stacked in pipeline order,
/// with the p50 glass-to-glass as a black tick (the median of a sum is not the sum of medians).
fn draw_breakdown(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    trace: &Trace,
) -> Result<()> {
    let p50 = |st: Stage, kind: MediaKind| trace.stage_latency(st, kind).map(|p| p.p50.max(0.0));
    let rows: Vec<(&str, f64, Vec<f64>, Option<f64>)> = [
        ("video", MediaKind::Video, 1.5),
        ("audio", MediaKind::Audio, 0.5),
    ]
    .into_iter()
    .map(|(name, kind, y)| {
        let parts = Stage::PIPELINE
            .iter()
            .map(|st| p50(*st, kind).unwrap_or(0.0))
            .collect();
        (name, y, parts, p50(Stage::GlassToGlass, kind))
    })
    .collect();
    let x_max = rows
        .iter()
        .map(|(_, _, parts, g2g)| parts.iter().sum::<f64>().max(g2g.unwrap_or(0.0)))
        .fold(0.0f64, f64::max);
    // (Room on the right for the legend.)
    let x_max = if x_max > 0.0 { x_max * 1.2 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(
            "where the latency goes: p50 per stage, stacked (tick: p50 glass-to-glass)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..2.6f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("ms")
        .draw()
        .map_err(err)?;
    for (name, y, parts, g2g) in &rows {
        let mut x = 0.0;
        for (i, ms) in parts.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, *y), (x + ms, y + 0.6)],
                    STAGE_COLORS[i].filled(),
                )))
                .map_err(err)?;
            x += ms;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (0.0, y + 0.85),
                ("sans-serif", 13),
            )))
            .map_err(err)?;
        if let Some(g) = g2g {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*g, y - 0.1), (*g, y + 0.7)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
    }
    // The legend: one swatch per stage.
    for (i, st) in Stage::PIPELINE.iter().enumerate() {
        let c = STAGE_COLORS[i];
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(err)?
            .label(st.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
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

/// `rtmp-lab experiment`'s chart: one panel per span, each with its lines (simulated over
/// measured), under a title of up to two lines (the second names the link).
pub fn experiment_svg(
    path: &Path,
    title: &str,
    panels: &[native_server::experiment::report::ChartPanel],
) -> Result<()> {
    let rows = panels.len().max(1);
    let root = SVGBackend::new(path, (1200, 60 + 320 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (head, body) = root.split_vertically(60);
    for (i, line) in title.lines().take(2).enumerate() {
        head.draw(&Text::new(
            line.to_owned(),
            (10, 8 + 24 * i as i32),
            ("sans-serif", if i == 0 { 18 } else { 14 }),
        ))
        .map_err(err)?;
    }
    let areas = body.split_evenly((rows, 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let sets: Vec<&[(f64, f64)]> = panel.lines.iter().map(|l| l.points.as_slice()).collect();
        let t_end = sets
            .iter()
            .flat_map(|s| s.iter().map(|p| p.0))
            .fold(0.0f64, f64::max)
            .max(1.0);
        let mut chart = time_chart(
            area,
            &panel.title,
            16,
            &panel.x_desc,
            &panel.y_desc,
            t_end,
            max_y(&sets),
        )?;
        for line in &panel.lines {
            let (r, g, b) = line.rgb;
            let color = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(1),
                ))
                .map_err(err)?
                .label(line.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
