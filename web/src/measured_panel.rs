//! The "Measured" panel: polls the server's API every [`POLL_MS`], lets the user pick a live
//! stream, shows its measured ingest and lays it over the simulation of the same settings.
//! When the API cannot be reached it says the server is not running and how to start it.

use crate::charts::{self, Scale};
use crate::measured::{self, MeasuredOverlays, StreamDetail, StreamSummary};
use sim_core::scenario::Scenario;
use sim_core::trace::Trace;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// How often the panel asks the server (ms).
pub const POLL_MS: u32 = 2000;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// No answer at all: the server is not running (or the page is opened from a file).
    Unreachable,
    /// An HTTP error status (404: this server has no API, e.g. a plain static server).
    Status(u16),
    /// An answer the lab cannot read.
    Body(String),
}

/// GET `url` from the page's origin; the body as text.
pub async fn get_text(url: &str) -> Result<String, FetchError> {
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window().ok_or(FetchError::Unreachable)?;
    let init = web_sys::RequestInit::new();
    init.set_cache(web_sys::RequestCache::NoStore);
    let req = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|_| FetchError::Body(format!("bad URL {url}")))?;
    let resp = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|_| FetchError::Unreachable)?;
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| FetchError::Body("not a Response".into()))?;
    if !resp.ok() {
        return Err(FetchError::Status(resp.status()));
    }
    let text = resp
        .text()
        .map_err(|_| FetchError::Body("unreadable body".into()))?;
    let text = JsFuture::from(text)
        .await
        .map_err(|_| FetchError::Body("unreadable body".into()))?;
    text.as_string()
        .ok_or_else(|| FetchError::Body("body is not text".into()))
}

/// A shared value compared by identity (a trace is too big to compare by value on every render).
pub struct Shared<T>(pub Rc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Properties, PartialEq)]
pub struct Props {
    /// The current simulation (the overlay's blue lines).
    pub trace: Option<Shared<Trace>>,
    /// The current scenario (what "simulate this stream" starts from).
    pub scenario: Shared<Scenario>,
    pub on_simulate: Callback<(Scenario, Vec<String>)>,
}

pub enum Msg {
    Poll,
    Streams(Result<Vec<StreamSummary>, FetchError>),
    Detail(Box<Result<StreamDetail, FetchError>>),
    Select(String),
    Simulate,
}

pub struct MeasuredPanel {
    streams: Option<Result<Vec<StreamSummary>, FetchError>>,
    selected: Option<String>,
    detail: Option<StreamDetail>,
    overlays: Option<MeasuredOverlays>,
    _poll: gloo_timers::callback::Interval,
    canvases: [NodeRef; 4],
    redraw: bool,
}

const OVERLAYS: [(&str, &str, &str); 4] = [
    ("Video frame sizes", "stream time (s)", "frame size (bytes)"),
    ("Video bitrate", "stream time (s)", "bitrate (kb/s)"),
    ("VBV occupancy", "stream time (s)", "fullness (kbit)"),
    (
        "Arrival jitter at the server",
        "stream time (s)",
        "jitter (ms)",
    ),
];

impl MeasuredPanel {
    fn recompute(&mut self, ctx: &Context<Self>) {
        self.overlays = match (&self.detail, &ctx.props().trace) {
            (Some(d), Some(t)) => Some(measured::overlays(&d.frames, t)),
            (Some(d), None) => Some(measured::overlays(&d.frames, &empty_trace())),
            _ => None,
        };
        self.redraw = true;
    }
}

fn empty_trace() -> Trace {
    let s = Scenario {
        duration_s: 0.1,
        ..Scenario::default()
    };
    let mut t = sim_core::engine::Engine::new(&s).into_trace();
    t.frames.clear();
    t
}

impl Component for MeasuredPanel {
    type Message = Msg;
    type Properties = Props;

    fn create(ctx: &Context<Self>) -> Self {
        ctx.link().send_message(Msg::Poll);
        let link = ctx.link().clone();
        MeasuredPanel {
            streams: None,
            selected: None,
            detail: None,
            overlays: None,
            _poll: gloo_timers::callback::Interval::new(POLL_MS, move || {
                link.send_message(Msg::Poll)
            }),
            canvases: Default::default(),
            redraw: false,
        }
    }

    fn changed(&mut self, ctx: &Context<Self>, old: &Self::Properties) -> bool {
        if ctx.props().trace != old.trace {
            self.recompute(ctx);
        }
        true
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Self::Message) -> bool {
        match msg {
            Msg::Poll => {
                ctx.link().send_future(async {
                    let r = get_text("/api/streams")
                        .await
                        .and_then(|t| measured::parse_streams(&t).map_err(FetchError::Body));
                    Msg::Streams(r)
                });
                if let Some(id) = self.selected.clone() {
                    ctx.link().send_future(async move {
                        let r = get_text(&format!("/api/streams/{id}"))
                            .await
                            .and_then(|t| measured::parse_detail(&t).map_err(FetchError::Body));
                        Msg::Detail(Box::new(r))
                    });
                }
                false
            }
            Msg::Streams(r) => {
                // Pick the first live stream by default.
                if self.selected.is_none() {
                    if let Ok(list) = &r {
                        if let Some(first) = list.iter().find(|s| s.publisher.is_some()) {
                            self.selected = Some(first.id());
                            ctx.link().send_message(Msg::Poll);
                        }
                    }
                }
                self.streams = Some(r);
                true
            }
            Msg::Detail(r) => {
                if let Ok(d) = *r {
                    self.detail = Some(d);
                    self.recompute(ctx);
                }
                true
            }
            Msg::Select(id) => {
                self.selected = (!id.is_empty()).then_some(id);
                self.detail = None;
                self.overlays = None;
                ctx.link().send_message(Msg::Poll);
                true
            }
            Msg::Simulate => {
                let ingest = self
                    .detail
                    .as_ref()
                    .map(|d| d.summary.ingest.clone())
                    .or_else(|| {
                        let id = self.selected.as_ref()?;
                        let list = self.streams.as_ref()?.as_ref().ok()?;
                        Some(list.iter().find(|s| &s.id() == id)?.ingest.clone())
                    });
                if let Some(ingest) = ingest {
                    let out = measured::scenario_from_measured(&ctx.props().scenario, &ingest);
                    ctx.props().on_simulate.emit(out);
                }
                false
            }
        }
    }

    fn view(&self, ctx: &Context<Self>) -> Html {
        let body = match &self.streams {
            None => html! { <p class="muted">{ "Asking the server for live streams…" }</p> },
            Some(Err(FetchError::Unreachable)) => html! {
                <div class="notice" id="measured-offline">
                    <p><b>{ "The lab's server is not running" }</b>{ " (no answer from /api/streams), so there is nothing measured to show." }</p>
                    <p>{ "Start it with " }<code>{ "cargo xtask lab" }</code>{ " (builds this page and runs the server) or " }
                       <code>{ "rtmp-lab serve" }</code>{ ", then open " }<code>{ "http://127.0.0.1:8080" }</code>
                       { " and stream to " }<code>{ "rtmp://127.0.0.1/live/<key>" }</code>{ " from OBS or ffmpeg." }</p>
                </div>
            },
            Some(Err(FetchError::Status(code))) => html! {
                <div class="notice" id="measured-offline">
                    <p><b>{ format!("This page is served without the lab's API (HTTP {code} from /api/streams).") }</b></p>
                    <p>{ "Run the real server: " }<code>{ "cargo xtask lab" }</code>{ " or " }<code>{ "rtmp-lab serve" }</code>{ "." }</p>
                </div>
            },
            Some(Err(FetchError::Body(e))) => html! {
                <div class="notice"><p>{ format!("The server answered, but the lab cannot read it: {e}") }</p></div>
            },
            Some(Ok(list)) if list.is_empty() => html! {
                <div class="notice" id="measured-empty">
                    <p><b>{ "The server is running; no stream is live." }</b></p>
                    <p>{ "Point OBS at " }<code>{ "rtmp://127.0.0.1/live" }</code>{ " (stream key: anything), or run " }
                       <code>{ "ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -b:v 3000k -g 60 -c:a aac -f flv rtmp://127.0.0.1/live/test" }</code></p>
                </div>
            },
            Some(Ok(list)) => self.view_streams(ctx, list),
        };
        html! {
            <section class="card measured" id="measured">
                <h2>{ "Measured: live streams on this server" }</h2>
                { body }
            </section>
        }
    }

    fn rendered(&mut self, _ctx: &Context<Self>, _first: bool) {
        if !self.redraw {
            return;
        }
        self.redraw = false;
        if let Some(o) = &self.overlays {
            let series = [&o.frame_bytes, &o.bitrate_kbps, &o.vbv_kbit, &o.jitter_ms];
            for (i, node) in self.canvases.iter().enumerate() {
                if let Some(canvas) = node.cast::<web_sys::HtmlCanvasElement>() {
                    let (_, x, y) = OVERLAYS[i];
                    let r = charts::draw_on_canvas(
                        &canvas,
                        charts::canvas_size(&canvas, 200),
                        |area, sc: Scale| charts::draw_overlay(area, series[i], x, y, sc),
                    );
                    if let Err(e) = r {
                        web_sys::console::warn_1(&format!("measured chart: {e}").into());
                    }
                }
            }
        }
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".into(), |v| {
        format!("{} {unit}", crate::controls::format_value(v))
    })
}

impl MeasuredPanel {
    fn view_streams(&self, ctx: &Context<Self>, list: &[StreamSummary]) -> Html {
        let onchange = ctx.link().callback(|e: Event| {
            let el: web_sys::HtmlSelectElement = e.target_unchecked_into();
            Msg::Select(el.value())
        });
        let selected = self.selected.clone().unwrap_or_default();
        let current = list.iter().find(|s| s.id() == selected);
        let stats = current.map(|s| {
            let i = &s.ingest;
            let res = match (i.width, i.height) {
                (Some(w), Some(h)) => format!("{w}×{h}"),
                _ => "—".into(),
            };
            html! {
                <table class="stats">
                    <tr><th>{ "Codecs" }</th><td>{ format!("{} / {}", i.video_codec.clone().unwrap_or("—".into()), i.audio_codec.clone().unwrap_or("—".into())) }</td>
                        <th>{ "Resolution" }</th><td>{ res }</td></tr>
                    <tr><th>{ "Frame rate" }</th><td>{ format!("{} (declared {})", opt(i.fps, "fps"), opt(i.declared_fps, "fps")) }</td>
                        <th>{ "Video bitrate" }</th><td>{ format!("{} (declared {})", opt(Some(i.video_kbps), "kb/s"), opt(i.declared_video_kbps, "kb/s")) }</td></tr>
                    <tr><th>{ "Keyframe interval" }</th><td>{ opt(i.keyframe_interval_s, "s") }</td>
                        <th>{ "B-frames" }</th><td>{ if i.b_frames { "yes" } else { "no" } }</td></tr>
                    <tr><th>{ "Frame sizes" }</th><td>{ format!("key {} / other {} / max {} B", opt(i.mean_keyframe_bytes, "B"), opt(i.mean_interframe_bytes, "B"), i.max_frame_bytes) }</td>
                        <th>{ "Arrival jitter" }</th><td>{ i.arrival_jitter_ms.map_or("—".into(), |j| format!("p50 {:.1} / p95 {:.1} / max {:.1} ms", j.p50, j.p95, j.max)) }</td></tr>
                    <tr><th>{ "VBV (measured)" }</th><td colspan="3">{ i.vbv.as_ref().map_or("—".into(), |v| format!(
                        "{:.0} of {:.0} kbit (min {:.0}), {} underflows, at {:.0} kb/s ({})",
                        v.fullness_kbit, v.buffer_kbit, v.min_fullness_kbit, v.underflows, v.max_rate_kbps, v.rate_source.label())) }</td></tr>
                    <tr><th>{ "Received" }</th><td colspan="3">{ format!("{:.1} s of stream, {} video / {} audio frames, {} players",
                        i.stream_time_s, i.video_frames, i.audio_frames, s.players) }</td></tr>
                </table>
            }
        });
        let simulate = ctx.link().callback(|_| Msg::Simulate);
        html! {
            <>
                <div class="row">
                    <label>{ "Stream " }
                        <select id="measured-stream" {onchange}>
                            <option value="" selected={selected.is_empty()}>{ "(pick one)" }</option>
                            { for list.iter().map(|s| {
                                let id = s.id();
                                let live = if s.publisher.is_some() { "live" } else { "no publisher" };
                                html!{ <option value={id.clone()} selected={id == selected}>{ format!("{id} ({live})") }</option> }
                            }) }
                        </select>
                    </label>
                    <button id="simulate-this" onclick={simulate} disabled={current.is_none()}>{ "Simulate this stream" }</button>
                </div>
                { stats.unwrap_or_default() }
                if let Some(o) = &self.overlays {
                    <p class="muted">{ format!("The last {:.1} s the server recorded (magenta), over the same span of the current simulation (blue). \
                        Press “Simulate this stream” to give the simulation the stream's settings.", o.span_s) }</p>
                    <div class="chart-grid small">
                        { for OVERLAYS.iter().enumerate().map(|(i, (title, _, _))| html!{
                            <figure class="chart">
                                <figcaption>{ *title }</figcaption>
                                <canvas ref={self.canvases[i].clone()} style="height:200px" />
                            </figure>
                        }) }
                    </div>
                }
            </>
        }
    }
}
