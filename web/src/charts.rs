//! Drawing: each chart is a function from [`ChartData`] (or a measured [`Overlay`]) to a plotters
//! drawing area. Generic over the backend, so the same code could draw SVG; the page uses
//! `plotters-canvas` on `<canvas>` elements ([`draw_on_canvas`]).
//!
//! Every axis says its unit. Colours come from [`palette`] (chosen to stay apart for the common
//! colour-vision deficiencies and to read on white).

use crate::chart_data::{ChartData, PIPELINE, STAGE_COUNT};
use crate::measured::Overlay;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use sim_core::trace::Stage;

pub mod palette {
    use crate::chart_data::STAGE_COUNT;
    use plotters::style::RGBColor;
    pub const VIDEO: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
    pub const AUDIO: RGBColor = RGBColor(0xe0, 0x7b, 0x00);
    pub const GOOD: RGBColor = RGBColor(0x1b, 0x8a, 0x4b);
    pub const BAD: RGBColor = RGBColor(0xc6, 0x28, 0x28);
    pub const WARN: RGBColor = RGBColor(0xb8, 0x86, 0x00);
    pub const GREY: RGBColor = RGBColor(0x70, 0x70, 0x70);
    pub const GRID: RGBColor = RGBColor(0xe4, 0xe6, 0xea);
    pub const MEASURED: RGBColor = RGBColor(0xc2, 0x18, 0x5b);
    /// One colour per pipeline stage (capture … decode): Paul Tol's "muted" scheme, made to
    /// stay apart for the common colour-vision deficiencies, ordered so that neighbouring
    /// segments of the stacked bar alternate dark and light.
    pub const STAGES: [RGBColor; STAGE_COUNT] = [
        RGBColor(0x33, 0x22, 0x88), // capture: indigo
        RGBColor(0xdd, 0xcc, 0x77), // encode: sand
        RGBColor(0x88, 0x22, 0x55), // VBV queue: wine
        RGBColor(0x88, 0xcc, 0xee), // socket: cyan
        RGBColor(0x11, 0x77, 0x33), // network: green
        RGBColor(0xcc, 0x66, 0x77), // server: rose
        RGBColor(0x44, 0xaa, 0x99), // downlink: teal
        RGBColor(0x99, 0x99, 0x33), // player buffer: olive
        RGBColor(0xaa, 0x44, 0x99), // decode: purple
    ];

    /// Black or white, whichever reads better on `c` (for labels inside stage segments).
    pub fn text_on(c: RGBColor) -> RGBColor {
        let luma = 0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64;
        if luma > 150.0 {
            RGBColor(0, 0, 0)
        } else {
            RGBColor(0xff, 0xff, 0xff)
        }
    }
}

/// Which lines the latency chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyOptions {
    pub video: bool,
    pub audio: bool,
    /// Per-stage lines, in [`PIPELINE`] order.
    pub stages: [bool; STAGE_COUNT],
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            video: true,
            audio: true,
            stages: [false; STAGE_COUNT],
        }
    }
}

impl LatencyOptions {
    /// No totals, only the lines of `stages`.
    pub const fn only_stages(stages: &[Stage]) -> LatencyOptions {
        let mut on = [false; STAGE_COUNT];
        let mut i = 0;
        while i < stages.len() {
            if let Some(k) = stages[i].pipeline_index() {
                on[k] = true;
            }
            i += 1;
        }
        LatencyOptions {
            video: false,
            audio: false,
            stages: on,
        }
    }
}

/// The charts of the page, by canvas id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Latency,
    Vbv,
    Bitrate,
    Buffer,
    Breakdown,
    Startup,
}

impl ChartKind {
    pub const ALL: [ChartKind; 6] = [
        ChartKind::Latency,
        ChartKind::Breakdown,
        ChartKind::Vbv,
        ChartKind::Bitrate,
        ChartKind::Buffer,
        ChartKind::Startup,
    ];

    pub fn canvas_id(self) -> &'static str {
        match self {
            ChartKind::Latency => "chart-latency",
            ChartKind::Vbv => "chart-vbv",
            ChartKind::Bitrate => "chart-bitrate",
            ChartKind::Buffer => "chart-buffer",
            ChartKind::Breakdown => "chart-breakdown",
            ChartKind::Startup => "chart-startup",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ChartKind::Latency => "Latency per frame",
            ChartKind::Vbv => "VBV buffer occupancy (encoder)",
            ChartKind::Bitrate => "Sent bitrate vs uplink capacity",
            ChartKind::Buffer => "Player buffer",
            ChartKind::Breakdown => "Where the latency goes (p50 per stage)",
            ChartKind::Startup => "Start-up of the player",
        }
    }

    /// Whether the chart would draw the same from `a` as from `b` (the latency chart's line
    /// toggles aside): a chart whose input did not change is not drawn again.
    pub fn same_input(self, a: &ChartData, b: &ChartData) -> bool {
        if std::ptr::eq(a, b) {
            return true;
        }
        let d = a.duration_s == b.duration_s;
        match self {
            ChartKind::Latency => d && a.latency == b.latency,
            ChartKind::Vbv => d && a.vbv == b.vbv,
            ChartKind::Bitrate => d && a.bitrate == b.bitrate,
            ChartKind::Buffer => d && a.buffer == b.buffer,
            ChartKind::Breakdown => a.breakdown == b.breakdown,
            ChartKind::Startup => a.startup == b.startup,
        }
    }

    /// CSS height of the canvas in px.
    pub fn height_px(self) -> u32 {
        match self {
            ChartKind::Breakdown => 190,
            ChartKind::Startup => 250,
            _ => 260,
        }
    }
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Font and stroke scale (device pixels per CSS pixel).
#[derive(Debug, Clone, Copy)]
pub struct Scale(pub f64);

impl Scale {
    fn px(self, v: f64) -> u32 {
        (v * self.0).round().max(1.0) as u32
    }
    fn font(self, size: f64) -> TextStyle<'static> {
        ("sans-serif", size * self.0).into_font().color(&BLACK)
    }
}

/// A tick label: integers without decimals, others short.
fn tick(v: &f64) -> String {
    crate::controls::format_value(*v)
}

/// `0..max` with room above the data for the legend, never empty.
fn with_legend_room(max: f64) -> std::ops::Range<f64> {
    let r = up_to(max);
    r.start..r.end * 1.3
}

/// `0..max` padded by 10 %, never empty.
fn up_to(max: f64) -> std::ops::Range<f64> {
    let m = if max.is_finite() && max > 0.0 {
        max * 1.1
    } else {
        1.0
    };
    0.0..m
}

fn max_y<'a>(series: impl IntoIterator<Item = &'a (f64, f64)>) -> f64 {
    series
        .into_iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

/// The points of `pts` worth drawing as a line, given where each lands in pixels (`to_px`):
/// per pixel column, the first, highest, lowest and last point in time order, without
/// repeats, and the inner points of a run along one pixel row left out. So a line has at most
/// four points per column (a flat one much fewer), and a one-frame spike still shows.
pub fn per_pixel(pts: &[(f64, f64)], to_px: impl Fn((f64, f64)) -> (i32, i32)) -> Vec<(f64, f64)> {
    /// A data point and where it lands.
    type At = ((f64, f64), (i32, i32));
    let mut out: Vec<At> = Vec::with_capacity(pts.len().min(4096));
    let push = |out: &mut Vec<At>, p: At| {
        let n = out.len();
        if n >= 1 && out[n - 1].1 == p.1 {
            return;
        }
        if n >= 2 {
            let (a, b) = (out[n - 2].1, out[n - 1].1);
            let between = (a.0 <= b.0 && b.0 <= p.1 .0) || (a.0 >= b.0 && b.0 >= p.1 .0);
            if a.1 == b.1 && b.1 == p.1 .1 && between {
                out[n - 1] = p;
                return;
            }
        }
        out.push(p);
    };
    let mut i = 0;
    while i < pts.len() {
        let first = (pts[i], to_px(pts[i]));
        let (mut top, mut bottom, mut last) = (first, first, first);
        let mut top_i = i;
        let mut bottom_i = i;
        i += 1;
        while i < pts.len() {
            let q = (pts[i], to_px(pts[i]));
            if q.1 .0 != first.1 .0 {
                break;
            }
            if q.1 .1 < top.1 .1 {
                (top, top_i) = (q, i);
            }
            if q.1 .1 > bottom.1 .1 {
                (bottom, bottom_i) = (q, i);
            }
            last = q;
            i += 1;
        }
        let (a, b) = if top_i <= bottom_i {
            (top, bottom)
        } else {
            (bottom, top)
        };
        for p in [first, a, b, last] {
            push(&mut out, p);
        }
    }
    out.into_iter().map(|(p, _)| p).collect()
}

/// [`per_pixel`] on `chart`'s coordinates.
fn on_pixels<DB: DrawingBackend>(
    chart: &ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    pts: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    per_pixel(pts, |p| chart.backend_coord(&p))
}

/// How a legend entry is marked.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Line(RGBColor),
    Box(RGBColor),
    Triangle(RGBColor),
}

/// A chart's legend, drawn by [`Legend::draw`] rather than plotters' series labels: those
/// measure each label by adding a `<span>` to the page and reading its size, a full page
/// layout per label (most of a chart's drawing time).
#[derive(Debug, Default)]
pub struct Legend {
    items: Vec<(String, Mark)>,
}

thread_local! {
    /// The 2d context of the canvas being drawn, to measure text with (`measureText` needs no
    /// page layout).
    static MEASURE: std::cell::RefCell<Option<web_sys::CanvasRenderingContext2d>> =
        const { std::cell::RefCell::new(None) };
}

/// Width in pixels of `text` in sans-serif at `size` px: measured on the canvas being drawn,
/// else estimated from typical glyph widths.
fn text_width(text: &str, size: f64) -> f64 {
    let measured = MEASURE.with(|m| {
        m.borrow().as_ref().and_then(|ctx| {
            ctx.set_font(&format!("normal {size}px sans-serif"));
            ctx.measure_text(text).ok().map(|t| t.width())
        })
    });
    measured.unwrap_or_else(|| {
        text.chars()
            .map(|c| match c {
                'i' | 'j' | 'l' | 't' | 'f' | 'r' | ' ' | '.' | ',' | ':' | ';' | '(' | ')'
                | '/' | '-' | '\'' | '|' | '!' => 0.34,
                'm' | 'w' | 'M' | 'W' => 0.9,
                c if c.is_ascii_uppercase() => 0.7,
                _ => 0.6,
            })
            .sum::<f64>()
            * size
    })
}

impl Legend {
    fn line(&mut self, label: impl Into<String>, c: RGBColor) {
        self.items.push((label.into(), Mark::Line(c)));
    }
    fn boxed(&mut self, label: impl Into<String>, c: RGBColor) {
        self.items.push((label.into(), Mark::Box(c)));
    }
    fn triangle(&mut self, label: impl Into<String>, c: RGBColor) {
        self.items.push((label.into(), Mark::Triangle(c)));
    }

    /// Draws the entries in a box in the `pos` corner of `area` (pixel coordinates).
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        pos: SeriesLabelPosition,
        sc: Scale,
    ) -> DrawResult {
        if self.items.is_empty() {
            return Ok(());
        }
        let (w, h) = area.dim_in_pixel();
        let font = 11.0 * sc.0;
        let line_h = (font * 1.35).round() as i32;
        let pad = sc.px(6.0) as i32;
        let mark_w = sc.px(14.0) as i32;
        let gap = sc.px(6.0) as i32;
        let text_w = self
            .items
            .iter()
            .map(|(l, _)| text_width(l, font))
            .fold(0.0, f64::max)
            .ceil() as i32;
        let box_w = pad + mark_w + gap + text_w + pad;
        let box_h = pad + line_h * self.items.len() as i32 + pad;
        let margin = sc.px(10.0) as i32;
        let x0 = match pos {
            SeriesLabelPosition::UpperLeft
            | SeriesLabelPosition::MiddleLeft
            | SeriesLabelPosition::LowerLeft => margin,
            _ => w as i32 - margin - box_w,
        };
        let y0 = match pos {
            SeriesLabelPosition::LowerLeft
            | SeriesLabelPosition::LowerMiddle
            | SeriesLabelPosition::LowerRight => h as i32 - margin - box_h,
            _ => margin,
        };
        area.draw(&Rectangle::new(
            [(x0, y0), (x0 + box_w, y0 + box_h)],
            WHITE.mix(0.85).filled(),
        ))
        .map_err(err)?;
        area.draw(&Rectangle::new(
            [(x0, y0), (x0 + box_w, y0 + box_h)],
            palette::GRID.stroke_width(1),
        ))
        .map_err(err)?;
        let style = sc.font(11.0).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
        for (k, (label, mark)) in self.items.iter().enumerate() {
            let y = y0 + pad + line_h * k as i32 + line_h / 2;
            let x = x0 + pad;
            match *mark {
                Mark::Line(c) => area.draw(&PathElement::new(
                    vec![(x, y), (x + mark_w, y)],
                    c.stroke_width(sc.px(2.0)),
                )),
                Mark::Box(c) => {
                    let r = sc.px(5.0) as i32;
                    area.draw(&Rectangle::new(
                        [(x + mark_w / 2 - r, y - r), (x + mark_w / 2 + r, y + r)],
                        c.filled(),
                    ))
                }
                Mark::Triangle(c) => area.draw(&TriangleMarker::new(
                    (x + mark_w / 2, y),
                    sc.px(3.0) as i32 + 1,
                    c.filled(),
                )),
            }
            .map_err(err)?;
            area.draw(&Text::new(
                label.clone(),
                (x + mark_w + gap, y),
                style.clone(),
            ))
            .map_err(err)?;
        }
        Ok(())
    }
}

/// A line chart with the common axes, grid and legend; `body` adds the series.
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sc: Scale,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    (x_desc, y_desc, legend): (&str, &str, SeriesLabelPosition),
    body: impl FnOnce(
        &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        &mut Legend,
    ) -> DrawResult,
) -> DrawResult {
    area.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(area)
        .margin(sc.px(8.0))
        .x_label_area_size(sc.px(34.0))
        .y_label_area_size(sc.px(56.0))
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(palette::GRID)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(sc.font(11.0))
        .axis_desc_style(sc.font(12.0))
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(err)?;
    let mut entries = Legend::default();
    body(&mut chart, &mut entries)?;
    entries.draw(&chart.plotting_area().strip_coord_spec(), legend, sc)
}

pub fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    o: LatencyOptions,
    sc: Scale,
) -> DrawResult {
    let l = &d.latency;
    let mut ymax: f64 = 0.0;
    if o.video {
        ymax = ymax.max(max_y(&l.video_g2g));
    }
    if o.audio {
        ymax = ymax.max(max_y(&l.audio_g2g));
    }
    for (i, (_, pts)) in l.video_stages.iter().enumerate() {
        if o.stages[i] {
            ymax = ymax.max(max_y(pts));
        }
    }
    line_chart(
        area,
        sc,
        0.0..d.duration_s.max(1.0),
        with_legend_room(ymax),
        (
            "capture time (s)",
            "latency (ms)",
            SeriesLabelPosition::UpperRight,
        ),
        |chart, legend| {
            let thin = sc.px(1.0);
            for (i, (stage, pts)) in l.video_stages.iter().enumerate() {
                if !o.stages[i] {
                    continue;
                }
                let c = palette::STAGES[i];
                chart
                    .draw_series(LineSeries::new(on_pixels(chart, pts), c.stroke_width(thin)))
                    .map_err(err)?;
                legend.line(format!("video: {}", stage.label()), c);
            }
            if o.audio {
                chart
                    .draw_series(LineSeries::new(
                        on_pixels(chart, &l.audio_g2g),
                        palette::AUDIO.stroke_width(thin),
                    ))
                    .map_err(err)?;
                legend.line("audio glass-to-glass", palette::AUDIO);
            }
            if o.video {
                chart
                    .draw_series(LineSeries::new(
                        on_pixels(chart, &l.video_g2g),
                        palette::VIDEO.stroke_width(sc.px(1.5)),
                    ))
                    .map_err(err)?;
                legend.line("video glass-to-glass", palette::VIDEO);
            }
            if !l.video_drops.is_empty() {
                let r = sc.px(3.0) as i32;
                chart
                    .draw_series(
                        l.video_drops
                            .iter()
                            .map(|(t, _)| TriangleMarker::new((*t, 0.0), r, palette::BAD.filled())),
                    )
                    .map_err(err)?;
                legend.triangle("video frame never shown", palette::BAD);
            }
            Ok(())
        },
    )
}

pub fn draw_vbv<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    sc: Scale,
) -> DrawResult {
    let v = &d.vbv;
    let ymax = max_y(&v.fullness_kbit).max(v.buffer_kbit);
    let xmax = v
        .fullness_kbit
        .last()
        .map_or(d.duration_s, |p| p.0)
        .max(1.0);
    line_chart(
        area,
        sc,
        0.0..xmax,
        with_legend_room(ymax),
        (
            "time (s)",
            "fullness (kbit)",
            SeriesLabelPosition::LowerRight,
        ),
        |chart, legend| {
            if v.buffer_kbit > 0.0 {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, v.buffer_kbit), (xmax, v.buffer_kbit)],
                        palette::GREY.stroke_width(sc.px(1.0)),
                    ))
                    .map_err(err)?;
                legend.line(
                    format!("buffer size {:.0} kbit", v.buffer_kbit),
                    palette::GREY,
                );
            }
            chart
                .draw_series(LineSeries::new(
                    on_pixels(chart, &v.fullness_kbit),
                    palette::VIDEO.stroke_width(sc.px(1.0)),
                ))
                .map_err(err)?;
            legend.line("fullness after each frame", palette::VIDEO);
            let r = sc.px(3.0) as i32;
            if !v.overflows.is_empty() {
                // Runs of consecutive full frames, drawn as one thick segment each.
                let top = v.buffer_kbit;
                let gap = 2.5 * xmax / v.fullness_kbit.len().max(1) as f64;
                let mut runs: Vec<(f64, f64)> = Vec::new();
                for &t in &v.overflows {
                    match runs.last_mut() {
                        Some(r) if t - r.1 <= gap => r.1 = t,
                        _ => runs.push((t, t)),
                    }
                }
                let w = sc.px(4.0);
                let min_w = xmax / 400.0;
                chart
                    .draw_series(runs.iter().map(|(a, b)| {
                        PathElement::new(
                            vec![(*a, top), (b.max(a + min_w), top)],
                            palette::WARN.stroke_width(w),
                        )
                    }))
                    .map_err(err)?;
                legend.line(
                    format!("full: filler/clipped ({} frames)", v.overflows.len()),
                    palette::WARN,
                );
            }
            if !v.underflows.is_empty() {
                chart
                    .draw_series(
                        v.underflows
                            .iter()
                            .map(|t| TriangleMarker::new((*t, 0.0), r + 1, palette::BAD.filled())),
                    )
                    .map_err(err)?;
                legend.triangle(format!("underflow ({})", v.underflows.len()), palette::BAD);
            }
            Ok(())
        },
    )?;
    if v.buffer_kbit <= 0.0 {
        area.draw(&Text::new(
            "no VBV (buffer 0): the encoder's rate is unconstrained",
            (sc.px(70.0) as i32, sc.px(16.0) as i32),
            sc.font(12.0),
        ))
        .map_err(err)?;
    }
    Ok(())
}

pub fn draw_bitrate<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    sc: Scale,
) -> DrawResult {
    let b = &d.bitrate;
    let total: Vec<(f64, f64)> = b
        .video_kbps
        .iter()
        .zip(b.audio_kbps.iter().chain(std::iter::repeat(&(0.0, 0.0))))
        .map(|(v, a)| (v.0, v.1 + a.1))
        .collect();
    let data_max = max_y(&total).max(b.target_kbps);
    // Show the capacity line only when it is within reach of the data (else say it in text).
    let show_cap = b.capacity_kbps > 0.0 && b.capacity_kbps < data_max * 3.0;
    let ymax = if show_cap {
        data_max.max(b.capacity_kbps)
    } else {
        data_max
    };
    let xmax = d.duration_s.max(1.0);
    line_chart(
        area,
        sc,
        0.0..xmax,
        with_legend_room(ymax),
        (
            "stream time (s)",
            "bitrate (kb/s)",
            SeriesLabelPosition::LowerRight,
        ),
        |chart, legend| {
            if show_cap {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, b.capacity_kbps), (xmax, b.capacity_kbps)],
                        palette::BAD.stroke_width(sc.px(2.0)),
                    ))
                    .map_err(err)?;
                legend.line(
                    format!("uplink capacity {:.0} kb/s", b.capacity_kbps),
                    palette::BAD,
                );
            }
            chart
                .draw_series(LineSeries::new(
                    [(0.0, b.target_kbps), (xmax, b.target_kbps)],
                    palette::GREY.stroke_width(sc.px(1.0)),
                ))
                .map_err(err)?;
            legend.line(format!("target {:.0} kb/s", b.target_kbps), palette::GREY);
            chart
                .draw_series(LineSeries::new(
                    total.iter().copied(),
                    palette::VIDEO.stroke_width(sc.px(1.5)),
                ))
                .map_err(err)?;
            legend.line("video + audio, per second", palette::VIDEO);
            chart
                .draw_series(LineSeries::new(
                    b.audio_kbps.iter().copied(),
                    palette::AUDIO.stroke_width(sc.px(1.0)),
                ))
                .map_err(err)?;
            legend.line("audio", palette::AUDIO);
            Ok(())
        },
    )?;
    if !show_cap {
        let text = if b.capacity_kbps > 0.0 {
            format!("uplink capacity {:.0} kb/s: far above", b.capacity_kbps)
        } else {
            "uplink capacity: unlimited".to_string()
        };
        area.draw(&Text::new(
            text,
            (sc.px(70.0) as i32, sc.px(16.0) as i32),
            sc.font(12.0),
        ))
        .map_err(err)?;
    }
    Ok(())
}

pub fn draw_buffer<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    sc: Scale,
) -> DrawResult {
    let b = &d.buffer;
    let ymax = max_y(&b.level_ms).max(b.startup_buffer_ms);
    let range = with_legend_room(ymax);
    let top = range.end;
    let xmax = d.duration_s.max(1.0);
    line_chart(
        area,
        sc,
        0.0..xmax,
        range,
        (
            "time (s)",
            "buffered media (ms)",
            SeriesLabelPosition::UpperRight,
        ),
        |chart, legend| {
            if !b.rebuffers.is_empty() {
                let fill = palette::BAD.mix(0.25).filled();
                chart
                    .draw_series(
                        b.rebuffers.iter().map(|(a, e)| {
                            Rectangle::new([(*a, 0.0), (e.max(*a + 0.02), top)], fill)
                        }),
                    )
                    .map_err(err)?;
                legend.boxed(format!("rebuffering ({})", b.rebuffers.len()), palette::BAD);
            }
            chart
                .draw_series(LineSeries::new(
                    [(0.0, b.startup_buffer_ms), (xmax, b.startup_buffer_ms)],
                    palette::GREY.stroke_width(sc.px(1.0)),
                ))
                .map_err(err)?;
            legend.line(
                format!("start-up threshold {:.0} ms", b.startup_buffer_ms),
                palette::GREY,
            );
            chart
                .draw_series(LineSeries::new(
                    on_pixels(chart, &b.level_ms),
                    palette::GOOD.stroke_width(sc.px(1.5)),
                ))
                .map_err(err)?;
            legend.line("player 0's buffer", palette::GOOD);
            Ok(())
        },
    )
}

/// Horizontal bars: stage segments stacked left to right.
pub fn draw_breakdown<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    sc: Scale,
) -> DrawResult {
    let bd = &d.breakdown;
    let sum = |v: &[(Stage, f64)]| v.iter().map(|x| x.1).sum::<f64>();
    let xmax = sum(&bd.video)
        .max(sum(&bd.audio))
        .max(bd.video_g2g_p50.unwrap_or(0.0))
        .max(bd.audio_g2g_p50.unwrap_or(0.0));
    area.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(area)
        .margin(sc.px(8.0))
        .x_label_area_size(sc.px(34.0))
        .y_label_area_size(sc.px(56.0))
        .build_cartesian_2d(up_to(xmax), 0.3..2.45f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(TRANSPARENT)
        .bold_line_style(palette::GRID)
        .x_label_formatter(&tick)
        .x_desc("p50 latency (ms), stages stacked")
        .label_style(sc.font(11.0))
        .axis_desc_style(sc.font(12.0))
        .x_labels(8)
        .draw()
        .map_err(err)?;
    let plot_px = chart.plotting_area().dim_in_pixel().0 as f64;
    let px_per_ms = plot_px / up_to(xmax).end;
    let rows = [
        ("video", &bd.video, bd.video_g2g_p50, 1.55),
        ("audio", &bd.audio, bd.audio_g2g_p50, 0.55),
    ];
    for (name, stages, g2g, y) in rows {
        let mut x = 0.0;
        for (i, (stage, ms)) in stages.iter().enumerate() {
            let c = palette::STAGES[i];
            let seg = [(x, y), (x + ms, y + 0.7)];
            chart
                .draw_series(std::iter::once(Rectangle::new(seg, c.filled())))
                .map_err(err)?;
            // The stage's value inside its segment when there is room.
            let label = format!("{} {}", stage.label(), tick(&ms.round()));
            if ms * px_per_ms > label.chars().count() as f64 * 6.6 * sc.0 + 8.0 {
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (x + xmax * 0.008, y + 0.5),
                        sc.font(11.0).color(&palette::text_on(c)),
                    )))
                    .map_err(err)?;
            }
            x += ms;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (0.0, y + 0.95),
                sc.font(11.0),
            )))
            .map_err(err)?;
        if let Some(g) = g2g {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(g, y - 0.1), (g, y + 0.8)],
                    BLACK.stroke_width(sc.px(2.0)),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A waterfall of the player's start-up, from its join.
pub fn draw_startup<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    sc: Scale,
) -> DrawResult {
    let st = &d.startup;
    let n = st.player.len().max(1) as f64;
    let xmax = st
        .player
        .iter()
        .map(|s| s.end_ms)
        .fold(0.0, f64::max)
        .max(1.0);
    area.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(area)
        .margin(sc.px(8.0))
        .x_label_area_size(sc.px(34.0))
        .y_label_area_size(sc.px(8.0))
        .build_cartesian_2d(0.0..xmax * 1.45, 0.0..n)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(TRANSPARENT)
        .bold_line_style(palette::GRID)
        .x_label_formatter(&tick)
        .x_desc("time since the player started connecting (ms)")
        .label_style(sc.font(11.0))
        .axis_desc_style(sc.font(12.0))
        .x_labels(8)
        .draw()
        .map_err(err)?;
    for (i, span) in st.player.iter().enumerate() {
        let y = n - 1.0 - i as f64;
        let c = match span.label {
            "waiting for a keyframe" => palette::BAD,
            "cached GOP arrives" => palette::GOOD,
            "filling the buffer, decode" => palette::AUDIO,
            _ => palette::VIDEO,
        };
        let end = span.end_ms.max(span.start_ms + xmax * 0.002);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(span.start_ms, y + 0.2), (end, y + 0.8)],
                c.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} {:.0} ms", span.label, span.end_ms - span.start_ms),
                (end + xmax * 0.01, y + 0.7),
                sc.font(11.0),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// Measured (magenta) over simulated (blue) for one quantity.
pub fn draw_overlay<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    o: &Overlay,
    x_desc: &str,
    y_desc: &str,
    sc: Scale,
) -> DrawResult {
    let xmax = o
        .measured
        .iter()
        .chain(&o.simulated)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let ymax = max_y(&o.measured).max(max_y(&o.simulated));
    let legend = SeriesLabelPosition::UpperRight;
    line_chart(
        area,
        sc,
        0.0..xmax,
        with_legend_room(ymax),
        (x_desc, y_desc, legend),
        |chart, legend| {
            chart
                .draw_series(LineSeries::new(
                    on_pixels(chart, &o.simulated),
                    palette::VIDEO.stroke_width(sc.px(1.0)),
                ))
                .map_err(err)?;
            legend.line("simulated", palette::VIDEO);
            chart
                .draw_series(LineSeries::new(
                    on_pixels(chart, &o.measured),
                    palette::MEASURED.stroke_width(sc.px(1.5)),
                ))
                .map_err(err)?;
            legend.line("measured", palette::MEASURED);
            Ok(())
        },
    )
}

/// Draws one of the page's charts.
pub fn draw_kind<DB: DrawingBackend>(
    kind: ChartKind,
    area: &DrawingArea<DB, Shift>,
    d: &ChartData,
    o: LatencyOptions,
    sc: Scale,
) -> DrawResult {
    match kind {
        ChartKind::Latency => draw_latency(area, d, o, sc),
        ChartKind::Vbv => draw_vbv(area, d, sc),
        ChartKind::Bitrate => draw_bitrate(area, d, sc),
        ChartKind::Buffer => draw_buffer(area, d, sc),
        ChartKind::Breakdown => draw_breakdown(area, d, sc),
        ChartKind::Startup => draw_startup(area, d, sc),
    }
}

/// The size in device pixels `canvas` is drawn at (its CSS width, `height_css`, at the device
/// pixel ratio clamped to 1..2), and that ratio.
pub fn canvas_size(canvas: &web_sys::HtmlCanvasElement, height_css: u32) -> ((u32, u32), f64) {
    let dpr = web_sys::window()
        .map(|w| w.device_pixel_ratio())
        .unwrap_or(1.0)
        .clamp(1.0, 2.0);
    let css_w = canvas.client_width().max(200) as f64;
    (
        (
            (css_w * dpr).round() as u32,
            (height_css as f64 * dpr).round() as u32,
        ),
        dpr,
    )
}

/// Sizes `canvas` to `size` (from [`canvas_size`]) and draws on it with `f`.
pub fn draw_on_canvas(
    canvas: &web_sys::HtmlCanvasElement,
    ((w, h), dpr): ((u32, u32), f64),
    f: impl FnOnce(&DrawingArea<plotters_canvas::CanvasBackend, Shift>, Scale) -> DrawResult,
) -> DrawResult {
    if canvas.width() != w {
        canvas.set_width(w);
    }
    if canvas.height() != h {
        canvas.set_height(h);
    }
    let backend = plotters_canvas::CanvasBackend::with_canvas_object(canvas.clone())
        .ok_or("no 2d context on the canvas")?;
    let area = backend.into_drawing_area();
    let ctx = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| wasm_bindgen::JsCast::dyn_into(c).ok());
    MEASURE.with(|m| *m.borrow_mut() = ctx);
    let drawn = f(&area, Scale(dpr));
    MEASURE.with(|m| *m.borrow_mut() = None);
    drawn?;
    area.present().map_err(err)
}

/// The stage colour for a legend in HTML.
pub fn stage_css_color(i: usize) -> String {
    let c = palette::STAGES[i % PIPELINE.len()];
    format!("rgb({},{},{})", c.0, c.1, c.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 data units per pixel column, 1 data unit per pixel row (rows grow downwards).
    fn px(p: (f64, f64)) -> (i32, i32) {
        ((p.0 / 10.0).floor() as i32, -(p.1.round() as i32))
    }

    #[test]
    fn per_pixel_keeps_spikes_and_drops_flat_runs() {
        // A flat line with one spike: the spike and the ends survive, the rest goes.
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i == 5_003 { 80.0 } else { 20.0 }))
            .collect();
        let d = per_pixel(&pts, px);
        assert!(d.len() <= 8, "{d:?}");
        assert_eq!(d.first(), Some(&(0.0, 20.0)));
        assert_eq!(d.last().map(|p| px(*p)), Some(px((9_999.0, 20.0))));
        assert!(d.contains(&(5_003.0, 80.0)));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0));
        // A noisy line: at most four points per column, each column's extremes kept.
        let noisy: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, ((i * 7919) % 101) as f64))
            .collect();
        let d = per_pixel(&noisy, px);
        assert!(d.len() <= 4 * 1_000, "{}", d.len());
        for col in 0..1_000 {
            let in_col = |p: &&(f64, f64)| (p.0 / 10.0).floor() as i32 == col;
            let max = noisy
                .iter()
                .filter(in_col)
                .map(|p| p.1)
                .fold(f64::MIN, f64::max);
            let min = noisy
                .iter()
                .filter(in_col)
                .map(|p| p.1)
                .fold(f64::MAX, f64::min);
            assert!(d.iter().filter(in_col).any(|p| p.1 == max), "column {col}");
            assert!(d.iter().filter(in_col).any(|p| p.1 == min), "column {col}");
        }
        // Few points: unchanged.
        let few = [(0.0, 1.0), (15.0, 3.0), (31.0, 2.0)];
        assert_eq!(per_pixel(&few, px), few.to_vec());
    }
}
