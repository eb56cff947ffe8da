//! Rate control: CBR, ABR/VBR, capped CRF, CQP; the VBV leaky bucket; a proportional QP
//! controller; encoder-side frame dropping under sender backlog (OBS's 700 ms / 900 ms rule).
//!
//! Three state machines live here, each usable on its own:
//!
//! * [`VbvBuffer`]: the VBV/HRD leaky bucket of MODELS.md §B2 \[X1\]. The encoder model runs it on
//!   its own frames; the real server runs it on frames arriving from OBS to show how full the
//!   publisher's VBV would be.
//! * [`QpController`]: the frame-level proportional(-integral) QP law of MODELS.md §B5 \[TM5b\].
//! * [`FrameDropper`]: OBS's `rtmp-stream.c` frame dropping under sender backlog (§B5, \[O2\]).
//!
//! The encoder model that combines the first two per rate-control mode is
//! [`crate::encoder::Encoder`].

use crate::check::Checker;
use crate::encoder::FrameType;
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// `x` limited to `[lo, hi]` without ever panicking (unlike `f64::clamp`): NaN bounds are
/// ignored and `lo > hi` gives `hi`.
#[inline]
pub(crate) fn clamp_f64(x: f64, lo: f64, hi: f64) -> f64 {
    x.max(lo).min(hi)
}

/// log₂ 2 / 6 = ln 2 / 6: the relative change in frame bits per +1 QP near the operating point
/// (b ∝ 2^(−QP/6), MODELS.md §A2 \[X1\]).
pub const BITS_PER_QP: f64 = core::f64::consts::LN_2 / 6.0;

// ---------------------------------------------------------------------------------------------
// VBV
// ---------------------------------------------------------------------------------------------

/// What happens to bits that would fill the VBV beyond its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VbvOverflow {
    /// VBR: the buffer stops at full; the excess is simply not sent (the channel idles).
    Clip,
    /// CBR (`nal-hrd=cbr`, OBS CBR): the encoder writes the excess as filler data, so the
    /// channel carries exactly `max_rate` and the buffer stays at full.
    Filler,
}

/// The result of one frame passing through the [`VbvBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VbvStep {
    /// Fullness after the refill (and clip/filler at the buffer size), before this frame's bits
    /// are removed, in bits.
    pub fullness_before_bits: f64,
    /// Fullness after this frame's bits are removed, in bits; clamped to 0 on underflow.
    pub fullness_after_bits: f64,
    /// The frame needed more bits than the buffer held: a decoder following the HRD would stall.
    pub underflow: bool,
    /// Bits that arrived while the buffer was full and were discarded ([`VbvOverflow::Clip`]).
    pub overflow_bits: f64,
    /// Bits the encoder must write as filler with this frame ([`VbvOverflow::Filler`]).
    pub filler_bits: f64,
}

/// The VBV (HRD coded-picture-buffer) leaky bucket, MODELS.md §B2 \[X1\].
///
/// F is the fullness of the decoder's buffer in bits, B its size, R_max the rate at which the
/// channel fills it (bits/s). The sender's queue is Q = B − F, so the delay a frame spends
/// waiting to be sent is at most B / R_max.
///
/// **Order of operations** (one call of [`VbvBuffer::on_frame`] per frame, at the frame's
/// removal time `t_n`, normally its DTS):
///
/// 1. Start: F = `init`·B (x264 `vbv-init`, 0.9); the first frame gets no refill.
/// 2. Refill: F ← F + R_max·(t_n − t_{n−1}).
/// 3. At the top: if F > B the excess F − B is either discarded ([`VbvOverflow::Clip`],
///    reported as `overflow_bits`) or written as filler *with this frame*
///    ([`VbvOverflow::Filler`], reported as `filler_bits`); either way F ← B.
///    This is `fullness_before_bits`.
/// 4. Removal: F ← F − b_n. If F < 0 the frame **underflows**; F is clamped to 0.
///
/// x264's `update_vbv` does removal, then refill and filler for the interval up to the next
/// frame, attaching the filler to the frame just coded. Doing the refill first instead attaches
/// the same filler to the *next* frame; the totals and the fullness seen by each frame's removal
/// are identical.
///
/// Robust by design (the real server feeds it whatever OBS sends): an `at` earlier than the
/// previous one counts as no time elapsed; NaN or negative sizes count as 0 bits; non-finite or
/// negative sizes and rates given to [`VbvBuffer::new`] count as 0.
#[derive(Debug, Clone, PartialEq)]
pub struct VbvBuffer {
    buffer_bits: f64,
    max_rate_bps: f64,
    overflow: VbvOverflow,
    fullness_bits: f64,
    last_at: Option<Micros>,
    frames: u64,
    underflows: u64,
    total_filler_bits: f64,
    total_overflow_bits: f64,
}

/// `v` when finite and ≥ 0, else 0.
#[inline]
fn non_negative_or_zero(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

impl VbvBuffer {
    /// A bucket of `buffer_bits` filled at `max_rate_bps`, starting `init_fraction` full
    /// (clamped to 0..1).
    pub fn new(
        buffer_bits: f64,
        max_rate_bps: f64,
        init_fraction: f64,
        overflow: VbvOverflow,
    ) -> Self {
        let buffer_bits = non_negative_or_zero(buffer_bits);
        let init = if init_fraction.is_nan() {
            0.0
        } else {
            clamp_f64(init_fraction, 0.0, 1.0)
        };
        VbvBuffer {
            buffer_bits,
            max_rate_bps: non_negative_or_zero(max_rate_bps),
            overflow,
            fullness_bits: init * buffer_bits,
            last_at: None,
            frames: 0,
            underflows: 0,
            total_filler_bits: 0.0,
            total_overflow_bits: 0.0,
        }
    }

    /// Bits the channel adds between the previous frame and `at` (0 before the first frame).
    #[inline]
    fn refill_until(&self, at: Micros) -> f64 {
        match self.last_at {
            Some(last) => self.max_rate_bps * (at.saturating_sub(last).0 as f64 * 1e-6),
            None => 0.0,
        }
    }

    /// The fullness a frame removed at `at` would see (steps 2–3 above), without changing
    /// anything: what a rate controller looks at before choosing the frame's size.
    #[inline]
    pub fn fullness_at(&self, at: Micros) -> f64 {
        (self.fullness_bits + self.refill_until(at)).min(self.buffer_bits)
    }

    /// A frame of `bits` is removed at time `at` (non-decreasing; an earlier `at` is treated as
    /// equal to the last one, never panics); refill = max_rate × elapsed since the previous
    /// frame. See the type's documentation for the order of operations.
    pub fn on_frame(&mut self, at: Micros, bits: f64) -> VbvStep {
        let bits = if bits.is_nan() || bits < 0.0 {
            0.0
        } else {
            bits
        };
        let filled = self.fullness_bits + self.refill_until(at);
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
        let excess = (filled - self.buffer_bits).max(0.0);
        let (overflow_bits, filler_bits) = match self.overflow {
            VbvOverflow::Clip => (excess, 0.0),
            VbvOverflow::Filler => (0.0, excess),
        };
        let before = filled.min(self.buffer_bits);
        let after = before - bits;
        let underflow = after < 0.0;
        let after = after.max(0.0);
        self.fullness_bits = after;
        self.frames += 1;
        self.underflows += underflow as u64;
        self.total_filler_bits += filler_bits;
        self.total_overflow_bits += overflow_bits;
        VbvStep {
            fullness_before_bits: before,
            fullness_after_bits: after,
            underflow,
            overflow_bits,
            filler_bits,
        }
    }

    /// Like [`VbvBuffer::fullness_at`] but without stopping at B: above B by the bits that
    /// would be clipped or written as filler. A controller steering on this sees how far an
    /// encoder is under-spending even while the buffer sits at full.
    #[inline]
    pub fn unclipped_fullness_at(&self, at: Micros) -> f64 {
        self.fullness_bits + self.refill_until(at)
    }

    /// Current fullness F in bits (after the last frame's removal).
    pub fn fullness_bits(&self) -> f64 {
        self.fullness_bits
    }
    /// Buffer size B in bits.
    pub fn buffer_bits(&self) -> f64 {
        self.buffer_bits
    }
    /// Fill rate R_max in bits per second.
    pub fn max_rate_bps(&self) -> f64 {
        self.max_rate_bps
    }
    /// What happens at the top of the buffer.
    pub fn overflow_mode(&self) -> VbvOverflow {
        self.overflow
    }
    /// The sender-side queue B − F in bits: data coded but not yet drained by the channel.
    pub fn queue_bits(&self) -> f64 {
        (self.buffer_bits - self.fullness_bits).max(0.0)
    }
    /// Frames seen so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
    /// Frames that underflowed so far.
    pub fn underflows(&self) -> u64 {
        self.underflows
    }
    /// Filler bits written so far ([`VbvOverflow::Filler`]).
    pub fn total_filler_bits(&self) -> f64 {
        self.total_filler_bits
    }
    /// Bits discarded at the top so far ([`VbvOverflow::Clip`]).
    pub fn total_overflow_bits(&self) -> f64 {
        self.total_overflow_bits
    }
}

// ---------------------------------------------------------------------------------------------
// QP controller
// ---------------------------------------------------------------------------------------------

/// The frame-level QP law of MODELS.md §B5 \[TM5b\], with an integral term.
///
/// Each frame the caller supplies a normalised error e_n (dimensionless; positive = the encoder
/// is spending too many bits, e.g. (F* − F)/B for a VBV or (Σb − wanted)/B_abr for ABR), and
/// the controller returns
///
/// ```text
/// I_n   = clip(I_{n−1} + K_i·e_n, [qp_min − base, qp_max − base])
/// QP_n  = clip(base + I_n + K·e_n, [QP_{n−1} − qpstep, QP_{n−1} + qpstep] ∩ [qp_min, qp_max])
/// ```
///
/// K (QP per unit error, `qp_gain`) is the proportional law of §B5; QP is kept fractional (x264
/// works with a continuous qscale) instead of rounded. The proportional law alone acting on QP
/// *increments* would form, with the buffer (which integrates bits), an undamped double
/// integrator; acting on the *level* it leaves a steady-state error whenever the needed QP
/// differs from `base`. The integral term K_i removes that error. Linearising
/// b(QP) ≈ b̄·(1 − (ln 2/6)·ΔQP) the loop is ë + aK·ė + aK_i·e = 0 per frame with
/// a = (ln 2/6)·b̄/B (b̄ bits per frame, B the normalising buffer in bits), so
/// [`QpController::critical_integral_gain`] K_i = a·K²/4 gives critical damping, and K is
/// capped at 1/a ([`QpController::stable_gain`]) so the per-frame loop gain a·K stays ≤ 1.
#[derive(Debug, Clone, PartialEq)]
pub struct QpController {
    base_qp: f64,
    gain: f64,
    integral_gain: f64,
    integral: f64,
    integral_min: f64,
    integral_max: f64,
    step: f64,
    qp_min: f64,
    qp_max: f64,
    last_qp: f64,
}

impl QpController {
    /// A controller around `base_qp`, with proportional `gain` (QP per unit error),
    /// `integral_gain` (QP per frame per unit error), step limit `step` (QP per frame; use
    /// `f64::INFINITY` for none) and output range `[qp_min, qp_max]`. The first output is
    /// stepped from `base_qp`. Non-finite or negative gains count as 0, a NaN or negative step
    /// as 0.
    pub fn new(
        base_qp: f64,
        gain: f64,
        integral_gain: f64,
        step: f64,
        qp_min: f64,
        qp_max: f64,
    ) -> Self {
        let base_qp = if base_qp.is_finite() { base_qp } else { 0.0 };
        let qp_min = if qp_min.is_nan() {
            f64::NEG_INFINITY
        } else {
            qp_min
        };
        let qp_max = if qp_max.is_nan() {
            f64::INFINITY
        } else {
            qp_max.max(qp_min)
        };
        let step = if step.is_nan() { 0.0 } else { step.max(0.0) };
        QpController {
            base_qp,
            gain: non_negative_or_zero(gain),
            integral_gain: non_negative_or_zero(integral_gain),
            integral: 0.0,
            integral_min: (qp_min - base_qp).min(0.0),
            integral_max: (qp_max - base_qp).max(0.0),
            step,
            qp_min,
            qp_max,
            last_qp: clamp_f64(base_qp, qp_min, qp_max),
        }
    }

    /// Narrows the range of the integral term (anti-windup), e.g. `[0, ∞)` for a controller
    /// that may only ever raise QP above its base.
    pub fn with_integral_range(mut self, lo: f64, hi: f64) -> Self {
        if !lo.is_nan() {
            self.integral_min = self.integral_min.max(lo);
        }
        if !hi.is_nan() {
            self.integral_max = self.integral_max.min(hi).max(self.integral_min);
        }
        self.integral = clamp_f64(self.integral, self.integral_min, self.integral_max);
        self
    }

    /// The loop sensitivity a = (ln 2/6)·b̄/B for frames of `frame_bits` against a normalising
    /// buffer of `buffer_bits` (0 when either is not positive).
    pub fn loop_sensitivity(frame_bits: f64, buffer_bits: f64) -> f64 {
        if frame_bits > 0.0 && buffer_bits > 0.0 && (frame_bits / buffer_bits).is_finite() {
            BITS_PER_QP * frame_bits / buffer_bits
        } else {
            0.0
        }
    }

    /// `gain` capped so the per-frame loop gain a·K is at most 1.
    pub fn stable_gain(gain: f64, sensitivity: f64) -> f64 {
        let gain = non_negative_or_zero(gain);
        if sensitivity > 0.0 {
            gain.min(1.0 / sensitivity)
        } else {
            gain
        }
    }

    /// K_i = a·K²/4: critical damping of the linearised loop.
    pub fn critical_integral_gain(gain: f64, sensitivity: f64) -> f64 {
        non_negative_or_zero(sensitivity * gain * gain / 4.0)
    }

    /// The QP for the next frame given the normalised error `error` (positive = too many bits;
    /// NaN counts as 0).
    #[inline]
    pub fn next_qp(&mut self, error: f64) -> f64 {
        let e = if error.is_nan() {
            0.0
        } else {
            clamp_f64(error, -1e6, 1e6)
        };
        self.integral = clamp_f64(
            self.integral + self.integral_gain * e,
            self.integral_min,
            self.integral_max,
        );
        let target = self.base_qp + self.integral + self.gain * e;
        let qp = clamp_f64(target, self.last_qp - self.step, self.last_qp + self.step);
        let qp = clamp_f64(qp, self.qp_min, self.qp_max);
        self.last_qp = qp;
        qp
    }

    /// The last QP returned (the base QP before the first frame, clamped to the range).
    pub fn qp(&self) -> f64 {
        self.last_qp
    }
    /// The current integral term in QP.
    pub fn integral(&self) -> f64 {
        self.integral
    }
    pub fn base_qp(&self) -> f64 {
        self.base_qp
    }
    pub fn gain(&self) -> f64 {
        self.gain
    }
    pub fn integral_gain(&self) -> f64 {
        self.integral_gain
    }
}

// ---------------------------------------------------------------------------------------------
// Frame dropping
// ---------------------------------------------------------------------------------------------

/// Whether the publisher sends a frame or drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropDecision {
    Send,
    Drop,
}

/// OBS's drop priority of a video packet (`OBS_NAL_PRIORITY_*`, from the NAL's `nal_ref_idc`),
/// lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPriority {
    /// Non-reference (B) frames: nothing refers to them.
    Disposable,
    /// Reference frames (P, and an I that is not an IDR).
    High,
    /// IDR keyframes.
    Highest,
}

impl DropPriority {
    /// The priority of a video frame.
    pub fn of(frame_type: FrameType, keyframe: bool) -> Self {
        if keyframe {
            DropPriority::Highest
        } else {
            match frame_type {
                FrameType::B => DropPriority::Disposable,
                FrameType::I | FrameType::P => DropPriority::High,
            }
        }
    }
}

/// OBS `rtmp-stream.c` frame dropping under sender backlog (MODELS.md §B5, \[O2\]).
///
/// Before each video frame is queued, OBS measures the duration of the packets still waiting
/// to be sent (`queued`: last queued DTS − first queued video DTS). Above
/// `drop_b_threshold_ms` (700 ms) it drops disposable (B) frames, above `drop_p_threshold_ms`
/// (900 ms) everything but keyframes. The level is sticky: OBS sets a minimum priority and
/// drops every arriving frame below it until one at or above it passes, which resets it.
/// After a P-threshold drop that means **every non-IDR frame until the next keyframe** (their
/// references are gone); after a B-threshold drop, B-frames until the next reference frame.
/// Audio is never dropped (the caller does not ask).
///
/// OBS also purges frames already in its queue when a threshold is crossed;
/// [`FrameDropper::purge_below`] tells the caller which ones. Thresholds compare with `>`,
/// as OBS does.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameDropper {
    enabled: bool,
    b_threshold: Micros,
    p_threshold: Micros,
    /// Frames below this priority are dropped; `None` = send everything.
    min_priority: Option<DropPriority>,
    dropped: u64,
}

impl FrameDropper {
    /// Disabled when `cfg.drop_frames` is false (then every frame is sent).
    pub fn new(cfg: &RateControlConfig) -> Self {
        FrameDropper {
            enabled: cfg.drop_frames,
            b_threshold: Micros::from_ms_f64(cfg.drop_b_threshold_ms),
            p_threshold: Micros::from_ms_f64(cfg.drop_p_threshold_ms),
            min_priority: None,
            dropped: 0,
        }
    }

    /// The priority below which queued frames should be purged for a backlog of `queued`
    /// (OBS `drop_frames`), or `None` below both thresholds or when disabled.
    pub fn purge_below(&self, queued: Micros) -> Option<DropPriority> {
        if !self.enabled {
            None
        } else if queued > self.p_threshold {
            Some(DropPriority::Highest)
        } else if queued > self.b_threshold {
            Some(DropPriority::High)
        } else {
            None
        }
    }

    /// Send or drop the next video frame, given the sender's queued duration when it arrives.
    pub fn decide(
        &mut self,
        queued: Micros,
        frame_type: FrameType,
        keyframe: bool,
    ) -> DropDecision {
        if !self.enabled {
            return DropDecision::Send;
        }
        if let Some(level) = self.purge_below(queued) {
            self.min_priority = Some(self.min_priority.map_or(level, |p| p.max(level)));
        }
        let priority = DropPriority::of(frame_type, keyframe);
        match self.min_priority {
            Some(min) if priority < min => {
                self.dropped += 1;
                DropDecision::Drop
            }
            _ => {
                self.min_priority = None;
                DropDecision::Send
            }
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether frames below some priority are currently being dropped.
    pub fn dropping(&self) -> Option<DropPriority> {
        self.min_priority
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// How the encoder chooses bits per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateControlMode {
    /// ABR + VBV with max rate = bitrate and filler (x264 `nal-hrd=cbr`; OBS "CBR").
    Cbr,
    /// Average bitrate, no VBV unless `vbv_buffer_kbits` and `max_rate_kbps` are set.
    Abr,
    /// ABR with a VBV cap (`max_rate_kbps` > bitrate allowed); no filler.
    Vbr,
    /// Constant rate factor capped by the VBV (OBS "VBR"/"CRF" with a max rate).
    CappedCrf,
    /// Constant QP: no rate control at all.
    Cqp,
}

/// Rate-control settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateControlConfig {
    pub mode: RateControlMode,
    /// Target average video bitrate in kb/s (ignored by CQP; for capped CRF it is only the
    /// nominal rate used to size frames at the reference QP).
    pub bitrate_kbps: f64,
    /// VBV max rate in kb/s; 0 = same as `bitrate_kbps`.
    pub max_rate_kbps: f64,
    /// VBV buffer size in kbit; 0 = no VBV (unconstrained ABR/CRF/CQP).
    pub vbv_buffer_kbits: f64,
    /// Initial VBV fullness as a fraction of the buffer (x264 `vbv-init`, 0.9).
    pub vbv_init: f64,
    /// CRF value for capped CRF (x264 default 23).
    pub crf: f64,
    /// QP for CQP, and the reference QP at which frames have their nominal size.
    pub qp: f64,
    /// Smallest and largest QP the controller may use (H.264: 0–51).
    pub qp_min: f64,
    pub qp_max: f64,
    /// Largest QP change from one frame to the next (x264 `qpstep`, 4).
    pub qp_step: f64,
    /// Proportional gain of the frame-level QP controller, in QP per (buffer error / buffer size).
    pub qp_gain: f64,
    /// Write filler so a CBR stream's rate never falls below target (OBS CBR does).
    pub filler: bool,
    /// OBS-style frame dropping when the sender's queue backs up.
    pub drop_frames: bool,
    /// Drop B/non-reference frames when the queued duration exceeds this (OBS: 700 ms).
    pub drop_b_threshold_ms: f64,
    /// Also drop P-frames beyond this (OBS: 900 ms).
    pub drop_p_threshold_ms: f64,
    /// VBV fullness (fraction of the buffer, seen just before a frame is removed) that CBR
    /// steers toward, and below which VBR / capped CRF / ABR-with-VBV raise QP.
    ///
    /// The default 0.9 equals the default `vbv_init`: CBR then keeps the cumulative bit count
    /// on R·t from the first frame, as x264's ABR part does, and the rate over any minute is on
    /// target whatever the buffer-to-rate ratio (a CBR stream spends F₀ − F* extra bits while
    /// it settles: 0.3·B with 0.6, i.e. +6% over the first minute for a 12 s buffer). Lower
    /// values (x264's lookahead VBV aims at 50–80%) leave a longer standing sender queue
    /// B − F* and more headroom for I-frames; higher values mean more filler.
    pub vbv_target_fullness: f64,
}

impl Default for RateControlConfig {
    fn default() -> Self {
        RateControlConfig {
            mode: RateControlMode::Cbr,
            bitrate_kbps: 6000.0,
            max_rate_kbps: 0.0,
            vbv_buffer_kbits: 6000.0,
            vbv_init: 0.9,
            crf: 23.0,
            qp: 23.0,
            qp_min: 0.0,
            qp_max: 51.0,
            qp_step: 4.0,
            qp_gain: 6.0,
            filler: true,
            drop_frames: true,
            drop_b_threshold_ms: 700.0,
            drop_p_threshold_ms: 900.0,
            vbv_target_fullness: 0.9,
        }
    }
}

impl RateControlConfig {
    /// The effective VBV max rate in bits per second.
    pub fn max_rate_bps(&self) -> f64 {
        if self.max_rate_kbps > 0.0 {
            self.max_rate_kbps * 1e3
        } else {
            self.bitrate_kbps * 1e3
        }
    }

    pub fn validate(&self, c: &mut Checker) {
        c.positive("bitrate_kbps", self.bitrate_kbps);
        c.non_negative("max_rate_kbps", self.max_rate_kbps);
        c.non_negative("vbv_buffer_kbits", self.vbv_buffer_kbits);
        c.range("vbv_init", self.vbv_init, 0.0, 1.0);
        c.range("crf", self.crf, 0.0, 51.0);
        c.range("qp", self.qp, 0.0, 51.0);
        c.range("qp_min", self.qp_min, 0.0, 51.0);
        c.range("qp_max", self.qp_max, 0.0, 51.0);
        c.ensure(
            self.qp_min <= self.qp_max,
            "qp_min",
            format!("must not exceed qp_max ({})", self.qp_max),
        );
        c.range("qp_step", self.qp_step, 0.0, 51.0);
        c.range("qp_gain", self.qp_gain, 0.0, 1000.0);
        c.non_negative("drop_b_threshold_ms", self.drop_b_threshold_ms);
        c.non_negative("drop_p_threshold_ms", self.drop_p_threshold_ms);
        c.range("vbv_target_fullness", self.vbv_target_fullness, 0.0, 1.0);
        if self.max_rate_kbps > 0.0 && self.bitrate_kbps > 0.0 {
            c.ensure(
                self.max_rate_kbps >= self.bitrate_kbps,
                "max_rate_kbps",
                format!(
                    "must be 0 (= bitrate) or at least bitrate_kbps ({})",
                    self.bitrate_kbps
                ),
            );
        }
        if self.mode == RateControlMode::Cbr || self.mode == RateControlMode::Vbr {
            c.ensure(
                self.vbv_buffer_kbits > 0.0,
                "vbv_buffer_kbits",
                "CBR and VBR need a VBV buffer (> 0 kbit)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000;

    #[test]
    fn vbv_step_by_step_clip() {
        // B = 1000 bits, R = 300 b/s, init 0.9 → F0 = 900; frames 1 s apart.
        let mut v = VbvBuffer::new(1000.0, 300.0, 0.9, VbvOverflow::Clip);
        assert_eq!(v.fullness_bits(), 900.0);
        // t = 0: no refill before the first frame; 900 − 200 = 700.
        let s = v.on_frame(Micros(0), 200.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (900.0, 700.0)
        );
        assert!(!s.underflow);
        // t = 1 s: 700 + 300 = 1000 (exactly full, no overflow); − 500 = 500.
        let s = v.on_frame(Micros(S), 500.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (1000.0, 500.0)
        );
        assert_eq!((s.overflow_bits, s.filler_bits), (0.0, 0.0));
        // t = 2 s: 500 + 300 = 800; a 900-bit frame underflows by 100 → clamped to 0.
        let s = v.on_frame(Micros(2 * S), 900.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (800.0, 0.0)
        );
        assert!(s.underflow);
        // t = 3 s: 0 + 300 = 300; an empty frame leaves 300.
        let s = v.on_frame(Micros(3 * S), 0.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (300.0, 300.0)
        );
        // t = 5 s (2 s gap): 300 + 600 = 900; − 100 = 800.
        let s = v.on_frame(Micros(5 * S), 100.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (900.0, 800.0)
        );
        // t = 6 s: 800 + 300 = 1100 → 100 bits clipped; − 0 = 1000.
        let s = v.on_frame(Micros(6 * S), 0.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (1000.0, 1000.0)
        );
        assert_eq!((s.overflow_bits, s.filler_bits), (100.0, 0.0));
        // t = 6.5 s: 1000 + 150 → 150 clipped; − 400 = 600.
        let s = v.on_frame(Micros(6 * S + S / 2), 400.0);
        assert_eq!(s.overflow_bits, 150.0);
        assert_eq!(s.fullness_after_bits, 600.0);
        assert_eq!(v.frames(), 7);
        assert_eq!(v.underflows(), 1);
        assert_eq!(v.total_overflow_bits(), 250.0);
        assert_eq!(v.queue_bits(), 400.0);
    }

    #[test]
    fn vbv_filler_keeps_the_channel_at_max_rate() {
        let mut v = VbvBuffer::new(1000.0, 300.0, 0.9, VbvOverflow::Filler);
        v.on_frame(Micros(0), 100.0); // 800
        let s = v.on_frame(Micros(S), 0.0); // 800 + 300 = 1100 → 100 filler
        assert_eq!((s.filler_bits, s.overflow_bits), (100.0, 0.0));
        assert_eq!(s.fullness_before_bits, 1000.0);
        assert_eq!(s.fullness_after_bits, 1000.0);
        // 2 s later: 1000 + 600 → 600 filler, then a 700-bit frame → 300.
        let s = v.on_frame(Micros(3 * S), 700.0);
        assert_eq!(s.filler_bits, 600.0);
        assert_eq!(s.fullness_after_bits, 300.0);
        // Channel bits = F0 + R·t = 900 + 900 = 1800 = frames (800) + filler (700) + F (300).
        assert_eq!(v.total_filler_bits(), 700.0);
        assert_eq!(
            900.0 + 300.0 * 3.0,
            800.0 + v.total_filler_bits() + v.fullness_bits()
        );
    }

    #[test]
    fn vbv_accepts_anything() {
        let mut v = VbvBuffer::new(1000.0, 300.0, 0.5, VbvOverflow::Clip);
        v.on_frame(Micros(2 * S), 100.0); // 400
                                          // Going back in time: no refill, and the clock does not move back.
        let s = v.on_frame(Micros(S), 100.0);
        assert_eq!(
            (s.fullness_before_bits, s.fullness_after_bits),
            (400.0, 300.0)
        );
        let s = v.on_frame(Micros(3 * S), f64::NAN); // treated as 0 bits; refill from 2 s
        assert_eq!(s.fullness_after_bits, 600.0);
        let s = v.on_frame(Micros(3 * S), -50.0);
        assert_eq!(s.fullness_after_bits, 600.0);
        let s = v.on_frame(Micros(3 * S), f64::INFINITY);
        assert!(s.underflow);
        assert_eq!(s.fullness_after_bits, 0.0);
        let s = v.on_frame(Micros::MAX, 1.0);
        assert_eq!(s.fullness_before_bits, 1000.0);
        for (b, r, i) in [
            (f64::NAN, f64::NAN, f64::NAN),
            (-1.0, -1.0, -1.0),
            (f64::INFINITY, f64::INFINITY, 2.0),
            (0.0, 0.0, 0.9),
        ] {
            let mut v = VbvBuffer::new(b, r, i, VbvOverflow::Filler);
            let s = v.on_frame(Micros(0), 10.0);
            assert!(s.fullness_after_bits >= 0.0 && s.fullness_after_bits.is_finite());
            let s = v.on_frame(Micros(S), 10.0);
            assert!(s.fullness_after_bits >= 0.0);
        }
        // A zero-size buffer: every non-empty frame underflows, nothing panics.
        let mut v = VbvBuffer::new(0.0, 1e6, 0.9, VbvOverflow::Clip);
        assert!(v.on_frame(Micros(S), 1.0).underflow);
        assert!(!v.on_frame(Micros(2 * S), 0.0).underflow);
    }

    #[test]
    fn vbv_peek_matches_the_step() {
        let mut v = VbvBuffer::new(1000.0, 300.0, 0.2, VbvOverflow::Clip);
        v.on_frame(Micros(0), 0.0);
        assert_eq!(v.fullness_at(Micros(S)), 500.0);
        assert_eq!(v.fullness_at(Micros(4 * S)), 1000.0);
        assert_eq!(v.unclipped_fullness_at(Micros(4 * S)), 1400.0);
        assert_eq!(v.on_frame(Micros(S), 0.0).fullness_before_bits, 500.0);
    }

    #[test]
    fn qp_controller_law() {
        // K = 6, no integral, step 4, range 10..40, base 23.
        let mut c = QpController::new(23.0, 6.0, 0.0, 4.0, 10.0, 40.0);
        assert_eq!(c.qp(), 23.0);
        assert_eq!(c.next_qp(0.0), 23.0);
        assert_eq!(c.next_qp(0.5), 26.0); // 23 + 6·0.5
        assert_eq!(c.next_qp(2.0), 30.0); // wants 35, limited to +4
        assert_eq!(c.next_qp(2.0), 34.0);
        assert_eq!(c.next_qp(2.0), 35.0);
        assert_eq!(c.next_qp(10.0), 39.0);
        assert_eq!(c.next_qp(10.0), 40.0); // qp_max
        assert_eq!(c.next_qp(-10.0), 36.0); // −4 per frame
        assert_eq!(c.next_qp(f64::NAN), 32.0); // NaN = no error → heads back to 23
                                               // Integral: K_i = 0.5, constant error 1 → I grows 0.5 per frame.
        let mut c = QpController::new(20.0, 0.0, 0.5, f64::INFINITY, 0.0, 51.0);
        assert_eq!(c.next_qp(1.0), 20.5);
        assert_eq!(c.next_qp(1.0), 21.0);
        assert_eq!(c.integral(), 1.0);
        assert_eq!(c.next_qp(-2.0), 20.0);
        // Raise-only: integral and output never below base.
        let mut c = QpController::new(0.0, 6.0, 1.0, f64::INFINITY, 0.0, 20.0)
            .with_integral_range(0.0, f64::INFINITY);
        assert_eq!(c.next_qp(-1.0), 0.0);
        assert_eq!(c.integral(), 0.0);
        assert_eq!(c.next_qp(1.0), 7.0);
        // Garbage parameters do not panic.
        let mut c = QpController::new(f64::NAN, f64::NAN, -1.0, f64::NAN, f64::NAN, f64::NAN);
        assert!(c.next_qp(1.0).is_finite());
        let mut c = QpController::new(23.0, 1.0, 1.0, 1.0, 40.0, 10.0);
        assert_eq!(c.next_qp(0.0), 40.0);
    }

    #[test]
    fn qp_controller_gains() {
        // 200 kbit frames into a 6 Mbit buffer: a = (ln 2/6)/30.
        let a = QpController::loop_sensitivity(200e3, 6e6);
        assert!((a - BITS_PER_QP / 30.0).abs() < 1e-15);
        assert!((QpController::critical_integral_gain(6.0, a) - a * 9.0).abs() < 1e-15);
        assert_eq!(QpController::stable_gain(6.0, a), 6.0);
        assert_eq!(QpController::stable_gain(100.0, 0.5), 2.0);
        assert_eq!(QpController::loop_sensitivity(1.0, 0.0), 0.0);
    }

    fn dropper() -> FrameDropper {
        FrameDropper::new(&RateControlConfig::default())
    }

    #[test]
    fn dropper_thresholds() {
        use FrameType::*;
        let ms = Micros::from_ms;
        let mut d = dropper();
        // Below 700 ms everything goes.
        for (t, k) in [(I, true), (P, false), (B, false)] {
            assert_eq!(d.decide(ms(700), t, k), DropDecision::Send);
        }
        // 701–900 ms: B dropped, P and I sent.
        assert_eq!(d.decide(ms(701), B, false), DropDecision::Drop);
        assert_eq!(d.dropping(), Some(DropPriority::High));
        assert_eq!(d.decide(ms(800), P, false), DropDecision::Send);
        assert_eq!(d.dropping(), None);
        // The B level is sticky until a reference passes, even once the queue is short.
        assert_eq!(d.decide(ms(750), B, false), DropDecision::Drop);
        assert_eq!(d.decide(ms(10), B, false), DropDecision::Drop);
        assert_eq!(d.decide(ms(10), P, false), DropDecision::Send);
        assert_eq!(d.decide(ms(10), B, false), DropDecision::Send);
        // Above 900 ms: P dropped, and every non-IDR frame until the next keyframe.
        assert_eq!(d.decide(ms(901), P, false), DropDecision::Drop);
        assert_eq!(d.decide(ms(0), P, false), DropDecision::Drop);
        assert_eq!(d.decide(ms(0), B, false), DropDecision::Drop);
        assert_eq!(d.decide(ms(0), I, false), DropDecision::Drop); // non-IDR I
        assert_eq!(d.decide(ms(0), I, true), DropDecision::Send);
        assert_eq!(d.decide(ms(0), B, false), DropDecision::Send);
        // A keyframe is sent even above 900 ms.
        assert_eq!(d.decide(ms(5000), I, true), DropDecision::Send);
        assert_eq!(d.dropped(), 7);
        assert_eq!(d.purge_below(ms(800)), Some(DropPriority::High));
        assert_eq!(d.purge_below(ms(1000)), Some(DropPriority::Highest));
        assert_eq!(d.purge_below(ms(100)), None);
        // Disabled: always send.
        let mut d = FrameDropper::new(&RateControlConfig {
            drop_frames: false,
            ..Default::default()
        });
        assert_eq!(d.decide(Micros::MAX, B, false), DropDecision::Send);
        assert_eq!(d.purge_below(Micros::MAX), None);
        assert_eq!(d.dropped(), 0);
    }

    #[test]
    fn priorities() {
        assert_eq!(DropPriority::of(FrameType::I, true), DropPriority::Highest);
        assert_eq!(DropPriority::of(FrameType::I, false), DropPriority::High);
        assert_eq!(DropPriority::of(FrameType::P, false), DropPriority::High);
        assert_eq!(
            DropPriority::of(FrameType::B, false),
            DropPriority::Disposable
        );
        assert!(DropPriority::Disposable < DropPriority::High);
    }

    #[test]
    fn new_config_field_defaults_and_validates() {
        let cfg: RateControlConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg.vbv_target_fullness, 0.9);
        let mut c = Checker::new();
        RateControlConfig {
            vbv_target_fullness: 1.5,
            ..Default::default()
        }
        .validate(&mut c);
        assert_eq!(c.into_errors()[0].path, "vbv_target_fullness");
    }

    fn any_bits() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => 0.0..5e6f64,
            1 => Just(f64::NAN),
            1 => -1e6..0.0f64,
            1 => Just(f64::INFINITY),
        ]
    }

    proptest! {
        #[test]
        fn vbv_fullness_stays_in_the_buffer(
            buffer in 0.0..1e7f64,
            rate in 0.0..2e7f64,
            init in 0.0..=1.0f64,
            filler in any::<bool>(),
            frames in prop::collection::vec((0u64..3_000_000, any::<bool>(), any_bits()), 1..200),
        ) {
            let mode = if filler { VbvOverflow::Filler } else { VbvOverflow::Clip };
            let mut v = VbvBuffer::new(buffer, rate, init, mode);
            let mut t = 0u64;
            for (dt, backwards, bits) in frames {
                t = if backwards { t.saturating_sub(dt) } else { t + dt };
                let s = v.on_frame(Micros(t), bits);
                prop_assert!(s.fullness_after_bits >= 0.0);
                prop_assert!(s.fullness_before_bits >= 0.0);
                prop_assert!(s.fullness_before_bits <= v.buffer_bits());
                prop_assert!(s.fullness_after_bits <= s.fullness_before_bits);
                prop_assert!(s.overflow_bits >= 0.0 && s.filler_bits >= 0.0);
                prop_assert_eq!(s.fullness_after_bits, v.fullness_bits());
            }
        }
    }
}
