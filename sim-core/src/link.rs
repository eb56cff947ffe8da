//! A packet-level model of one direction of a network path: what happens to each IP packet.
//!
//! [`crate::net::TcpPath`] answers "when does this *write* reach the application" in closed form;
//! [`LinkModel`] answers the packet-level question a link emulator has to answer: "this packet
//! entered the link now — is it dropped, and if not, when does it come out?". The link emulator
//! of `rtmp-lab` (`native_server::emu`) asks it for every IP packet that real kernel TCP sends
//! between two network namespaces, so the real stack's retransmissions, congestion control,
//! Nagle and delayed ACKs run over the same path the simulator models, decided by the same
//! scenario parameters ([`PathConfig`]) and the same samplers ([`sample_jitter_ms`],
//! [`LossProcess`]).
//!
//! # One packet's journey
//!
//! A packet of `len` bytes (what the bottleneck carries for it, see [`LinkModel::wire_bytes`])
//! enters at `t`:
//!
//! 1. **Drop-tail queue** (bufferbloat). A packet *occupies* the router queue from its arrival
//!    until its last bit has been serialized. If the packets occupying the queue at `t` plus this
//!    one exceed `queue_limit_bytes` (or the packet limit, [`LinkModel::with_queue_limit_packets`])
//!    the packet is dropped ([`DropReason::QueueFull`]). A packet that finds the queue empty is
//!    always accepted, so a limit smaller than one packet cannot black-hole the link. 0 = no limit.
//! 2. **Bottleneck** (b/C): it starts serializing at `s = max(t, F)` (`F` = when the link finishes
//!    the packets before it) and finishes at `f = s + len·8/C`. `bottleneck_kbps = 0` = unlimited
//!    (no serialization time, no queue).
//! 3. **Loss** ([`DropReason::Loss`]): Bernoulli or Gilbert–Elliott per packet, decided by
//!    [`LossProcess`] after serialization, so a lost packet has used its share of the bottleneck —
//!    the same accounting as [`crate::net::TcpPath`], where a lost segment was serialized with
//!    its write (a packet corrupted or dropped *after* the bottleneck, e.g. on a radio hop).
//! 4. **Propagation + jitter**: `arrival = f + max(0, D + j)`, `D` = `propagation_ms`, `j` one
//!    sample of netem's jitter (uniform on [−J, J), normal σ = J cut at ±4σ, or netem's pareto
//!    table formula; see [`crate::net::JitterDistribution`]).
//! 5. **Order**: a real link is a FIFO, so with `jitter.preserve_order = true` (the default)
//!    `arrival = max(arrival, previous delivered packet's arrival)`. This is the order-preserving
//!    relay of MODELS §G ("D ± J, order-preserving") and what
//!    [`crate::net::sample_max_jitter_ms`] models for a whole write: a frame of `n` packets
//!    completes when its last packet arrives, about `0.82·J` late for `n = 10`. With
//!    `preserve_order = false` packets keep their own arrival times and overtake each other when
//!    the jitter exceeds their spacing — netem's `tfifo`, whose reordering real TCP answers with
//!    duplicate ACKs (which [`crate::net::TcpPath`] does not model).
//!
//! netem with `rate` measures the delay from the last queued packet, so there jitter does not
//! add to the queueing delay; here (as in the sim and §G's relay) each packet draws its own delay
//! after the bottleneck and the FIFO clamp is what keeps order.
//!
//! # Properties (tested, including with proptest)
//!
//! - A delivered packet never arrives earlier than `now + max(0, D + J·lo)` (`lo` = the jitter
//!   distribution's lower bound: −1 uniform, −4 normal, −2/3 pareto), and, without jitter, never
//!   earlier than `now + len·8/C + D`.
//! - With `preserve_order`, delivery times never decrease from one delivered packet to the next.
//! - Same parameters, seed and stream, same packets → same fates, bit for bit.
//!
//! # Determinism and randomness
//!
//! Time is integer nanoseconds inside (µs [`Micros`] outside, delivery times rounded *up*), and
//! every random number comes from [`SimRng`]: the loss process uses stream `stream` under `seed`;
//! the jitter uses the same stream under a derived seed (`seed ^ JITTER_SEED_KEY`), so turning
//! jitter on or off never changes which packets are lost. Link emulators give each flow and
//! direction its own stream with [`flow_stream`].

use crate::net::{sample_jitter_ms, JitterConfig, LossProcess, PathConfig};
use crate::rng::SimRng;
use crate::units::Micros;
use std::collections::VecDeque;

/// Streams of per-flow link models start here, far above [`crate::rng::streams`]'s numbers (the
/// largest of which is `DOWNLINK_BASE + 100_000`), so an emulator's flows never share a stream
/// with a simulator component.
pub const FLOW_STREAM_BASE: u64 = 1 << 48;

/// XORed into the seed for the jitter generator (the fractional bits of the golden ratio).
pub const JITTER_SEED_KEY: u64 = 0x9E37_79B9_7F4A_7C15;

/// The stream of flow number `flow_index` (0, 1, … in the order flows are first seen) in one
/// direction: `reverse = false` for the data direction (the model of the scenario's path),
/// `true` for the reverse (ACK) direction.
pub fn flow_stream(flow_index: u64, reverse: bool) -> u64 {
    FLOW_STREAM_BASE
        .saturating_add(flow_index.saturating_mul(2))
        .saturating_add(reverse as u64)
}

/// Why a packet did not make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The drop-tail bottleneck queue was full.
    QueueFull,
    /// Random loss (Bernoulli or Gilbert–Elliott).
    Loss,
}

/// What the link does with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFate {
    Drop(DropReason),
    /// Comes out of the far end at `at`.
    Deliver {
        at: Micros,
    },
}

/// One direction of a path, packet by packet. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct LinkModel {
    prop_ns: u64,
    /// Bottleneck in bit/s; `None` = unlimited.
    rate_bps: Option<f64>,
    overhead_bytes: u32,
    queue_limit_bytes: u64,
    queue_limit_packets: u32,
    jitter: JitterConfig,
    jitter_on: bool,
    /// `(lowest jitter sample) ` in ns, ≤ 0; 0 without jitter.
    jitter_lo_ns: f64,
    loss: LossProcess,
    loss_rng: SimRng,
    jitter_rng: SimRng,
    /// When the bottleneck finishes the last accepted packet.
    link_free_ns: u64,
    /// Packets occupying the router queue: `(serialization finished at, bytes)`, oldest first.
    queue: VecDeque<(u64, u32)>,
    queued_bytes: u64,
    /// Arrival of the last delivered packet (for the FIFO clamp).
    last_arrival_ns: u64,
    /// Latest `now` seen; earlier `now`s are raised to it (time never runs backwards).
    last_now_ns: u64,
}

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

impl LinkModel {
    /// The data direction of `path`: rate, queue limit, propagation, jitter and loss as
    /// configured. Randomness: `stream` under `seed` (see the module docs).
    pub fn new(path: &PathConfig, seed: u64, stream: u64) -> Self {
        let rate_bps = if path.bottleneck_kbps.is_finite() && path.bottleneck_kbps > 0.0 {
            Some(path.bottleneck_kbps * 1e3)
        } else {
            None
        };
        let jitter_on = path.jitter.ms.is_finite() && path.jitter.ms > 0.0;
        let jitter_lo_ns = if jitter_on {
            (path.jitter.bounds_ms().0 * 1e6).min(0.0)
        } else {
            0.0
        };
        LinkModel {
            prop_ns: ms_to_ns(path.propagation_ms),
            rate_bps,
            overhead_bytes: path.per_packet_overhead_bytes,
            queue_limit_bytes: path.queue_limit_bytes,
            queue_limit_packets: 0,
            jitter: path.jitter.clone(),
            jitter_on,
            jitter_lo_ns,
            loss: LossProcess::new(&path.loss),
            loss_rng: SimRng::new(seed, stream),
            jitter_rng: SimRng::new(seed ^ JITTER_SEED_KEY, stream),
            link_free_ns: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_arrival_ns: 0,
            last_now_ns: 0,
        }
    }

    /// A clean link of fixed one-way delay: no rate limit, queue, jitter or loss. This is the
    /// reverse (ACK) direction as [`crate::net::TcpPath`] models it.
    pub fn propagation_only(propagation_ms: f64) -> Self {
        let path = PathConfig {
            propagation_ms,
            bottleneck_kbps: 0.0,
            jitter: JitterConfig {
                ms: 0.0,
                ..JitterConfig::default()
            },
            loss: crate::net::LossConfig::None,
            queue_limit_bytes: 0,
            per_packet_overhead_bytes: 0,
            ..PathConfig::default()
        };
        Self::new(&path, 0, 0)
    }

    /// Also limit the queue to `packets` packets (0 = no packet limit), like netem's `limit` or
    /// a `pfifo` qdisc. The byte limit (`queue_limit_bytes`) still applies.
    pub fn with_queue_limit_packets(mut self, packets: u32) -> Self {
        self.queue_limit_packets = packets;
        self
    }

    /// Bytes the bottleneck carries for a TCP segment with `payload_bytes` of payload:
    /// `payload + per_packet_overhead_bytes`, exactly what [`crate::net::TcpPath`] serializes per
    /// segment — so a scenario's `bottleneck_kbps` means the same in the simulator and on an
    /// emulated link (with overhead 0, a 4000 kb/s path carries 4000 kb/s of payload).
    pub fn wire_bytes(&self, payload_bytes: u32) -> u32 {
        payload_bytes.saturating_add(self.overhead_bytes)
    }

    /// The earliest a packet entering at `t` can come out: `t + max(0, D + J·lo)`.
    pub fn min_one_way_delay(&self) -> Micros {
        let d = self.prop_ns as f64 + self.jitter_lo_ns;
        Micros(if d <= 0.0 { 0 } else { (d / 1e3) as u64 })
    }

    /// Packets and bytes occupying the bottleneck queue at `now` (arrived, not fully serialized).
    pub fn backlog(&self, now: Micros) -> (usize, u64) {
        let t = now.0.saturating_mul(1_000).max(self.last_now_ns);
        self.queue
            .iter()
            .filter(|(finish, _)| *finish > t)
            .fold((0, 0), |(n, b), (_, len)| (n + 1, b + *len as u64))
    }

    /// The fate of a packet of `len_bytes` (bytes the bottleneck carries, see
    /// [`LinkModel::wire_bytes`]) entering the link at `now`. `now` earlier than a previous call's
    /// is treated as that previous `now`.
    pub fn on_packet(&mut self, now: Micros, len_bytes: u32) -> PacketFate {
        let t = now.0.saturating_mul(1_000).max(self.last_now_ns);
        self.last_now_ns = t;

        // 1. Drop-tail queue and 2. bottleneck.
        let finish = match self.rate_bps {
            None => t,
            Some(rate_bps) => {
                while let Some(&(f, len)) = self.queue.front() {
                    if f > t {
                        break;
                    }
                    self.queue.pop_front();
                    self.queued_bytes -= len as u64;
                }
                if !self.queue.is_empty() {
                    let over_bytes = self.queue_limit_bytes > 0
                        && self.queued_bytes + len_bytes as u64 > self.queue_limit_bytes;
                    let over_packets = self.queue_limit_packets > 0
                        && self.queue.len() >= self.queue_limit_packets as usize;
                    if over_bytes || over_packets {
                        return PacketFate::Drop(DropReason::QueueFull);
                    }
                }
                let ser = libm::round(len_bytes as f64 * 8e9 / rate_bps);
                let ser_ns = if ser >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    ser as u64
                };
                let start = t.max(self.link_free_ns);
                let finish = start.saturating_add(ser_ns);
                self.link_free_ns = finish;
                if finish > t {
                    self.queue.push_back((finish, len_bytes));
                    self.queued_bytes += len_bytes as u64;
                }
                finish
            }
        };

        // 3. Loss (after the bottleneck: the packet used its share of the capacity).
        if self.loss.next_lost(&mut self.loss_rng) {
            return PacketFate::Drop(DropReason::Loss);
        }

        // 4. Propagation + jitter, floored at zero like netem.
        let delay_ns = if self.jitter_on {
            let j_ns = sample_jitter_ms(&self.jitter, &mut self.jitter_rng) * 1e6;
            let d = self.prop_ns as f64 + j_ns;
            if d <= 0.0 {
                0
            } else {
                libm::round(d) as u64
            }
        } else {
            self.prop_ns
        };
        let mut arrival = finish.saturating_add(delay_ns);

        // 5. FIFO.
        if self.jitter.preserve_order {
            arrival = arrival.max(self.last_arrival_ns);
        }
        self.last_arrival_ns = self.last_arrival_ns.max(arrival);
        PacketFate::Deliver {
            at: Micros(arrival.div_ceil(1_000)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{JitterDistribution, LossConfig};
    use proptest::prelude::*;

    fn path(prop_ms: f64, kbps: f64, queue_bytes: u64) -> PathConfig {
        PathConfig {
            propagation_ms: prop_ms,
            bottleneck_kbps: kbps,
            jitter: JitterConfig {
                ms: 0.0,
                ..JitterConfig::default()
            },
            loss: LossConfig::None,
            queue_limit_bytes: queue_bytes,
            mss_bytes: 1448,
            per_packet_overhead_bytes: 0,
        }
    }

    fn at(f: PacketFate) -> u64 {
        match f {
            PacketFate::Deliver { at } => at.0,
            PacketFate::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    #[test]
    fn propagation_only_adds_d() {
        let mut l = LinkModel::propagation_only(20.0);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 20_000);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 20_000);
        assert_eq!(at(l.on_packet(Micros(1_234), 60)), 21_234);
        assert_eq!(l.min_one_way_delay(), Micros(20_000));
    }

    #[test]
    fn bottleneck_serializes_back_to_back() {
        // 1.2 Mb/s: 1500 B take 10 ms. Three packets at t = 0 leave at 10, 20, 30 ms and arrive
        // 5 ms later; a fourth at t = 100 ms finds the link idle.
        let mut l = LinkModel::new(&path(5.0, 1_200.0, 0), 1, 1);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 15_000);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 25_000);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 35_000);
        assert_eq!(l.backlog(Micros(0)), (3, 4500));
        assert_eq!(l.backlog(Micros(15_000)), (2, 3000));
        assert_eq!(at(l.on_packet(Micros(100_000), 1500)), 115_000);
        // 150 B = 1 ms at 1.2 Mb/s.
        assert_eq!(at(l.on_packet(Micros(100_000), 150)), 116_000);
    }

    #[test]
    fn drop_tail_queue_in_bytes() {
        // Limit 3000 B: two 1500 B packets fit (one in service, one waiting), the third is
        // dropped; when the first has been serialized (t = 10 ms) there is room again.
        let mut l = LinkModel::new(&path(0.0, 1_200.0, 3_000), 1, 1);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 10_000);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 20_000);
        assert_eq!(
            l.on_packet(Micros(0), 1500),
            PacketFate::Drop(DropReason::QueueFull)
        );
        assert_eq!(
            l.on_packet(Micros(9_999), 1500),
            PacketFate::Drop(DropReason::QueueFull)
        );
        assert_eq!(at(l.on_packet(Micros(10_000), 1500)), 30_000);
    }

    #[test]
    fn queue_limit_below_one_packet_never_black_holes() {
        let mut l = LinkModel::new(&path(0.0, 1_200.0, 100), 1, 1);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 10_000);
        assert_eq!(
            l.on_packet(Micros(5_000), 1500),
            PacketFate::Drop(DropReason::QueueFull)
        );
        assert_eq!(at(l.on_packet(Micros(10_000), 1500)), 20_000);
    }

    #[test]
    fn queue_limit_in_packets() {
        let mut l = LinkModel::new(&path(0.0, 1_200.0, 0), 1, 1).with_queue_limit_packets(2);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 10_000);
        assert_eq!(at(l.on_packet(Micros(0), 1500)), 20_000);
        assert_eq!(
            l.on_packet(Micros(0), 60),
            PacketFate::Drop(DropReason::QueueFull)
        );
    }

    #[test]
    fn wire_bytes_adds_the_configured_overhead() {
        let mut p = path(0.0, 1_000.0, 0);
        p.per_packet_overhead_bytes = 52;
        let l = LinkModel::new(&p, 1, 1);
        assert_eq!(l.wire_bytes(1448), 1500);
        assert_eq!(l.wire_bytes(0), 52);
    }

    #[test]
    fn bernoulli_loss_rate_and_gilbert_elliott_bursts() {
        let mut p = path(10.0, 0.0, 0);
        p.loss = LossConfig::Bernoulli { p: 0.1 };
        let mut l = LinkModel::new(&p, 7, 3);
        let n = 100_000;
        let lost = (0..n)
            .filter(|i| l.on_packet(Micros(*i), 100) == PacketFate::Drop(DropReason::Loss))
            .count();
        let rate = lost as f64 / n as f64;
        assert!((rate - 0.1).abs() < 0.005, "loss rate {rate}");

        // Gilbert–Elliott: p = 1 %, r = 25 % (mean burst 4), lossless good state, bad state
        // loses everything: mean loss = 0.01/0.26 = 3.85 %, mean run of losses 4 packets.
        p.loss = LossConfig::GilbertElliott {
            p: 0.01,
            r: 0.25,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        let mut l = LinkModel::new(&p, 7, 3);
        let (mut lost, mut runs, mut prev) = (0u64, 0u64, false);
        for i in 0..200_000 {
            let dropped = matches!(l.on_packet(Micros(i), 100), PacketFate::Drop(_));
            if dropped {
                lost += 1;
                if !prev {
                    runs += 1;
                }
            }
            prev = dropped;
        }
        let rate = lost as f64 / 200_000.0;
        let burst = lost as f64 / runs as f64;
        assert!((rate - 0.0385).abs() < 0.005, "GE loss rate {rate}");
        assert!((burst - 4.0).abs() < 0.4, "GE mean burst {burst}");
    }

    #[test]
    fn lost_packets_still_use_the_bottleneck() {
        let mut p = path(0.0, 1_200.0, 0);
        p.loss = LossConfig::Bernoulli { p: 0.5 };
        let mut l = LinkModel::new(&p, 3, 9);
        // Ten packets at t = 0: whatever is lost, the k-th one (1-based) finishes at k·10 ms.
        for k in 1..=10u64 {
            if let PacketFate::Deliver { at } = l.on_packet(Micros(0), 1500) {
                assert_eq!(at.0, k * 10_000);
            }
        }
    }

    #[test]
    fn uniform_jitter_stays_in_range_and_is_fifo() {
        // D = 20 ms ± 5 ms uniform, no rate limit, one packet every 100 µs.
        let mut p = path(20.0, 0.0, 0);
        p.jitter = JitterConfig {
            distribution: JitterDistribution::Uniform,
            ms: 5.0,
            preserve_order: true,
        };
        let mut l = LinkModel::new(&p, 11, 4);
        assert_eq!(l.min_one_way_delay(), Micros(15_000));
        let mut prev = 0;
        let mut sum = 0.0;
        let n = 20_000u64;
        for i in 0..n {
            let now = i * 100;
            let a = at(l.on_packet(Micros(now), 1500));
            assert!(a >= now + 15_000 && a <= now + 25_000, "{a} at {now}");
            assert!(a >= prev);
            prev = a;
            sum += (a - now) as f64;
        }
        // With packets 0.1 ms apart and ±5 ms of jitter, FIFO holds most packets behind a
        // late earlier one: the mean delay is far above D (the order-preserving cost of §G).
        let mean_ms = sum / n as f64 / 1e3;
        assert!(mean_ms > 23.0, "mean {mean_ms}");

        // Without order preservation the mean is D (uniform jitter has mean 0).
        p.jitter.preserve_order = false;
        let mut l = LinkModel::new(&p, 11, 4);
        let mut sum = 0.0;
        let mut reordered = 0;
        let mut prev = 0;
        for i in 0..n {
            let now = i * 100;
            let a = at(l.on_packet(Micros(now), 1500));
            if a < prev {
                reordered += 1;
            }
            prev = a;
            sum += (a - now) as f64;
        }
        let mean_ms = sum / n as f64 / 1e3;
        assert!((mean_ms - 20.0).abs() < 0.1, "mean {mean_ms}");
        assert!(reordered > n / 4, "reordered {reordered}");
    }

    #[test]
    fn jitter_floor_is_zero_and_normal_pareto_bounds_hold() {
        for (dist, lo, hi) in [
            (JitterDistribution::Normal, -4.0, 4.0),
            (JitterDistribution::Pareto, -2.0 / 3.0, 4.0),
        ] {
            let mut p = path(10.0, 0.0, 0);
            p.jitter = JitterConfig {
                distribution: dist,
                ms: 2.0,
                preserve_order: false,
            };
            let mut l = LinkModel::new(&p, 5, 5);
            for i in 0..10_000u64 {
                let now = i * 1_000;
                let d = at(l.on_packet(Micros(now), 100)) - now;
                assert!(
                    d as f64 >= 10_000.0 + lo * 2_000.0 - 1.0
                        && d as f64 <= 10_000.0 + hi * 2_000.0 + 1.0,
                    "{dist:?}: {d}"
                );
            }
        }
        // D = 1 ms ± 5 ms: never negative.
        let mut p = path(1.0, 0.0, 0);
        p.jitter.ms = 5.0;
        p.jitter.preserve_order = false;
        let mut l = LinkModel::new(&p, 5, 5);
        assert_eq!(l.min_one_way_delay(), Micros(0));
        let zeros = (0..1000u64)
            .filter(|i| at(l.on_packet(Micros(i * 10_000), 100)) == i * 10_000)
            .count();
        // P(D + j ≤ 0) = P(j ≤ −1 ms) = 4/10.
        assert!((300..500).contains(&zeros), "{zeros}");
    }

    #[test]
    fn turning_jitter_on_does_not_change_which_packets_are_lost() {
        let mut p = path(10.0, 2_000.0, 0);
        p.loss = LossConfig::Bernoulli { p: 0.2 };
        let fates = |p: &PathConfig| -> Vec<bool> {
            let mut l = LinkModel::new(p, 99, flow_stream(3, false));
            (0..500u64)
                .map(|i| matches!(l.on_packet(Micros(i * 7_000), 1500), PacketFate::Drop(_)))
                .collect()
        };
        let without = fates(&p);
        p.jitter.ms = 3.0;
        assert_eq!(without, fates(&p));
    }

    #[test]
    fn flow_streams_are_distinct_and_far_from_the_simulator_streams() {
        assert_eq!(flow_stream(0, false), FLOW_STREAM_BASE);
        assert_eq!(flow_stream(0, true), FLOW_STREAM_BASE + 1);
        assert_eq!(flow_stream(1, false), FLOW_STREAM_BASE + 2);
        const { assert!(FLOW_STREAM_BASE > crate::rng::streams::DOWNLINK_BASE + 1_000_000) };
    }

    #[test]
    fn time_running_backwards_is_clamped() {
        let mut l = LinkModel::new(&path(1.0, 0.0, 0), 1, 1);
        assert_eq!(at(l.on_packet(Micros(5_000), 100)), 6_000);
        assert_eq!(at(l.on_packet(Micros(1_000), 100)), 6_000);
    }

    fn arb_path() -> impl Strategy<Value = PathConfig> {
        (
            0.0f64..200.0,
            prop_oneof![Just(0.0), 100.0f64..50_000.0],
            prop_oneof![Just(0u64), 1_000u64..200_000],
            0.0f64..50.0,
            0usize..3,
            any::<bool>(),
            prop_oneof![Just(0.0), 0.0f64..0.3],
            0u32..100,
        )
            .prop_map(
                |(prop, kbps, queue, j, dist, order, loss, overhead)| PathConfig {
                    propagation_ms: prop,
                    bottleneck_kbps: kbps,
                    jitter: JitterConfig {
                        distribution: [
                            JitterDistribution::Uniform,
                            JitterDistribution::Normal,
                            JitterDistribution::Pareto,
                        ][dist],
                        ms: j,
                        preserve_order: order,
                    },
                    loss: if loss > 0.0 {
                        LossConfig::Bernoulli { p: loss }
                    } else {
                        LossConfig::None
                    },
                    queue_limit_bytes: queue,
                    mss_bytes: 1448,
                    per_packet_overhead_bytes: overhead,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn never_early_fifo_and_deterministic(
            p in arb_path(),
            seed in any::<u64>(),
            stream in any::<u64>(),
            packets in proptest::collection::vec((0u64..20_000, 40u32..1_600), 1..300),
        ) {
            let run = || {
                let mut l = LinkModel::new(&p, seed, stream);
                let mut now = 0u64;
                packets
                    .iter()
                    .map(|&(gap, len)| {
                        now += gap;
                        (now, len, l.on_packet(Micros(now), len))
                    })
                    .collect::<Vec<_>>()
            };
            let fates = run();
            prop_assert_eq!(&fates, &run());

            let l = LinkModel::new(&p, seed, stream);
            let floor = l.min_one_way_delay().0;
            let mut prev = 0u64;
            for &(now, len, fate) in &fates {
                if let PacketFate::Deliver { at } = fate {
                    prop_assert!(at.0 >= now + floor, "{} < {} + {}", at.0, now, floor);
                    if p.jitter.ms == 0.0 {
                        let ser = if p.bottleneck_kbps > 0.0 {
                            (len as f64 * 8.0 / (p.bottleneck_kbps * 1e3) * 1e6) as u64
                        } else {
                            0
                        };
                        prop_assert!(at.0 + 1 >= now + ser + floor);
                    }
                    if p.jitter.preserve_order || p.jitter.ms == 0.0 {
                        prop_assert!(at.0 >= prev, "out of order: {} after {}", at.0, prev);
                    }
                    prev = prev.max(at.0);
                }
            }
        }
    }
}
