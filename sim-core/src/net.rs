//! Network path and TCP models: bottleneck rate, propagation, jitter (netem semantics), loss
//! (Bernoulli, Gilbert–Elliott), queue limit, Nagle + delayed ACK, retransmission and head-of-line
//! blocking, the Mathis throughput bound.
//!
//! (Configuration below; the models are being built — see MODELS.md §D, §A6, §G.)

use crate::check::Checker;
use serde::{Deserialize, Serialize};

/// Shape of the per-packet delay variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterDistribution {
    /// netem's default: uniform on [−J, +J), J a half-width (std = J/√3).
    Uniform,
    /// Normal with σ = J (netem `distribution normal`).
    Normal,
    /// Heavy-tailed Pareto with σ = J (netem `distribution pareto`), shifted to mean zero.
    Pareto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitterConfig {
    pub distribution: JitterDistribution,
    /// J in ms: the half-width (uniform) or σ (normal, pareto). 0 = no jitter.
    pub ms: f64,
    /// Keep packet order (a real path mostly does; netem's tfifo reorders when jitter exceeds the
    /// packet spacing).
    pub preserve_order: bool,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            distribution: JitterDistribution::Uniform,
            ms: 0.0,
            preserve_order: true,
        }
    }
}

/// Packet loss process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    #[default]
    None,
    /// Each packet lost independently with probability `p`.
    Bernoulli { p: f64 },
    /// Gilbert–Elliott two-state chain (netem `gemodel p r 1-h 1-k`): `p` = P(good→bad),
    /// `r` = P(bad→good) (mean burst 1/r packets), `loss_good` = 1−k, `loss_bad` = 1−h.
    GilbertElliott {
        p: f64,
        r: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

impl LossConfig {
    /// Long-run mean loss probability.
    pub fn mean_loss(&self) -> f64 {
        match *self {
            LossConfig::None => 0.0,
            LossConfig::Bernoulli { p } => p,
            LossConfig::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                if p + r <= 0.0 {
                    loss_good
                } else {
                    let pi_bad = p / (p + r);
                    (1.0 - pi_bad) * loss_good + pi_bad * loss_bad
                }
            }
        }
    }
}

/// One direction of a network path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathConfig {
    /// One-way propagation delay in ms (RTT = 2 × this when both directions match).
    pub propagation_ms: f64,
    /// Bottleneck capacity in kb/s; 0 = unlimited.
    pub bottleneck_kbps: f64,
    pub jitter: JitterConfig,
    pub loss: LossConfig,
    /// Bottleneck queue (router buffer) in bytes; 0 = unlimited (bufferbloat).
    pub queue_limit_bytes: u64,
    /// TCP maximum segment size in bytes (1448 with timestamps on Ethernet).
    pub mss_bytes: u32,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            propagation_ms: 20.0,
            bottleneck_kbps: 20_000.0,
            jitter: JitterConfig::default(),
            loss: LossConfig::None,
            queue_limit_bytes: 0,
            mss_bytes: 1448,
        }
    }
}

impl PathConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.range("propagation_ms", self.propagation_ms, 0.0, 10_000.0);
        c.non_negative("bottleneck_kbps", self.bottleneck_kbps);
        c.range("jitter.ms", self.jitter.ms, 0.0, 10_000.0);
        match self.loss {
            LossConfig::None => {}
            LossConfig::Bernoulli { p } => c.range("loss.p", p, 0.0, 0.5),
            LossConfig::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                c.probability("loss.p", p);
                c.probability("loss.r", r);
                c.ensure(r > 0.0 || p == 0.0, "loss.r", "must be > 0 when p > 0 (else the bad state never ends)");
                c.probability("loss.loss_good", loss_good);
                c.probability("loss.loss_bad", loss_bad);
                c.ensure(
                    self.loss.mean_loss() <= 0.5,
                    "loss",
                    "mean loss above 50% is not a usable TCP path",
                );
            }
        }
        c.int_range("mss_bytes", self.mss_bytes as u64, 88, 65_495);
    }
}

/// TCP options of one endpoint's socket and of the stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// `TCP_NODELAY` on the sending socket (Nagle off).
    pub nodelay: bool,
    /// Receiver's delayed-ACK timer in ms (Linux: 40 ms minimum, up to 200 ms).
    pub delayed_ack_ms: f64,
    /// TCP Fast Open on a repeat connection (client holds a cookie): saves one RTT once.
    pub fast_open: bool,
    /// Minimum retransmission timeout in ms (Linux 200 ms).
    pub min_rto_ms: f64,
    /// Initial congestion window in segments (Linux 10).
    pub initial_cwnd_segments: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            nodelay: true,
            delayed_ack_ms: 40.0,
            fast_open: false,
            min_rto_ms: 200.0,
            initial_cwnd_segments: 10,
        }
    }
}

impl TcpConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.range("delayed_ack_ms", self.delayed_ack_ms, 0.0, 500.0);
        c.range("min_rto_ms", self.min_rto_ms, 1.0, 60_000.0);
        c.int_range(
            "initial_cwnd_segments",
            self.initial_cwnd_segments as u64,
            1,
            1000,
        );
    }
}
