//! The page: scenario controls, the charts, import/export, the tour, and the two panels (seed
//! article, measured streams).
//!
//! Every edit re-validates the scenario; a valid one is written to the URL and simulated. The
//! simulation runs in slices of [`SLICE_BUDGET_MS`] (`Engine::step`), so a long scenario never
//! freezes the page: a typical 60 s preset finishes in the first slice and is drawn in the same
//! frame; a longer one shows a progress bar and is drawn when done. The time from the edit to
//! the last visible chart drawn is written to the root element's `data-frame-ms` (with its
//! parts: `data-sim-ms`, `data-render-ms` for Yew's page update, `data-draw-ms`; also logged to
//! the console) for people and for the end-to-end test.
//!
//! Drawing is kept to what changes and what can be seen: a chart whose input is the same as
//! what its canvas already shows is not drawn again, and a chart off-screen (an
//! `IntersectionObserver` watches the canvases) is drawn [`HIDDEN_DRAW_DELAY_MS`] after the
//! last run, or as soon as it scrolls into view. Each canvas's `data-run` says which run it
//! shows (the root's `data-runs` is the latest).

use crate::chart_data::{ChartData, PIPELINE};
use crate::charts::{self, ChartKind, LatencyOptions, Scale};
use crate::controls::{self, format_value, Control, Group, Widget};
use crate::measured_panel::{MeasuredPanel, Shared};
use crate::seed_panel::SeedPanel;
use crate::tour::TOUR;
use crate::url_state;
use sim_core::check::FieldError;
use sim_core::engine::Engine;
use sim_core::scenario::{self, Scenario, PRESET_NAMES};
use sim_core::trace::Trace;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// Simulation time per slice before the page gets the thread back (ms). Leaves room in a 16 ms
/// frame for drawing when the run finishes in its first slice.
pub const SLICE_BUDGET_MS: f64 = 10.0;
/// Off-screen charts are drawn this long after the last run (a new run postpones them).
pub const HIDDEN_DRAW_DELAY_MS: u32 = 150;
/// Engine events per `step` call between looks at the clock.
const STEP_EVENTS: usize = 2048;

pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

pub enum Msg {
    /// Control index, new value.
    Set(usize, f64),
    /// Control index, slider position.
    Slider(usize, f64),
    Preset(String),
    /// Continue the simulation of job generation `u32`.
    Tick(u32),
    Latency(LatencyOptions),
    ExportJson,
    ExportToml,
    ShowLink,
    Import,
    IoText(String),
    Tour(Option<usize>),
    FromMeasured(Box<Scenario>, Vec<String>),
    HashChanged,
    /// Draw the visible charts that are out of date (resize, scrolled into view).
    Redraw,
    /// Draw every chart that is out of date, visible or not.
    DrawHidden,
}

struct Job {
    generation: u32,
    engine: Engine,
    scenario: Scenario,
    /// When the edit that started it was handled (performance.now, ms).
    started_ms: f64,
    /// Time spent simulating so far, ms.
    sim_ms: f64,
    fraction: f64,
    slices: u32,
}

/// The last finished run.
struct Run {
    trace: Shared<Trace>,
    data: Rc<ChartData>,
    /// 1 for the first run of the page, then counting.
    seq: u32,
}

/// The observer of the chart canvases and its callback (kept alive with it).
type Observer = (
    web_sys::IntersectionObserver,
    Closure<dyn FnMut(js_sys::Array)>,
);

/// What a canvas shows: what it would take to draw it again differently.
struct Drawn {
    data: Rc<ChartData>,
    latency: LatencyOptions,
    size: (u32, u32),
}

/// A finished run waiting to be drawn, with its timing so far.
struct PendingDraw {
    started_ms: f64,
    sim_ms: f64,
    slices: u32,
    /// When the run and its chart data were ready (performance.now, ms).
    ready_ms: f64,
}

pub struct App {
    scenario: Scenario,
    errors: Vec<FieldError>,
    job: Option<Job>,
    generation: u32,
    run: Option<Run>,
    latency: LatencyOptions,
    io_text: String,
    /// Result of the last import/export: ok?, lines to show.
    io_status: Option<(bool, Vec<String>)>,
    tour: Option<usize>,
    notice: Option<String>,
    canvases: Vec<NodeRef>,
    root: NodeRef,
    perf: NodeRef,
    pending: Option<PendingDraw>,
    redraw: bool,
    runs: u32,
    /// Per chart (in [`ChartKind::ALL`] order): what its canvas shows, and whether it is near
    /// the viewport (set by the observer; true until it first says otherwise).
    drawn: Vec<Option<Drawn>>,
    visible: Rc<std::cell::RefCell<Vec<bool>>>,
    hidden_timer: Option<gloo_timers::callback::Timeout>,
    observer: Option<Observer>,
    _listeners: Vec<Closure<dyn FnMut()>>,
}

impl App {
    fn after_edit(&mut self, ctx: &Context<Self>) {
        self.errors = self.scenario.check();
        if self.errors.is_empty() {
            write_fragment(&url_state::encode_fragment(&self.scenario));
            self.start_job(ctx, now_ms());
        } else {
            // Keep showing the last valid run; stop one in progress.
            self.job = None;
        }
    }

    fn start_job(&mut self, ctx: &Context<Self>, started_ms: f64) {
        self.generation = self.generation.wrapping_add(1);
        self.job = Some(Job {
            generation: self.generation,
            engine: Engine::new(&self.scenario),
            scenario: self.scenario.clone(),
            started_ms,
            sim_ms: 0.0,
            fraction: 0.0,
            slices: 0,
        });
        self.advance(ctx);
    }

    /// Runs the current job for one slice; finishes it or schedules the next slice.
    fn advance(&mut self, ctx: &Context<Self>) {
        let Some(job) = self.job.as_mut() else { return };
        let t0 = now_ms();
        job.slices += 1;
        loop {
            let p = job.engine.step(STEP_EVENTS);
            job.fraction = p.fraction;
            if p.done {
                break;
            }
            if now_ms() - t0 > SLICE_BUDGET_MS {
                job.sim_ms += now_ms() - t0;
                let generation = job.generation;
                let link = ctx.link().clone();
                gloo_timers::callback::Timeout::new(0, move || {
                    link.send_message(Msg::Tick(generation))
                })
                .forget();
                return;
            }
        }
        let Some(job) = self.job.take() else { return };
        let trace = job.engine.into_trace();
        let data = ChartData::from_trace(&trace, &job.scenario);
        let ready_ms = now_ms();
        let sim_ms = job.sim_ms + (ready_ms - t0);
        let seq = self.run.as_ref().map_or(0, |r| r.seq) + 1;
        self.run = Some(Run {
            trace: Shared(Rc::new(trace)),
            data: Rc::new(data),
            seq,
        });
        self.pending = Some(PendingDraw {
            started_ms: job.started_ms,
            sim_ms,
            slices: job.slices,
            ready_ms,
        });
    }

    /// Draws the charts that are out of date (all of them with `hidden`, else those near the
    /// viewport); returns the time each drawn chart took (ms), for the console, and how many
    /// out-of-date charts were left for later.
    fn draw_charts(&mut self, hidden: bool) -> Result<(Vec<(ChartKind, f64)>, usize), String> {
        let Some(run) = &self.run else {
            return Ok((Vec::new(), 0));
        };
        let mut times = Vec::new();
        let mut left = 0;
        let visible = self.visible.borrow();
        for (i, (kind, node)) in ChartKind::ALL.iter().zip(&self.canvases).enumerate() {
            let Some(canvas) = node.cast::<web_sys::HtmlCanvasElement>() else {
                continue;
            };
            if *kind == ChartKind::Latency {
                // The data's attributes, whether or not the canvas needs drawing.
                let h = &run.data.headline;
                let p50 = h.video_g2g.map_or(f64::NAN, |p| p.p50);
                let _ = canvas.set_attribute("data-digest", &format!("{:016x}", run.data.digest()));
                let _ = canvas.set_attribute("data-p50-ms", &format!("{p50:.3}"));
                let _ = canvas.set_attribute("data-frames", &h.video_frames.to_string());
            }
            let t0 = now_ms();
            let size = charts::canvas_size(&canvas, kind.height_px());
            let current = self.drawn[i].as_ref().is_some_and(|d| {
                d.size == size.0
                    && kind.same_input(&d.data, &run.data)
                    && (*kind != ChartKind::Latency || d.latency == self.latency)
            });
            if !current {
                if !hidden && !visible.get(i).copied().unwrap_or(true) {
                    left += 1;
                    continue;
                }
                charts::draw_on_canvas(&canvas, size, |area, sc: Scale| {
                    charts::draw_kind(*kind, area, &run.data, self.latency, sc)
                })
                .map_err(|e| format!("{}: {e}", kind.title()))?;
                times.push((*kind, now_ms() - t0));
            }
            self.drawn[i] = Some(Drawn {
                data: run.data.clone(),
                latency: self.latency,
                size: size.0,
            });
            let _ = canvas.set_attribute("data-run", &run.seq.to_string());
        }
        Ok((times, left))
    }

    /// Watches which chart canvases are near the viewport; one scrolling in asks for a redraw.
    fn observe_canvases(&mut self, ctx: &Context<Self>) {
        let visible = self.visible.clone();
        let link = ctx.link().clone();
        let callback = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
            let mut appeared = false;
            let mut v = visible.borrow_mut();
            for e in entries.iter() {
                let e: web_sys::IntersectionObserverEntry = e.unchecked_into();
                let id = e.target().id();
                if let Some(i) = ChartKind::ALL.iter().position(|k| k.canvas_id() == id) {
                    let now = e.is_intersecting();
                    appeared |= now && !v[i];
                    v[i] = now;
                }
            }
            drop(v);
            if appeared {
                link.send_message(Msg::Redraw);
            }
        });
        let init = web_sys::IntersectionObserverInit::new();
        init.set_root_margin("150px");
        let Ok(observer) = web_sys::IntersectionObserver::new_with_options(
            callback.as_ref().unchecked_ref(),
            &init,
        ) else {
            return;
        };
        for node in &self.canvases {
            if let Some(el) = node.cast::<web_sys::Element>() {
                observer.observe(&el);
            }
        }
        self.observer = Some((observer, callback));
    }

    /// Draws the out-of-date off-screen charts after [`HIDDEN_DRAW_DELAY_MS`] (replacing a
    /// timer already set).
    fn schedule_hidden(&mut self, ctx: &Context<Self>) {
        let link = ctx.link().clone();
        self.hidden_timer = Some(gloo_timers::callback::Timeout::new(
            HIDDEN_DRAW_DELAY_MS,
            move || link.send_message(Msg::DrawHidden),
        ));
    }
}

fn location_hash() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

fn write_fragment(fragment: &str) {
    if let Some(w) = web_sys::window() {
        if let Ok(h) = w.history() {
            let _ = h.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&format!("#{fragment}")),
            );
        }
    }
}

fn scenario_from_location() -> (Scenario, Option<String>) {
    match url_state::decode_fragment(&location_hash()) {
        Ok(s) => (s, None),
        Err(url_state::FragmentError::Missing) => (Scenario::default(), None),
        Err(e) => (
            Scenario::default(),
            Some(format!("{e}. Showing the obs-default preset instead.")),
        ),
    }
}

fn listen(event: &str, f: impl FnMut() + 'static) -> Option<Closure<dyn FnMut()>> {
    let window = web_sys::window()?;
    let c = Closure::<dyn FnMut()>::new(f);
    window
        .add_event_listener_with_callback(event, c.as_ref().unchecked_ref())
        .ok()?;
    Some(c)
}

impl Component for App {
    type Message = Msg;
    type Properties = ();

    fn create(ctx: &Context<Self>) -> Self {
        let (scenario, notice) = scenario_from_location();
        let mut listeners = Vec::new();
        let link = ctx.link().clone();
        listeners.extend(listen("resize", move || link.send_message(Msg::Redraw)));
        let link = ctx.link().clone();
        listeners.extend(listen("hashchange", move || {
            link.send_message(Msg::HashChanged)
        }));
        let mut app = App {
            scenario,
            errors: Vec::new(),
            job: None,
            generation: 0,
            run: None,
            latency: LatencyOptions::default(),
            io_text: String::new(),
            io_status: None,
            tour: None,
            notice,
            canvases: ChartKind::ALL.iter().map(|_| NodeRef::default()).collect(),
            root: NodeRef::default(),
            perf: NodeRef::default(),
            pending: None,
            redraw: false,
            runs: 0,
            drawn: ChartKind::ALL.iter().map(|_| None).collect(),
            visible: Rc::new(std::cell::RefCell::new(vec![true; ChartKind::ALL.len()])),
            hidden_timer: None,
            observer: None,
            _listeners: listeners,
        };
        app.after_edit(ctx);
        app
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Self::Message) -> bool {
        match msg {
            Msg::Set(i, v) => {
                (controls::controls()[i].set)(&mut self.scenario, v);
                self.after_edit(ctx);
            }
            Msg::Slider(i, pos) => {
                let c = &controls::controls()[i];
                (c.set)(&mut self.scenario, c.value_at_position(pos));
                self.after_edit(ctx);
            }
            Msg::Preset(name) => {
                if let Ok(s) = scenario::preset(&name) {
                    self.scenario = s;
                    self.notice = None;
                    self.after_edit(ctx);
                }
            }
            Msg::Tick(generation) => {
                if self.job.as_ref().map(|j| j.generation) != Some(generation) {
                    return false;
                }
                self.advance(ctx);
            }
            Msg::Latency(o) => {
                self.latency = o;
                self.redraw = true;
            }
            Msg::ExportJson => {
                self.io_text = self.scenario.to_json();
                self.io_status = Some((
                    true,
                    vec![
                        "The scenario as JSON (rtmp-lab simulate --scenario x.json reads it)."
                            .into(),
                    ],
                ));
            }
            Msg::ExportToml => {
                self.io_text = self.scenario.to_toml();
                self.io_status = Some((
                    true,
                    vec![
                        "The scenario as TOML (rtmp-lab simulate --scenario x.toml reads it)."
                            .into(),
                    ],
                ));
            }
            Msg::ShowLink => {
                let href = web_sys::window()
                    .and_then(|w| w.location().href().ok())
                    .unwrap_or_default();
                self.io_text = href;
                self.io_status = Some((
                    true,
                    vec!["A link to this view: copy it from the box.".into()],
                ));
            }
            Msg::IoText(t) => {
                self.io_text = t;
                return false;
            }
            Msg::Import => {
                let text = self.io_text.trim();
                let parsed: Result<Scenario, String> = if text.starts_with('{') {
                    serde_json::from_str(text).map_err(|e| format!("cannot parse as JSON: {e}"))
                } else {
                    toml::from_str(text).map_err(|e| format!("cannot parse as TOML: {e}"))
                };
                match parsed {
                    Ok(s) => {
                        self.scenario = s;
                        self.after_edit(ctx);
                        self.io_status = Some(if self.errors.is_empty() {
                            (true, vec!["Imported.".into()])
                        } else {
                            let mut lines = vec![format!(
                                "Imported, but {} value(s) are invalid (also marked beside the controls):",
                                self.errors.len()
                            )];
                            lines.extend(self.errors.iter().map(|e| e.to_string()));
                            (false, lines)
                        });
                    }
                    Err(e) => self.io_status = Some((false, vec![e])),
                }
            }
            Msg::Tour(step) => {
                self.tour = step;
                if step.is_none() {
                    // The tour's chart toggles were for its steps; back to the default view.
                    self.latency = LatencyOptions::default();
                    self.redraw = true;
                }
                if let Some(t) = step.and_then(|i| TOUR.get(i)) {
                    self.scenario = (t.apply)();
                    self.latency = t.latency;
                    self.after_edit(ctx);
                }
            }
            Msg::FromMeasured(s, changed) => {
                self.scenario = *s;
                self.notice = Some(format!(
                    "Simulating the measured stream's settings: {}.",
                    changed.join(", ")
                ));
                self.after_edit(ctx);
            }
            Msg::HashChanged => {
                let hash = location_hash();
                if hash.trim_start_matches('#') != url_state::encode_fragment(&self.scenario) {
                    let (s, notice) = scenario_from_location();
                    self.scenario = s;
                    self.notice = notice;
                    self.after_edit(ctx);
                }
            }
            Msg::Redraw => self.redraw = true,
            Msg::DrawHidden => {
                self.hidden_timer = None;
                let t0 = now_ms();
                match self.draw_charts(true) {
                    Ok((times, _)) if !times.is_empty() => web_sys::console::log_1(
                        &format!(
                            "rtmp-lab: off-screen charts drawn in {:.2} ms: {:?}",
                            now_ms() - t0,
                            times
                        )
                        .into(),
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        web_sys::console::error_1(&format!("rtmp-lab: drawing failed: {e}").into())
                    }
                }
                return false;
            }
        }
        true
    }

    fn rendered(&mut self, ctx: &Context<Self>, first: bool) {
        if first {
            self.observe_canvases(ctx);
        }
        let pending = self.pending.take();
        if pending.is_none() && !self.redraw {
            return;
        }
        self.redraw = false;
        let t_draw = now_ms();
        let per_chart = match self.draw_charts(false) {
            Ok((t, left)) => {
                if left > 0 {
                    self.schedule_hidden(ctx);
                }
                t
            }
            Err(e) => {
                web_sys::console::error_1(&format!("rtmp-lab: drawing failed: {e}").into());
                Vec::new()
            }
        };
        let Some(p) = pending else { return };
        let end = now_ms();
        let draw_ms = end - t_draw;
        let total = end - p.started_ms;
        // Between the run's end and the drawing: Yew's view and DOM patch.
        let render_ms = t_draw - p.ready_ms;
        self.runs = self.run.as_ref().map_or(self.runs + 1, |r| r.seq);
        if let Some(root) = self.root.cast::<web_sys::Element>() {
            let _ = root.set_attribute("data-frame-ms", &format!("{total:.2}"));
            let _ = root.set_attribute("data-sim-ms", &format!("{:.2}", p.sim_ms));
            let _ = root.set_attribute("data-draw-ms", &format!("{draw_ms:.2}"));
            let _ = root.set_attribute("data-render-ms", &format!("{render_ms:.2}"));
            let _ = root.set_attribute("data-slices", &p.slices.to_string());
            let _ = root.set_attribute("data-runs", &self.runs.to_string());
        }
        if let Some(el) = self.perf.cast::<web_sys::Element>() {
            el.set_text_content(Some(&format!(
                "recompute + redraw {total:.1} ms (simulate {:.1}, draw {draw_ms:.1}{})",
                p.sim_ms,
                if p.slices > 1 {
                    format!(", {} slices", p.slices)
                } else {
                    String::new()
                }
            )));
        }
        web_sys::console::log_1(
            &format!(
                "rtmp-lab: recompute+redraw {total:.2} ms (simulate {:.2} ms, draw {draw_ms:.2} ms, {} slice(s)) for {} {:.0} s; page update {render_ms:.2} ms; drawn {:?} ms",
                p.sim_ms, p.slices, self.scenario.name, self.scenario.duration_s,
                per_chart.iter().map(|(k, t)| (k.canvas_id(), (t * 10.0).round() / 10.0)).collect::<Vec<_>>()
            )
            .into(),
        );
    }

    fn view(&self, ctx: &Context<Self>) -> Html {
        let link = ctx.link();
        let on_preset = link.callback(|e: Event| {
            let el: web_sys::HtmlSelectElement = e.target_unchecked_into();
            Msg::Preset(el.value())
        });
        let tour_start = link.callback(|_| Msg::Tour(Some(0)));
        html! {
            <div class="app" id="app" ref={self.root.clone()}>
                <header class="top">
                    <div class="brand">
                        <h1>{ "RTMP Lab" }</h1>
                        <p>{ "Move a slider: the simulator (sim-core, running in this page) follows every frame from camera to viewer and redraws." }</p>
                    </div>
                    <div class="top-controls">
                        <label>{ "Preset " }
                            <select id="preset" onchange={on_preset}>
                                { for PRESET_NAMES.iter().map(|n| html!{
                                    <option value={*n} selected={self.scenario.name == *n}>{ *n }</option>
                                }) }
                                if !PRESET_NAMES.contains(&self.scenario.name.as_str()) {
                                    <option value="" selected=true disabled=true>{ self.scenario.name.clone() }</option>
                                }
                            </select>
                        </label>
                        <button id="tour-start" onclick={tour_start}>{ "Guided tour" }</button>
                        <span class="status">
                            if let Some(j) = &self.job {
                                <progress id="progress" max="1" value={j.fraction.to_string()} />
                                { format!(" simulating {:.0} %", j.fraction * 100.0) }
                            }
                            <span id="perf" class="muted" ref={self.perf.clone()}></span>
                        </span>
                    </div>
                </header>
                <p class="description">{ &self.scenario.description }</p>
                { self.view_tour(ctx) }
                if let Some(n) = &self.notice {
                    <div class="notice" id="notice">{ n }</div>
                }
                <div class="layout">
                    <aside class="controls" id="controls">
                        { for Group::ALL.iter().map(|g| self.view_group(ctx, *g)) }
                        { self.view_io(ctx) }
                    </aside>
                    <main>
                        { self.view_headline() }
                        if !self.errors.is_empty() {
                            <div class="errors" id="errors">
                                <b>{ format!("The scenario has {} invalid value(s); the charts show the last valid run.", self.errors.len()) }</b>
                                <ul>{ for self.errors.iter().map(|e| html!{ <li><code>{ &e.path }</code>{ ": " }{ &e.message }</li> }) }</ul>
                            </div>
                        }
                        <div class="chart-grid">
                            { for ChartKind::ALL.iter().enumerate().map(|(i, k)| self.view_chart(ctx, i, *k)) }
                        </div>
                        <MeasuredPanel
                            trace={self.run.as_ref().map(|r| r.trace.clone())}
                            scenario={Shared(Rc::new(self.scenario.clone()))}
                            on_simulate={link.callback(|(s, c)| Msg::FromMeasured(Box::new(s), c))} />
                        <SeedPanel />
                    </main>
                </div>
                <footer>
                    { "RTMP Lab: sim-core compiled to WebAssembly, Yew and plotters. The same scenario runs natively with " }
                    <code>{ "rtmp-lab simulate --scenario file.json" }</code>{ "." }
                </footer>
            </div>
        }
    }
}

impl App {
    fn view_tour(&self, ctx: &Context<Self>) -> Html {
        let Some(i) = self.tour else { return html! {} };
        let Some(step) = TOUR.get(i) else {
            return html! {};
        };
        let link = ctx.link();
        let prev = link.callback(move |_| Msg::Tour(Some(i.saturating_sub(1))));
        let next = link.callback(move |_| Msg::Tour(Some(i + 1)));
        let close = link.callback(|_| Msg::Tour(None));
        html! {
            <div class="tour" id="tour">
                <div class="tour-head">
                    <b>{ step.title }</b>
                    <span class="muted">{ format!("  step {} of {} · watch: {}", i + 1, TOUR.len(), step.watch.title()) }</span>
                </div>
                <p>{ step.text }</p>
                <div class="row">
                    <button onclick={prev} disabled={i == 0}>{ "← back" }</button>
                    if i + 1 < TOUR.len() {
                        <button id="tour-next" onclick={next}>{ "next →" }</button>
                    }
                    <button onclick={close}>{ "close the tour" }</button>
                </div>
            </div>
        }
    }

    fn view_group(&self, ctx: &Context<Self>, g: Group) -> Html {
        html! {
            <fieldset class="group">
                <legend>{ g.title() }</legend>
                { for controls::controls().iter().enumerate()
                    .filter(|(_, c)| c.group == g)
                    .map(|(i, c)| self.view_control(ctx, i, c)) }
            </fieldset>
        }
    }

    fn hint(&self, c: &Control) -> Option<String> {
        let s = &self.scenario;
        match c.id {
            "keyint" if s.encoder.fps > 0.0 => Some(format!(
                "= {} s",
                format_value(s.encoder.keyframe_interval_frames as f64 / s.encoder.fps)
            )),
            "vbv" if s.rate_control.bitrate_kbps > 0.0 => Some(format!(
                "= {} s of the bitrate",
                format_value(s.rate_control.vbv_buffer_kbits / s.rate_control.bitrate_kbps)
            )),
            "bitrate" => {
                let px = s.encoder.width as f64 * s.encoder.height as f64 * s.encoder.fps;
                (px > 0.0).then(|| {
                    format!(
                        "≈ {:.3} bit per pixel",
                        s.rate_control.bitrate_kbps * 1e3 / px
                    )
                })
            }
            "bottleneck" | "down_bottleneck" if (c.get)(s) == 0.0 => Some("unlimited".into()),
            _ => None,
        }
    }

    fn view_control(&self, ctx: &Context<Self>, i: usize, c: &Control) -> Html {
        let link = ctx.link();
        let v = (c.get)(&self.scenario);
        let errors = c.errors(&self.errors);
        let class = classes!("ctl", (!errors.is_empty()).then_some("invalid"));
        let errs = html! {
            { for errors.iter().map(|e| html!{ <div class="err"><code>{ &e.path }</code>{ ": " }{ &e.message }</div> }) }
        };
        match c.widget {
            Widget::Slider { .. } => {
                let (min, max, step) = c.slider_range();
                let oninput = link.callback(move |e: InputEvent| {
                    let el: web_sys::HtmlInputElement = e.target_unchecked_into();
                    Msg::Slider(i, el.value_as_number())
                });
                let onchange = link.batch_callback(move |e: Event| {
                    let el: web_sys::HtmlInputElement = e.target_unchecked_into();
                    el.value()
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .map(|v| Msg::Set(i, v))
                });
                html! {
                    <div class={class} title={c.help}>
                        <label for={c.id}>{ c.label }
                            if let Some(h) = self.hint(c) { <span class="hint">{ format!(" {h}") }</span> }
                        </label>
                        <div class="ctl-row">
                            <input type="range" id={c.id} min={min.to_string()} max={max.to_string()} step={step.to_string()}
                                value={c.slider_position(v).to_string()} {oninput} />
                            <input type="number" class="num" id={format!("{}-num", c.id)} step="any"
                                value={format_value(v)} {onchange} />
                            <span class="unit">{ c.unit }</span>
                        </div>
                        { errs }
                    </div>
                }
            }
            Widget::Toggle => {
                let onchange = link.callback(move |e: Event| {
                    let el: web_sys::HtmlInputElement = e.target_unchecked_into();
                    Msg::Set(i, if el.checked() { 1.0 } else { 0.0 })
                });
                html! {
                    <div class={class} title={c.help}>
                        <label class="toggle"><input type="checkbox" id={c.id} checked={v != 0.0} {onchange} />{ format!(" {}", c.label) }</label>
                        { errs }
                    </div>
                }
            }
            Widget::Choice(labels) => {
                let onchange = link.callback(move |e: Event| {
                    let el: web_sys::HtmlSelectElement = e.target_unchecked_into();
                    Msg::Set(i, el.selected_index() as f64)
                });
                let sel = v as i64;
                html! {
                    <div class={class} title={c.help}>
                        <label for={c.id}>{ c.label }</label>
                        <select id={c.id} {onchange}>
                            { for labels.iter().enumerate().map(|(k, l)| html!{ <option selected={k as i64 == sel}>{ *l }</option> }) }
                            if sel < 0 { <option selected=true disabled=true>{ "(other)" }</option> }
                        </select>
                        { errs }
                    </div>
                }
            }
        }
    }

    fn view_io(&self, ctx: &Context<Self>) -> Html {
        let link = ctx.link();
        let oninput = link.callback(|e: InputEvent| {
            let el: web_sys::HtmlTextAreaElement = e.target_unchecked_into();
            Msg::IoText(el.value())
        });
        let download = if self.io_text.trim_start().starts_with('{') {
            Some(("scenario.json", "application/json"))
        } else if !self.io_text.is_empty() && !self.io_text.starts_with("http") {
            Some(("scenario.toml", "application/toml"))
        } else {
            None
        };
        html! {
            <fieldset class="group io" id="io">
                <legend>{ "Share, export, import" }</legend>
                <div class="row">
                    <button id="export-json" onclick={link.callback(|_| Msg::ExportJson)}>{ "JSON" }</button>
                    <button id="export-toml" onclick={link.callback(|_| Msg::ExportToml)}>{ "TOML" }</button>
                    <button id="show-link" onclick={link.callback(|_| Msg::ShowLink)}>{ "link" }</button>
                    <button id="import" onclick={link.callback(|_| Msg::Import)}>{ "import ↓" }</button>
                </div>
                <textarea id="io-text" rows="6" spellcheck="false" value={self.io_text.clone()} {oninput}
                    placeholder="Export fills this box; paste JSON or TOML here and press import." />
                if let Some((name, mime)) = download {
                    <a class="download" download={name}
                       href={format!("data:{mime};charset=utf-8,{}", js_sys::encode_uri_component(&self.io_text))}>
                       { format!("download {name}") }</a>
                }
                if let Some((ok, lines)) = &self.io_status {
                    <div id="io-status" class={ if *ok { "ok-text" } else { "errors" } }>
                        { for lines.iter().map(|l| html!{ <div>{ l }</div> }) }
                    </div>
                }
            </fieldset>
        }
    }

    fn view_headline(&self) -> Html {
        let Some(run) = &self.run else {
            return html! { <div class="headline muted">{ "Simulating…" }</div> };
        };
        let h = &run.data.headline;
        let pct = |p: Option<sim_core::trace::Percentiles>| {
            p.map_or("—".to_string(), |p| {
                format!(
                    "{} / {} ms",
                    format_value(p.p50.round()),
                    format_value(p.p95.round())
                )
            })
        };
        let join = h.join_to_first_frame_ms.map_or("never".into(), |ms| {
            format!("{} ms", format_value(ms.round()))
        });
        html! {
            <div class="headline" id="headline">
                <div class="stat"><span>{ "Video glass-to-glass p50 / p95" }</span><b id="stat-g2g">{ pct(h.video_g2g) }</b></div>
                <div class="stat"><span>{ "Audio p50 / p95" }</span><b>{ pct(h.audio_g2g) }</b></div>
                <div class="stat"><span>{ "Join → first frame" }</span><b id="stat-join">{ join }</b></div>
                <div class="stat"><span>{ "Rebuffering" }</span><b>{ format!("{} × ({} ms)", h.rebuffers, format_value(h.rebuffer_ms.round())) }</b></div>
                <div class="stat"><span>{ "Video frames lost" }</span><b>{ format!("{} of {}", h.dropped_video, h.video_frames) }</b></div>
                if h.audience_players > 1 {
                    <div class="stat"><span>{ format!("All {} players, p50 / p95", h.audience_players) }</span>
                        <b>{ pct(h.audience_g2g) }{ if h.audience_disconnected > 0 { format!(", {} disconnected", h.audience_disconnected) } else { String::new() } }</b></div>
                }
            </div>
        }
    }

    fn view_chart(&self, ctx: &Context<Self>, i: usize, k: ChartKind) -> Html {
        let watched = self
            .tour
            .and_then(|t| TOUR.get(t))
            .is_some_and(|t| t.watch == k);
        let extra = match k {
            ChartKind::Latency => self.view_latency_toggles(ctx),
            ChartKind::Startup => self.view_startup_caption(),
            ChartKind::Breakdown => html! {
                <>
                <p class="caption">{ "Median of each stage over all frames; the black tick is the median glass-to-glass (the median of a sum is not the sum of medians). Audio spends the video encoder's delay in the VBV queue: the muxer writes packets in timestamp order, so each audio frame waits for the video frame after it." }</p>
                <div class="chips legend">
                    { for PIPELINE.iter().enumerate().map(|(k, st)| html!{
                        <span class="chip"><span class="swatch box" style={format!("background:{}", charts::stage_css_color(k))}></span>{ st.label() }</span>
                    }) }
                </div>
                </>
            },
            ChartKind::Vbv => html! {
                <p class="caption">{ "Fullness of the decoder's buffer model after each frame. Low fullness = a long queue of bits waiting to be sent (delay ≤ buffer ÷ rate)." }</p>
            },
            _ => html! {},
        };
        html! {
            <figure class={classes!("chart", (k == ChartKind::Latency).then_some("wide"), watched.then_some("watch"))}>
                <figcaption>{ k.title() }</figcaption>
                { extra }
                <canvas id={k.canvas_id()} ref={self.canvases[i].clone()} style={format!("height:{}px", k.height_px())} />
            </figure>
        }
    }

    fn view_latency_toggles(&self, ctx: &Context<Self>) -> Html {
        let o = self.latency;
        let toggle = |label: String,
                      color: String,
                      checked: bool,
                      f: Box<dyn Fn(&mut LatencyOptions)>| {
            let cb = ctx.link().callback(move |_: Event| {
                let mut n = o;
                f(&mut n);
                Msg::Latency(n)
            });
            html! {
                <label class="chip"><input type="checkbox" {checked} onchange={cb} />
                    <span class="swatch" style={format!("background:{color}")}></span>{ label }</label>
            }
        };
        html! {
            <div class="chips" id="latency-toggles">
                { toggle("video glass-to-glass".into(), "rgb(31,95,191)".into(), o.video, Box::new(|n| n.video = !n.video)) }
                { toggle("audio".into(), "rgb(224,123,0)".into(), o.audio, Box::new(|n| n.audio = !n.audio)) }
                { for PIPELINE.iter().enumerate().map(|(k, st)| toggle(
                    st.label().to_string(), charts::stage_css_color(k), o.stages[k],
                    Box::new(move |n| n.stages[k] = !n.stages[k]))) }
            </div>
        }
    }

    fn view_startup_caption(&self) -> Html {
        let Some(run) = &self.run else {
            return html! {};
        };
        let st = &run.data.startup;
        let publisher: f64 = st.publisher.last().map_or(0.0, |p| p.end_ms);
        html! {
            <p class="caption">
                { format!("Publisher set-up: {} ms before the first frame is sent. ", format_value(publisher.round())) }
                if st.gop_cache {
                    { "GOP cache on: the server sends the last GOP at once (the player starts behind the live edge)." }
                } else {
                    { format!("GOP cache off: the player waits for the next keyframe (up to one interval, {} ms).", format_value(st.keyframe_interval_ms.round())) }
                }
            </p>
        }
    }
}
