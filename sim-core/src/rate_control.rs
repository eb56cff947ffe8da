//! Rate control: CBR, ABR/VBR, capped CRF, CQP; the VBV leaky bucket; a proportional QP
//! controller; encoder-side frame dropping under sender backlog (OBS's 700 ms / 900 ms rule).
//!
//! (Configuration below; the models are being built — see MODELS.md §B.)

use crate::check::Checker;
use serde::{Deserialize, Serialize};

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
