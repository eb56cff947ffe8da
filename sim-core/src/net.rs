//! Network path and TCP models: bottleneck rate, propagation, jitter (netem semantics), loss
//! (Bernoulli, Gilbert–Elliott), queue limit, Nagle + delayed ACK, slow start at connection start,
//! retransmission and head-of-line blocking, the Mathis and PFTK throughput bounds.
//!
//! The central type is [`TcpPath`]: one direction of one TCP connection. The caller hands it each
//! application write (one RTMP message's bytes) and gets back a [`Delivery`]: when the bytes left
//! the sender and when the last byte reached the receiving application, with the parts of the
//! delay that Nagle and loss recovery caused. It is a closed-form, O(1)-per-write model, not a
//! packet simulator: it keeps a handful of numbers of state (when the bottleneck link is next
//! free, when the previous write was delivered, the receiver's delayed-ACK state, how many packets
//! remain until the next loss) and draws at most a few random numbers per write.
//!
//! # The delay of one write (MODELS.md §D1: d = d_prop + b/C + Q/C + ε)
//!
//! A write of `B` bytes at time `t` becomes `n = ⌈B/MSS⌉` segments. Then, in order:
//!
//! 1. **Queue** (Q/C). The bottleneck serves bytes first-in first-out, so the first byte starts
//!    at `s = max(t, F)`, where `F` is when the link finishes the earlier writes. Whether waiting
//!    bytes sit in the sender's socket or in the router queue does not change when they leave the
//!    bottleneck; the split only matters for reporting (see *Queue limit* below).
//! 2. **Slow start** (MODELS §G "initial window at join"). Segment `j`, counted from the
//!    connection's first data, may not leave before `a + k(j)·(RTT + MSS/C)`, where `a` is when
//!    that first data left and `k(j) = ⌊log₂(j/IW + 1)⌋` is the round trip in which a window that
//!    starts at IW segments and doubles every round trip lets it go (round `k` carries
//!    `IW·2^k` segments). After 16 round trips the window is treated as open.
//! 3. **Serialization** (b/C): `(B + n·h)·8/C` seconds at the bottleneck rate `C`,
//!    `h` = [`PathConfig::per_packet_overhead_bytes`]. An unlimited path (`bottleneck_kbps = 0`)
//!    serializes in zero time. On a lossy path whose Mathis rate `M` is below `C`, `M` caps the
//!    long-run rate: a token bucket with one round trip of credit (a window of `M·RTT` bytes
//!    leaves at line rate; a backlog drains at `M`). [`TcpPath::effective_rate_bps`] is
//!    `min(C, M)`.
//! 4. **Nagle** (MODELS §A6, §G). With `nodelay = false` a sub-MSS last segment is held while
//!    earlier data is unacknowledged — Linux (Minshall, the default): while the last *small*
//!    segment sent is — until the ACK returns or the next write (`next_write_at`) brings enough
//!    data to fill a segment: `hold = min(ACK return, next write)`. A tail released by the next
//!    write leaves inside a full segment and is not a small segment; receivers ACK a small
//!    segment when they read it ([`TcpConfig::ack_pushed_on_read`]).
//! 5. **Propagation + jitter**: `arrival = e + max(0, D + J·Mₙ)`, `e` = when the last byte left,
//!    `D` the one-way propagation, `Mₙ` the largest of the jitter draws of the write's packets (in
//!    units of J; netem semantics, see [`sample_jitter_ms`]).
//! 6. **Loss**: each lost segment is repaired by fast retransmit or by a timeout (see
//!    [`TcpPath::send`]); the write is complete when its last repair arrives.
//! 7. **In-order delivery**: `delivered = max(arrival, repairs, previous delivered)`. A lost
//!    segment of an earlier write therefore also delays later writes (head-of-line blocking).
//!
//! # Simplifications (all deliberate; each is O(p²) or only matters at connection start)
//!
//! - ACKs travel a clean reverse path of fixed one-way delay (no jitter, loss or rate limit).
//! - A retransmission is not lost again, takes no bottleneck capacity and does not wait in the
//!   router queue; several losses in one write are repaired in parallel (SACK, not NewReno).
//! - Loss does not cut the congestion window write by write; its long-run effect is the Mathis
//!   rate cap (a token bucket, step 3). Near that cap real Reno spreads frames over round trips
//!   after each halving and stalls for RTOs when a retransmission is lost; docs/fidelity.md
//!   measures what that misses.
//! - Segment boundaries are per write (`⌈B/MSS⌉`), as with `TCP_NODELAY`; with Nagle a held tail
//!   really merges with the next write's bytes.
//! - The slow-start rounds assume every round trip is used fully (optimistic when the first
//!   round trips carry little data; see [`TcpPath::restart_slow_start`]); no slow start after
//!   idle, no congestion-controller pacing or PROBE_RTT (MODELS §G notes BBR's ~+400 ms spikes).
//!
//! # Jitter: which packets count, and the delay floor
//!
//! A write completes when its last packet arrives; with order-preserving delivery (and with TCP's
//! in-order delivery in any case) that is the latest of its packets' arrivals. Packets that left
//! more than the jitter range (`2J` uniform, `8σ` normal, `4.67·J` pareto) before the write's
//! last packet cannot arrive after it, so only the last `n_eff = min(n, 1 + range/spacing)`
//! packets compete, `spacing` being one segment's time at the bottleneck (packets leave back to
//! back at line rate). `Mₙ` is drawn as the exact maximum of `n_eff` iid samples (one uniform
//! number, [`sample_max_jitter_ms`]). Ignoring the earlier packets' small head start makes this
//! an upper bound, exact for a back-to-back burst. For uniform jitter and a 10-packet frame the
//! mean is `0.82·J`, MODELS §G's measured "0.8–0.9·J per crossing".
//!
//! `propagation_ms` is the mean delay `D` of netem's `delay D J` (and of §G's relay, `D ± J`),
//! so a single packet can arrive up to `J` (normal: `4σ`, pareto: `2J/3`) *before* `D`; the floor
//! is [`TcpPath::min_one_way_delay`] (never below 0, like netem). Without jitter every byte takes
//! at least `D`.
//!
//! # Properties (tested, including with proptest)
//!
//! - `delivered_at` never decreases from one write to the next, and is never earlier than
//!   `written_at + min_one_way_delay()`.
//! - With `nodelay = true`, a longer propagation delay never gives an earlier delivery (same
//!   writes, same seed), whatever the rate, queue, jitter, loss and slow-start settings. With
//!   Nagle + delayed ACK this does not hold, in the model as in real TCP: a longer path can let a
//!   segment pair with a pending one and be ACKed at once instead of waiting for the delayed-ACK
//!   timer (see the test `nagle_delayed_ack_can_make_a_longer_path_faster`).
//! - Same seed, same numbers on every target: time is integer (ns inside, µs outside, rounded
//!   up), serialization is fixed point, transcendental functions come from `libm`.
//!
//! # Cost
//!
//! `send` is O(1) per write (plus O(1) per lost segment, and O(rounds) during the first 16
//! round trips), allocates nothing, and draws no random number when jitter is 0 and loss is
//! none. With nodelay, an open window, no jitter and no loss it takes a lean path (~9 ns on the
//! lab's machine); uniform jitter costs one `log` + `exp` per multi-packet write.
//!
//! # Queue limit
//!
//! `queue_limit_bytes` is a drop-tail router queue. The model assumes the sender keeps the rest
//! of its backlog in its own socket (TCP small queues, pacing) rather than overflowing the router,
//! so the router's share of the backlog, and so its queueing delay, is bounded by
//! `queue_limit_bytes / C` ([`TcpPath::router_queue_bytes`], [`TcpPath::socket_backlog_bytes`]).
//! The total wait before the bottleneck, and so every delivery time, does not depend on the split.
//! Overflow drops and the cwnd cuts they cause are not modelled (configure loss for that).

use crate::check::Checker;
use crate::rng::SimRng;
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// Shape of the per-packet delay variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterDistribution {
    /// netem's default: uniform on [−J, +J), J a half-width (std = J/√3).
    Uniform,
    /// Normal with σ = J (netem `distribution normal`), cut at ±4σ like netem's table.
    Normal,
    /// Heavy-tailed Pareto (netem `distribution pareto`): netem's table formula
    /// `J·min(4, (4/3)(U^(−1/3) − 1.5))`, shape 3, shifted by its mean. Range [−2J/3, 4J); after
    /// the cut the mean is −0.033·J and the std 0.82·J (1.15·J before the cut).
    Pareto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitterConfig {
    pub distribution: JitterDistribution,
    /// J in ms: the half-width (uniform) or σ (normal, pareto). 0 = no jitter.
    pub ms: f64,
    /// Keep packet order (a real path mostly does; netem's tfifo reorders when jitter exceeds the
    /// packet spacing). TCP hands bytes to the application in order either way, so in this model
    /// the flag does not change delivery times (see [`TcpPath`]).
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

/// netem's distribution tables hold `i16` values scaled by `NETEM_DIST_SCALE = 8192`, so a table
/// sample lies within ±4 (in units of J). We cut normal and pareto samples there too.
const NETEM_TABLE_LIMIT: f64 = 4.0;
/// Lowest value of netem's pareto table, (1 − 1.5)·4/3.
const PARETO_MIN: f64 = -2.0 / 3.0;

impl JitterConfig {
    /// Smallest and largest value one jitter sample can take, in ms.
    pub fn bounds_ms(&self) -> (f64, f64) {
        let (lo, hi) = self.bounds_units();
        (lo * self.ms, hi * self.ms)
    }

    fn bounds_units(&self) -> (f64, f64) {
        match self.distribution {
            JitterDistribution::Uniform => (-1.0, 1.0),
            JitterDistribution::Normal => (-NETEM_TABLE_LIMIT, NETEM_TABLE_LIMIT),
            JitterDistribution::Pareto => (PARETO_MIN, NETEM_TABLE_LIMIT),
        }
    }

    fn active(&self) -> bool {
        self.ms.is_finite() && self.ms > 0.0
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
    /// One-way propagation delay in ms (RTT = 2 × this when both directions match). With
    /// jitter this is the mean of netem's `delay D J`: packets take D ± J (see [`TcpPath`]).
    pub propagation_ms: f64,
    /// Bottleneck capacity in kb/s; 0 = unlimited.
    pub bottleneck_kbps: f64,
    pub jitter: JitterConfig,
    pub loss: LossConfig,
    /// Bottleneck queue (router buffer) in bytes; 0 = unlimited (bufferbloat).
    pub queue_limit_bytes: u64,
    /// TCP maximum segment size in bytes (1448 with timestamps on Ethernet).
    pub mss_bytes: u32,
    /// Header bytes per segment that the bottleneck also has to carry. 0 counts TCP payload only
    /// (a 10 Mb/s path then carries 10 Mb/s of payload). For parity with an emulator, match what
    /// its rate limit counts: 52 = IP + TCP with timestamps, 66 = plus the Ethernet header
    /// (netem `rate`, tbf), 90 = the full Ethernet wire cost (MODELS §A4, 1538 per 1448).
    pub per_packet_overhead_bytes: u32,
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
            per_packet_overhead_bytes: 0,
        }
    }
}

impl PathConfig {
    /// The same path without rate limit, queue, jitter or loss: the clean return path that
    /// [`TcpPath`] gives ACKs, and that the link emulator gives the reverse direction of every
    /// flow (requests of a player, replies to a publisher).
    pub fn clean_reverse(&self) -> PathConfig {
        PathConfig {
            bottleneck_kbps: 0.0,
            jitter: JitterConfig {
                ms: 0.0,
                ..self.jitter.clone()
            },
            loss: LossConfig::None,
            queue_limit_bytes: 0,
            ..self.clone()
        }
    }

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
                c.ensure(
                    r > 0.0 || p == 0.0,
                    "loss.r",
                    "must be > 0 when p > 0 (else the bad state never ends)",
                );
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
        c.int_range(
            "per_packet_overhead_bytes",
            self.per_packet_overhead_bytes as u64,
            0,
            65_535,
        );
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
    /// Nagle variant when `nodelay` is false. `true` (default): Linux's Minshall variant
    /// (`tcp_nagle_check`), a sub-MSS segment waits only while the last *sub-MSS* segment sent
    /// is unacknowledged, so a write's own full segments do not hold its tail. `false`: RFC 896
    /// as in MODELS §A6, it waits until *all* sent data is acknowledged. (The default was RFC
    /// 896 until the fidelity matrix, docs/fidelity.md, measured Linux: on `lan` RFC 896 gave
    /// 33 ms on publisher → server where the emulated link measured 0.6 ms.)
    pub nagle_minshall: bool,
    /// The receiver ACKs a sub-MSS (pushed) segment as soon as its application has read it,
    /// instead of waiting for the delayed-ACK timer: Linux's `tcp_cleanup_rbuf` does so when a
    /// read empties the receive queue after a small segment (`ICSK_ACK_PUSHED`) and the
    /// connection is not in interactive ("pingpong") mode — which an RTMP server reading a
    /// publisher, or a player reading a server, is not. Modelled as an ACK at the segment's
    /// arrival (the reader is waiting in `epoll`). `false`: the timer decides (`delayed_ack_ms`),
    /// as in a receiver that reads late. Measured in docs/fidelity.md: with Nagle at the
    /// publisher it is what holds a frame's tail (the ACK of the previous small segment returns
    /// one RTT after it was sent, not one RTT + 40 ms).
    pub ack_pushed_on_read: bool,
    /// Duplicate ACKs that trigger fast retransmit (RFC 5681: 3). 1 approximates Linux's RACK,
    /// which repairs a hole as soon as any later segment is SACKed.
    pub dupack_threshold: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            nodelay: true,
            delayed_ack_ms: 40.0,
            fast_open: false,
            min_rto_ms: 200.0,
            initial_cwnd_segments: 10,
            nagle_minshall: true,
            ack_pushed_on_read: true,
            dupack_threshold: 3,
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
        c.int_range("dupack_threshold", self.dupack_threshold as u64, 1, 64);
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput bounds (MODELS §D4, [TP])
// ---------------------------------------------------------------------------------------------

/// Mathis et al. (1997) steady-state Reno throughput in bit/s: `BW = (MSS/RTT)·C/√p`,
/// `C = √(3/2)` (one ACK per segment). MSS in bytes, RTT in µs, `p` the loss (event) probability.
/// `p ≤ 0` or `RTT = 0` gives `f64::INFINITY` (no bound). \[TP\]
///
/// MODELS §D4's worked example (RTT 50 ms: 9.0 Mb/s at p = 0.1 %, 2.8 Mb/s at 1 %) uses
/// MSS = 1448 B (8.97 and 2.84 Mb/s); 1460 B would give 9.05 and 2.86.
pub fn mathis_throughput_bps(mss_bytes: u32, rtt: Micros, loss: f64) -> f64 {
    let rtt_s = rtt.as_secs_f64();
    if loss.is_nan() || loss <= 0.0 || rtt_s <= 0.0 {
        return f64::INFINITY;
    }
    let p = loss.min(1.0);
    mss_bytes as f64 * 8.0 / rtt_s * libm::sqrt(1.5) / libm::sqrt(p)
}

/// Padhye–Firoiu–Towsley–Kurose (1998) throughput with timeouts, in bit/s:
/// `BW = MSS / [RTT·√(2bp/3) + T₀·min(1, 3√(3bp/8))·p·(1 + 32p²)]`, with `b = 2` segments per
/// ACK (delayed ACKs) and `T₀ = rto`. MSS in bytes, RTT and `rto` in µs. The receive-window cap
/// `W_max/RTT` of the full formula is left out. `p ≤ 0` or a zero denominator gives
/// `f64::INFINITY`. \[TP\]
///
/// MODELS §D4's 6.3 / 1.8 Mb/s (RTT 50 ms, p = 0.1 % / 1 %) come out with MSS 1448, b = 2,
/// T₀ = 200 ms: 6.29 / 1.84 Mb/s.
pub fn pftk_throughput_bps(mss_bytes: u32, rtt: Micros, loss: f64, rto: Micros) -> f64 {
    const B: f64 = 2.0;
    if loss.is_nan() || loss <= 0.0 {
        return f64::INFINITY;
    }
    let p = loss.min(1.0);
    let rtt_s = rtt.as_secs_f64();
    let t0 = rto.as_secs_f64();
    let fast = rtt_s * libm::sqrt(2.0 * B * p / 3.0);
    let timeouts = t0 * (3.0 * libm::sqrt(3.0 * B * p / 8.0)).min(1.0) * p * (1.0 + 32.0 * p * p);
    let denom = fast + timeouts;
    if denom <= 0.0 {
        return f64::INFINITY;
    }
    mss_bytes as f64 * 8.0 / denom
}

// ---------------------------------------------------------------------------------------------
// Jitter (MODELS §D1, netem semantics [K5])
// ---------------------------------------------------------------------------------------------

/// One jitter sample in ms with netem semantics, to add to the propagation delay: uniform on
/// [−J, J) (J a half-width, std J/√3); normal with σ = J cut at ±4σ; pareto by netem's table
/// formula (see [`JitterDistribution::Pareto`]). Draws one uniform number by inverse transform;
/// returns 0 without drawing when J = 0.
pub fn sample_jitter_ms(cfg: &JitterConfig, rng: &mut SimRng) -> f64 {
    if !cfg.active() {
        return 0.0;
    }
    cfg.ms * max_jitter_units(cfg.distribution, 1, rng)
}

/// The largest of `n` independent jitter samples in ms, drawn with one uniform number: the
/// maximum of `n` iid draws has CDF `Fⁿ`, so it is `F⁻¹(W^(1/n))` with `W` uniform. For uniform
/// jitter that is `−J + 2J·W^(1/n)`; normal and pareto use their quantile functions. `n = 0`
/// behaves like `n = 1`. Returns 0 without drawing when J = 0.
///
/// This is what order-preserving jitter does to a write of `n` packets that leave back to back
/// (MODELS §G: "a frame completes only when its last packet arrives"): the mean is
/// `J·(n−1)/(n+1)` for uniform jitter, 0.82·J at n = 10, 0.9·J at n = 20.
pub fn sample_max_jitter_ms(cfg: &JitterConfig, n: u64, rng: &mut SimRng) -> f64 {
    if !cfg.active() {
        return 0.0;
    }
    cfg.ms * max_jitter_units(cfg.distribution, n, rng)
}

/// The mean of the largest of `n` independent jitter samples, in ms (what order-preserving
/// jitter adds on average to a message of `n` packets sent back to back, see
/// [`sample_max_jitter_ms`]): `J·(n−1)/(n+1)` for uniform jitter; normal and pareto by
/// integrating their quantile function (`E[max] = ∫₀¹ F⁻¹(w^(1/n)) dw`, midpoint rule, 512
/// points). `n = 0` behaves like `n = 1`; 0 when J = 0.
pub fn expected_max_jitter_ms(cfg: &JitterConfig, n: u64) -> f64 {
    if !cfg.active() {
        return 0.0;
    }
    let n = n.max(1);
    let units = match cfg.distribution {
        JitterDistribution::Uniform => (n as f64 - 1.0) / (n as f64 + 1.0),
        dist => {
            const STEPS: u32 = 512;
            let sum: f64 = (0..STEPS)
                .map(|i| {
                    let w = (f64::from(i) + 0.5) / f64::from(STEPS);
                    // P(one sample > the max's value) = 1 − w^(1/n).
                    let q = -libm::expm1(libm::log(w) / n as f64);
                    jitter_quantile_upper(dist, q)
                })
                .sum();
            sum / f64::from(STEPS)
        }
    };
    cfg.ms * units
}

/// log2(x) for x in (0, 1]: exponent from the bits, a degree-5 polynomial for the mantissa
/// (least-squares fit, max error ≈ 5e-6 on [1, 2)).
#[inline(always)]
fn fast_log2(x: f32) -> f32 {
    if x <= 0.0 || !x.is_finite() {
        return -126.0;
    }
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000) - 1.0; // [0, 1)
                                                                      // log2(1 + m), least-squares fit on [0, 1).
    let p = m
        * (1.442_517
            + m * (-0.717_898_4
                + m * (0.456_894_2 + m * (-0.277_365 + m * (0.121_914_1 + m * -0.026_066_3)))));
    exponent as f32 + p
}

/// 2^x for x ≤ 0 (clamped at −126): integer part into the exponent bits, a degree-5 polynomial
/// for the fraction (least-squares fit, max relative error ≈ 2e-7 on [0, 1)).
#[inline(always)]
fn fast_exp2(x: f32) -> f32 {
    let x = x.clamp(-126.0, 0.0);
    // floor(x) for x in [−126, 0]: truncation, one lower when it rounded up.
    let t = x as i32;
    let i = (t - ((t as f32) > x) as i32) as f32;
    let f = x - i; // [0, 1)
    let p = 1.0
        + f * (0.693_152_7
            + f * (0.240_153_2 + f * (0.055_828_2 + f * (0.008_988_95 + f * 0.001_876_643))));
    let scale = f32::from_bits(((i as i32 + 127) as u32) << 23);
    p * scale
}

/// Max of `n` samples in units of J.
#[inline(always)]
fn max_jitter_units(dist: JitterDistribution, n: u64, rng: &mut SimRng) -> f64 {
    if dist == JitterDistribution::Uniform {
        return max_uniform_units(n, packets_reciprocal(n), rng.next_u32());
    }
    max_jitter_units_tailed(dist, n, rng)
}

/// 1/n in f32, the exponent [`max_uniform_units`] raises W to.
#[inline(always)]
fn packets_reciprocal(n: u64) -> f32 {
    1.0 / n.min(1 << 24) as u32 as f32
}

/// The largest of `n` uniform samples on [−1, 1), from one 32-bit word `x`: 2·W^(1/n) − 1.
/// No tail to resolve, so one word is enough randomness (a step of J/2³¹; netem's own source is
/// 32 bits) and a polynomial log2/exp2 (relative error < 1e-4, i.e. under a microsecond of a
/// 10 ms jitter) is plenty; it is ~10× cheaper than libm on this hot path (one call per message
/// per path) and, being plain IEEE arithmetic, gives the same bits on every platform.
/// `inv_n` is [`packets_reciprocal`]`(n)`.
#[inline(always)]
fn max_uniform_units(n: u64, inv_n: f32, x: u32) -> f64 {
    let v = if n <= 1 {
        x as f64 * (1.0 / 4_294_967_296.0)
    } else {
        // W on [0, 1) in the 24 bits an f32 holds exactly.
        let w = (x >> 8) as f32 * (1.0 / 16_777_216.0);
        fast_exp2(fast_log2(w) * inv_n) as f64
    };
    2.0 * v - 1.0
}

/// [`max_jitter_units`] for the normal and pareto shapes.
#[inline(never)]
fn max_jitter_units_tailed(dist: JitterDistribution, n: u64, rng: &mut SimRng) -> f64 {
    let w = rng.uniform();
    // q = P(one sample > the max's value) = 1 − W^(1/n), computed without cancellation.
    let q = if n <= 1 {
        1.0 - w
    } else {
        -libm::expm1(libm::log(w) / n as f64)
    };
    jitter_quantile_upper(dist, q)
}

/// The value `x` (units of J) with `P(X > x) = q`.
#[inline]
fn jitter_quantile_upper(dist: JitterDistribution, q: f64) -> f64 {
    match dist {
        JitterDistribution::Uniform => 1.0 - 2.0 * q,
        JitterDistribution::Normal => {
            (-inverse_normal_cdf(q)).clamp(-NETEM_TABLE_LIMIT, NETEM_TABLE_LIMIT)
        }
        JitterDistribution::Pareto => {
            // iproute2 netem/pareto.c: (v^(−1/3) − 1.5)·4/3 with v the upper-tail probability.
            let c = libm::cbrt(q);
            if c <= 0.0 {
                NETEM_TABLE_LIMIT
            } else {
                ((1.0 / c - 1.5) * (4.0 / 3.0)).min(NETEM_TABLE_LIMIT)
            }
        }
    }
}

/// Standard normal quantile Φ⁻¹(p) by Acklam's rational approximation (absolute error < 4·10⁻⁹),
/// using `libm` only. `p ≤ 0` gives −∞, `p ≥ 1` gives +∞.
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const P_LOW: f64 = 0.02425;
    if p.is_nan() {
        return 0.0;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |t: f64| {
        let q = libm::sqrt(-2.0 * libm::log(t));
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail(p)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail(1.0 - p)
    }
}

// ---------------------------------------------------------------------------------------------
// Loss (MODELS §D2)
// ---------------------------------------------------------------------------------------------

/// Number of failures before the first success of a Bernoulli process whose failure
/// probability has logarithm `ln_keep = ln(1 − p)`: `⌊ln U / ln(1 − p)⌋`, `U` uniform on (0, 1].
/// `ln_keep = 0` (p = 0) never succeeds and returns `u64::MAX` without drawing; `−∞` (p = 1)
/// returns 0 without drawing.
#[inline]
fn geometric_failures(ln_keep: f64, rng: &mut SimRng) -> u64 {
    if ln_keep >= 0.0 {
        return u64::MAX;
    }
    if ln_keep == f64::NEG_INFINITY {
        return 0;
    }
    let x = libm::log(rng.uniform_open0()) / ln_keep;
    // `as` saturates: huge gaps become u64::MAX ("not in this run").
    libm::floor(x) as u64
}

fn ln_keep(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        0.0
    } else if p >= 1.0 {
        f64::NEG_INFINITY
    } else {
        libm::log1p(-p)
    }
}

/// The Gilbert–Elliott chain gives up searching exactly after this many state visits without a
/// loss and falls back to a Bernoulli gap at the mean loss rate (only reachable with loss rates
/// so tiny that losses practically never happen).
const GE_MAX_VISITS: u32 = 256;

#[derive(Debug, Clone)]
enum LossModel {
    Never,
    Bernoulli {
        ln_keep: f64,
    },
    GilbertElliott {
        /// ln(1 − loss) in the good and bad state.
        ln_keep_good: f64,
        ln_keep_bad: f64,
        /// ln(1 − P(leave)) for the good state (leave prob p) and the bad state (r).
        ln_stay_good: f64,
        ln_stay_bad: f64,
        /// ln(1 − mean loss), for the fallback.
        ln_keep_mean: f64,
        bad: bool,
        /// Packets still to pass in the current state (0 = draw a new visit).
        left: u64,
    },
}

/// A packet-loss process that draws *gaps* between losses instead of one coin per packet.
///
/// Bernoulli(p): the number of packets before the next loss is geometric,
/// `⌊ln U / ln(1 − p)⌋` (one draw per loss event). Gilbert–Elliott (MODELS §D2, netem
/// `gemodel`): the chain starts in the good state (as netem does); each packet is lost with the
/// current state's loss probability, then the chain moves good→bad with probability `p` and
/// bad→good with `r`, so a visit to the bad state lasts `1/r` packets on average. Both the visit
/// lengths and the gaps within a state are geometric, so the next loss is found exactly with a
/// few draws per state visit (memorylessness). Long-run loss = `π_b·loss_bad + π_g·loss_good`,
/// `π_b = p/(p + r)`.
#[derive(Debug, Clone)]
pub struct LossProcess {
    model: LossModel,
    /// Packets that pass before the next lost one (valid once `primed`).
    gap: u64,
    primed: bool,
}

impl LossProcess {
    pub fn new(cfg: &LossConfig) -> Self {
        let model = match *cfg {
            LossConfig::None => LossModel::Never,
            LossConfig::Bernoulli { p } => {
                if p.is_nan() || p <= 0.0 {
                    LossModel::Never
                } else {
                    LossModel::Bernoulli {
                        ln_keep: ln_keep(p),
                    }
                }
            }
            LossConfig::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                let mean = cfg.mean_loss();
                let bad_reachable = p > 0.0;
                let lossy = loss_good > 0.0 || (bad_reachable && loss_bad > 0.0);
                let lossless = !lossy;
                if lossless || mean.is_nan() {
                    LossModel::Never
                } else {
                    LossModel::GilbertElliott {
                        ln_keep_good: ln_keep(loss_good),
                        ln_keep_bad: ln_keep(loss_bad),
                        ln_stay_good: ln_keep(p),
                        ln_stay_bad: ln_keep(r),
                        ln_keep_mean: ln_keep(mean),
                        bad: false,
                        left: 0,
                    }
                }
            }
        };
        let never = matches!(model, LossModel::Never);
        LossProcess {
            model,
            gap: u64::MAX,
            primed: never,
        }
    }

    /// True when no packet can ever be lost.
    pub fn is_lossless(&self) -> bool {
        matches!(self.model, LossModel::Never)
    }

    /// Packets between now and the next lost one (the next loss is the packet after them).
    fn draw_gap(&mut self, rng: &mut SimRng) -> u64 {
        match &mut self.model {
            LossModel::Never => u64::MAX,
            LossModel::Bernoulli { ln_keep } => geometric_failures(*ln_keep, rng),
            LossModel::GilbertElliott {
                ln_keep_good,
                ln_keep_bad,
                ln_stay_good,
                ln_stay_bad,
                ln_keep_mean,
                bad,
                left,
            } => {
                let mut offset: u64 = 0;
                for _ in 0..GE_MAX_VISITS {
                    if *left == 0 {
                        // A fresh visit: at least one packet, then stay with prob (1 − leave).
                        let stay = if *bad { *ln_stay_bad } else { *ln_stay_good };
                        *left = geometric_failures(stay, rng).saturating_add(1);
                    }
                    let keep = if *bad { *ln_keep_bad } else { *ln_keep_good };
                    let g = geometric_failures(keep, rng);
                    if g < *left {
                        *left -= g + 1;
                        if *left == 0 {
                            *bad = !*bad;
                        }
                        return offset.saturating_add(g);
                    }
                    offset = offset.saturating_add(*left);
                    if offset == u64::MAX {
                        return u64::MAX;
                    }
                    *left = 0;
                    *bad = !*bad;
                }
                offset.saturating_add(geometric_failures(*ln_keep_mean, rng))
            }
        }
    }

    #[inline]
    fn prime(&mut self, rng: &mut SimRng) {
        if !self.primed {
            self.gap = self.draw_gap(rng);
            self.primed = true;
        }
    }

    /// One packet: is it lost? (Packet-by-packet interface; [`LossProcess::take`] is the fast
    /// one.)
    pub fn next_lost(&mut self, rng: &mut SimRng) -> bool {
        self.prime(rng);
        if self.gap == 0 {
            self.gap = self.draw_gap(rng);
            true
        } else {
            if self.gap != u64::MAX {
                self.gap -= 1;
            }
            false
        }
    }

    /// How many packets will pass before the next lost one (draws only if no gap is pending).
    pub fn segments_until_next_loss(&mut self, rng: &mut SimRng) -> u64 {
        self.prime(rng);
        self.gap
    }

    /// Sends `n` packets through the process: calls `on_loss(i)` for each lost one (`i` its index
    /// among the `n`, increasing) and returns how many were lost. Costs O(1) plus O(1) per loss.
    #[inline]
    pub fn take(&mut self, rng: &mut SimRng, n: u64, mut on_loss: impl FnMut(u64)) -> u32 {
        self.prime(rng);
        if self.gap >= n {
            if self.gap != u64::MAX {
                self.gap -= n;
            }
            return 0;
        }
        let mut pos = self.gap;
        let mut lost: u32 = 0;
        loop {
            on_loss(pos);
            lost = lost.saturating_add(1);
            let next = self.draw_gap(rng);
            let after = pos + 1;
            if next >= n - after {
                self.gap = if next == u64::MAX {
                    u64::MAX
                } else {
                    next - (n - after)
                };
                return lost;
            }
            pos = after + next;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP over one path direction
// ---------------------------------------------------------------------------------------------

/// What happened to one application write (one RTMP message's bytes) on one TCP direction.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// When the app wrote it (the `now` passed to `send`, raised to the previous call's `now` if
    /// it was earlier).
    pub written_at: Micros,
    /// First byte leaves the sender host (after waiting in the socket send queue behind earlier
    /// data, for the slow-start window at connection start, and, for a write that is a single
    /// sub-MSS segment, for Nagle's hold).
    pub first_departure: Micros,
    /// Last byte leaves the sender (after bottleneck serialization; includes any Nagle hold of
    /// the tail).
    pub last_departure: Micros,
    /// Last byte delivered, in order, to the receiving application.
    pub delivered_at: Micros,
    /// Extra wait of the tail segment caused by Nagle (0 with nodelay).
    pub nagle_wait: Micros,
    /// Extra delay caused by loss recovery of this message's segments or head-of-line blocking
    /// behind an earlier one: `delivered_at` minus what it would have been with no loss at all.
    pub loss_wait: Micros,
    pub segments: u32,
    pub lost_segments: u32,
}

impl Delivery {
    /// Write-to-delivery latency.
    pub fn latency(&self) -> Micros {
        self.delivered_at - self.written_at
    }
}

/// What the size of one write costs on a path, worked out once by [`TcpPath::prepare`] for
/// writing the same message to many paths of the same configuration (the engine's fan-out to
/// players behind identical downlinks) with [`TcpPath::send_prepared`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PreparedWrite {
    bytes: u32,
    /// ⌈bytes/MSS⌉.
    segments: u64,
    /// Serialization time at the bottleneck, ns.
    ser_ns: u64,
    /// Packets that compete for the largest jitter: min(segments, jitter window).
    jitter_packets: u64,
    /// Its reciprocal ([`packets_reciprocal`]).
    jitter_inv: f32,
    /// [`TcpPath`]'s `shape_key`: a path with another key recomputes these.
    key: u64,
}

impl PreparedWrite {
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

/// The jitter of a coming write, worked out before the write (see [`TcpPath::jitter_ahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterAhead {
    /// Which jitter draw of the path it is (its count of draws when the write is made).
    draw: u64,
    /// Packets competing for the largest jitter, as the write was prepared.
    packets: u64,
    /// The one-way delay, ns.
    delay_ns: u64,
}

impl JitterAhead {
    /// Nothing worked out.
    pub const NONE: JitterAhead = JitterAhead {
        draw: u64::MAX,
        packets: 0,
        delay_ns: 0,
    };
}

/// Slow-start rounds after which the window is treated as open (the window then allows
/// IW·(2¹⁷ − 1) segments, far beyond any burst the lab produces).
const SLOW_START_OPEN_ROUNDS: u64 = 16;
/// Recent writes remembered for [`TcpPath::backlog_bytes`].
const BACKLOG_RING: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct SentWrite {
    first_ns: u64,
    last_ns: u64,
    /// Bytes written before this one (its size is the next one's `before` minus this).
    before: u64,
}

/// The receiver's delayed-ACK state as the sender's Nagle logic sees it (times in ns).
///
/// Linux rule (`__tcp_ack_snd_check`): ACK at once when more than one MSS of data is
/// unacknowledged (so every second full segment, or a full segment plus a tail), otherwise start
/// the delayed-ACK timer at the first unacknowledged arrival; with `pushed_on_read`, a sub-MSS
/// segment is ACKed at its arrival (`tcp_cleanup_rbuf`, see [`TcpConfig::ack_pushed_on_read`]).
/// Arrival times are nominal (no jitter, no loss). Quick-ACK mode at connection start is not
/// modelled.
#[derive(Debug, Clone, Copy, Default)]
struct AckClock {
    /// Constants: MSS, delayed-ACK timer and reverse one-way delay (ns).
    mss: u64,
    delack: u64,
    rev: u64,
    /// A sub-MSS segment is ACKed when the application reads it (at its arrival).
    pushed_on_read: bool,
    /// Bytes received but not yet acknowledged.
    pending: u64,
    /// When the delayed-ACK timer fires (valid while `pending > 0`).
    deadline: u64,
    /// When the ACK covering everything acknowledged so far reaches the sender.
    acked_return: u64,
    /// The last sub-MSS segment sent is not yet acknowledged.
    small_pending: bool,
    /// When the ACK of the last sub-MSS segment reached (or reaches) the sender.
    small_return: u64,
}

impl AckClock {
    #[inline]
    fn ack_at(&mut self, t: u64) {
        let ret = t.saturating_add(self.rev);
        self.acked_return = self.acked_return.max(ret);
        self.pending = 0;
        if self.small_pending {
            self.small_return = self.small_return.max(ret);
            self.small_pending = false;
        }
    }

    #[inline]
    fn expire(&mut self, t: u64) {
        if self.pending > 0 && self.deadline <= t {
            self.ack_at(self.deadline);
        }
    }

    /// `k ≥ 1` full segments arrive, the first at `a1`, the last at `ak`; `gap` = spacing.
    fn arrive_full(&mut self, k: u64, a1: u64, ak: u64, gap: u64) {
        self.expire(a1);
        let mut r = k;
        if self.pending > 0 {
            // Pending data + a full segment is more than one MSS: ACK now.
            self.ack_at(a1);
            r -= 1;
        }
        if r == 0 {
            return;
        }
        if r.is_multiple_of(2) {
            self.ack_at(ak);
        } else {
            if r >= 3 {
                self.ack_at(ak.saturating_sub(gap).max(a1));
            }
            self.pending = self.mss;
            self.deadline = ak.saturating_add(self.delack);
        }
    }

    /// A sub-MSS segment of `bytes` arrives at `at`.
    fn arrive_small(&mut self, bytes: u64, at: u64) {
        self.expire(at);
        self.small_pending = true;
        let was = self.pending;
        self.pending += bytes;
        if self.pending > self.mss || self.pushed_on_read {
            self.ack_at(at);
        } else if was == 0 {
            self.deadline = at.saturating_add(self.delack);
        }
    }

    /// A held tail's `bytes` arrive at `at` inside the next write's full segment (see the
    /// Nagle step of `send_general`): ACKed like data, but not a small segment.
    fn arrive_merged(&mut self, bytes: u64, at: u64) {
        self.expire(at);
        let was = self.pending;
        self.pending += bytes;
        if self.pending > self.mss {
            self.ack_at(at);
        } else if was == 0 {
            self.deadline = at.saturating_add(self.delack);
        }
    }

    /// When the sender will hold an ACK for all data sent so far, if nothing more arrives.
    fn all_acked_return(&self) -> u64 {
        if self.pending > 0 {
            self.deadline
                .saturating_add(self.rev)
                .max(self.acked_return)
        } else {
            self.acked_return
        }
    }

    /// When the sender will hold an ACK for the last sub-MSS segment, if nothing more arrives.
    fn small_acked_return(&self) -> u64 {
        if self.small_pending {
            self.deadline.saturating_add(self.rev)
        } else {
            self.small_return
        }
    }
}

/// One direction of one TCP connection over a [`PathConfig`]: data flows over the forward path,
/// ACKs return over a clean path with their own one-way propagation delay.
///
/// See the [module documentation](self) for the delay model. Times are kept internally in
/// nanoseconds so that serialization times do not accumulate rounding error over an hour of
/// back-to-back writes; the [`Delivery`] times are rounded *up* to the microsecond.
///
/// **Order preservation.** With `jitter.preserve_order = true` (a relay or link that never
/// reorders, as measured in MODELS §G) each packet is released no earlier than the one before it;
/// with `false` (netem's tfifo) packets can overtake each other when the jitter exceeds their
/// spacing. TCP hands bytes to the application in order, so in both cases a write is complete when
/// the last of its and all earlier packets has arrived: `delivered_at` is the same and never
/// decreases from one write to the next. What reordering really changes is below the
/// application: out-of-order arrivals cause duplicate ACKs, which can trigger spurious fast
/// retransmits and cwnd cuts (Linux mostly undoes them with DSACK/RACK); that is not modelled.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct TcpPath {
    // -- hot: read or written by every `send` (first two cache lines; `repr(C)` keeps the order,
    //    which matters when an engine cycles through 100 paths per message) --
    last_write_ns: u64,
    link_free_ns: u64,
    prev_delivered_ns: u64,
    prev_clean_ns: u64,
    segs_sent: u64,
    written_total: u64,
    prop_ns: u64,
    /// `prop_ns` as f64 (for the jitter arithmetic).
    prop_ns_f64: f64,
    mss: u64,
    /// Serialization cost in fixed point (2⁻¹⁶ ns): per payload byte and per segment (header
    /// overhead). Integer arithmetic is exact and identical on every target.
    ser_byte_fx: u64,
    ser_seg_fx: u64,
    /// ⌈2⁴⁸/MSS⌉: `x·m >> 48 = ⌊x/MSS⌋` for every x < 2³² (MSS < 2¹⁶), cheaper than a division.
    mss_recip: u64,
    ring_head: u32,
    ring_len: u32,
    /// `nodelay && !ss_active && !jitter_on && !loss_on`: `send` takes the lean path.
    fast: bool,
    /// `nodelay && !ss_active && jitter_on && !loss_on`: the lean path plus one jitter draw.
    jittered: bool,
    /// Tests: always take the general path (to check the lean ones against it).
    general_only: bool,
    /// Identifies what a write's size costs here (MSS, serialization, jitter window): see
    /// [`PreparedWrite`].
    shape_key: u64,
    /// Jitter draws so far (for [`JitterAhead`]).
    jitter_draws: u64,
    nodelay: bool,
    ss_active: bool,
    jitter_on: bool,
    loss_on: bool,
    ring: [SentWrite; BACKLOG_RING],
    // -- warm: jitter, loss, slow start --
    jitter_dist: JitterDistribution,
    ss_anchored: bool,
    minshall: bool,
    jitter_ns: f64,
    /// Packets that left more than this many spacings before a write's last one cannot arrive
    /// after it, so only the last `jitter_window` packets compete for the max.
    jitter_window: u64,
    ser_mss_ns: u64,
    rtt_ns: u64,
    tail_timeout_ns: u64,
    dupthresh: u64,
    iw: u64,
    round_ns: u64,
    ss_anchor_ns: u64,
    ss_base_seg: u64,
    rate_bps: f64,
    queue_limit_bytes: u64,
    /// The Mathis cap (lossy paths whose Mathis rate is below the bottleneck): ns per byte in
    /// fixed point (0: no cap), and the token bucket's clock plus one round trip — when the
    /// data written so far would have left at that rate, a window (M·RTT) of credit included.
    mathis_byte_fx: u64,
    mathis_clock_ns: u64,
    ack: AckClock,
    loss: LossProcess,
    rng: SimRng,
}

#[inline]
fn ms_to_ns(ms: f64) -> u64 {
    let v = ms * 1e6;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        libm::round(v) as u64
    }
}

#[inline]
fn us_to_ns(t: Micros) -> u64 {
    t.0.saturating_mul(1_000)
}

#[inline(always)]
fn ns_to_us(ns: u64) -> Micros {
    // (The same as `div_ceil`, without its remainder test, below the top 1000 values.)
    if ns <= u64::MAX - 999 {
        #[allow(clippy::manual_div_ceil)]
        Micros((ns + 999) / 1_000)
    } else {
        Micros(ns.div_ceil(1_000))
    }
}

impl TcpPath {
    /// One direction of one TCP connection: data flows over `forward`; ACKs return over a path
    /// with `reverse_propagation_ms` one-way delay.
    pub fn new(
        forward: &PathConfig,
        tcp: &TcpConfig,
        reverse_propagation_ms: f64,
        rng: SimRng,
    ) -> Self {
        let prop_ns = ms_to_ns(forward.propagation_ms);
        let rev_ns = ms_to_ns(reverse_propagation_ms);
        let rtt_ns = prop_ns.saturating_add(rev_ns);
        let mss = (forward.mss_bytes as u64).max(1);
        let overhead = forward.per_packet_overhead_bytes as f64;

        // Bottleneck: wire bytes at C. Mathis: payload at M (long-run, full segments).
        let loss_p = forward.loss.mean_loss();
        let c_bps = if forward.bottleneck_kbps.is_finite() && forward.bottleneck_kbps > 0.0 {
            forward.bottleneck_kbps * 1e3
        } else {
            f64::INFINITY
        };
        let m_bps = mathis_throughput_bps(mss as u32, Micros(rtt_ns / 1_000), loss_p);
        // Packets leave at the bottleneck's rate; the Mathis rate bounds the long-run
        // throughput only (a token bucket of one window, M·RTT, see `send_general`): an
        // application-limited stream sends each frame at line rate (measured in
        // docs/fidelity.md: 1 Mb/s at 1 % loss over 10 Mb/s, where serializing every write at
        // M = 3.5 Mb/s added 6 ms per hop).
        let (ns_per_byte, ns_per_segment) = if c_bps.is_finite() {
            (8e9 / c_bps, overhead * 8e9 / c_bps)
        } else {
            (0.0, 0.0)
        };
        let c_payload = c_bps * mss as f64 / (mss as f64 + overhead);
        let rate_bps = m_bps.min(c_payload);
        let mathis_byte_fx = if m_bps < c_payload {
            to_fx(8e9 / m_bps)
        } else {
            0
        };
        let ser_byte_fx = to_fx(ns_per_byte);
        let ser_seg_fx = to_fx(ns_per_segment);
        let ser_mss_ns = ser_ns(ser_byte_fx, ser_seg_fx, mss, 1);

        let jitter_on = forward.jitter.active();
        let jitter_ns = if jitter_on {
            forward.jitter.ms * 1e6
        } else {
            0.0
        };
        // Packets leave back to back at the bottleneck's line rate (the Mathis cap is a long-run
        // average, not a packet spacing), so the spacing that decides which packets compete for
        // the max jitter is the bottleneck's; it does not depend on the RTT.
        let spacing_ns = (mss as f64 + overhead) * 8e9 / c_bps;
        let spaced = spacing_ns > 0.0; // false for an unlimited link (and NaN)
        let jitter_window = if !jitter_on || !spaced {
            u64::MAX
        } else {
            let (lo, hi) = forward.jitter.bounds_units();
            let span = (hi - lo) * jitter_ns / spacing_ns;
            (libm::floor(span) as u64).saturating_add(1)
        };

        let min_rto_ns = ms_to_ns(tcp.min_rto_ms);
        let iw = (tcp.initial_cwnd_segments as u64).max(1);
        let round_ns = rtt_ns.saturating_add(ser_mss_ns);
        let loss = LossProcess::new(&forward.loss);
        let loss_on = !loss.is_lossless();
        let mut path = TcpPath {
            prop_ns,
            prop_ns_f64: prop_ns as f64,
            rtt_ns,
            mss,
            ser_byte_fx,
            ser_seg_fx,
            mss_recip: (1u64 << 48).div_ceil(mss),
            ser_mss_ns,
            rate_bps,
            queue_limit_bytes: forward.queue_limit_bytes,
            mathis_byte_fx,
            mathis_clock_ns: 0,
            jitter_dist: forward.jitter.distribution,
            jitter_ns,
            jitter_on,
            jitter_window,
            nodelay: tcp.nodelay,
            minshall: tcp.nagle_minshall,
            tail_timeout_ns: min_rto_ns.max(rtt_ns.saturating_mul(2)),
            dupthresh: (tcp.dupack_threshold as u64).max(1),
            iw,
            round_ns,
            loss,
            loss_on,
            rng,
            last_write_ns: 0,
            link_free_ns: 0,
            prev_delivered_ns: 0,
            prev_clean_ns: 0,
            segs_sent: 0,
            ss_active: round_ns > 0,
            fast: false,
            jittered: false,
            general_only: false,
            shape_key: 0,
            jitter_draws: 0,
            ss_anchored: false,
            ss_anchor_ns: 0,
            ss_base_seg: 0,
            ack: AckClock {
                mss,
                delack: ms_to_ns(tcp.delayed_ack_ms),
                rev: rev_ns,
                pushed_on_read: tcp.ack_pushed_on_read,
                ..AckClock::default()
            },
            written_total: 0,
            ring: [SentWrite::default(); BACKLOG_RING],
            ring_head: 0,
            ring_len: 0,
        };
        path.shape_key = [
            path.mss,
            path.ser_byte_fx,
            path.ser_seg_fx,
            path.jitter_window,
        ]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ v).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29)
        });
        path.refresh_fast();
        path
    }

    /// Same path both ways: ACKs return with the forward propagation delay.
    pub fn new_symmetric(path: &PathConfig, tcp: &TcpConfig, rng: SimRng) -> Self {
        Self::new(path, tcp, path.propagation_ms, rng)
    }

    /// Base RTT: forward + reverse propagation (no queueing, no serialization).
    pub fn rtt(&self) -> Micros {
        ns_to_us(self.rtt_ns)
    }

    /// Payload rate the path sustains in bit/s: `min(C·MSS/(MSS + h), Mathis)` with the Mathis
    /// bound only when loss > 0 (p = the configured mean loss; bursty Gilbert–Elliott losses
    /// that fall in one window really count as one event, so this is conservative for them).
    /// `f64::INFINITY` when unlimited.
    pub fn effective_rate_bps(&self) -> f64 {
        self.rate_bps
    }

    /// The earliest possible one-way delay of a byte: `max(0, D + J·min jitter)`.
    pub fn min_one_way_delay(&self) -> Micros {
        let lo = match self.jitter_dist {
            _ if !self.jitter_on => 0.0,
            JitterDistribution::Uniform => -1.0,
            JitterDistribution::Normal => -NETEM_TABLE_LIMIT,
            JitterDistribution::Pareto => PARETO_MIN,
        };
        let d = self.prop_ns as f64 + lo * self.jitter_ns;
        Micros(if d <= 0.0 { 0 } else { (d / 1e3) as u64 })
    }

    /// Treat the congestion window as open from now on (a long-established connection).
    pub fn open_window(&mut self) {
        self.ss_active = false;
        self.refresh_fast();
    }

    fn refresh_fast(&mut self) {
        let lean = self.nodelay && !self.ss_active && !self.loss_on && !self.general_only;
        self.fast = lean && !self.jitter_on;
        self.jittered = lean && self.jitter_on;
    }

    /// Start slow start again at the next write: the next write's first segment opens round 0
    /// with IW segments (e.g. call it when a player's media starts on a connection that only
    /// carried a few handshake bytes so far, or after a long idle period — Linux's
    /// `tcp_slow_start_after_idle`).
    pub fn restart_slow_start(&mut self) {
        self.ss_active = self.round_ns > 0;
        self.ss_anchored = false;
        self.refresh_fast();
    }

    #[inline]
    fn ser(&self, bytes: u64, segments: u64) -> u64 {
        ser_ns(self.ser_byte_fx, self.ser_seg_fx, bytes, segments)
    }

    /// Slow-start round of segment `j` (counted from the round-0 anchor).
    #[inline]
    fn round_of(&self, j: u64) -> u64 {
        (j.saturating_add(self.iw) / self.iw).ilog2() as u64
    }

    /// Earliest departure of global segment `g` under slow start.
    #[inline]
    fn round_start(&self, g: u64) -> u64 {
        let k = self.round_of(g.saturating_sub(self.ss_base_seg));
        self.ss_anchor_ns
            .saturating_add(k.saturating_mul(self.round_ns))
    }

    /// Serializes `count` segments (`bytes` in total; all MSS-sized but possibly the last)
    /// starting with global segment `g0`, no earlier than `start`, respecting the slow-start
    /// rounds. Returns when the last byte has left.
    #[inline(never)]
    fn schedule(&self, start: u64, g0: u64, count: u64, bytes: u64) -> u64 {
        if count == 0 {
            return start;
        }
        if !self.ss_active || self.round_start(g0 + count - 1) <= start {
            return start.saturating_add(self.ser(bytes, count));
        }
        let mut cur = start;
        let mut j = g0 - self.ss_base_seg;
        let end = j + count;
        let mut left = bytes;
        while j < end {
            let k = self.round_of(j);
            // Round k ends before segment IW·(2^(k+1) − 1).
            let next_round_first = if k >= 62 {
                u64::MAX
            } else {
                self.iw.saturating_mul((2u64 << k) - 1)
            };
            let take = end.min(next_round_first) - j;
            let b = left.min(take.saturating_mul(self.mss));
            let round_start = self
                .ss_anchor_ns
                .saturating_add(k.saturating_mul(self.round_ns));
            cur = cur.max(round_start).saturating_add(self.ser(b, take));
            left -= b;
            j += take;
        }
        cur
    }

    /// The application writes `bytes` at `now`. `next_write_at` is when the next write on this
    /// socket is expected (None if unknown): Nagle holds a sub-MSS tail until the ACK of
    /// outstanding data returns OR enough new data arrives to fill a segment, so the hold is
    /// min(ack return, next write) — MODELS §A6 "each frame's tail can wait min(1/f, RTT +
    /// t_delack)". (The model assumes the next write does fill the segment; a small next write,
    /// e.g. one audio frame after a short video tail, really would not, and the tail would wait
    /// longer.) A `now` earlier than the previous call's is treated as equal to it.
    ///
    /// **Loss recovery** (MODELS §C "loss, head-of-line"): segment `i` of `n` lost:
    /// - fast retransmit if at least `dupack_threshold` (3) later segments of the same write
    ///   follow it: the third duplicate ACK reaches the sender one RTT after that segment left,
    ///   and the repair arrives `MSS/C + D` later — about +1 RTT;
    /// - otherwise the missing duplicate ACKs must come from the next write: if `next_write_at`
    ///   is known the repair is sent one RTT after the next write's segments leave (the model
    ///   assumes the next write carries enough segments, which is what Linux's RACK needs: one
    ///   SACKed later segment); but no later than the tail-loss timeout
    ///   `max(min_rto, 2·RTT)` after the write's last byte left (TLP/RTO; a lost tail with
    ///   no following data always waits for it).
    ///
    /// Cost: O(1) per write plus O(1) per lost segment; no allocation; draws nothing when
    /// jitter is 0 and loss is none, one number per write for jitter, and one or a few per loss
    /// event.
    #[inline]
    pub fn send(&mut self, now: Micros, bytes: u32, next_write_at: Option<Micros>) -> Delivery {
        if self.fast || self.jittered {
            self.send_lean(now, bytes)
        } else {
            self.send_general(now, bytes, next_write_at)
        }
    }

    /// [`TcpPath::send`] when only the delivery time is wanted (the engine's fan-out to many
    /// players): the same model and state changes, without building the rest of the
    /// [`Delivery`].
    #[inline]
    pub fn send_delivered(
        &mut self,
        now: Micros,
        bytes: u32,
        next_write_at: Option<Micros>,
    ) -> Micros {
        if self.fast || self.jittered {
            let w = self.prepare(bytes);
            ns_to_us(self.lean(now, &w).3)
        } else {
            self.send_general(now, bytes, next_write_at).delivered_at
        }
    }

    /// The size-derived costs of a write of `bytes` on this path (see [`PreparedWrite`]).
    #[inline]
    pub fn prepare(&self, bytes: u32) -> PreparedWrite {
        let (segments, _) = self.segments_of(bytes as u64);
        PreparedWrite {
            bytes,
            segments,
            ser_ns: self.ser(bytes as u64, segments),
            jitter_packets: segments.min(self.jitter_window),
            jitter_inv: packets_reciprocal(segments.min(self.jitter_window)),
            key: self.shape_key,
        }
    }

    /// [`TcpPath::send_delivered`] of a write prepared by [`TcpPath::prepare`] on this path or
    /// one of the same configuration (one prepared elsewhere is recomputed first).
    #[inline]
    pub fn send_prepared(
        &mut self,
        now: Micros,
        w: &PreparedWrite,
        next_write_at: Option<Micros>,
    ) -> Micros {
        self.send_prepared_ahead(now, w, next_write_at, &JitterAhead::NONE)
    }

    /// The jitter the write `w` would get if it were the `after`-th write from now (0: the next
    /// one) on the lean path (nodelay, open window, no loss) with uniform jitter: worked out
    /// ahead of time and handed to [`TcpPath::send_prepared_ahead`]. Its arithmetic is a long
    /// chain of dependent floating-point steps; done inside the write, the processor waits for
    /// it, done one write earlier it overlaps with that write's work. Exactly the delay the write
    /// would draw; when the guess is wrong (another path state, another write in between, a
    /// draw not generated yet), the write simply draws its own.
    #[inline(always)]
    pub fn jitter_ahead(&self, w: &PreparedWrite, after: usize) -> JitterAhead {
        match self.rng.peek_u32(after) {
            Some(x)
                if self.jittered
                    && self.jitter_dist == JitterDistribution::Uniform
                    && w.key == self.shape_key
                    && w.segments > 0 =>
            {
                JitterAhead {
                    draw: self.jitter_draws + after as u64,
                    packets: w.jitter_packets,
                    delay_ns: self.jittered_delay_ns(max_uniform_units(
                        w.jitter_packets,
                        w.jitter_inv,
                        x,
                    )),
                }
            }
            _ => JitterAhead::NONE,
        }
    }

    /// [`TcpPath::send_prepared`] using the jitter worked out by [`TcpPath::jitter_ahead`] when
    /// it is this write's (the result is the same either way).
    #[inline]
    pub fn send_prepared_ahead(
        &mut self,
        now: Micros,
        w: &PreparedWrite,
        next_write_at: Option<Micros>,
        ahead: &JitterAhead,
    ) -> Micros {
        if !(self.fast || self.jittered) {
            return self.send_general(now, w.bytes, next_write_at).delivered_at;
        }
        if w.key != self.shape_key {
            let w = self.prepare(w.bytes);
            return ns_to_us(self.lean_ahead(now, &w, ahead).3);
        }
        ns_to_us(self.lean_ahead(now, w, ahead).3)
    }

    /// When the last byte written so far leaves the sender (the time the link is next free).
    #[inline]
    pub fn busy_until(&self) -> Micros {
        ns_to_us(self.link_free_ns)
    }

    /// Tests: make every later `send` take the general path.
    #[cfg(test)]
    pub(crate) fn general_only(&mut self) {
        self.general_only = true;
        self.refresh_fast();
    }

    /// ⌈bytes/MSS⌉ and the bytes of the last partial segment (0 if none), by the precomputed
    /// reciprocal (exact, see `mss_recip`; an MSS of 2¹⁶ or more falls back to dividing).
    #[inline]
    fn segments_of(&self, bytes: u64) -> (u64, u64) {
        let mss = self.mss;
        let (q, tail) = if mss < (1 << 16) {
            let q = ((bytes as u128 * self.mss_recip as u128) >> 48) as u64;
            (q, bytes - q * mss)
        } else {
            (bytes / mss, bytes % mss)
        };
        (q + (tail != 0) as u64, tail)
    }

    #[inline]
    fn record(&mut self, start: u64, last_dep: u64, bytes: u64) {
        if bytes > 0 {
            self.ring[self.ring_head as usize % BACKLOG_RING] = SentWrite {
                first_ns: start,
                last_ns: last_dep,
                before: self.written_total,
            };
            self.ring_head = (self.ring_head + 1) % BACKLOG_RING as u32;
            self.ring_len = (self.ring_len + 1).min(BACKLOG_RING as u32);
            self.written_total = self.written_total.saturating_add(bytes);
        }
    }

    /// `send` with nodelay, an open window and no loss, with or without jitter: queue,
    /// serialization, propagation and jitter only — exactly the numbers `send_general` gives in
    /// that case (Nagle, slow start and loss recovery cannot act; checked by a proptest).
    /// Returns (write time, first departure, last departure, delivery), in ns.
    #[inline(always)]
    fn lean(&mut self, now: Micros, w: &PreparedWrite) -> (u64, u64, u64, u64) {
        self.lean_ahead(now, w, &JitterAhead::NONE)
    }

    /// [`TcpPath::lean`], taking the jitter from `ahead` when it was worked out for this draw.
    #[inline(always)]
    fn lean_ahead(
        &mut self,
        now: Micros,
        w: &PreparedWrite,
        ahead: &JitterAhead,
    ) -> (u64, u64, u64, u64) {
        let now_ns = us_to_ns(now).max(self.last_write_ns);
        self.last_write_ns = now_ns;
        let bytes = w.bytes as u64;
        let n = w.segments;
        let start = now_ns.max(self.link_free_ns);
        let last_dep = start.saturating_add(w.ser_ns);
        self.link_free_ns = last_dep;
        self.segs_sent = self.segs_sent.saturating_add(n);
        let arrival = if self.jittered && n > 0 {
            let d = if ahead.draw == self.jitter_draws && ahead.packets == w.jitter_packets {
                self.rng.skip_u32();
                ahead.delay_ns
            } else {
                let x = max_jitter_units(self.jitter_dist, w.jitter_packets, &mut self.rng);
                self.jittered_delay_ns(x)
            };
            self.jitter_draws += 1;
            last_dep.saturating_add(d)
        } else {
            last_dep.saturating_add(self.prop_ns)
        };
        // Without loss, the in-order (clean) and repaired deliveries are the same.
        let delivered = arrival.max(self.prev_delivered_ns);
        self.prev_delivered_ns = delivered;
        self.prev_clean_ns = delivered;
        self.record(start, last_dep, bytes);
        (now_ns, start, last_dep, delivered)
    }

    /// One-way delay in ns for a jitter of `x` (units of J): `max(0, D + J·x)`, rounded.
    #[inline(always)]
    fn jittered_delay_ns(&self, x: f64) -> u64 {
        let d = self.prop_ns_f64 + x * self.jitter_ns;
        // (+0.5 and truncate: rounds like `libm::round` for d ≥ 0, in plain IEEE arithmetic.
        // Through i64 when it fits: one instruction where u64 takes a dozen on x86-64.)
        if d <= 0.0 {
            0
        } else if d < 9.0e18 {
            (d + 0.5) as i64 as u64
        } else {
            (d + 0.5) as u64
        }
    }

    #[inline]
    fn send_lean(&mut self, now: Micros, bytes: u32) -> Delivery {
        let w = self.prepare(bytes);
        let (now_ns, start, last_dep, delivered) = self.lean(now, &w);
        let n = w.segments;
        Delivery {
            written_at: ns_to_us(now_ns),
            first_departure: ns_to_us(start),
            last_departure: ns_to_us(last_dep),
            delivered_at: ns_to_us(delivered),
            nagle_wait: Micros::ZERO,
            loss_wait: Micros::ZERO,
            segments: n.min(u32::MAX as u64) as u32,
            lost_segments: 0,
        }
    }

    #[inline(never)]
    fn send_general(&mut self, now: Micros, bytes: u32, next_write_at: Option<Micros>) -> Delivery {
        let now_ns = us_to_ns(now).max(self.last_write_ns);
        self.last_write_ns = now_ns;
        let mss = self.mss;
        let bytes = bytes as u64;
        let (n, tail_bytes) = self.segments_of(bytes);
        let start = now_ns.max(self.link_free_ns);

        if self.ss_active && n > 0 {
            if !self.ss_anchored {
                self.ss_anchored = true;
                self.ss_anchor_ns = start;
                self.ss_base_seg = self.segs_sent;
            } else if start
                >= self
                    .ss_anchor_ns
                    .saturating_add(SLOW_START_OPEN_ROUNDS.saturating_mul(self.round_ns))
            {
                self.ss_active = false;
                self.refresh_fast();
            }
        }

        // --- departure: queue, slow start, serialization, Nagle ---
        let g0 = self.segs_sent;
        let nagle = !self.nodelay && tail_bytes != 0;
        let mut nagle_wait_ns = 0;
        // The first segment leaves once the link is free and its slow-start round has begun
        // (a write that is only a held tail: when the hold ends, below).
        let mut first_dep = if self.ss_active && n > 0 {
            start.max(self.round_start(g0))
        } else {
            start
        };
        let last_dep = if self.nodelay {
            if self.ss_active {
                self.schedule(start, g0, n, bytes)
            } else {
                start.saturating_add(self.ser(bytes, n))
            }
        } else {
            let full = if nagle { n - 1 } else { n };
            let body_end = self.schedule(start, g0, full, full * mss);
            if full > 0 {
                let a1 = start
                    .saturating_add(self.ser_mss_ns)
                    .saturating_add(self.prop_ns);
                let ak = body_end.saturating_add(self.prop_ns);
                self.ack.arrive_full(full, a1.min(ak), ak, self.ser_mss_ns);
            }
            if nagle {
                let mut ready = body_end;
                if self.ss_active {
                    ready = ready.max(self.round_start(g0 + full));
                }
                let hold_until = if self.minshall {
                    self.ack.small_acked_return()
                } else {
                    self.ack.all_acked_return()
                };
                let next = next_write_at.map_or(u64::MAX, |t| us_to_ns(t).max(now_ns));
                let tail_start = ready.max(hold_until.min(next));
                nagle_wait_ns = tail_start - ready;
                if full == 0 {
                    first_dep = tail_start;
                }
                let tail_end = tail_start.saturating_add(self.ser(tail_bytes, 1));
                // Held until the next write: the tail leaves inside that write's first full
                // segment, so it is not a small segment (Linux's `snd_sml` does not move and the
                // next write's own tail is not held for it). Sent on the ACK or at once: small.
                let merged = hold_until > ready && next < hold_until;
                let arrival = tail_end.saturating_add(self.prop_ns);
                if merged {
                    self.ack.arrive_merged(tail_bytes, arrival);
                } else {
                    self.ack.arrive_small(tail_bytes, arrival);
                }
                tail_end
            } else {
                body_end
            }
        };
        // The Mathis cap: the last byte leaves no earlier than the long-run rate allows, with
        // up to one round trip of credit (a window of M·RTT bytes goes at line rate).
        let last_dep = if self.mathis_byte_fx > 0 && bytes > 0 {
            let clock = self.mathis_clock_ns.max(start).saturating_add(ser_ns(
                self.mathis_byte_fx,
                0,
                bytes,
                0,
            ));
            self.mathis_clock_ns = clock;
            last_dep.max(clock.saturating_sub(self.rtt_ns))
        } else {
            last_dep
        };
        self.link_free_ns = last_dep;
        self.segs_sent = self.segs_sent.saturating_add(n);

        // --- propagation + jitter ---
        let arrival = if self.jitter_on && n > 0 {
            let k = n.min(self.jitter_window);
            let x = max_jitter_units(self.jitter_dist, k, &mut self.rng);
            self.jitter_draws += 1;
            last_dep.saturating_add(self.jittered_delay_ns(x))
        } else {
            last_dep.saturating_add(self.prop_ns)
        };

        // --- loss and recovery ---
        let mut repaired = 0u64;
        let mut lost = 0u32;
        if self.loss_on && n > 0 {
            let ser_mss = self.ser_mss_ns;
            let prop = self.prop_ns;
            let rtt = self.rtt_ns;
            let dupthresh = self.dupthresh;
            let timeout = last_dep.saturating_add(self.tail_timeout_ns);
            let next_dep = next_write_at.map(|t| us_to_ns(t).max(last_dep));
            // End of departure of segment i (back to back from `start`, but no later than the
            // write's actual last departure minus the segments after it).
            let dep_end = |i: u64| -> u64 {
                let from_start = start.saturating_add((i + 1).saturating_mul(ser_mss));
                let from_end = last_dep.saturating_sub((n - 1 - i).saturating_mul(ser_mss));
                from_start.max(from_end).min(last_dep)
            };
            lost = self.loss.take(&mut self.rng, n, |i| {
                let later = n - 1 - i;
                let resend_at = if later >= dupthresh {
                    dep_end(i + dupthresh).saturating_add(rtt)
                } else {
                    let by_next = next_dep.map_or(u64::MAX, |d| {
                        d.saturating_add((dupthresh - later).saturating_mul(ser_mss))
                            .saturating_add(rtt)
                    });
                    by_next.min(timeout)
                };
                let at = resend_at.saturating_add(ser_mss).saturating_add(prop);
                repaired = repaired.max(at);
            });
        }

        // --- in-order delivery ---
        let clean = arrival.max(self.prev_clean_ns);
        let delivered = clean.max(repaired).max(self.prev_delivered_ns);
        self.prev_clean_ns = clean;
        self.prev_delivered_ns = delivered;

        self.record(start, last_dep, bytes);

        let delivered_at = ns_to_us(delivered);
        Delivery {
            written_at: ns_to_us(now_ns),
            first_departure: ns_to_us(first_dep),
            last_departure: ns_to_us(last_dep),
            delivered_at,
            nagle_wait: ns_to_us(nagle_wait_ns),
            loss_wait: delivered_at - ns_to_us(clean),
            segments: n.min(u32::MAX as u64) as u32,
            lost_segments: lost,
        }
    }

    /// Bytes written but not yet departed the sender at `now` (socket send queue + in the
    /// bottleneck queue ahead of the link). Exact per write for the last 4 writes, with the
    /// bytes of a write leaving evenly between its first and last departure; the older writes
    /// still waiting are estimated as `(when the 4th-last write starts − now)·C` (exact when the
    /// link is busy without pause until then, which is how a backlog builds up).
    pub fn backlog_bytes(&self, now: Micros) -> u64 {
        let t = us_to_ns(now);
        if t >= self.link_free_ns {
            return 0;
        }
        let mut total: u64 = 0;
        let mut idx = self.ring_head as usize;
        let mut after = self.written_total;
        let mut oldest = None;
        for _ in 0..self.ring_len {
            idx = (idx + BACKLOG_RING - 1) % BACKLOG_RING;
            let w = self.ring[idx];
            let bytes = after - w.before;
            after = w.before;
            if w.last_ns <= t {
                return total;
            }
            if w.first_ns >= t {
                total += bytes;
            } else {
                let span = (w.last_ns - w.first_ns) as u128;
                let part = (bytes as u128 * (w.last_ns - t) as u128).div_ceil(span.max(1));
                total += part as u64;
            }
            oldest = Some(w);
        }
        if self.ring_len as usize == BACKLOG_RING && self.rate_bps.is_finite() {
            if let Some(w) = oldest {
                let est = (w.first_ns.saturating_sub(t)) as f64 * self.rate_bps / 8e9;
                total += (est as u64).min(w.before);
            }
        }
        total
    }

    /// [`TcpPath::backlog_bytes`] as a duration at [`TcpPath::effective_rate_bps`] (0 on an
    /// unlimited path, where a backlog can only be a Nagle hold or the slow-start window; see
    /// [`TcpPath::drain_time`]).
    pub fn backlog_duration(&self, now: Micros) -> Micros {
        crate::units::transmission_time(self.backlog_bytes(now), self.rate_bps)
    }

    /// Time from `now` until the last byte written so far has left the sender.
    pub fn drain_time(&self, now: Micros) -> Micros {
        ns_to_us(self.link_free_ns.saturating_sub(us_to_ns(now)))
    }

    /// The part of the backlog in the router queue: at most `queue_limit_bytes` (0 = unlimited),
    /// and nothing on an unlimited path.
    pub fn router_queue_bytes(&self, now: Micros) -> u64 {
        if !self.rate_bps.is_finite() {
            return 0;
        }
        let b = self.backlog_bytes(now);
        if self.queue_limit_bytes == 0 {
            b
        } else {
            b.min(self.queue_limit_bytes)
        }
    }

    /// The part of the backlog still in the sender's socket.
    pub fn socket_backlog_bytes(&self, now: Micros) -> u64 {
        self.backlog_bytes(now) - self.router_queue_bytes(now)
    }

    /// Bound on the router queue's delay, `queue_limit_bytes / C` (`Micros::MAX` when either is
    /// unlimited, 0 on an unlimited link).
    pub fn router_queue_delay_bound(&self) -> Micros {
        if !self.rate_bps.is_finite() {
            Micros::ZERO
        } else if self.queue_limit_bytes == 0 {
            Micros::MAX
        } else {
            crate::units::transmission_time(self.queue_limit_bytes, self.rate_bps)
        }
    }

    /// When the last write is delivered to the application.
    pub fn last_delivery(&self) -> Micros {
        ns_to_us(self.prev_delivered_ns)
    }
}

/// Serialization time in ns of `bytes` in `segments` segments, from fixed-point (2⁻¹⁶ ns) costs,
/// rounded to the nearest ns and saturating.
#[inline]
fn ser_ns(byte_fx: u64, seg_fx: u64, bytes: u64, segments: u64) -> u64 {
    let t = bytes as u128 * byte_fx as u128 + segments as u128 * seg_fx as u128 + (1 << 15);
    (t >> 16).min(u64::MAX as u128) as u64
}

/// A cost in ns as fixed point with 16 fractional bits (saturating; NaN and negative give 0).
fn to_fx(ns: f64) -> u64 {
    let v = ns * 65_536.0;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= (1u64 << 62) as f64 {
        1 << 62
    } else {
        libm::round(v) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> SimRng {
        SimRng::new(1, 99)
    }

    fn path(prop_ms: f64, kbps: f64) -> PathConfig {
        PathConfig {
            propagation_ms: prop_ms,
            bottleneck_kbps: kbps,
            ..PathConfig::default()
        }
    }

    fn ms(x: u64) -> Micros {
        Micros::from_ms(x)
    }

    #[test]
    fn mathis_matches_models_d4() {
        let rtt = ms(50);
        let a = mathis_throughput_bps(1448, rtt, 0.001);
        let b = mathis_throughput_bps(1448, rtt, 0.01);
        assert!((a / 1e6 - 9.0).abs() < 0.05, "{a}");
        assert!((b / 1e6 - 2.8).abs() < 0.05, "{b}");
        // 1460 rounds to 2.9 at 1 %, so MODELS used 1448.
        assert!(mathis_throughput_bps(1460, rtt, 0.01) / 1e6 > 2.85);
        assert_eq!(mathis_throughput_bps(1448, rtt, 0.0), f64::INFINITY);
        assert_eq!(
            mathis_throughput_bps(1448, Micros::ZERO, 0.01),
            f64::INFINITY
        );
    }

    #[test]
    fn pftk_matches_models_d4() {
        let rtt = ms(50);
        let a = pftk_throughput_bps(1448, rtt, 0.001, ms(200));
        let b = pftk_throughput_bps(1448, rtt, 0.01, ms(200));
        assert!((a / 1e6 - 6.3).abs() < 0.05, "{a}");
        assert!((b / 1e6 - 1.8).abs() < 0.05, "{b}");
        assert!(a < mathis_throughput_bps(1448, rtt, 0.001));
    }

    #[test]
    fn expected_max_jitter_matches_the_sampler() {
        let uni = JitterConfig {
            ms: 30.0,
            ..JitterConfig::default()
        };
        // Uniform: J(n−1)/(n+1): 0 for one packet, 18 ms for four.
        assert_eq!(expected_max_jitter_ms(&uni, 1), 0.0);
        assert!((expected_max_jitter_ms(&uni, 4) - 18.0).abs() < 1e-9);
        for dist in [
            JitterDistribution::Uniform,
            JitterDistribution::Normal,
            JitterDistribution::Pareto,
        ] {
            let cfg = JitterConfig {
                distribution: dist,
                ..uni.clone()
            };
            for n in [1u64, 3, 10] {
                let mut r = rng();
                let k = 40_000;
                let mean = (0..k)
                    .map(|_| sample_max_jitter_ms(&cfg, n, &mut r))
                    .sum::<f64>()
                    / k as f64;
                let e = expected_max_jitter_ms(&cfg, n);
                assert!(
                    (mean - e).abs() < 0.6,
                    "{dist:?} n={n}: sampled {mean}, expected {e}"
                );
            }
        }
        assert_eq!(expected_max_jitter_ms(&JitterConfig::default(), 5), 0.0);
    }

    #[test]
    fn inverse_normal_is_accurate() {
        assert!((inverse_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((inverse_normal_cdf(0.001) + 3.090_232_306).abs() < 1e-8);
        assert!((inverse_normal_cdf(1e-6) + 4.753_424_309).abs() < 1e-7);
        assert_eq!(inverse_normal_cdf(0.5), 0.0);
    }

    fn moments(cfg: &JitterConfig, n: u64, count: usize) -> (f64, f64) {
        let mut r = rng();
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..count {
            let x = if n == 1 {
                sample_jitter_ms(cfg, &mut r)
            } else {
                sample_max_jitter_ms(cfg, n, &mut r)
            };
            let (lo, hi) = cfg.bounds_ms();
            assert!(x >= lo && x <= hi, "{x} outside [{lo}, {hi}]");
            s += x;
            s2 += x * x;
        }
        let m = s / count as f64;
        (m, libm::sqrt(s2 / count as f64 - m * m))
    }

    #[test]
    fn uniform_jitter_has_mean_zero_and_std_j_over_root3() {
        let cfg = JitterConfig {
            ms: 10.0,
            ..JitterConfig::default()
        };
        let (m, s) = moments(&cfg, 1, 200_000);
        assert!(m.abs() < 0.05, "mean {m}");
        assert!((s - 10.0 / libm::sqrt(3.0)).abs() < 0.03, "std {s}");
        // Max of 10: mean J·(n−1)/(n+1) = 8.18 ms (MODELS §G: 0.8–0.9·J per crossing).
        let (m10, _) = moments(&cfg, 10, 100_000);
        assert!(
            (m10 - 10.0 * 9.0 / 11.0).abs() < 0.05,
            "max-of-10 mean {m10}"
        );
        let mut r = rng();
        let off = JitterConfig::default();
        assert_eq!(sample_jitter_ms(&off, &mut r), 0.0);
    }

    #[test]
    fn normal_and_pareto_jitter_follow_netem() {
        let normal = JitterConfig {
            distribution: JitterDistribution::Normal,
            ms: 5.0,
            ..JitterConfig::default()
        };
        let (m, s) = moments(&normal, 1, 200_000);
        assert!(m.abs() < 0.03 && (s - 5.0).abs() < 0.03, "normal {m} {s}");
        // Max of 2 standard normals has mean 1/√π.
        let (m2, _) = moments(&normal, 2, 200_000);
        assert!(
            (m2 - 5.0 / libm::sqrt(core::f64::consts::PI)).abs() < 0.03,
            "{m2}"
        );
        let pareto = JitterConfig {
            distribution: JitterDistribution::Pareto,
            ms: 10.0,
            ..JitterConfig::default()
        };
        let (m, s) = moments(&pareto, 1, 400_000);
        assert!((m + 0.33).abs() < 0.05, "pareto mean {m}");
        assert!((s - 8.2).abs() < 0.15, "pareto std {s}");
    }

    #[test]
    fn bernoulli_loss_rate_and_fast_take() {
        let cfg = LossConfig::Bernoulli { p: 0.01 };
        let mut a = LossProcess::new(&cfg);
        let mut r = rng();
        let n = 1_000_000;
        let lost = (0..n).filter(|_| a.next_lost(&mut r)).count();
        assert!((lost as f64 / n as f64 - 0.01).abs() < 0.0005, "{lost}");
        // `take` in chunks sees the same process statistically.
        let mut b = LossProcess::new(&cfg);
        let mut r = rng();
        let mut total = 0u64;
        let mut idx = Vec::new();
        for _ in 0..100_000 {
            idx.clear();
            total += b.take(&mut r, 10, |i| idx.push(i)) as u64;
            assert!(idx.windows(2).all(|w| w[0] < w[1]) && idx.iter().all(|&i| i < 10));
        }
        assert!((total as f64 / 1e6 - 0.01).abs() < 0.0005, "{total}");
        let mut none = LossProcess::new(&LossConfig::None);
        assert_eq!(none.take(&mut r, 1 << 40, |_| ()), 0);
        assert_eq!(none.segments_until_next_loss(&mut r), u64::MAX);
    }

    #[test]
    fn take_matches_next_lost_exactly() {
        // Same seed: packet-by-packet and chunked consumption see the same losses.
        for cfg in [
            LossConfig::Bernoulli { p: 0.05 },
            LossConfig::GilbertElliott {
                p: 0.02,
                r: 0.3,
                loss_good: 0.001,
                loss_bad: 0.7,
            },
        ] {
            let mut a = LossProcess::new(&cfg);
            let mut b = LossProcess::new(&cfg);
            let (mut ra, mut rb) = (rng(), rng());
            let mut lost_a = Vec::new();
            for i in 0..50_000u64 {
                if a.next_lost(&mut ra) {
                    lost_a.push(i);
                }
            }
            let mut lost_b = Vec::new();
            let mut base = 0u64;
            for chunk in [1u64, 7, 3, 40, 1, 1, 100].iter().cycle() {
                if base >= 50_000 {
                    break;
                }
                let c = (*chunk).min(50_000 - base);
                b.take(&mut rb, c, |i| lost_b.push(base + i));
                base += c;
            }
            assert_eq!(lost_a, lost_b);
        }
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_length() {
        let (p, r) = (0.01, 0.25);
        let cfg = LossConfig::GilbertElliott {
            p,
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        let mut lp = LossProcess::new(&cfg);
        let mut g = rng();
        let n = 2_000_000;
        let (mut lost, mut bursts, mut prev) = (0u64, 0u64, false);
        for _ in 0..n {
            let l = lp.next_lost(&mut g);
            if l {
                lost += 1;
                if !prev {
                    bursts += 1;
                }
            }
            prev = l;
        }
        let mean = lost as f64 / n as f64;
        assert!(
            (mean - cfg.mean_loss()).abs() < 0.003,
            "mean {mean} vs {}",
            cfg.mean_loss()
        );
        let burst = lost as f64 / bursts as f64;
        assert!((burst - 1.0 / r).abs() < 0.1, "burst {burst}");
    }

    #[test]
    fn unlimited_lossless_path_delivers_after_propagation() {
        let mut t = TcpPath::new_symmetric(&path(20.0, 0.0), &TcpConfig::default(), rng());
        // Within the initial window (10 segments) a fresh connection sends at once.
        let d = t.send(ms(10), 14_000, None);
        assert_eq!(d.delivered_at, ms(30));
        t.open_window();
        let d = t.send(ms(100), 50_000, None);
        assert_eq!(d.delivered_at, ms(120));
        assert_eq!(d.first_departure, ms(100));
        assert_eq!(d.last_departure, ms(100));
        assert_eq!(t.rtt(), ms(40));
        assert_eq!(t.effective_rate_bps(), f64::INFINITY);
        assert_eq!(d.segments, 35);
        assert_eq!(d.latency(), ms(20));
    }

    #[test]
    fn serialization_on_a_10mbps_path() {
        let mut t = TcpPath::new_symmetric(&path(20.0, 10_000.0), &TcpConfig::default(), rng());
        t.open_window();
        let d = t.send(ms(0), 15_000, None);
        assert_eq!(d.last_departure, ms(12));
        assert_eq!(d.delivered_at, ms(32));
        // Back to back: the second waits for the first.
        let d2 = t.send(ms(1), 15_000, None);
        assert_eq!(d2.first_departure, ms(12));
        assert_eq!(d2.last_departure, ms(24));
        assert_eq!(d2.delivered_at, ms(44));
    }

    #[test]
    fn header_overhead_counts_on_the_bottleneck() {
        let cfg = PathConfig {
            per_packet_overhead_bytes: 52,
            ..path(0.0, 10_000.0)
        };
        let mut t = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        t.open_window();
        // 10 segments of 1448 + 52 = 15,000 wire bytes = 12 ms.
        let d = t.send(ms(0), 14_480, None);
        assert_eq!(d.last_departure, ms(12));
        assert!((t.effective_rate_bps() - 10e6 * 1448.0 / 1500.0).abs() < 1.0);
    }

    #[test]
    fn backlog_bytes_and_duration() {
        let mut t = TcpPath::new_symmetric(&path(20.0, 10_000.0), &TcpConfig::default(), rng());
        t.open_window();
        t.send(ms(0), 15_000, None);
        t.send(ms(0), 15_000, None);
        assert_eq!(t.backlog_bytes(ms(0)), 30_000);
        assert_eq!(t.backlog_duration(ms(0)), ms(24));
        assert_eq!(t.backlog_bytes(ms(6)), 22_500);
        assert_eq!(t.backlog_duration(ms(6)), ms(18));
        assert_eq!(t.backlog_bytes(ms(18)), 7_500);
        assert_eq!(t.backlog_bytes(ms(24)), 0);
        assert_eq!(t.drain_time(ms(6)), ms(18));
        // Router queue of 10 kB: the rest waits in the socket.
        let cfg = PathConfig {
            queue_limit_bytes: 10_000,
            ..path(20.0, 10_000.0)
        };
        let mut q = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        q.open_window();
        q.send(ms(0), 30_000, None);
        assert_eq!(q.router_queue_bytes(ms(0)), 10_000);
        assert_eq!(q.socket_backlog_bytes(ms(0)), 20_000);
        assert_eq!(q.router_queue_delay_bound(), ms(8));
    }

    #[test]
    fn backlog_beyond_the_ring_is_estimated_from_the_rate() {
        let mut t = TcpPath::new_symmetric(&path(0.0, 8_000.0), &TcpConfig::default(), rng());
        t.open_window();
        for _ in 0..100 {
            t.send(ms(0), 1_000, None); // 1 ms each at 8 Mb/s
        }
        assert_eq!(t.backlog_bytes(ms(0)), 100_000);
        assert_eq!(t.backlog_bytes(ms(50)), 50_000);
    }

    fn nagle_tcp(minshall: bool) -> TcpConfig {
        TcpConfig {
            nodelay: false,
            nagle_minshall: minshall,
            // The hand-computed values below follow the delayed-ACK timer (a receiver that
            // does not ACK small segments on read); `ack_pushed_on_read` has its own test.
            ack_pushed_on_read: false,
            ..TcpConfig::default()
        }
    }

    #[test]
    fn a_small_segment_is_acked_when_read() {
        // Linux (the defaults): Minshall's Nagle, small segments ACKed on read. 20 ms each
        // way, no rate limit.
        let p = path(20.0, 0.0);
        let tcp = TcpConfig {
            nodelay: false,
            ..TcpConfig::default()
        };
        assert!(tcp.nagle_minshall && tcp.ack_pushed_on_read);
        let mut t = TcpPath::new_symmetric(&p, &tcp, rng());
        // 1,000 B alone: goes at once, arrives at 20 and is ACKed as it is read: back at 40
        // (with the timer it would be back at 80).
        let d0 = t.send(ms(0), 1_000, None);
        assert_eq!(d0.delivered_at, ms(20));
        // 2,000 B at 10 ms = 1 full + 552 B. The tail waits for the ACK of the last small
        // segment (the 1,000 B): 40 ms, 30 ms of Nagle; delivered at 60.
        let d1 = t.send(ms(10), 2_000, None);
        assert_eq!(d1.nagle_wait, ms(30));
        assert_eq!(d1.delivered_at, ms(60));
        // RFC 896 with the same receiver waits for the lone full segment's delayed ACK
        // (arrives 30, timer 40 → 70, back at 90).
        let mut t = TcpPath::new_symmetric(
            &p,
            &TcpConfig {
                nagle_minshall: false,
                ..tcp.clone()
            },
            rng(),
        );
        t.send(ms(0), 1_000, None);
        let d1 = t.send(ms(10), 2_000, None);
        assert_eq!(d1.nagle_wait, ms(80));
        assert_eq!(d1.delivered_at, ms(110));
    }

    #[test]
    fn nagle_holds_the_tail_until_the_delayed_ack_or_the_next_write() {
        // Unlimited path, 20 ms each way, delayed ACK 40 ms.
        let p = path(20.0, 0.0);
        // RFC 896: 2,000 B = 1 full + 552 B. The full segment is outstanding and alone, so the
        // receiver delays its ACK: it leaves at 20 + 40 and is back at 80 ms.
        let mut t = TcpPath::new_symmetric(&p, &nagle_tcp(false), rng());
        let d = t.send(ms(0), 2_000, None);
        assert_eq!(d.nagle_wait, ms(80));
        assert_eq!(d.last_departure, ms(80));
        assert_eq!(d.delivered_at, ms(100));
        // The next write comes first (33 ms): the tail goes with it.
        let mut t = TcpPath::new_symmetric(&p, &nagle_tcp(false), rng());
        let d = t.send(ms(0), 2_000, Some(ms(33)));
        assert_eq!(d.nagle_wait, ms(33));
        assert_eq!(d.delivered_at, ms(53));
        // nodelay: no hold.
        let mut t = TcpPath::new_symmetric(&p, &TcpConfig::default(), rng());
        let d = t.send(ms(0), 2_000, Some(ms(33)));
        assert_eq!(d.nagle_wait, Micros::ZERO);
        assert_eq!(d.delivered_at, ms(20));
    }

    #[test]
    fn nagle_waits_for_the_ack_of_earlier_data() {
        let p = path(20.0, 0.0);
        for minshall in [false, true] {
            let mut t = TcpPath::new_symmetric(&p, &nagle_tcp(minshall), rng());
            // 1,000 B alone: nothing outstanding, goes at once; a lone small segment, so its
            // ACK is delayed: leaves the receiver at 20 + 40, back at 80 ms.
            let d0 = t.send(ms(0), 1_000, None);
            assert_eq!(d0.nagle_wait, Micros::ZERO);
            assert_eq!(d0.delivered_at, ms(20));
            // 2,000 B at 10 ms while the first is unacked. Its full segment arrives at 30 ms,
            // which with the pending 1,000 B is more than one MSS, so the receiver ACKs at once:
            // back at 50 ms. RFC 896 waits for that (all data acked); Minshall waits for the
            // ACK of the last small segment, which is the same ACK here.
            let d1 = t.send(ms(10), 2_000, None);
            assert_eq!(d1.nagle_wait, ms(40), "minshall={minshall}");
            assert_eq!(d1.delivered_at, ms(70));
            // At 70 ms the same again (the previous tail's ACK is pending at the receiver and
            // is sent when this write's full segment arrives, at 90 ms; back at 110 ms), but
            // the next write is announced for 80 ms: the tail goes then.
            let d2 = t.send(ms(70), 2_000, Some(ms(80)));
            assert_eq!(d2.nagle_wait, ms(10), "minshall={minshall}");
            assert_eq!(d2.delivered_at, ms(100));
        }
        // Minshall vs RFC 896 on an idle connection: the write's own full segment does not hold
        // its tail under Minshall (Linux).
        let mut t = TcpPath::new_symmetric(&p, &nagle_tcp(true), rng());
        let d = t.send(ms(0), 2_000, None);
        assert_eq!(d.nagle_wait, Micros::ZERO);
        assert_eq!(d.delivered_at, ms(20));
    }

    #[test]
    fn nagle_delayed_ack_can_make_a_longer_path_faster() {
        // Write A (2,000 B) at 0, write B (2,000 B) at 110 ms, unlimited path, delayed ACK 40.
        // D = 10 ms: A's full segment arrives at 10, alone, so it is ACKed by the timer at 50
        // (back at 60); A's tail leaves at 60, arrives at 70 and starts a timer for 110. B's
        // full segment arrives at 120, after that timer fired: it is alone again, ACKed at 160,
        // back at 170, so B's tail leaves at 170 and is delivered at 180.
        // D = 20 ms: A's tail leaves at 100, arrives at 120, timer for 160; B's full segment
        // arrives at 130, in time to be paired with it: ACK at once, back at 150, B's tail
        // leaves at 150 and is delivered at 170 — 10 ms earlier over a longer path. Real TCP
        // does the same, so the model does not promise monotonicity with Nagle on.
        let deliver_b = |d_ms: f64| {
            let mut t = TcpPath::new_symmetric(&path(d_ms, 0.0), &nagle_tcp(false), rng());
            t.send(ms(0), 2_000, None);
            t.send(ms(110), 2_000, None).delivered_at
        };
        assert_eq!(deliver_b(10.0), ms(180));
        assert_eq!(deliver_b(20.0), ms(170));
    }

    #[test]
    fn nagle_holds_video_tails_in_a_stream() {
        // 30 fps frames of 10,500 B (7 full + 364 B) over RTT 40 ms: each tail waits for the
        // next write (33 ms) or the ACK, whichever is first (MODELS §A6: min(1/f, RTT + delack)).
        let p = path(20.0, 0.0);
        let mut t = TcpPath::new_symmetric(&p, &nagle_tcp(false), rng());
        t.open_window();
        let mut waits = Vec::new();
        for i in 0..30u64 {
            let now = Micros(i * 33_333);
            let d = t.send(now, 10_500, Some(Micros((i + 1) * 33_333)));
            waits.push(d.nagle_wait);
        }
        assert!(waits[5..]
            .iter()
            .all(|&w| w > Micros::ZERO && w <= Micros(33_333)));
    }

    /// A path whose loss process is arranged to drop one chosen segment of the first write.
    fn lossy_path_losing(seg: u64, p: f64, prop_ms: f64) -> (TcpPath, u64) {
        // Search seeds until the first loss is at index `seg`.
        for seed in 0..10_000u64 {
            // A 2 Mb/s bottleneck: below the Mathis bound at 1 % (3.55 Mb/s at RTT 40 ms), so
            // segments leave at the bottleneck's rate. (Before the Mathis bound became a
            // long-run cap these tests used an unlimited path serialized at the Mathis rate.)
            let cfg = PathConfig {
                loss: LossConfig::Bernoulli { p },
                ..path(prop_ms, 2_000.0)
            };
            let mut probe = LossProcess::new(&cfg.loss);
            let mut r = SimRng::new(seed, 7);
            if probe.segments_until_next_loss(&mut r) == seg
                && probe.take(&mut r, seg + 1, |_| ()) == 1
                && probe.segments_until_next_loss(&mut r) > 100
            {
                let mut t =
                    TcpPath::new_symmetric(&cfg, &TcpConfig::default(), SimRng::new(seed, 7));
                t.open_window();
                return (t, seed);
            }
        }
        panic!("no seed");
    }

    #[test]
    fn the_mathis_bound_caps_the_long_run_rate_not_each_write() {
        // 1 % loss, RTT 40 ms: M = 1448·8/0.04·√1.5/√0.01 = 3.547 Mb/s, below the 10 Mb/s
        // bottleneck.
        let cfg = PathConfig {
            loss: LossConfig::Bernoulli { p: 0.01 },
            ..path(20.0, 10_000.0)
        };
        let mut t = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        t.open_window();
        let m = t.effective_rate_bps();
        assert!((m - 3.547e6).abs() < 1e3, "{m}");
        // One 10 kB write, less than a window of credit (M·RTT = 17.7 kB): line rate, 8 ms.
        assert_eq!(t.send(ms(0), 10_000, None).last_departure, ms(8));
        // 99 more every ms (80 Mb/s offered): the last byte of the 1 MB leaves when the Mathis
        // rate allows, one round trip of credit early: 1e6·8/M − 40 ms = 2215.5 ms.
        let mut last = Micros::ZERO;
        for i in 1..100u64 {
            last = t.send(ms(i), 10_000, None).last_departure;
        }
        let want = 1e6 * 8.0 / m * 1e6 - 40_000.0;
        assert!((last.0 as f64 - want).abs() < 10.0, "{last:?} vs {want}");
    }

    #[test]
    fn single_loss_fast_retransmit_and_tail_timeout() {
        // The effective rate is the 2 Mb/s bottleneck (below the Mathis bound at 1 %, RTT 40 ms:
        // 3.55 Mb/s), so a segment takes s = 1448·8/rate to serialize.
        let s_us = |t: &TcpPath| 1448.0 * 8.0 / t.effective_rate_bps() * 1e6;
        let near = |a: Micros, b: f64| (a.0 as f64 - b).abs() <= 2.0;

        // 10 segments, segment 2 lost (7 later ones): fast retransmit. The 3rd dupACK is the
        // one for segment 5, back one RTT after it left (6·s); the repair arrives s + 20 ms later.
        let (mut t, _) = lossy_path_losing(2, 0.01, 20.0);
        let s = s_us(&t);
        let d = t.send(ms(0), 14_480, None);
        assert_eq!(d.lost_segments, 1);
        assert!(near(d.last_departure, 10.0 * s));
        assert!(near(d.delivered_at, 7.0 * s + 60_000.0), "{d:?}");
        // Delayed by ≈ 1 RTT (40 ms) minus the 3 segments the write still had to send.
        assert!(near(d.loss_wait, 40_000.0 - 3.0 * s));
        // Head-of-line: a write right after is delivered no earlier.
        let d2 = t.send(ms(1), 1_000, None);
        assert_eq!(d2.delivered_at, d.delivered_at);
        assert!(d2.loss_wait > Micros::ZERO);

        // 10 segments, the last one lost, nothing follows: tail timeout max(200, 2·40) ms after
        // the last byte left, then the repair crosses.
        let (mut t, _) = lossy_path_losing(9, 0.01, 20.0);
        let d = t.send(ms(0), 14_480, None);
        assert_eq!(d.lost_segments, 1);
        assert!(near(d.delivered_at, 11.0 * s + 220_000.0), "{d:?}");
        assert!(d.loss_wait >= ms(200));

        // Same, but a write at 10 ms follows: its segments bring the 3 dupACKs one RTT after
        // they leave (they queue behind this write, from 10·s on).
        let (mut t, _) = lossy_path_losing(9, 0.01, 20.0);
        let d = t.send(ms(0), 14_480, Some(ms(10)));
        assert!(near(d.delivered_at, 14.0 * s + 60_000.0), "{d:?}");
        assert!(d.loss_wait < ms(100));
    }

    #[test]
    fn slow_start_at_join() {
        // Fresh connection, RTT 240 ms, IW 10: a 25 kB keyframe (18 segments) needs two rounds.
        let mut t = TcpPath::new_symmetric(&path(120.0, 0.0), &TcpConfig::default(), rng());
        let d = t.send(ms(0), 25_000, None);
        assert_eq!(d.last_departure, ms(240));
        assert_eq!(d.delivered_at, ms(360));
        // A GOP of 1 MB at once: 691 segments need rounds of 10, 20, 40, …, 320: k = 6.
        let mut t = TcpPath::new_symmetric(&path(120.0, 0.0), &TcpConfig::default(), rng());
        let d = t.send(ms(0), 1_000_000, None);
        assert_eq!(d.last_departure, ms(6 * 240));
        // Later writes are not held: the rounds keep being clocked from the first data (the
        // window is assumed to keep growing), so by 2 s the allowance is far ahead.
        let d2 = t.send(ms(2000), 100_000, None);
        assert_eq!(d2.last_departure, ms(2000));
    }

    #[test]
    fn delivered_at_is_monotone_with_jitter_and_loss() {
        let cfg = PathConfig {
            jitter: JitterConfig {
                ms: 10.0,
                ..JitterConfig::default()
            },
            loss: LossConfig::Bernoulli { p: 0.02 },
            ..path(20.0, 8_000.0)
        };
        let mut t = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        let mut prev = Micros::ZERO;
        let mut lost = 0;
        for i in 0..20_000u64 {
            let bytes = if i % 3 == 0 { 12_000 } else { 400 };
            let d = t.send(Micros(i * 11_000), bytes, Some(Micros((i + 1) * 11_000)));
            assert!(d.delivered_at >= prev);
            assert!(d.delivered_at >= d.written_at + t.min_one_way_delay());
            assert!(d.first_departure >= d.written_at && d.last_departure >= d.first_departure);
            prev = d.delivered_at;
            lost += d.lost_segments;
        }
        assert!(lost > 0);
    }

    #[test]
    fn fast_path_matches_the_general_path() {
        let mut r = SimRng::new(3, 3);
        let cfg = path(17.3, 7_777.0);
        let mut a = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        let mut b = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        a.open_window();
        b.open_window();
        assert!(a.fast);
        b.general_only();
        let mut now = 0u64;
        for _ in 0..20_000 {
            now += (r.uniform() * 20_000.0) as u64;
            let bytes = (r.uniform() * 30_000.0) as u32;
            let da = a.send(Micros(now), bytes, Some(Micros(now + 5)));
            let db = b.send(Micros(now), bytes, Some(Micros(now + 5)));
            assert_eq!(da, db);
        }
        assert_eq!(a.backlog_bytes(Micros(now)), b.backlog_bytes(Micros(now)));
    }

    #[test]
    fn earlier_now_is_treated_as_the_previous_now() {
        let mut t = TcpPath::new_symmetric(&path(20.0, 0.0), &TcpConfig::default(), rng());
        t.send(ms(100), 1_000, None);
        let d = t.send(ms(50), 1_000, None);
        assert_eq!(d.written_at, ms(100));
        assert_eq!(d.delivered_at, ms(120));
    }

    #[test]
    fn effective_rate_is_min_of_bottleneck_and_mathis() {
        let cfg = PathConfig {
            loss: LossConfig::Bernoulli { p: 0.01 },
            ..path(25.0, 20_000.0)
        };
        let t = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        let m = mathis_throughput_bps(1448, ms(50), 0.01);
        assert!((t.effective_rate_bps() - m).abs() < 1e-6);
        let cfg = PathConfig {
            loss: LossConfig::Bernoulli { p: 0.01 },
            ..path(25.0, 1_000.0)
        };
        let t = TcpPath::new_symmetric(&cfg, &TcpConfig::default(), rng());
        assert_eq!(t.effective_rate_bps(), 1e6);
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let cfgs = [
            PathConfig {
                bottleneck_kbps: 1e-300,
                ..PathConfig::default()
            },
            PathConfig {
                propagation_ms: 10_000.0,
                jitter: JitterConfig {
                    ms: 10_000.0,
                    distribution: JitterDistribution::Pareto,
                    preserve_order: false,
                },
                ..PathConfig::default()
            },
            PathConfig {
                loss: LossConfig::GilbertElliott {
                    p: 1.0,
                    r: 1.0,
                    loss_good: 1e-300,
                    loss_bad: 1e-300,
                },
                ..PathConfig::default()
            },
            PathConfig {
                loss: LossConfig::Bernoulli { p: 0.5 },
                mss_bytes: 88,
                bottleneck_kbps: 0.0,
                ..PathConfig::default()
            },
        ];
        for cfg in &cfgs {
            let tcp = TcpConfig {
                nodelay: false,
                delayed_ack_ms: 0.0,
                initial_cwnd_segments: 1,
                ..TcpConfig::default()
            };
            let mut t = TcpPath::new(cfg, &tcp, 10_000.0, rng());
            for (now, bytes) in [
                (0, 0),
                (u64::MAX, u32::MAX),
                (5, 1),
                (u64::MAX, 0),
                (0, 100_000),
            ] {
                let d = t.send(Micros(now), bytes, Some(Micros(now / 2)));
                assert!(d.delivered_at >= d.written_at);
            }
            let _ = t.backlog_bytes(Micros(3));
            let _ = t.backlog_duration(Micros::MAX);
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn jitter_strategy() -> impl Strategy<Value = JitterConfig> {
            (
                0usize..3,
                prop_oneof![Just(0.0), 0.0..50.0f64],
                any::<bool>(),
            )
                .prop_map(|(d, ms, po)| JitterConfig {
                    distribution: [
                        JitterDistribution::Uniform,
                        JitterDistribution::Normal,
                        JitterDistribution::Pareto,
                    ][d],
                    ms,
                    preserve_order: po,
                })
        }

        fn loss_strategy() -> impl Strategy<Value = LossConfig> {
            prop_oneof![
                Just(LossConfig::None),
                (0.0..0.2f64).prop_map(|p| LossConfig::Bernoulli { p }),
                (0.0..0.2f64, 0.05..1.0f64, 0.0..0.05f64, 0.0..1.0f64).prop_map(|(p, r, g, b)| {
                    LossConfig::GilbertElliott {
                        p,
                        r,
                        loss_good: g,
                        loss_bad: b,
                    }
                }),
            ]
        }

        prop_compose! {
            fn config()(prop in 0.0..200.0f64,
                        kbps in prop_oneof![Just(0.0), 100.0..50_000.0f64],
                        jitter in jitter_strategy(),
                        loss in loss_strategy(),
                        queue in 0u64..200_000,
                        mss in prop_oneof![Just(1448u32), 88u32..9000],
                        overhead in prop_oneof![Just(0u32), 0u32..100],
                        rev in 0.0..200.0f64,
                        nodelay in any::<bool>(),
                        minshall in any::<bool>(),
                        delack in 0.0..200.0f64,
                        rto in 1.0..1000.0f64,
                        iw in 1u32..50,
                        dupthresh in 1u32..5)
                -> (PathConfig, TcpConfig, f64) {
                (PathConfig { propagation_ms: prop, bottleneck_kbps: kbps, jitter, loss,
                              queue_limit_bytes: queue, mss_bytes: mss, per_packet_overhead_bytes: overhead },
                 TcpConfig { nodelay, nagle_minshall: minshall, delayed_ack_ms: delack, min_rto_ms: rto,
                             initial_cwnd_segments: iw, dupack_threshold: dupthresh, fast_open: false,
                             ack_pushed_on_read: minshall },
                 rev)
            }
        }

        fn writes() -> impl Strategy<Value = Vec<(u64, u32, Option<u64>)>> {
            prop::collection::vec(
                (
                    0u64..100_000,
                    0u32..200_000,
                    prop::option::of(0u64..100_000),
                ),
                1..60,
            )
        }

        fn run(
            p: &PathConfig,
            t: &TcpConfig,
            rev: f64,
            seed: u64,
            ws: &[(u64, u32, Option<u64>)],
        ) -> Vec<Delivery> {
            let mut path = TcpPath::new(p, t, rev, SimRng::new(seed, 3));
            let mut now = 0u64;
            ws.iter()
                .map(|&(gap, bytes, next)| {
                    now += gap;
                    path.send(Micros(now), bytes, next.map(|n| Micros(now + n)))
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 300,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn delay_never_below_the_path_minimum_and_delivery_in_order(
                (p, t, rev) in config(), seed in any::<u64>(), ws in writes()) {
                let mut c = Checker::new();
                p.validate(&mut c);
                t.validate(&mut c);
                prop_assume!(c.into_errors().is_empty());
                let path = TcpPath::new(&p, &t, rev, SimRng::new(seed, 3));
                let floor = path.min_one_way_delay();
                let mut prev = Micros::ZERO;
                for d in run(&p, &t, rev, seed, &ws) {
                    prop_assert!(d.delivered_at >= d.written_at + floor);
                    if p.jitter.ms == 0.0 {
                        // (1 µs: the two sides round differently.)
                        prop_assert!(d.delivered_at + Micros(1) >= d.last_departure + Micros::from_ms_f64(p.propagation_ms));
                    }
                    prop_assert!(d.delivered_at >= prev);
                    prop_assert!(d.first_departure >= d.written_at);
                    prop_assert!(d.last_departure >= d.first_departure);
                    prev = d.delivered_at;
                }
            }

            /// The lean paths (nodelay, open window, no loss; with and without jitter) give
            /// exactly what the general path gives, write after write, from any state the
            /// general path leaves (slow start included: it hands over to the lean path when the
            /// window opens).
            #[test]
            fn lean_paths_equal_the_general_path(
                (p, t, rev) in config(), seed in any::<u64>(), ws in writes(), open in any::<bool>()) {
                let p = PathConfig { loss: LossConfig::None, ..p };
                let t = TcpConfig { nodelay: true, ..t };
                let mut lean = TcpPath::new(&p, &t, rev, SimRng::new(seed, 3));
                if open {
                    lean.open_window();
                }
                let mut general = lean.clone();
                general.general_only();
                let mut now = 0u64;
                for &(gap, bytes, next) in &ws {
                    now += gap;
                    let next = next.map(|n| Micros(now + n));
                    let mut probe = lean.clone();
                    let mut probe2 = lean.clone();
                    let mut probe3 = lean.clone();
                    let a = lean.send(Micros(now), bytes, next);
                    let b = general.send(Micros(now), bytes, next);
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(probe.send_delivered(Micros(now), bytes, next), a.delivered_at);
                    let w = probe2.prepare(bytes);
                    // Worked out ahead for this write, or (wrongly) for another one.
                    let ahead = if bytes % 3 == 0 {
                        probe2.jitter_ahead(&probe2.prepare(bytes / 2 + 1), 0)
                    } else {
                        probe2.jitter_ahead(&w, (bytes % 2) as usize)
                    };
                    prop_assert_eq!(probe2.send_prepared_ahead(Micros(now), &w, next, &ahead), a.delivered_at);
                    // Prepared on a path of another shape: recomputed, same result.
                    let other = TcpPath::new_symmetric(&path(1.0, 777.0), &TcpConfig::default(), rng());
                    let w = other.prepare(bytes);
                    prop_assert_eq!(probe3.send_prepared(Micros(now), &w, next), a.delivered_at);
                    prop_assert_eq!(lean.busy_until(), a.last_departure);
                    for dt in [0u64, 1, 500, 5_000] {
                        let at = Micros(now + dt);
                        prop_assert_eq!(lean.backlog_bytes(at), general.backlog_bytes(at));
                    }
                }
                prop_assert_eq!(lean.last_delivery(), general.last_delivery());
            }

            #[test]
            fn longer_propagation_never_delivers_earlier(
                (p, t, rev) in config(), extra in 0.0..100.0f64, seed in any::<u64>(), ws in writes()) {
                let mut c = Checker::new();
                p.validate(&mut c);
                t.validate(&mut c);
                prop_assume!(c.into_errors().is_empty());
                // Nagle + delayed ACK is excluded on purpose: like real TCP it is not monotone
                // in the path delay (see `nagle_delayed_ack_can_make_a_longer_path_faster`).
                let t = TcpConfig { nodelay: true, ..t };
                let longer = PathConfig { propagation_ms: p.propagation_ms + extra, ..p.clone() };
                let a = run(&p, &t, rev, seed, &ws);
                let b = run(&longer, &t, rev, seed, &ws);
                for (x, y) in a.iter().zip(&b) {
                    prop_assert!(y.delivered_at >= x.delivered_at, "{:?} vs {:?}", x, y);
                }
            }
        }
    }

    /// Release-mode cost of `send` (run with
    /// `cargo test -p sim-core --release --lib net::tests::send_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn send_cost() {
        use std::time::Instant;
        let cases = [
            (
                "no jitter, no loss",
                PathConfig {
                    ..path(20.0, 20_000.0)
                },
            ),
            (
                "uniform jitter 10 ms + 1% Bernoulli",
                PathConfig {
                    jitter: JitterConfig {
                        ms: 10.0,
                        ..JitterConfig::default()
                    },
                    loss: LossConfig::Bernoulli { p: 0.01 },
                    ..path(20.0, 20_000.0)
                },
            ),
        ];
        let only = std::env::var("SEND_COST_CASE").ok();
        for (k, (name, cfg)) in cases.into_iter().enumerate() {
            if only.as_deref().is_some_and(|o| o != k.to_string()) {
                continue;
            }
            // One hour of 60 fps video (6 Mb/s, keyframe every 2 s) + 46.9 fps audio, 100 paths.
            let mut msgs = Vec::new();
            let mut tv = 0u64;
            let mut ta = 0u64;
            let mut i = 0u64;
            while tv < 3_600_000_000 {
                if ta <= tv {
                    msgs.push((ta, 380u32));
                    ta += 21_333;
                } else {
                    let b = if i.is_multiple_of(120) {
                        60_000
                    } else {
                        12_000
                    };
                    msgs.push((tv, b));
                    tv += 16_667;
                    i += 1;
                }
            }
            let n_paths: u64 = std::env::var("SEND_COST_PATHS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let mut paths: Vec<TcpPath> = (0..n_paths)
                .map(|k| {
                    TcpPath::new_symmetric(&cfg, &TcpConfig::default(), SimRng::new(5, 1000 + k))
                })
                .collect();
            let start = Instant::now();
            let mut sink = 0u64;
            for w in 0..msgs.len() {
                let (t, b) = msgs[w];
                let next = msgs.get(w + 1).map(|m| Micros(m.0));
                for p in paths.iter_mut() {
                    sink = sink.wrapping_add(p.send(Micros(t), b, next).delivered_at.0);
                }
            }
            let el = start.elapsed();
            let calls = msgs.len() as f64 * n_paths as f64;
            println!(
                "{name}: {} messages × {n_paths} paths: {:.2} s, {:.1} ns/send (sink {sink})",
                msgs.len(),
                el.as_secs_f64(),
                el.as_nanos() as f64 / calls
            );
        }
    }
}

#[cfg(test)]
mod fast_math_tests {
    use super::{fast_exp2, fast_log2, packets_reciprocal};

    #[test]
    fn fast_log2_and_exp2_are_close_to_libm() {
        let mut worst_log = 0.0f64;
        let mut worst_pow = 0.0f64;
        for i in 1..=100_000u32 {
            let w = i as f32 / 100_000.0;
            let exact = libm::log2(w as f64);
            worst_log = worst_log.max((fast_log2(w) as f64 - exact).abs());
            for n in [2u32, 3, 9, 40] {
                let exact = libm::pow(w as f64, 1.0 / n as f64);
                let approx = fast_exp2(fast_log2(w) * packets_reciprocal(n as u64)) as f64;
                worst_pow = worst_pow.max(((approx - exact) / exact).abs());
            }
        }
        assert!(worst_log < 1e-4, "log2 error {worst_log}");
        assert!(worst_pow < 1e-4, "pow error {worst_pow}");
        assert_eq!(fast_exp2(0.0), 1.0);
        assert_eq!(fast_exp2(-3.0), 0.125);
    }
}
