//! The scenario controls: one table row per slider, toggle or choice, each with the dotted path
//! of the [`Scenario`] field it edits (the same paths `Scenario::check` reports errors on), so a
//! validation error is shown next to the control that caused it.
//!
//! Pure: the Yew view in `app.rs` renders this table; the tests drive it without a DOM.

use sim_core::check::FieldError;
use sim_core::net::{JitterDistribution, LossConfig};
use sim_core::rate_control::RateControlMode;
use sim_core::scenario::Scenario;
use sim_core::server::DropPolicy;

/// The sections of the control panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Encoder,
    RateControl,
    Network,
    Tcp,
    Server,
    Player,
    Run,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Encoder,
        Group::RateControl,
        Group::Network,
        Group::Tcp,
        Group::Server,
        Group::Player,
        Group::Run,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Encoder => "Encoder",
            Group::RateControl => "Rate control (VBV)",
            Group::Network => "Network path",
            Group::Tcp => "TCP",
            Group::Server => "Server",
            Group::Player => "Player",
            Group::Run => "Run",
        }
    }
}

/// How a control looks and which values it offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Widget {
    /// A range slider plus a number box. `log`: the slider moves on a log scale (`min` > 0);
    /// the number box accepts any value (so a value out of range shows its validation error).
    Slider {
        min: f64,
        max: f64,
        step: f64,
        log: bool,
    },
    /// A checkbox; the value is 0 or 1.
    Toggle,
    /// A drop-down; the value is the index into the labels (−1 = none of them).
    Choice(&'static [&'static str]),
}

/// One control of the panel.
pub struct Control {
    /// Stable id (also the DOM id, used by the tour and the end-to-end test).
    pub id: &'static str,
    /// Dotted path of the field in [`Scenario`] (as in `Scenario::check`'s errors).
    pub path: &'static str,
    pub group: Group,
    pub label: &'static str,
    pub unit: &'static str,
    pub help: &'static str,
    pub widget: Widget,
    pub get: fn(&Scenario) -> f64,
    pub set: fn(&mut Scenario, f64),
}

/// Slider positions span 0..=SLIDER_STEPS on log scales.
pub const SLIDER_STEPS: f64 = 1000.0;

impl Control {
    /// The slider position for value `v` (log sliders map to 0..=[`SLIDER_STEPS`]).
    pub fn slider_position(&self, v: f64) -> f64 {
        match self.widget {
            Widget::Slider { min, max, log, .. } if log => {
                let v = v.clamp(min, max);
                (v / min).ln() / (max / min).ln() * SLIDER_STEPS
            }
            _ => v,
        }
    }

    /// The value at slider position `p`, rounded to the control's step.
    pub fn value_at_position(&self, p: f64) -> f64 {
        match self.widget {
            Widget::Slider {
                min,
                max,
                step,
                log,
            } => {
                let v = if log {
                    min * (max / min).powf(p / SLIDER_STEPS)
                } else {
                    p
                };
                round_to_step(v, step).clamp(min, max)
            }
            _ => p,
        }
    }

    /// Range and step of the `<input type=range>`.
    pub fn slider_range(&self) -> (f64, f64, f64) {
        match self.widget {
            Widget::Slider { log: true, .. } => (0.0, SLIDER_STEPS, 1.0),
            Widget::Slider { min, max, step, .. } => (min, max, step),
            _ => (0.0, 1.0, 1.0),
        }
    }

    /// The errors of `errors` that belong to this control.
    pub fn errors<'a>(&self, errors: &'a [FieldError]) -> Vec<&'a FieldError> {
        errors
            .iter()
            .filter(|e| path_matches(self.path, &e.path))
            .collect()
    }
}

/// `error_path` is `control_path` or inside it (`uplink.loss` owns `uplink.loss.p`).
pub fn path_matches(control_path: &str, error_path: &str) -> bool {
    error_path == control_path
        || (error_path.starts_with(control_path)
            && error_path.as_bytes().get(control_path.len()) == Some(&b'.'))
}

fn round_to_step(v: f64, step: f64) -> f64 {
    if step > 0.0 {
        (v / step).round() * step
    } else {
        v
    }
}

/// A number for display: integers without decimals, others with up to 3 significant decimals.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    let decimals = if a >= 100.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

pub const RESOLUTIONS: &[(u32, u32)] = &[
    (426, 240),
    (640, 360),
    (854, 480),
    (1280, 720),
    (1920, 1080),
    (2560, 1440),
    (3840, 2160),
];
const RESOLUTION_LABELS: &[&str] = &[
    "426×240",
    "640×360",
    "854×480",
    "1280×720 (720p)",
    "1920×1080 (1080p)",
    "2560×1440",
    "3840×2160 (4K)",
];
const RC_MODES: &[RateControlMode] = &[
    RateControlMode::Cbr,
    RateControlMode::Abr,
    RateControlMode::Vbr,
    RateControlMode::CappedCrf,
    RateControlMode::Cqp,
];
const RC_LABELS: &[&str] = &["CBR", "ABR", "VBR", "capped CRF", "CQP"];
const JITTER_DISTS: &[JitterDistribution] = &[
    JitterDistribution::Uniform,
    JitterDistribution::Normal,
    JitterDistribution::Pareto,
];
const JITTER_LABELS: &[&str] = &["uniform (±J)", "normal (σ = J)", "pareto (heavy tail)"];
const LOSS_LABELS: &[&str] = &[
    "none",
    "Bernoulli (independent)",
    "Gilbert–Elliott (bursty)",
];
const DROP_LABELS: &[&str] = &["drop to next keyframe", "disconnect the player"];

fn index_of<T: PartialEq>(list: &[T], v: &T) -> f64 {
    list.iter().position(|x| x == v).map_or(-1.0, |i| i as f64)
}

fn pick<T: Copy>(list: &[T], v: f64) -> Option<T> {
    if v < 0.0 {
        return None;
    }
    list.get(v as usize).copied()
}

/// Mean packet loss rate of a loss model (Gilbert–Elliott: the stationary mix of its states).
pub fn mean_loss(l: &LossConfig) -> f64 {
    match *l {
        LossConfig::None => 0.0,
        LossConfig::Bernoulli { p } => p,
        LossConfig::GilbertElliott {
            p,
            r,
            loss_good,
            loss_bad,
        } => {
            if p + r > 0.0 {
                (r * loss_good + p * loss_bad) / (p + r)
            } else {
                loss_good
            }
        }
    }
}

/// Sets the mean loss to `fraction`, keeping the model's kind (bursty stays bursty, scaled).
fn set_mean_loss(l: &mut LossConfig, fraction: f64) {
    let fraction = fraction.max(0.0);
    *l = match *l {
        _ if fraction == 0.0 => LossConfig::None,
        LossConfig::GilbertElliott {
            p,
            r,
            loss_good,
            loss_bad,
        } => {
            let now = mean_loss(l);
            let k = if now > 0.0 { fraction / now } else { 1.0 };
            LossConfig::GilbertElliott {
                p,
                r,
                loss_good: (loss_good * k).min(1.0),
                loss_bad: (loss_bad * k).min(1.0),
            }
        }
        _ => LossConfig::Bernoulli { p: fraction },
    };
}

fn b(v: bool) -> f64 {
    v as u8 as f64
}

/// Every control, in display order.
pub fn controls() -> &'static [Control] {
    CONTROLS
}

/// The control with this id.
pub fn control(id: &str) -> Option<&'static Control> {
    CONTROLS.iter().find(|c| c.id == id)
}

static CONTROLS: &[Control] = &[
    // --- Encoder -------------------------------------------------------------------------------
    Control {
        id: "resolution",
        path: "encoder.width",
        group: Group::Encoder,
        label: "Resolution",
        unit: "",
        help: "Frame size; with the bitrate it sets the bits per pixel (quality), not the latency.",
        widget: Widget::Choice(RESOLUTION_LABELS),
        get: |s| index_of(RESOLUTIONS, &(s.encoder.width, s.encoder.height)),
        set: |s, v| {
            if let Some((w, h)) = pick(RESOLUTIONS, v) {
                s.encoder.width = w;
                s.encoder.height = h;
            }
        },
    },
    Control {
        id: "fps",
        path: "encoder.fps",
        group: Group::Encoder,
        label: "Frame rate",
        unit: "fps",
        help:
            "Frames per second. One frame period is the smallest unit of encoder and Nagle delay.",
        widget: Widget::Slider {
            min: 1.0,
            max: 120.0,
            step: 1.0,
            log: false,
        },
        get: |s| s.encoder.fps,
        set: |s, v| s.encoder.fps = v,
    },
    Control {
        id: "keyint",
        path: "encoder.keyframe_interval_frames",
        group: Group::Encoder,
        label: "Keyframe interval",
        unit: "frames",
        help: "Frames from one keyframe (IDR) to the next. A player can only start at a keyframe: \
               without a GOP cache it waits up to this long.",
        widget: Widget::Slider {
            min: 1.0,
            max: 1000.0,
            step: 1.0,
            log: true,
        },
        get: |s| s.encoder.keyframe_interval_frames as f64,
        set: |s, v| s.encoder.keyframe_interval_frames = v.max(0.0) as u32,
    },
    Control {
        id: "bframes",
        path: "encoder.bframes",
        group: Group::Encoder,
        label: "B-frames",
        unit: "",
        help: "Consecutive B-frames: each one delays output by a frame period (reordering).",
        widget: Widget::Slider {
            min: 0.0,
            max: 16.0,
            step: 1.0,
            log: false,
        },
        get: |s| s.encoder.bframes as f64,
        set: |s, v| s.encoder.bframes = v.max(0.0) as u32,
    },
    Control {
        id: "zerolatency",
        path: "encoder.zerolatency",
        group: Group::Encoder,
        label: "x264 zerolatency",
        unit: "",
        help: "No lookahead, no B-frames, sliced threads: the encoder's own delay drops to about \
               one frame.",
        widget: Widget::Toggle,
        get: |s| b(s.encoder.zerolatency),
        set: |s, v| s.encoder.zerolatency = v != 0.0,
    },
    Control {
        id: "capture_delay",
        path: "encoder.capture_delay_frames",
        group: Group::Encoder,
        label: "Capture + compositing",
        unit: "frames",
        help: "Camera readout and the compositor (OBS renders one frame per frame period) before                the encoder sees a picture: typically 1–2 frame periods.",
        widget: Widget::Slider {
            min: 0.0,
            max: 6.0,
            step: 0.5,
            log: false,
        },
        get: |s| s.encoder.capture_delay_frames,
        set: |s, v| s.encoder.capture_delay_frames = v,
    },
    // --- Rate control --------------------------------------------------------------------------
    Control {
        id: "rc_mode",
        path: "rate_control.mode",
        group: Group::RateControl,
        label: "Rate control",
        unit: "",
        help:
            "CBR (OBS default) pads to a constant rate; VBR/capped CRF let the rate fall on easy \
               scenes; CQP has no rate control at all.",
        widget: Widget::Choice(RC_LABELS),
        get: |s| index_of(RC_MODES, &s.rate_control.mode),
        set: |s, v| {
            if let Some(m) = pick(RC_MODES, v) {
                s.rate_control.mode = m;
            }
        },
    },
    Control {
        id: "bitrate",
        path: "rate_control.bitrate_kbps",
        group: Group::RateControl,
        label: "Video bitrate",
        unit: "kb/s",
        help: "Target video bitrate. Above the uplink's capacity the sender's queue grows without \
               bound.",
        widget: Widget::Slider {
            min: 100.0,
            max: 100_000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.rate_control.bitrate_kbps,
        set: |s, v| s.rate_control.bitrate_kbps = v,
    },
    Control {
        id: "vbv",
        path: "rate_control.vbv_buffer_kbits",
        group: Group::RateControl,
        label: "VBV buffer",
        unit: "kbit",
        help: "The leaky bucket: a frame may wait up to buffer ÷ max rate in the sender's queue. \
               OBS: buffer = bitrate (1 s). 0 = no VBV.",
        widget: Widget::Slider {
            min: 50.0,
            max: 200_000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.rate_control.vbv_buffer_kbits,
        set: |s, v| s.rate_control.vbv_buffer_kbits = v,
    },
    // --- Network -------------------------------------------------------------------------------
    Control {
        id: "rtt",
        path: "uplink.propagation_ms",
        group: Group::Network,
        label: "Uplink RTT",
        unit: "ms",
        help: "Round trip publisher ↔ server (twice the one-way propagation delay).",
        widget: Widget::Slider {
            min: 0.0,
            max: 1000.0,
            step: 1.0,
            log: false,
        },
        get: |s| 2.0 * s.uplink.propagation_ms,
        set: |s, v| s.uplink.propagation_ms = v / 2.0,
    },
    Control {
        id: "jitter",
        path: "uplink.jitter.ms",
        group: Group::Network,
        label: "Uplink jitter J",
        unit: "ms",
        help: "Per-packet delay variation with netem's semantics (TCP still delivers in order).",
        widget: Widget::Slider {
            min: 0.0,
            max: 200.0,
            step: 1.0,
            log: false,
        },
        get: |s| s.uplink.jitter.ms,
        set: |s, v| s.uplink.jitter.ms = v,
    },
    Control {
        id: "jitter_dist",
        path: "uplink.jitter.distribution",
        group: Group::Network,
        label: "Jitter distribution",
        unit: "",
        help: "Shape of the delay variation; pareto has the long tail that makes TCP stall.",
        widget: Widget::Choice(JITTER_LABELS),
        get: |s| index_of(JITTER_DISTS, &s.uplink.jitter.distribution),
        set: |s, v| {
            if let Some(d) = pick(JITTER_DISTS, v) {
                s.uplink.jitter.distribution = d;
            }
        },
    },
    Control {
        id: "loss_model",
        path: "uplink.loss.model",
        group: Group::Network,
        label: "Loss model",
        unit: "",
        help: "Independent losses, or bursts (a Gilbert–Elliott chain, like a radio link).",
        widget: Widget::Choice(LOSS_LABELS),
        get: |s| match s.uplink.loss {
            LossConfig::None => 0.0,
            LossConfig::Bernoulli { .. } => 1.0,
            LossConfig::GilbertElliott { .. } => 2.0,
        },
        set: |s, v| {
            let mean = match mean_loss(&s.uplink.loss) {
                m if m > 0.0 => m,
                _ => 0.01,
            };
            s.uplink.loss = match v as i64 {
                1 => LossConfig::Bernoulli { p: mean },
                2 => {
                    // Mean bursts of 1/r = 2.5 packets; scaled to the current mean loss.
                    let mut l = LossConfig::GilbertElliott {
                        p: 0.01,
                        r: 0.4,
                        loss_good: 0.0,
                        loss_bad: 0.5,
                    };
                    set_mean_loss(&mut l, mean);
                    l
                }
                _ => LossConfig::None,
            };
        },
    },
    Control {
        id: "loss",
        path: "uplink.loss",
        group: Group::Network,
        label: "Uplink packet loss",
        unit: "%",
        help: "Mean loss rate. Each loss costs at least an RTT (fast retransmit) or a 200 ms \
               timeout, and TCP holds every later byte behind it.",
        widget: Widget::Slider {
            min: 0.0,
            max: 10.0,
            step: 0.1,
            log: false,
        },
        get: |s| 100.0 * mean_loss(&s.uplink.loss),
        set: |s, v| set_mean_loss(&mut s.uplink.loss, v / 100.0),
    },
    Control {
        id: "bottleneck",
        path: "uplink.bottleneck_kbps",
        group: Group::Network,
        label: "Uplink capacity",
        unit: "kb/s",
        help: "Bottleneck rate of the publisher's path (0 in the box = unlimited).",
        widget: Widget::Slider {
            min: 200.0,
            max: 1_000_000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.uplink.bottleneck_kbps,
        set: |s, v| s.uplink.bottleneck_kbps = v,
    },
    Control {
        id: "down_rtt",
        path: "downlink.propagation_ms",
        group: Group::Network,
        label: "Downlink RTT",
        unit: "ms",
        help: "Round trip server ↔ player.",
        widget: Widget::Slider {
            min: 0.0,
            max: 1000.0,
            step: 1.0,
            log: false,
        },
        get: |s| 2.0 * s.downlink.propagation_ms,
        set: |s, v| s.downlink.propagation_ms = v / 2.0,
    },
    Control {
        id: "down_bottleneck",
        path: "downlink.bottleneck_kbps",
        group: Group::Network,
        label: "Downlink capacity",
        unit: "kb/s",
        help: "Each player's path from the server (0 in the box = unlimited).",
        widget: Widget::Slider {
            min: 200.0,
            max: 1_000_000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.downlink.bottleneck_kbps,
        set: |s, v| s.downlink.bottleneck_kbps = v,
    },
    // --- TCP -----------------------------------------------------------------------------------
    Control {
        id: "pub_nodelay",
        path: "publisher_tcp.nodelay",
        group: Group::Tcp,
        label: "Publisher TCP_NODELAY (Nagle off)",
        unit: "",
        help: "Off = Nagle on (OBS's librtmp): a frame's small tail waits for the ACK of the \
               previous data, up to the receiver's delayed-ACK timer (40 ms).",
        widget: Widget::Toggle,
        get: |s| b(s.publisher_tcp.nodelay),
        set: |s, v| s.publisher_tcp.nodelay = v != 0.0,
    },
    Control {
        id: "server_nodelay",
        path: "server_tcp.nodelay",
        group: Group::Tcp,
        label: "Server TCP_NODELAY",
        unit: "",
        help: "The server's sockets towards players.",
        widget: Widget::Toggle,
        get: |s| b(s.server_tcp.nodelay),
        set: |s, v| s.server_tcp.nodelay = v != 0.0,
    },
    Control {
        id: "pub_tfo",
        path: "publisher_tcp.fast_open",
        group: Group::Tcp,
        label: "Publisher TCP Fast Open",
        unit: "",
        help: "Saves one RTT once, at connection set-up (repeat connections only).",
        widget: Widget::Toggle,
        get: |s| b(s.publisher_tcp.fast_open),
        set: |s, v| s.publisher_tcp.fast_open = v != 0.0,
    },
    Control {
        id: "server_tfo",
        path: "server_tcp.fast_open",
        group: Group::Tcp,
        label: "Player TCP Fast Open",
        unit: "",
        help: "The player's connection to the server: one RTT less to join.",
        widget: Widget::Toggle,
        get: |s| b(s.server_tcp.fast_open),
        set: |s, v| s.server_tcp.fast_open = v != 0.0,
    },
    Control {
        id: "chunk",
        path: "rtmp.publisher_chunk_size",
        group: Group::Tcp,
        label: "Publisher chunk size",
        unit: "bytes",
        help: "RTMP chunk size (spec default 128, OBS 4096): small chunks add header bytes.",
        widget: Widget::Slider {
            min: 128.0,
            max: 65_536.0,
            step: 1.0,
            log: true,
        },
        get: |s| s.rtmp.publisher_chunk_size as f64,
        set: |s, v| s.rtmp.publisher_chunk_size = v.max(0.0) as u32,
    },
    // --- Server --------------------------------------------------------------------------------
    Control {
        id: "gop_cache",
        path: "server.gop_cache",
        group: Group::Server,
        label: "GOP cache",
        unit: "",
        help: "The server keeps the last GOP and sends it to a joining player, who starts at \
               once (but further from the live edge).",
        widget: Widget::Toggle,
        get: |s| b(s.server.gop_cache),
        set: |s, v| s.server.gop_cache = v != 0.0,
    },
    Control {
        id: "queue_bytes",
        path: "server.queue_max_bytes",
        group: Group::Server,
        label: "Player queue bound",
        unit: "KiB",
        help: "Media the server holds for a slow player before its drop policy acts.",
        widget: Widget::Slider {
            min: 16.0,
            max: 65_536.0,
            step: 1.0,
            log: true,
        },
        get: |s| s.server.queue_max_bytes as f64 / 1024.0,
        set: |s, v| s.server.queue_max_bytes = (v.max(0.0) * 1024.0) as u64,
    },
    Control {
        id: "queue_ms",
        path: "server.queue_max_ms",
        group: Group::Server,
        label: "Player queue bound (time)",
        unit: "ms",
        help: "The same bound in media time (newest − oldest timestamp).",
        widget: Widget::Slider {
            min: 100.0,
            max: 60_000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.server.queue_max_ms,
        set: |s, v| s.server.queue_max_ms = v,
    },
    Control {
        id: "drop_policy",
        path: "server.drop_policy",
        group: Group::Server,
        label: "When a queue is full",
        unit: "",
        help: "Drop to the next keyframe (SRS, nginx-rtmp) or disconnect the player.",
        widget: Widget::Choice(DROP_LABELS),
        get: |s| match s.server.drop_policy {
            DropPolicy::DropToKeyframe => 0.0,
            DropPolicy::Disconnect => 1.0,
        },
        set: |s, v| {
            s.server.drop_policy = if v >= 1.0 {
                DropPolicy::Disconnect
            } else {
                DropPolicy::DropToKeyframe
            }
        },
    },
    // --- Player --------------------------------------------------------------------------------
    Control {
        id: "player_buffer",
        path: "player.startup_buffer_ms",
        group: Group::Player,
        label: "Player start-up buffer",
        unit: "ms",
        help: "Media buffered before playback starts (VLC: 1000 ms network caching). Every ms \
               here is a ms of latency, forever, unless the player catches up.",
        widget: Widget::Slider {
            min: 0.0,
            max: 5000.0,
            step: 10.0,
            log: false,
        },
        get: |s| s.player.startup_buffer_ms,
        set: |s, v| s.player.startup_buffer_ms = v,
    },
    Control {
        id: "decode",
        path: "player.decode_ms",
        group: Group::Player,
        label: "Decode + display",
        unit: "ms",
        help: "From the player's buffer to the screen: decoding, then waiting for the display's                refresh; typically 1–2 frames + vsync (33–80 ms at 30 fps).",
        widget: Widget::Slider {
            min: 0.0,
            max: 200.0,
            step: 1.0,
            log: false,
        },
        get: |s| s.player.decode_ms,
        set: |s, v| s.player.decode_ms = v,
    },
    Control {
        id: "catch_up",
        path: "player.catch_up.enabled",
        group: Group::Player,
        label: "Live-edge catch-up",
        unit: "",
        help: "Play slightly faster while the buffer holds more than its bound.",
        widget: Widget::Toggle,
        get: |s| b(s.player.catch_up.enabled),
        set: |s, v| s.player.catch_up.enabled = v != 0.0,
    },
    Control {
        id: "catch_up_max",
        path: "player.catch_up.max_buffer_ms",
        group: Group::Player,
        label: "Catch up above",
        unit: "ms",
        help: "Buffer level above which the player speeds up.",
        widget: Widget::Slider {
            min: 50.0,
            max: 5000.0,
            step: 10.0,
            log: true,
        },
        get: |s| s.player.catch_up.max_buffer_ms,
        set: |s, v| s.player.catch_up.max_buffer_ms = v,
    },
    // --- Run -----------------------------------------------------------------------------------
    Control {
        id: "duration",
        path: "duration_s",
        group: Group::Run,
        label: "Duration",
        unit: "s",
        help: "Simulated time. Long runs are computed in slices so the page stays responsive.",
        widget: Widget::Slider {
            min: 5.0,
            max: 3600.0,
            step: 1.0,
            log: true,
        },
        get: |s| s.duration_s,
        set: |s, v| s.duration_s = v,
    },
    Control {
        id: "join_at",
        path: "players.join_at_s",
        group: Group::Run,
        label: "Player joins at",
        unit: "s",
        help: "When the (first) player connects: joining mid-GOP shows the GOP cache at work.",
        widget: Widget::Slider {
            min: 0.0,
            max: 60.0,
            step: 0.1,
            log: false,
        },
        get: |s| s.players.join_at_s,
        set: |s, v| s.players.join_at_s = v,
    },
    Control {
        id: "players",
        path: "players.count",
        group: Group::Run,
        label: "Players",
        unit: "",
        help: "Number of players (player 0 is traced frame by frame; the rest are summarised).",
        widget: Widget::Slider {
            min: 1.0,
            max: 1000.0,
            step: 1.0,
            log: true,
        },
        get: |s| s.players.count as f64,
        set: |s, v| s.players.count = v.max(0.0) as u32,
    },
    Control {
        id: "seed",
        path: "seed",
        group: Group::Run,
        label: "Random seed",
        unit: "",
        help: "Same scenario + seed = same trace, bit for bit.",
        widget: Widget::Slider {
            min: 0.0,
            max: 100.0,
            step: 1.0,
            log: false,
        },
        get: |s| s.seed as f64,
        set: |s, v| s.seed = v.max(0.0) as u64,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use sim_core::scenario::{preset, PRESET_NAMES};

    #[test]
    fn ids_are_unique_and_every_getter_reads_presets() {
        let mut ids: Vec<&str> = controls().iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), controls().len());
        for name in PRESET_NAMES {
            let s = preset(name).unwrap();
            for c in controls() {
                assert!((c.get)(&s).is_finite(), "{} on {name}", c.id);
            }
        }
    }

    #[test]
    fn set_then_get_round_trips() {
        let mut s = preset("obs-default").unwrap();
        for (id, v) in [
            ("rtt", 123.0),
            ("fps", 60.0),
            ("loss", 2.0),
            ("keyint", 240.0),
        ] {
            let c = control(id).unwrap();
            (c.set)(&mut s, v);
            assert!(((c.get)(&s) - v).abs() < 1e-9, "{id}");
        }
        assert_eq!(s.check(), vec![]);
    }

    #[test]
    fn log_slider_positions_invert() {
        let c = control("bitrate").unwrap();
        for v in [100.0, 6000.0, 100_000.0] {
            let p = c.slider_position(v);
            assert!((c.value_at_position(p) - v).abs() <= 10.0, "{v}");
        }
    }

    #[test]
    fn errors_land_on_their_control() {
        let mut s = preset("obs-default").unwrap();
        (control("fps").unwrap().set)(&mut s, 0.0);
        (control("loss").unwrap().set)(&mut s, 80.0);
        let errors = s.check();
        assert_eq!(control("fps").unwrap().errors(&errors).len(), 1);
        assert_eq!(control("loss").unwrap().errors(&errors).len(), 1);
        assert!(control("rtt").unwrap().errors(&errors).is_empty());
        assert!(path_matches("uplink.loss", "uplink.loss.p"));
        assert!(!path_matches("uplink.loss", "uplink.lossy"));
    }

    #[test]
    fn mean_loss_scales_bursty_models() {
        let mut s = preset("mobile-3g").unwrap();
        let c = control("loss").unwrap();
        (c.set)(&mut s, 2.0);
        assert!(matches!(s.uplink.loss, LossConfig::GilbertElliott { .. }));
        assert!(((c.get)(&s) - 2.0).abs() < 1e-9);
        (c.set)(&mut s, 0.0);
        assert_eq!(s.uplink.loss, LossConfig::None);
    }

    #[test]
    fn format_value_is_short() {
        assert_eq!(format_value(6000.0), "6000");
        assert_eq!(format_value(0.125), "0.125");
        assert_eq!(format_value(33.3333), "33.33");
        assert_eq!(format_value(f64::NAN), "n/a");
    }
}
