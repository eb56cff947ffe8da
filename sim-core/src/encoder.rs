//! Encoder model: GOP structure, I/P/B frame sizes, QP→bits, complexity, scene cuts, pipeline
//! delay, and the rate control that ties them together (MODELS.md §B4, §B5, §C).
//!
//! [`Encoder`] is an endless, deterministic stream of [`EncodedFrame`]s in the order an x264-like
//! encoder emits them (decode order). [`AudioEncoder`] is the matching AAC-like audio stream.
//!
//! # The video model, step by step
//!
//! **GOP structure** \[X1\]. Frame 0 is an IDR; every `keyframe_interval_frames` frames after the
//! last IDR comes the next one. Between IDRs the frames form *mini-GOPs* of `bframes` B-frames
//! followed by their reference P-frame, in display (capture) order `I B B P B B P …`. GOPs are
//! closed, as with x264's default: no B-frame refers across an IDR, so a mini-GOP that would
//! run into the next IDR is shortened and its last frame is a P (keyint 8, bframes 2:
//! `I B B P B B P P | I …`). The encoder emits each reference before the B-frames that precede
//! it in display order (decode order `I P B B P B B P | I …`). With `zerolatency` there are no
//! B-frames.
//!
//! **Scene cuts.** Cuts arrive as a Poisson process at `scene_cuts_per_min`; a cut at time t
//! lands on the first frame captured at or after t. With `scenecut` on the cut frame becomes an
//! IDR and the keyint count restarts there (x264 `keyint` + `scenecut`; the mini-GOP before it is
//! shortened). With `scenecut` off the frame keeps its P/B type but costs as much as an I-frame
//! (a spike). Either way the content complexity jumps (below).
//!
//! **Complexity** c_n, per frame in display order: a log-normal AR(1) (MODELS.md §B4),
//! `ln c_n = ρ·ln c_{n−1} + σ·√(1−ρ²)·ε_n`, ε_n ~ N(0,1), so ln c is stationary N(0, σ²), and
//! `c_n = exp(ln c_n − σ²/2)` so that E\[c\] = 1. A scene cut replaces ln c_n with a fresh draw
//! from N(0, σ²): the new scene's complexity is unrelated to the old one's.
//!
//! **Frame size at the reference QP** (bits), MODELS.md §B4 \[TM5\]:
//! `b_ref,n = (R/f)·k_n·c_n / E\[k\]`, with R = `bitrate_kbps` (the nominal rate: what the content
//! costs at QP = `qp`), f the frame rate, k_n the type weight from `size_ratio` (I:P:B ≈ 5.3:2:1
//! \[TM5\]; a scene-cut spike uses k_I) and E\[k\] the mean weight over the GOP pattern, including the
//! expected effect of scene cuts, so that the long-run mean is R/f.
//!
//! **QP → bits** (MODELS.md §A2) [X1, F1]: `b_n = b_ref,n · 2^(−(QP_n − qp)/6)`: +6 QP halves the frame.
//! x264's I/P/B QP offsets (ipratio, pbratio) are folded into `size_ratio`; [`EncodedFrame::qp`]
//! is the frame-level QP of the rate controller.
//!
//! **Rate control** (per frame, in decode order; [`RateControlMode`], MODELS.md §B1–B5).
//! QP_n comes from the mode, is limited to ±`qp_step` from the previous frame and to
//! [`qp_min`, `qp_max`], then the frame is sized and passed through the VBV ([`VbvBuffer`], fed
//! at each frame's DTS). F* = `vbv_target_fullness`·B (at least one frame, R_max/f) is the
//! fullness the controllers steer toward, measured just before a frame's removal.
//! * **CBR**: VBV with R_max = bitrate, B = `vbv_buffer_kbits` (at least one frame, as x264
//!   forces), F₀ = `vbv_init`·B. A [`QpController`] on e = (F* − F)/B, with F the fullness
//!   before the top clip (so filler, i.e. under-spending, also pulls QP down), gain K =
//!   `qp_gain` (capped so the per-frame loop gain stays ≤ 1) and an integral term tuned for
//!   critical damping. Filler (when `filler`) is written whenever the buffer would overflow, so
//!   the channel carries exactly R. Over T the output is then R·T + F₀ − F_T, within B/T of
//!   R, and within |F₀ − F*|/T + noise once settled (F* = F₀ by default).
//! * **ABR**: a [`QpController`] on the cumulative error e = (Σb − n·R/f)/B_abr with
//!   B_abr = 2 s × R (x264's ABR buffer at rate tolerance 1); a VBV (clip, no filler) only when
//!   both `vbv_buffer_kbits` and `max_rate_kbps` are set.
//! * **VBR**: ABR plus a VBV at `max_rate` (clip, no filler).
//! * **Capped CRF**: QP = `crf`; frames scale from the nominal rate by 2^(−(crf − qp)/6); with a
//!   VBV (`vbv_buffer_kbits` > 0, at `max_rate`, clip) a second controller may only *raise* QP
//!   when the buffer runs below F*.
//! * **CQP**: QP = `qp`, no VBV.
//!
//! In every VBV mode, a frame that would still underflow is shrunk to fit the buffer by raising
//! its own QP (x264 re-encodes it at a higher QP); it is flagged `vbv_underflow` only when even
//! `qp_max` cannot make it fit.
//!
//! # Timing
//!
//! Frame d (display index) is captured at wall time d/f. x264's encoder holds back
//! D = max(bframes, rc-lookahead) + (frame threads − 1) frames \[X1\] (0 with `zerolatency`, which
//! uses sliced threads): the frame it emits in decode position n comes out when input picture
//! n + D arrives, i.e.
//!
//! `encoded_at_n = (n + D + capture_delay_frames)/f + encode_time`.
//!
//! This is non-decreasing in decode order by construction. Because D ≥ bframes, a reference P
//! that the encoder emits before the B-frames preceding it in display order has already been
//! captured when it comes out (a mini-GOP starting at display d emits its P, display
//! d + m − 1 ≤ d + bframes, at decode position d). Each B-frame comes out one frame later than
//! its own position (decode position d + 1 for display d): B-frames wait for their future
//! reference, and their capture-to-output delay is D + 1 frames; a P's is D − (m − 1) ≥
//! D − bframes for a mini-GOP of m frames; an IDR's is D.
//!
//! Stream timestamps follow OBS, which shifts all timestamps so that the first DTS is 0:
//! `dts_n = n/f` and `pts = (d + s)/f` with s = 1 when B-frames are on (0 otherwise), so
//! dts ≤ pts for every frame (composition offset pts − dts is s frames for the IDR, s + m − 1
//! for a mini-GOP's P and 0 for its B-frames). Showing a frame at pts + constant therefore
//! needs the player to sit D frames (plus capture and encode) behind capture:
//! [`PipelineDelay::total`].
//!
//! # Cost
//!
//! No allocation after [`Encoder::new`]; per frame one normal draw (polar method), one `exp`,
//! a few multiplications and the VBV step: about 80 ns per frame in release builds (one hour
//! at 60 fps, 216,000 frames, in under 20 ms).

use crate::check::Checker;
use crate::rate_control::{
    clamp_f64, QpController, RateControlConfig, RateControlMode, VbvBuffer, VbvOverflow,
};
use crate::rng::{streams, SimRng};
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// H.264 picture type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameType {
    I,
    P,
    B,
}

/// One coded video frame, as the encoder outputs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedFrame {
    /// Order the encoder emits frames (= order they are sent), from 0.
    pub decode_index: u64,
    /// Capture order, from 0.
    pub display_index: u64,
    pub frame_type: FrameType,
    /// IDR: a player can start here.
    pub keyframe: bool,
    /// The first frame of a new scene.
    pub scene_cut: bool,
    /// Coded size in bytes, including `filler_bytes`.
    pub size_bytes: u32,
    /// Filler data written with this frame (CBR with filler), in bytes.
    pub filler_bytes: u32,
    /// Frame-level QP the frame was coded at.
    pub qp: f64,
    /// Presentation timestamp in stream time: (display_index + s)/f, s = 1 with B-frames (see
    /// the module documentation).
    pub pts: Micros,
    /// Decode timestamp in stream time: decode_index/f. Non-decreasing in decode order,
    /// `dts ≤ pts` (FLV timestamp = dts, composition offset = pts − dts).
    pub dts: Micros,
    /// Wall time the picture was captured: display_index/f.
    pub captured_at: Micros,
    /// Wall time the encoder outputs the frame (capture delay + lookahead/B-frame reordering +
    /// frame threads + encode time); non-decreasing in decode order.
    pub encoded_at: Micros,
    /// VBV fullness after this frame, in bits (0 when there is no VBV).
    pub vbv_fullness_bits: f64,
    /// The frame underflowed the VBV even at `qp_max`.
    pub vbv_underflow: bool,
}

/// The encoder's structural delay and its causes (MODELS.md §C, \[X1\]).
///
/// Frames of delay D = `lookahead_frames` + `reorder_frames` + `thread_frames`
/// = max(bframes, rc-lookahead) + (threads − 1), 0 with zerolatency;
/// `total` = `capture` + D/f + `encode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDelay {
    /// Capture and compositing before the encoder sees a picture (`capture_delay_frames`/f).
    pub capture: Micros,
    /// x264 `rc-lookahead` frames held for frame-type and rate decisions.
    pub lookahead_frames: u32,
    /// B-frame reordering delay not already hidden in the lookahead: max(0, bframes − lookahead).
    pub reorder_frames: u32,
    /// Frame threads − 1 (x264 frame-threading; 0 with zerolatency's sliced threads).
    pub thread_frames: u32,
    /// Time to encode one frame (`encode_time_ms`).
    pub encode: Micros,
    /// Capture-to-output delay of the pipeline: capture + D/f + encode.
    pub total: Micros,
}

impl PipelineDelay {
    /// D: the frames the encoder holds back.
    pub fn frames(&self) -> u32 {
        self.lookahead_frames
            .saturating_add(self.reorder_frames)
            .saturating_add(self.thread_frames)
    }
}

/// The most B-frames the model supports (the validated maximum).
const MAX_BFRAMES: u32 = 16;
const MAX_MINIGOP: usize = MAX_BFRAMES as usize + 1;

/// x264's ABR buffer: 2 × rate tolerance (1.0) × bitrate, in seconds of bitrate.
const ABR_BUFFER_SECONDS: f64 = 2.0;

/// A frame planned in display order, waiting to be coded.
#[derive(Debug, Clone, Copy)]
struct Planned {
    display_index: u64,
    frame_type: FrameType,
    keyframe: bool,
    scene_cut: bool,
    /// ln c − σ²/2 (so the frame costs exp of this times its nominal size).
    log_complexity: f64,
}

const EMPTY_PLANNED: Planned = Planned {
    display_index: 0,
    frame_type: FrameType::P,
    keyframe: false,
    scene_cut: false,
    log_complexity: 0.0,
};

/// Microseconds, rounded half up; negative and NaN give 0, huge values saturate. (Cheaper
/// than `libm::round` and just as deterministic: one IEEE addition and a truncating cast.)
#[inline]
fn micros(us: f64) -> Micros {
    if us > 0.0 {
        if us < 1.8e19 {
            Micros((us + 0.5) as u64)
        } else {
            Micros::MAX
        }
    } else {
        Micros::ZERO
    }
}

/// Whole bytes in `bits`, rounded half up (`floor` = false) or down; NaN and negatives give
/// 0, huge values saturate at `u32::MAX`.
#[inline]
fn whole_bytes(bits: f64, floor: bool) -> u32 {
    let bytes = bits * 0.125 + if floor { 0.0 } else { 0.5 };
    bytes as u32
}

/// A standard normal by Marsaglia's polar method (no sin/cos: about twice as fast as
/// Box–Muller with `libm`), drawing uniforms from `rng`; `spare` keeps the pair's second value.
#[inline]
fn polar_normal(rng: &mut SimRng, spare: &mut Option<f64>) -> f64 {
    if let Some(z) = spare.take() {
        return z;
    }
    loop {
        let u = 2.0 * rng.uniform() - 1.0;
        let v = 2.0 * rng.uniform() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            let m = libm::sqrt(-2.0 * libm::log(s) / s);
            *spare = Some(v * m);
            return u * m;
        }
    }
}

/// The counts of P and B frames in the non-I part of a closed GOP of `keyint` frames.
fn gop_counts(keyint: u64, bframes: u64) -> (u64, u64) {
    let rest = keyint.saturating_sub(1);
    let m = bframes + 1;
    let full = rest / m;
    let tail = rest % m;
    let p = full + u64::from(tail > 0);
    let b = full * bframes + tail.saturating_sub(1);
    (p, b)
}

/// The video encoder model. See the module documentation for the model and its sources.
#[derive(Debug, Clone)]
pub struct Encoder {
    // --- structure and timing ---
    fps: f64,
    /// 10⁶/f: microseconds per frame.
    us_per_frame: f64,
    keyint: u64,
    bframes: u64,
    /// pts shift s in frames (1 with B-frames).
    pts_shift: u64,
    /// (D + capture_delay_frames), in frames, and the encode time in µs.
    output_delay_frames: f64,
    encode_us: f64,
    pipeline: PipelineDelay,
    scenecut: bool,
    // --- sizes ---
    /// Nominal bits at the reference QP for weight I, P, B: (R/f)·k/E\[k\].
    nominal_bits: [f64; 3],
    mean_weight: f64,
    sigma: f64,
    rho: f64,
    innovation: f64,
    log_mean_shift: f64,
    // --- rate control ---
    mode: RateControlMode,
    qp_ref: f64,
    qp_min: f64,
    qp_max: f64,
    qp_step: f64,
    /// The mode's fixed QP (CRF, CQP) or the rate controller's base.
    fixed_qp: f64,
    last_qp: f64,
    rate_ctl: Option<QpController>,
    vbv_ctl: Option<QpController>,
    vbv: Option<VbvBuffer>,
    vbv_target_bits: f64,
    frame_bits: f64,
    abr_buffer_bits: f64,
    total_bits: f64,
    filler_carry_bits: f64,
    // --- random state ---
    rng_complexity: SimRng,
    spare_normal: Option<f64>,
    rng_cuts: SimRng,
    ln_c: f64,
    cut_rate_per_s: f64,
    cut_time_s: f64,
    next_cut_frame: u64,
    // --- planning ---
    next_display: u64,
    last_idr: u64,
    pending: [Planned; MAX_MINIGOP],
    pending_len: usize,
    pending_pos: usize,
    decode_index: u64,
}

impl Encoder {
    /// An encoder for `enc` and `rc` whose randomness comes from `seed` (streams
    /// [`streams::ENCODER_COMPLEXITY`] and [`streams::ENCODER_SCENE_CUTS`]). Never panics; values
    /// outside the validated ranges are clamped to something usable.
    pub fn new(enc: &EncoderConfig, rc: &RateControlConfig, seed: u64) -> Self {
        let fps = if enc.fps.is_finite() && enc.fps > 0.0 {
            enc.fps
        } else {
            30.0
        };
        let keyint = u64::from(enc.keyframe_interval_frames.max(1));
        let zl = enc.zerolatency;
        let bframes = if zl { 0 } else { enc.bframes.min(MAX_BFRAMES) };
        let lookahead = if zl { 0 } else { enc.lookahead_frames };
        let thread_frames = if zl { 0 } else { enc.threads.max(1) - 1 };
        let reorder_frames = bframes.saturating_sub(lookahead);
        let capture_frames = if enc.capture_delay_frames.is_finite() {
            enc.capture_delay_frames.max(0.0)
        } else {
            0.0
        };
        let encode_s = if enc.encode_time_ms.is_finite() {
            enc.encode_time_ms.max(0.0) / 1e3
        } else {
            0.0
        };
        let delay_frames = lookahead
            .saturating_add(reorder_frames)
            .saturating_add(thread_frames);
        let output_delay_frames = f64::from(delay_frames) + capture_frames;
        let us_per_frame = 1e6 / fps;
        let encode_us = encode_s * 1e6;
        let pipeline = PipelineDelay {
            capture: micros(capture_frames * us_per_frame),
            lookahead_frames: lookahead,
            reorder_frames,
            thread_frames,
            encode: micros(encode_us),
            total: micros(output_delay_frames * us_per_frame + encode_us),
        };

        // Type weights and their mean over the GOP pattern (with scene cuts).
        let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 1.0 };
        let (k_i, k_p, k_b) = (
            weight(enc.size_ratio.i),
            weight(enc.size_ratio.p),
            weight(enc.size_ratio.b),
        );
        let cut_rate_per_s = if enc.scene_cuts_per_min.is_finite() && enc.scene_cuts_per_min > 0.0 {
            enc.scene_cuts_per_min / 60.0
        } else {
            0.0
        };
        let mean_weight = {
            let (n_p, n_b) = gop_counts(keyint, u64::from(bframes));
            let k_rest = if keyint > 1 {
                (n_p as f64 * k_p + n_b as f64 * k_b) / (keyint - 1) as f64
            } else {
                k_i
            };
            // Probability that a given frame carries a scene cut.
            let p = 1.0 - libm::exp(-cut_rate_per_s / fps);
            let k = keyint as f64;
            if p <= 0.0 {
                (k_i + (k - 1.0) * k_rest) / k
            } else if enc.scenecut {
                // GOP length = min(keyint, geometric): E[L] = (1 − (1−p)^K)/p.
                let mean_len = (1.0 - libm::pow(1.0 - p, k)) / p;
                let i_share = clamp_f64(1.0 / mean_len, 0.0, 1.0);
                i_share * k_i + (1.0 - i_share) * k_rest
            } else {
                (k_i + (k - 1.0) * (k_rest + p * (k_i - k_rest))) / k
            }
        };

        let bitrate_bps = if rc.bitrate_kbps.is_finite() && rc.bitrate_kbps > 0.0 {
            rc.bitrate_kbps * 1e3
        } else {
            0.0
        };
        let frame_bits = bitrate_bps / fps;
        let nominal_bits = [
            frame_bits * k_i / mean_weight,
            frame_bits * k_p / mean_weight,
            frame_bits * k_b / mean_weight,
        ];

        let sigma = if enc.complexity_sigma.is_finite() {
            enc.complexity_sigma.max(0.0)
        } else {
            0.0
        };
        let rho = if enc.complexity_rho.is_finite() {
            clamp_f64(enc.complexity_rho, 0.0, 0.999_999)
        } else {
            0.0
        };
        let innovation = sigma * libm::sqrt(1.0 - rho * rho);
        let mut rng_complexity = SimRng::new(seed, streams::ENCODER_COMPLEXITY);
        let mut spare_normal = None;
        let ln_c = if sigma > 0.0 {
            sigma * polar_normal(&mut rng_complexity, &mut spare_normal)
        } else {
            0.0
        };

        // Rate control.
        let qp_min = if rc.qp_min.is_finite() {
            rc.qp_min
        } else {
            0.0
        };
        let qp_max = if rc.qp_max.is_finite() {
            rc.qp_max.max(qp_min)
        } else {
            51.0_f64.max(qp_min)
        };
        let qp_ref = if rc.qp.is_finite() { rc.qp } else { 23.0 };
        let crf = if rc.crf.is_finite() { rc.crf } else { qp_ref };
        let qp_step = if rc.qp_step.is_nan() {
            0.0
        } else {
            rc.qp_step.max(0.0)
        };
        let gain = if rc.qp_gain.is_finite() {
            rc.qp_gain.max(0.0)
        } else {
            0.0
        };
        let init = if rc.vbv_init.is_finite() {
            rc.vbv_init
        } else {
            0.9
        };
        let buffer_bits = if rc.vbv_buffer_kbits.is_finite() && rc.vbv_buffer_kbits > 0.0 {
            rc.vbv_buffer_kbits * 1e3
        } else {
            0.0
        };
        let max_rate_bps = {
            let m = rc.max_rate_bps();
            if m.is_finite() && m > 0.0 {
                m
            } else {
                bitrate_bps
            }
        };
        let explicit_max_rate = rc.max_rate_kbps.is_finite() && rc.max_rate_kbps > 0.0;
        let mode = rc.mode;
        // (max rate, overflow) of the VBV, if this mode has one.
        let vbv_spec = match mode {
            RateControlMode::Cbr => Some((
                bitrate_bps,
                if rc.filler {
                    VbvOverflow::Filler
                } else {
                    VbvOverflow::Clip
                },
            )),
            RateControlMode::Vbr | RateControlMode::CappedCrf => {
                Some((max_rate_bps, VbvOverflow::Clip))
            }
            RateControlMode::Abr if explicit_max_rate => Some((max_rate_bps, VbvOverflow::Clip)),
            RateControlMode::Abr | RateControlMode::Cqp => None,
        };
        let vbv = match vbv_spec {
            Some((rate, overflow)) if buffer_bits > 0.0 && rate > 0.0 => {
                // x264 refuses a VBV smaller than one frame at max rate.
                Some(VbvBuffer::new(
                    buffer_bits.max(rate / fps),
                    rate,
                    init,
                    overflow,
                ))
            }
            _ => None,
        };
        let target = if rc.vbv_target_fullness.is_finite() {
            clamp_f64(rc.vbv_target_fullness, 0.0, 1.0)
        } else {
            0.9
        };
        let vbv_target_bits = vbv.as_ref().map_or(0.0, |v| {
            (target * v.buffer_bits())
                .max(v.max_rate_bps() / fps)
                .min(v.buffer_bits())
        });
        let abr_buffer_bits = ABR_BUFFER_SECONDS * bitrate_bps;
        let controller = |base: f64, lo: f64, hi: f64, frame: f64, buffer: f64| {
            let a = QpController::loop_sensitivity(frame, buffer);
            let k = QpController::stable_gain(gain, a);
            QpController::new(
                base,
                k,
                QpController::critical_integral_gain(k, a),
                f64::INFINITY,
                lo,
                hi,
            )
        };
        let vbv_controller = |v: &VbvBuffer, base: f64| {
            controller(
                0.0,
                0.0,
                (qp_max - base).max(0.0),
                v.max_rate_bps() / fps,
                v.buffer_bits(),
            )
            .with_integral_range(0.0, f64::INFINITY)
        };
        let (fixed_qp, rate_ctl, vbv_ctl) = match mode {
            RateControlMode::Cbr => match &vbv {
                Some(v) => (
                    qp_ref,
                    Some(controller(
                        qp_ref,
                        qp_min,
                        qp_max,
                        v.max_rate_bps() / fps,
                        v.buffer_bits(),
                    )),
                    None,
                ),
                None => (
                    qp_ref,
                    Some(controller(
                        qp_ref,
                        qp_min,
                        qp_max,
                        frame_bits,
                        abr_buffer_bits,
                    )),
                    None,
                ),
            },
            RateControlMode::Abr | RateControlMode::Vbr => (
                qp_ref,
                Some(controller(
                    qp_ref,
                    qp_min,
                    qp_max,
                    frame_bits,
                    abr_buffer_bits,
                )),
                vbv.as_ref().map(|v| vbv_controller(v, qp_ref)),
            ),
            RateControlMode::CappedCrf => {
                let base = clamp_f64(crf, qp_min, qp_max);
                (base, None, vbv.as_ref().map(|v| vbv_controller(v, base)))
            }
            RateControlMode::Cqp => (qp_ref, None, None),
        };
        let last_qp = match mode {
            RateControlMode::Cqp => qp_ref,
            _ => clamp_f64(fixed_qp, qp_min, qp_max),
        };

        let mut e = Encoder {
            fps,
            us_per_frame,
            keyint,
            bframes: u64::from(bframes),
            pts_shift: u64::from(bframes > 0),
            output_delay_frames,
            encode_us,
            pipeline,
            scenecut: enc.scenecut,
            nominal_bits,
            mean_weight,
            sigma,
            rho,
            innovation,
            log_mean_shift: sigma * sigma / 2.0,
            mode,
            qp_ref,
            qp_min,
            qp_max,
            qp_step,
            fixed_qp,
            last_qp,
            rate_ctl,
            vbv_ctl,
            vbv,
            vbv_target_bits,
            frame_bits,
            abr_buffer_bits,
            total_bits: 0.0,
            filler_carry_bits: 0.0,
            rng_complexity,
            spare_normal,
            rng_cuts: SimRng::new(seed, streams::ENCODER_SCENE_CUTS),
            ln_c,
            cut_rate_per_s,
            cut_time_s: 0.0,
            next_cut_frame: u64::MAX,
            next_display: 0,
            last_idr: 0,
            pending: [EMPTY_PLANNED; MAX_MINIGOP],
            pending_len: 0,
            pending_pos: 0,
            decode_index: 0,
        };
        e.advance_scene_cut();
        e
    }

    /// Draws the next scene cut after the current one (Poisson arrivals in capture time).
    fn advance_scene_cut(&mut self) {
        if self.cut_rate_per_s <= 0.0 {
            self.next_cut_frame = u64::MAX;
            return;
        }
        let previous = self.next_cut_frame;
        // Several cuts within one frame period are one cut.
        for _ in 0..10_000 {
            self.cut_time_s += self.rng_cuts.exponential(self.cut_rate_per_s);
            let f = libm::ceil(self.cut_time_s * self.fps);
            let frame = if f.is_finite() && f < 1.8e19 {
                f as u64
            } else {
                u64::MAX
            };
            if previous == u64::MAX || frame > previous {
                self.next_cut_frame = frame;
                return;
            }
        }
        self.next_cut_frame = previous.saturating_add(1);
    }

    /// ln c − σ²/2 of the next frame in display order (and the scene-cut jump).
    #[inline]
    fn next_log_complexity(&mut self, scene_cut: bool) -> f64 {
        if self.sigma <= 0.0 {
            return 0.0;
        }
        let z = polar_normal(&mut self.rng_complexity, &mut self.spare_normal);
        self.ln_c = if scene_cut {
            self.sigma * z
        } else {
            self.rho * self.ln_c + self.innovation * z
        };
        self.ln_c - self.log_mean_shift
    }

    /// Wall/stream time of `frames` frame periods.
    #[inline]
    fn at_frame(&self, frames: f64) -> Micros {
        micros(frames * self.us_per_frame)
    }

    /// Plans the next mini-GOP (or lone IDR) in display order and queues it in decode order.
    fn plan(&mut self) {
        let d = self.next_display;
        let mut next_idr = self.last_idr.saturating_add(self.keyint);
        if self.scenecut {
            next_idr = next_idr.min(self.next_cut_frame);
        }
        let len;
        if d == 0 || d >= next_idr {
            let scene_cut = d != 0 && d == self.next_cut_frame;
            if scene_cut {
                self.advance_scene_cut();
            }
            self.pending[0] = Planned {
                display_index: d,
                frame_type: FrameType::I,
                keyframe: true,
                scene_cut,
                log_complexity: self.next_log_complexity(scene_cut),
            };
            self.last_idr = d;
            len = 1;
        } else {
            len = (self.bframes + 1).min(next_idr - d) as usize;
            // Drawn in display order, stored in decode order: the reference (last in display
            // order) first, then the B-frames.
            for i in 0..len {
                let di = d + i as u64;
                let scene_cut = di == self.next_cut_frame;
                if scene_cut {
                    self.advance_scene_cut();
                }
                let is_ref = i + 1 == len;
                let frame = Planned {
                    display_index: di,
                    frame_type: if is_ref { FrameType::P } else { FrameType::B },
                    keyframe: false,
                    scene_cut,
                    log_complexity: self.next_log_complexity(scene_cut),
                };
                self.pending[if is_ref { 0 } else { i + 1 }] = frame;
            }
        }
        self.pending_len = len;
        self.pending_pos = 0;
        self.next_display = d + len as u64;
    }

    /// The next frame in decode order (the stream is endless).
    pub fn next_frame(&mut self) -> EncodedFrame {
        if self.pending_pos >= self.pending_len {
            self.plan();
        }
        let p = self.pending[self.pending_pos];
        self.pending_pos += 1;
        let n = self.decode_index;
        self.decode_index += 1;

        let dts = self.at_frame(n as f64);
        let pts = self.at_frame(p.display_index.saturating_add(self.pts_shift) as f64);
        let captured_at = self.at_frame(p.display_index as f64);
        let encoded_at =
            micros((n as f64 + self.output_delay_frames) * self.us_per_frame + self.encode_us);

        // Nominal size at the reference QP.
        let kind = if p.scene_cut {
            0
        } else {
            match p.frame_type {
                FrameType::I => 0,
                FrameType::P => 1,
                FrameType::B => 2,
            }
        };
        let nominal = self.nominal_bits[kind];

        // QP from the mode.
        // (fullness the frame may use, unclipped fullness the controllers steer on)
        let fullness = self
            .vbv
            .as_ref()
            .map(|v| (v.fullness_at(dts), v.unclipped_fullness_at(dts)));
        let qp_wanted = match self.mode {
            RateControlMode::Cqp => self.qp_ref,
            _ => {
                let mut qp = match &mut self.rate_ctl {
                    Some(ctl) => {
                        let error = match (self.mode, fullness, &self.vbv) {
                            (RateControlMode::Cbr, Some((_, level)), Some(v)) => {
                                (self.vbv_target_bits - level) / v.buffer_bits()
                            }
                            _ => {
                                (self.total_bits - n as f64 * self.frame_bits)
                                    / self.abr_buffer_bits
                            }
                        };
                        ctl.next_qp(error)
                    }
                    None => self.fixed_qp,
                };
                if let (Some(ctl), Some((_, level)), Some(v)) =
                    (&mut self.vbv_ctl, fullness, &self.vbv)
                {
                    qp += ctl.next_qp((self.vbv_target_bits - level) / v.buffer_bits());
                }
                let qp = clamp_f64(qp, self.last_qp - self.qp_step, self.last_qp + self.qp_step);
                clamp_f64(qp, self.qp_min, self.qp_max)
            }
        };
        self.last_qp = qp_wanted;

        // b = b_nominal · c · 2^(−(QP − qp)/6), as one exp.
        let bits = nominal
            * libm::exp(
                p.log_complexity - (qp_wanted - self.qp_ref) * (core::f64::consts::LN_2 / 6.0),
            );
        let mut qp = qp_wanted;
        let mut coded_bytes = f64::from(whole_bytes(bits, false).max(1));
        let (vbv_fullness_bits, vbv_underflow, filler_bytes) = match &mut self.vbv {
            None => (0.0, false, 0u32),
            Some(vbv) => {
                let available = fullness.map_or(0.0, |(f, _)| f);
                let max_bytes = f64::from(whole_bytes(available, true));
                if coded_bytes > max_bytes {
                    // Re-encode at the QP that makes it fit, if qp_max allows.
                    let needed = if max_bytes >= 1.0 {
                        qp + 6.0 * libm::log2(coded_bytes / max_bytes)
                    } else {
                        f64::INFINITY
                    };
                    if needed <= self.qp_max {
                        qp = needed;
                        coded_bytes = max_bytes;
                    } else if qp < self.qp_max {
                        let at_max = bits * libm::exp2(-(self.qp_max - qp) / 6.0);
                        coded_bytes = f64::from(whole_bytes(at_max, false).max(1));
                        qp = self.qp_max;
                    }
                }
                let step = vbv.on_frame(dts, coded_bytes * 8.0);
                let filler_bits = step.filler_bits + self.filler_carry_bits;
                let filler_bytes = f64::from(whole_bytes(filler_bits, true));
                self.filler_carry_bits = filler_bits - filler_bytes * 8.0;
                (
                    step.fullness_after_bits,
                    step.underflow,
                    filler_bytes as u32,
                )
            }
        };
        let coded = coded_bytes as u32;
        let size_bytes = coded.saturating_add(filler_bytes);
        self.total_bits += f64::from(size_bytes) * 8.0;

        EncodedFrame {
            decode_index: n,
            display_index: p.display_index,
            frame_type: p.frame_type,
            keyframe: p.keyframe,
            scene_cut: p.scene_cut,
            size_bytes,
            filler_bytes: size_bytes - coded,
            qp,
            pts,
            dts,
            captured_at,
            encoded_at,
            vbv_fullness_bits,
            vbv_underflow,
        }
    }

    /// The structural delay, with its causes.
    pub fn pipeline_delay(&self) -> PipelineDelay {
        self.pipeline.clone()
    }

    /// The VBV size in bits (0 when there is no VBV).
    pub fn vbv_buffer_bits(&self) -> f64 {
        self.vbv.as_ref().map_or(0.0, VbvBuffer::buffer_bits)
    }

    /// The VBV, when the mode has one.
    pub fn vbv(&self) -> Option<&VbvBuffer> {
        self.vbv.as_ref()
    }

    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The PTS shift s in frames (1 with B-frames): pts = (display_index + s)/f.
    pub fn pts_shift_frames(&self) -> u64 {
        self.pts_shift
    }

    /// Frames emitted so far.
    pub fn frames_emitted(&self) -> u64 {
        self.decode_index
    }

    /// Bits emitted so far (coded + filler).
    pub fn total_bits(&self) -> f64 {
        self.total_bits
    }

    /// E\[k\]: the mean type weight the nominal sizes are normalised by.
    pub fn mean_type_weight(&self) -> f64 {
        self.mean_weight
    }
}

// ---------------------------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------------------------

/// One coded audio frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioFrame {
    pub index: u64,
    /// Presentation (= decode) timestamp: index·samples_per_frame/sample_rate, rounded to the µs.
    pub pts: Micros,
    pub size_bytes: u32,
    /// Wall time of the frame's first sample (= pts).
    pub captured_at: Micros,
    /// Wall time the frame is coded: when its last sample has been captured (pts of the next
    /// frame).
    pub encoded_at: Micros,
}

/// A constant-bitrate audio encoder (AAC-LC-like), MODELS.md §A3.
///
/// Frame k covers samples [k·N, (k+1)·N) with N = `samples_per_frame` at `sample_rate_hz`: its
/// pts is round(k·N·10⁶/sr) µs, computed from the sample count so there is no drift (AAC
/// 1024 @ 48 kHz = 21.333 ms). Sizes carry the fractional byte: the bytes of frames 0..k sum
/// to ⌊R·k·N/(8·sr)⌋, so the long-run rate is R exactly. A frame is coded once its last sample is
/// in: `encoded_at` = `captured_at` + one frame duration.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    samples_per_frame: u64,
    sample_rate: u64,
    bitrate_bps: f64,
    index: u64,
    bytes_so_far: u64,
}

impl AudioEncoder {
    pub fn new(cfg: &AudioConfig) -> Self {
        let bitrate_bps = if cfg.bitrate_kbps.is_finite() && cfg.bitrate_kbps > 0.0 {
            cfg.bitrate_kbps * 1e3
        } else {
            0.0
        };
        AudioEncoder {
            samples_per_frame: u64::from(cfg.samples_per_frame.max(1)),
            sample_rate: u64::from(cfg.sample_rate_hz.max(1)),
            bitrate_bps,
            index: 0,
            bytes_so_far: 0,
        }
    }

    /// Start of frame `k` in µs.
    fn time_of(&self, k: u64) -> Micros {
        let num = u128::from(k) * u128::from(self.samples_per_frame) * 1_000_000
            + u128::from(self.sample_rate / 2);
        Micros(u64::try_from(num / u128::from(self.sample_rate)).unwrap_or(u64::MAX))
    }

    /// Bytes of frames 0..k together.
    fn bytes_until(&self, k: u64) -> u64 {
        let samples = k as f64 * self.samples_per_frame as f64;
        let bytes = libm::floor(self.bitrate_bps * samples / (8.0 * self.sample_rate as f64));
        if bytes.is_finite() && bytes > 0.0 {
            bytes as u64
        } else {
            0
        }
    }

    pub fn next_frame(&mut self) -> AudioFrame {
        let k = self.index;
        self.index += 1;
        let total = self.bytes_until(k + 1).max(self.bytes_so_far);
        let size = total - self.bytes_so_far;
        self.bytes_so_far = total;
        let pts = self.time_of(k);
        AudioFrame {
            index: k,
            pts,
            size_bytes: u32::try_from(size).unwrap_or(u32::MAX),
            captured_at: pts,
            encoded_at: self.time_of(k + 1),
        }
    }

    /// Nominal frame duration, rounded to the µs (frame timestamps themselves do not drift).
    pub fn frame_duration(&self) -> Micros {
        Micros::from_secs_f64(self.samples_per_frame as f64 / self.sample_rate as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Relative sizes of I, P and B frames at equal QP and complexity (MPEG-2 TM5: ≈ 5.3 : 2 : 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSizeRatio {
    pub i: f64,
    pub p: f64,
    pub b: f64,
}

impl Default for FrameSizeRatio {
    fn default() -> Self {
        FrameSizeRatio {
            i: 5.3,
            p: 2.0,
            b: 1.0,
        }
    }
}

/// Video source and encoder settings (x264 vocabulary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    pub width: u32,
    pub height: u32,
    /// Frames per second of the source and the stream.
    pub fps: f64,
    /// x264 `keyint`: frames from one IDR frame to the next (250 = x264's default).
    pub keyframe_interval_frames: u32,
    /// Consecutive B-frames between references (x264 `bframes`; 0 with zerolatency).
    pub bframes: u32,
    pub size_ratio: FrameSizeRatio,
    /// Standard deviation of ln(complexity) in the log-normal AR(1) complexity process.
    pub complexity_sigma: f64,
    /// Frame-to-frame correlation of ln(complexity), 0 ≤ ρ < 1.
    pub complexity_rho: f64,
    /// Mean scene cuts per minute (Poisson).
    pub scene_cuts_per_min: f64,
    /// x264 `scenecut` on: a cut forces an I-frame. Off (`scenecut=0`): the cut is an I-sized P-frame.
    pub scenecut: bool,
    /// x264 `rc-lookahead` in frames (veryfast: 10; default preset: 40; zerolatency: 0).
    pub lookahead_frames: u32,
    /// x264 `--tune zerolatency`: no lookahead, no B-frames, sliced threads, no frame-thread delay.
    pub zerolatency: bool,
    /// Frame threads (x264 default ≈ 1.5 × logical cores); each adds one frame of delay.
    pub threads: u32,
    /// Wall time to encode one frame once its turn comes, in ms.
    pub encode_time_ms: f64,
    /// Capture + compositing delay before the encoder sees a frame, in frame periods (1–2).
    pub capture_delay_frames: f64,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            width: 1920,
            height: 1080,
            fps: 30.0,
            keyframe_interval_frames: 250,
            bframes: 3,
            size_ratio: FrameSizeRatio::default(),
            complexity_sigma: 0.15,
            complexity_rho: 0.9,
            scene_cuts_per_min: 2.0,
            scenecut: true,
            lookahead_frames: 10,
            zerolatency: false,
            threads: 12,
            encode_time_ms: 8.0,
            capture_delay_frames: 1.0,
        }
    }
}

impl EncoderConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.int_range("width", self.width as u64, 16, 16_384);
        c.int_range("height", self.height as u64, 16, 16_384);
        c.range("fps", self.fps, 1.0, 240.0);
        c.int_range(
            "keyframe_interval_frames",
            self.keyframe_interval_frames as u64,
            1,
            100_000,
        );
        c.int_range("bframes", self.bframes as u64, 0, 16);
        c.positive("size_ratio.i", self.size_ratio.i);
        c.positive("size_ratio.p", self.size_ratio.p);
        c.positive("size_ratio.b", self.size_ratio.b);
        c.range("complexity_sigma", self.complexity_sigma, 0.0, 2.0);
        c.range("complexity_rho", self.complexity_rho, 0.0, 0.999);
        c.range("scene_cuts_per_min", self.scene_cuts_per_min, 0.0, 600.0);
        c.int_range("lookahead_frames", self.lookahead_frames as u64, 0, 250);
        c.int_range("threads", self.threads as u64, 1, 128);
        c.range("encode_time_ms", self.encode_time_ms, 0.0, 10_000.0);
        c.range(
            "capture_delay_frames",
            self.capture_delay_frames,
            0.0,
            100.0,
        );
    }
}

/// Audio encoder settings (AAC-LC by default: 1024 samples per frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    pub enabled: bool,
    pub bitrate_kbps: f64,
    pub sample_rate_hz: u32,
    /// Samples per coded frame (AAC: 1024).
    pub samples_per_frame: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            enabled: true,
            bitrate_kbps: 160.0,
            sample_rate_hz: 48_000,
            samples_per_frame: 1024,
        }
    }
}

impl AudioConfig {
    pub fn validate(&self, c: &mut Checker) {
        if self.enabled {
            c.range("bitrate_kbps", self.bitrate_kbps, 1.0, 2_000.0);
            c.int_range("sample_rate_hz", self.sample_rate_hz as u64, 8_000, 192_000);
            c.int_range("samples_per_frame", self.samples_per_frame as u64, 64, 8192);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encoder settings with no randomness at all.
    fn still(keyint: u32, bframes: u32) -> EncoderConfig {
        EncoderConfig {
            keyframe_interval_frames: keyint,
            bframes,
            complexity_sigma: 0.0,
            scene_cuts_per_min: 0.0,
            ..Default::default()
        }
    }

    fn cqp() -> RateControlConfig {
        RateControlConfig {
            mode: RateControlMode::Cqp,
            ..Default::default()
        }
    }

    fn frames(
        enc: &EncoderConfig,
        rc: &RateControlConfig,
        seed: u64,
        n: usize,
    ) -> Vec<EncodedFrame> {
        let mut e = Encoder::new(enc, rc, seed);
        (0..n).map(|_| e.next_frame()).collect()
    }

    fn types(f: &[EncodedFrame]) -> String {
        f.iter()
            .map(|f| match f.frame_type {
                FrameType::I => 'I',
                FrameType::P => 'P',
                FrameType::B => 'B',
            })
            .collect()
    }

    #[test]
    fn gop_pattern_keyint_8_bframes_2() {
        let f = frames(&still(8, 2), &cqp(), 1, 24);
        // Decode order: each P before the B-frames it closes; closed GOPs.
        assert_eq!(types(&f), "IPBBPBBPIPBBPBBPIPBBPBBP");
        let display: Vec<u64> = f.iter().map(|f| f.display_index).collect();
        assert_eq!(
            display[..9],
            [0, 3, 1, 2, 6, 4, 5, 7, 8],
            "display indices in decode order"
        );
        // Display order.
        let mut by_display = f.clone();
        by_display.sort_by_key(|f| f.display_index);
        assert_eq!(types(&by_display), "IBBPBBPPIBBPBBPPIBBPBBPP");
        let idr: Vec<u64> = f
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.display_index)
            .collect();
        assert_eq!(idr, [0, 8, 16]);
        assert!(f
            .iter()
            .all(|f| f.keyframe == (f.frame_type == FrameType::I)));
        for (n, f) in f.iter().enumerate() {
            assert_eq!(f.decode_index, n as u64);
        }
        // keyint 9: the last mini-GOP keeps one B: I B B P B B P B P | I
        let f = frames(&still(9, 2), &cqp(), 1, 10);
        let mut d = f.clone();
        d.sort_by_key(|f| f.display_index);
        assert_eq!(types(&d), "IBBPBBPBPI");
        // No B-frames, and zerolatency.
        assert_eq!(types(&frames(&still(4, 0), &cqp(), 1, 8)), "IPPPIPPP");
        let zl = EncoderConfig {
            zerolatency: true,
            ..still(4, 3)
        };
        assert_eq!(types(&frames(&zl, &cqp(), 1, 8)), "IPPPIPPP");
        assert_eq!(types(&frames(&still(1, 3), &cqp(), 1, 4)), "IIII");
    }

    #[test]
    fn timestamps() {
        let fps = 30.0;
        let t = |k: u64| Micros::from_secs_f64(k as f64 / fps);
        let f = frames(&still(8, 2), &cqp(), 1, 16);
        // pts = (display + 1)/f with B-frames; dts = decode/f.
        for f in &f {
            assert_eq!(f.pts, t(f.display_index + 1));
            assert_eq!(f.dts, t(f.decode_index));
            assert_eq!(f.captured_at, t(f.display_index));
            assert!(f.dts <= f.pts);
        }
        // Composition offsets in frames: I 1, P 3, B 0, B 0, P 3, B 0, B 0, P 1 (shortened).
        let cts: Vec<u64> = f
            .iter()
            .map(|f| libm::round((f.pts - f.dts).0 as f64 * 30.0 / 1e6) as u64)
            .collect();
        assert_eq!(cts[..8], [1, 3, 0, 0, 3, 0, 0, 1]);
        assert!(f.windows(2).all(|w| w[0].dts < w[1].dts));
        // Without B-frames pts = dts = capture time.
        for f in frames(&still(8, 0), &cqp(), 1, 16) {
            assert_eq!(f.pts, f.dts);
            assert_eq!(f.pts, f.captured_at);
        }
    }

    #[test]
    fn pipeline_delay_veryfast_and_zerolatency() {
        // veryfast-like: rc-lookahead 10, bframes 3, 12 threads → 10 + 11 = 21 frames.
        let enc = EncoderConfig {
            lookahead_frames: 10,
            bframes: 3,
            threads: 12,
            ..Default::default()
        };
        let e = Encoder::new(&enc, &RateControlConfig::default(), 1);
        let d = e.pipeline_delay();
        assert_eq!(
            (
                d.lookahead_frames,
                d.reorder_frames,
                d.thread_frames,
                d.frames()
            ),
            (10, 0, 11, 21)
        );
        assert_eq!(d.capture, Micros(33_333));
        assert_eq!(d.encode, Micros(8_000));
        // 1 frame capture + 21 frames + 8 ms = 22/30 s + 8 ms.
        assert_eq!(d.total, Micros(733_333 + 8_000));
        // B-frames beyond the lookahead add reorder delay.
        let e = Encoder::new(
            &EncoderConfig {
                lookahead_frames: 0,
                bframes: 3,
                threads: 1,
                ..enc.clone()
            },
            &RateControlConfig::default(),
            1,
        );
        assert_eq!(e.pipeline_delay().reorder_frames, 3);
        assert_eq!(e.pipeline_delay().frames(), 3);
        // zerolatency: nothing held back.
        let zl = EncoderConfig {
            zerolatency: true,
            ..enc
        };
        let mut e = Encoder::new(&zl, &RateControlConfig::default(), 1);
        let d = e.pipeline_delay();
        assert_eq!(d.frames(), 0);
        assert_eq!(d.total, Micros(33_333 + 8_000));
        for _ in 0..100 {
            let f = e.next_frame();
            assert!((f.encoded_at.0 as i64 - (f.captured_at + d.total).0 as i64).abs() <= 1);
        }
    }

    #[test]
    fn encoded_at_is_monotonic_and_after_capture() {
        for (enc, seed) in [
            (EncoderConfig::default(), 1),
            (
                EncoderConfig {
                    bframes: 16,
                    lookahead_frames: 0,
                    threads: 1,
                    scene_cuts_per_min: 30.0,
                    ..Default::default()
                },
                2,
            ),
            (
                EncoderConfig {
                    zerolatency: true,
                    fps: 60.0,
                    ..Default::default()
                },
                3,
            ),
        ] {
            let mut e = Encoder::new(&enc, &RateControlConfig::default(), seed);
            let delay = e.pipeline_delay();
            let base = delay.capture + delay.encode;
            let mut last = Micros::ZERO;
            let mut last_dts = Micros::ZERO;
            for n in 0..3000u64 {
                let f = e.next_frame();
                assert!(f.encoded_at >= last, "frame {n}");
                assert!(f.dts >= last_dts && f.dts <= f.pts);
                // A frame never comes out before it was captured (and passed capture/encode).
                assert!(
                    f.encoded_at + Micros(1) >= f.captured_at + base,
                    "frame {n}"
                );
                // Shown at pts + total (as wall time), every frame is already out: the
                // B-frames meet that bound exactly, references with room to spare.
                assert!(f.encoded_at <= f.pts + delay.total + Micros(2), "frame {n}");
                if f.frame_type == FrameType::B {
                    assert!(f.encoded_at + Micros(2) >= f.pts + delay.total);
                }
                last = f.encoded_at;
                last_dts = f.dts;
            }
        }
    }

    #[test]
    fn qp_to_bits_halves_per_6_qp() {
        // Capped CRF without a VBV is plain CRF: QP = crf, sizes × 2^(−(crf − qp)/6).
        let crf = |crf: f64| RateControlConfig {
            mode: RateControlMode::CappedCrf,
            vbv_buffer_kbits: 0.0,
            crf,
            ..Default::default()
        };
        let enc = EncoderConfig::default();
        let a = frames(&enc, &crf(23.0), 9, 600);
        let b = frames(&enc, &crf(29.0), 9, 600);
        let c = frames(&enc, &crf(17.0), 9, 600);
        for ((a, b), c) in a.iter().zip(&b).zip(&c) {
            assert_eq!((a.qp, b.qp, c.qp), (23.0, 29.0, 17.0));
            assert!((a.size_bytes as f64 / 2.0 - b.size_bytes as f64).abs() <= 1.0);
            assert!((a.size_bytes as f64 * 2.0 - c.size_bytes as f64).abs() <= 1.0);
        }
    }

    #[test]
    fn type_sizes_follow_the_ratio_and_the_mean_is_nominal() {
        // σ = 0, no cuts, CQP: I:P:B exactly 5.3:2:1 and the mean exactly R/f.
        let enc = still(30, 2);
        let f = frames(&enc, &cqp(), 1, 3000);
        let mean = |t: FrameType| {
            let s: Vec<f64> = f
                .iter()
                .filter(|f| f.frame_type == t)
                .map(|f| f.size_bytes as f64)
                .collect();
            s.iter().sum::<f64>() / s.len() as f64
        };
        let (i, p, b) = (mean(FrameType::I), mean(FrameType::P), mean(FrameType::B));
        assert!((i / b - 5.3).abs() < 0.01, "I/B {}", i / b);
        assert!((p / b - 2.0).abs() < 0.01, "P/B {}", p / b);
        let total: f64 = f.iter().map(|f| f.size_bytes as f64 * 8.0).sum();
        let rate = total / (3000.0 / 30.0);
        assert!((rate / 6e6 - 1.0).abs() < 1e-3, "rate {rate}");
        // With σ > 0 the ratio still holds on average.
        let enc = EncoderConfig {
            complexity_sigma: 0.3,
            scene_cuts_per_min: 0.0,
            keyframe_interval_frames: 30,
            ..Default::default()
        };
        let f = frames(&enc, &cqp(), 5, 60_000);
        let mean = |t: FrameType| {
            let s: Vec<f64> = f
                .iter()
                .filter(|f| f.frame_type == t)
                .map(|f| f.size_bytes as f64)
                .collect();
            s.iter().sum::<f64>() / s.len() as f64
        };
        let (i, p, b) = (mean(FrameType::I), mean(FrameType::P), mean(FrameType::B));
        assert!((i / b / 5.3 - 1.0).abs() < 0.05, "I/B {}", i / b);
        assert!((p / b / 2.0 - 1.0).abs() < 0.05, "P/B {}", p / b);
    }

    #[test]
    fn scene_cuts() {
        let base = EncoderConfig {
            keyframe_interval_frames: 300,
            complexity_sigma: 0.0,
            scene_cuts_per_min: 20.0,
            ..Default::default()
        };
        // scenecut on: every cut is an IDR and restarts the keyint count.
        let f = frames(&base, &cqp(), 3, 18_000);
        let cuts = f.iter().filter(|f| f.scene_cut).count();
        // 10 minutes at 20/min = 200 expected.
        assert!((150..250).contains(&cuts), "{cuts} cuts");
        assert!(f.iter().filter(|f| f.scene_cut).all(|f| f.keyframe));
        let mut idr: Vec<u64> = f
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.display_index)
            .collect();
        idr.sort();
        for w in idr.windows(2) {
            assert!(w[1] - w[0] <= 300);
        }
        assert!(idr.windows(2).any(|w| w[1] - w[0] < 300));
        // scenecut off: only keyint IDRs; cuts are I-sized P/B spikes.
        let off = EncoderConfig {
            scenecut: false,
            ..base
        };
        let f = frames(&off, &cqp(), 3, 18_000);
        let idr: Vec<u64> = f
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.display_index)
            .collect();
        assert_eq!(idr, (0..60).map(|k| k * 300).collect::<Vec<_>>());
        let i_size = f[0].size_bytes;
        let spikes: Vec<&EncodedFrame> = f.iter().filter(|f| f.scene_cut && !f.keyframe).collect();
        assert!(spikes.len() > 150);
        assert!(spikes
            .iter()
            .all(|f| f.size_bytes == i_size && f.frame_type != FrameType::I));
        // The expected spikes are in the normalisation: the mean is still R/f.
        let total: f64 = f.iter().map(|f| f.size_bytes as f64 * 8.0).sum();
        assert!((total / 600.0 / 6e6 - 1.0).abs() < 0.02);
    }

    fn cbr_rate_60s(enc: &EncoderConfig, rc: &RateControlConfig, seed: u64) -> (f64, u32) {
        let mut e = Encoder::new(enc, rc, seed);
        let n = libm::round(60.0 * enc.fps) as u64;
        let mut bits = 0.0;
        let mut underflows = 0;
        for _ in 0..n {
            let f = e.next_frame();
            assert!(f.dts < Micros::from_secs(60));
            bits += f64::from(f.size_bytes) * 8.0;
            underflows += u32::from(f.vbv_underflow);
        }
        (
            bits / (n as f64 / enc.fps) / (rc.bitrate_kbps * 1e3),
            underflows,
        )
    }

    #[test]
    fn cbr_mean_rate_within_2_percent_over_60s() {
        for fps in [30.0, 60.0] {
            for seed in 0..4 {
                let enc = EncoderConfig {
                    fps,
                    ..Default::default()
                };
                let (ratio, under) = cbr_rate_60s(&enc, &RateControlConfig::default(), seed);
                assert!((ratio - 1.0).abs() < 0.02, "fps {fps} seed {seed}: {ratio}");
                assert_eq!(under, 0);
            }
        }
    }

    #[test]
    fn cbr_fills_with_filler_when_content_is_easy() {
        // qp_min = qp_max = 30: the controller cannot spend, so filler makes up the rate.
        let rc = RateControlConfig {
            qp_min: 30.0,
            qp_max: 30.0,
            ..Default::default()
        };
        let enc = EncoderConfig::default();
        let (ratio, _) = cbr_rate_60s(&enc, &rc, 1);
        assert!((ratio - 1.0).abs() < 0.02, "{ratio}");
        let f = frames(&enc, &rc, 1, 1800);
        let filler: u64 = f.iter().map(|f| u64::from(f.filler_bytes)).sum();
        let total: u64 = f.iter().map(|f| u64::from(f.size_bytes)).sum();
        // Content at QP 30 is 2^(−7/6) ≈ 45% of the rate: about half the stream is filler.
        assert!(filler as f64 > 0.45 * total as f64, "{filler} of {total}");
        // Without filler the buffer just clips and the rate falls short.
        let clip = RateControlConfig {
            filler: false,
            ..rc
        };
        let (ratio, _) = cbr_rate_60s(&enc, &clip, 1);
        assert!(ratio < 0.6, "{ratio}");
    }

    #[test]
    fn vbv_shrinks_frames_and_flags_only_real_underflow() {
        // A 2-frame VBV: I-frames (≈ 4 frames' worth) must be shrunk to fit.
        let rc = RateControlConfig {
            vbv_buffer_kbits: 400.0,
            ..Default::default()
        };
        let enc = EncoderConfig::default();
        let f = frames(&enc, &rc, 1, 3000);
        assert!(f.iter().all(|f| !f.vbv_underflow));
        let i = f.iter().find(|f| f.frame_type == FrameType::I).unwrap();
        assert!(f64::from(i.size_bytes - i.filler_bytes) * 8.0 <= 400e3);
        assert!(i.qp > 23.0);
        // qp_max too low to shrink enough: flagged.
        let rc = RateControlConfig { qp_max: 23.0, ..rc };
        let f = frames(&enc, &rc, 1, 3000);
        assert!(f.iter().any(|f| f.vbv_underflow));
        assert!(f.iter().all(|f| f.qp <= 23.0));
        // Reported fullness is within the buffer.
        let e = Encoder::new(&enc, &rc, 1);
        let b = e.vbv_buffer_bits();
        assert_eq!(b, 400e3);
        assert!(f.iter().all(|f| (0.0..=b).contains(&f.vbv_fullness_bits)));
    }

    #[test]
    fn modes_hit_their_rates() {
        let enc = EncoderConfig::default();
        let rate = |rc: &RateControlConfig, n: usize| {
            let f = frames(&enc, rc, 11, n);
            f.iter().map(|f| f64::from(f.size_bytes) * 8.0).sum::<f64>() / (n as f64 / 30.0)
        };
        // ABR: long-run average on target, no VBV.
        let abr = RateControlConfig {
            mode: RateControlMode::Abr,
            ..Default::default()
        };
        assert!((rate(&abr, 18_000) / 6e6 - 1.0).abs() < 0.01);
        assert_eq!(Encoder::new(&enc, &abr, 1).vbv_buffer_bits(), 0.0);
        // VBR: ABR at 4 Mb/s under an 8 Mb/s cap.
        let vbr = RateControlConfig {
            mode: RateControlMode::Vbr,
            bitrate_kbps: 4000.0,
            max_rate_kbps: 8000.0,
            ..Default::default()
        };
        assert!((rate(&vbr, 18_000) / 4e6 - 1.0).abs() < 0.01);
        // Capped CRF: crf 29 alone gives half the nominal rate, under the cap.
        let crf = RateControlConfig {
            mode: RateControlMode::CappedCrf,
            crf: 29.0,
            ..Default::default()
        };
        assert!((rate(&crf, 18_000) / 3e6 - 1.0).abs() < 0.05);
        // crf 11 wants 4× nominal; the 6 Mb/s VBV caps it near 6 Mb/s.
        let capped = RateControlConfig { crf: 11.0, ..crf };
        let r = rate(&capped, 18_000);
        assert!(r < 6.2e6 && r > 5.0e6, "{r}");
        let f = frames(&enc, &capped, 11, 3000);
        assert!(f.iter().all(|f| f.qp >= 11.0));
        assert!(f.iter().all(|f| !f.vbv_underflow));
        // CQP: QP fixed.
        assert!(frames(&enc, &cqp(), 1, 100).iter().all(|f| f.qp == 23.0));
    }

    #[test]
    fn same_seed_same_stream() {
        let enc = EncoderConfig::default();
        let rc = RateControlConfig::default();
        assert_eq!(frames(&enc, &rc, 42, 2000), frames(&enc, &rc, 42, 2000));
        assert_ne!(frames(&enc, &rc, 42, 2000), frames(&enc, &rc, 43, 2000));
    }

    #[test]
    fn extreme_valid_configs_do_not_panic() {
        let encs = [
            EncoderConfig {
                fps: 1.0,
                keyframe_interval_frames: 1,
                complexity_sigma: 2.0,
                complexity_rho: 0.999,
                scene_cuts_per_min: 600.0,
                ..Default::default()
            },
            EncoderConfig {
                fps: 240.0,
                keyframe_interval_frames: 100_000,
                bframes: 16,
                lookahead_frames: 250,
                threads: 128,
                encode_time_ms: 10_000.0,
                capture_delay_frames: 100.0,
                scenecut: false,
                scene_cuts_per_min: 600.0,
                complexity_sigma: 2.0,
                ..Default::default()
            },
            EncoderConfig {
                size_ratio: FrameSizeRatio {
                    i: 1e-9,
                    p: 1e9,
                    b: 1.0,
                },
                complexity_rho: 0.0,
                ..Default::default()
            },
        ];
        let rcs = [
            RateControlConfig::default(),
            RateControlConfig {
                bitrate_kbps: 1e-3,
                vbv_buffer_kbits: 1e-6,
                vbv_init: 0.0,
                qp_step: 0.0,
                qp_gain: 1000.0,
                vbv_target_fullness: 0.0,
                ..Default::default()
            },
            RateControlConfig {
                bitrate_kbps: 1e6,
                vbv_buffer_kbits: 1e9,
                qp_min: 0.0,
                qp_max: 0.0,
                qp_step: 51.0,
                vbv_target_fullness: 1.0,
                ..Default::default()
            },
        ];
        let modes = [
            RateControlMode::Cbr,
            RateControlMode::Abr,
            RateControlMode::Vbr,
            RateControlMode::CappedCrf,
            RateControlMode::Cqp,
        ];
        for enc in &encs {
            let mut c = Checker::new();
            enc.validate(&mut c);
            assert!(c.into_errors().is_empty());
            for rc in &rcs {
                for mode in modes {
                    let rc = RateControlConfig { mode, ..rc.clone() };
                    let mut c = Checker::new();
                    rc.validate(&mut c);
                    assert!(c.into_errors().is_empty(), "{rc:?}");
                    let mut e = Encoder::new(enc, &rc, 5);
                    let mut last = Micros::ZERO;
                    for _ in 0..2000 {
                        let f = e.next_frame();
                        assert!(f.qp.is_finite() && f.vbv_fullness_bits >= 0.0);
                        assert!(f.encoded_at >= last && f.dts <= f.pts);
                        last = f.encoded_at;
                    }
                }
            }
        }
        // Configs that would not validate do not panic either.
        let bad_enc = EncoderConfig {
            fps: f64::NAN,
            keyframe_interval_frames: 0,
            bframes: u32::MAX,
            threads: 0,
            complexity_sigma: f64::INFINITY,
            complexity_rho: -3.0,
            scene_cuts_per_min: f64::NAN,
            encode_time_ms: -1.0,
            capture_delay_frames: f64::NAN,
            size_ratio: FrameSizeRatio {
                i: f64::NAN,
                p: -1.0,
                b: 0.0,
            },
            ..Default::default()
        };
        let bad_rc = RateControlConfig {
            bitrate_kbps: f64::NAN,
            qp_min: 60.0,
            qp_max: f64::NAN,
            qp_step: f64::NAN,
            qp_gain: f64::NAN,
            vbv_init: f64::NAN,
            vbv_target_fullness: f64::NAN,
            ..Default::default()
        };
        let mut e = Encoder::new(&bad_enc, &bad_rc, 0);
        for _ in 0..100 {
            e.next_frame();
        }
    }

    #[test]
    fn audio_is_exact() {
        let cfg = AudioConfig::default(); // 160 kb/s, 48 kHz, 1024 samples
        let mut a = AudioEncoder::new(&cfg);
        assert_eq!(a.frame_duration(), Micros(21_333));
        let f: Vec<AudioFrame> = (0..1000).map(|_| a.next_frame()).collect();
        assert_eq!(f[0].pts, Micros(0));
        assert_eq!(f[1].pts, Micros(21_333));
        assert_eq!(f[2].pts, Micros(42_667));
        assert_eq!(f[3].pts, Micros(64_000));
        // 1000 frames = 1024000 samples = 21.333333 s → 426666.67 bytes at 160 kb/s.
        assert_eq!(f[999].encoded_at, Micros(21_333_333));
        let bytes: u64 = f.iter().map(|f| u64::from(f.size_bytes)).sum();
        let exact = 160e3 * 1_024_000.0 / 48_000.0 / 8.0;
        assert!((bytes as f64 - exact).abs() <= 1.0, "{bytes} vs {exact}");
        // 426.67 bytes per frame: sizes 426 or 427.
        assert!(f.iter().all(|f| f.size_bytes == 426 || f.size_bytes == 427));
        for (k, f) in f.iter().enumerate() {
            assert_eq!(f.index, k as u64);
            assert_eq!(f.captured_at, f.pts);
            let d = (f.encoded_at - f.captured_at).0;
            assert!(d == 21_333 || d == 21_334);
        }
        assert!(f.windows(2).all(|w| w[0].encoded_at == w[1].pts));
        // 44.1 kHz, 128 kb/s (MODELS §A3: ≈ 371 B per frame); 1 hour without drift.
        let mut a = AudioEncoder::new(&AudioConfig {
            bitrate_kbps: 128.0,
            sample_rate_hz: 44_100,
            ..Default::default()
        });
        let n = 154_350; // 154350·1024/44100 = 3584 s exactly
        let mut bytes = 0u64;
        let mut last = None;
        for _ in 0..n {
            let f = a.next_frame();
            bytes += u64::from(f.size_bytes);
            last = Some(f);
        }
        assert_eq!(last.unwrap().encoded_at, Micros::from_secs(3584));
        assert_eq!(bytes, 128_000 * 3584 / 8);
        // Disabled or odd configs do not panic.
        let mut a = AudioEncoder::new(&AudioConfig {
            enabled: false,
            bitrate_kbps: f64::NAN,
            sample_rate_hz: 0,
            samples_per_frame: 0,
        });
        a.next_frame();
        a.frame_duration();
    }

    /// Release-mode timing of one hour of 60 fps video:
    /// `cargo test -p sim-core --release --lib bench_hour_of_60fps -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_hour_of_60fps() {
        for (name, enc, rc) in [
            (
                "cbr default",
                EncoderConfig {
                    fps: 60.0,
                    ..Default::default()
                },
                RateControlConfig::default(),
            ),
            (
                "cbr zerolatency",
                EncoderConfig {
                    fps: 60.0,
                    zerolatency: true,
                    ..Default::default()
                },
                RateControlConfig::default(),
            ),
            (
                "cqp",
                EncoderConfig {
                    fps: 60.0,
                    ..Default::default()
                },
                cqp(),
            ),
        ] {
            let mut e = Encoder::new(&enc, &rc, 1);
            let mut a = AudioEncoder::new(&AudioConfig::default());
            let start = std::time::Instant::now();
            let mut bytes = 0u64;
            for _ in 0..216_000 {
                bytes += u64::from(std::hint::black_box(e.next_frame()).size_bytes);
            }
            let video = start.elapsed();
            let start = std::time::Instant::now();
            for _ in 0..168_750 {
                bytes += u64::from(std::hint::black_box(a.next_frame()).size_bytes);
            }
            let audio = start.elapsed();
            println!(
                "{name}: 216000 video frames in {video:?} ({:.1} ns/frame); 168750 audio frames in {audio:?}; {bytes} B",
                video.as_nanos() as f64 / 216_000.0
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn cbr_mean_rate_within_2_percent(
            bitrate in 500.0..20_000.0f64,
            fps in 24.0..=60.0f64,
            keyint in 1u32..=600,
            bframes in 0u32..=16,
            zerolatency in any::<bool>(),
            // OBS's buffer = bitrate (1 s), or the default 6000 kbit whatever the bitrate
            // (0.3 s to 12 s of buffer).
            one_second_buffer in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let enc = EncoderConfig { fps, keyframe_interval_frames: keyint, bframes, zerolatency, ..Default::default() };
            let vbv = if one_second_buffer { bitrate } else { 6000.0 };
            let rc = RateControlConfig { bitrate_kbps: bitrate, vbv_buffer_kbits: vbv, ..Default::default() };
            let (ratio, _) = cbr_rate_60s(&enc, &rc, seed);
            prop_assert!((ratio - 1.0).abs() < 0.02, "ratio {}", ratio);
        }

        #[test]
        fn stream_invariants(
            keyint in 1u32..=300,
            bframes in 0u32..=16,
            lookahead in 0u32..=60,
            threads in 1u32..=32,
            cuts in 0.0..60.0f64,
            scenecut in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let enc = EncoderConfig {
                keyframe_interval_frames: keyint, bframes, lookahead_frames: lookahead, threads,
                scene_cuts_per_min: cuts, scenecut, ..Default::default()
            };
            let mut e = Encoder::new(&enc, &RateControlConfig::default(), seed);
            let mut seen = vec![false; 2000];
            let mut last = Micros::ZERO;
            let mut last_idr = 0u64;
            for n in 0..1500u64 {
                let f = e.next_frame();
                prop_assert_eq!(f.decode_index, n);
                prop_assert!(f.dts <= f.pts);
                prop_assert!(f.encoded_at >= last);
                prop_assert!(f.encoded_at >= f.captured_at);
                last = f.encoded_at;
                // Decode order never runs more than bframes ahead of display order.
                prop_assert!(f.display_index <= n + u64::from(bframes));
                prop_assert!(!seen[f.display_index as usize]);
                seen[f.display_index as usize] = true;
                if f.keyframe {
                    prop_assert!(f.display_index - last_idr <= u64::from(keyint) || n == 0);
                    last_idr = f.display_index;
                }
            }
        }
    }
}
