//! Seeded randomness that gives the same numbers on every platform.
//!
//! Every random draw in sim-core goes through [`SimRng`]: ChaCha8 seeded from the scenario's seed,
//! with one independent *stream* per model component (see [`streams`]) so that turning one model on
//! or off does not shift the numbers another model sees. Transcendental functions come from the
//! `libm` crate, never from `f64::ln` and friends: `std` calls the platform's libm on native targets
//! and a different implementation on wasm32, which would break "same seed → same trace, bit for
//! bit, native and wasm".

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Stream numbers for the model components. New components take a new number; never renumber.
pub mod streams {
    pub const ENCODER_COMPLEXITY: u64 = 1;
    pub const ENCODER_SCENE_CUTS: u64 = 2;
    pub const UPLINK: u64 = 3;
    pub const CAPTURE: u64 = 4;
    pub const SERVER: u64 = 5;
    /// Downlink to subscriber `i` uses `DOWNLINK_BASE + i`.
    pub const DOWNLINK_BASE: u64 = 1_000;
}

/// Words of ChaCha8 output [`SimRng`] buffers: four 64-byte blocks, what one ChaCha8 refill
/// produces.
const BUF_WORDS: usize = 64;

/// A deterministic random source (ChaCha8) with the distributions the models need.
///
/// Words are served from a buffer of 64 that is refilled a whole ChaCha8 refill at a
/// time, so a draw costs a load and an index update (the generator's own per-word bookkeeping
/// made up about half the cost of a jitter draw). The sequence is the generator's: `next_u64` is
/// two consecutive 32-bit words, low first, exactly as `ChaCha8Rng::next_u64` gives them.
#[derive(Debug, Clone)]
pub struct SimRng {
    inner: ChaCha8Rng,
    buf: [u32; BUF_WORDS],
    /// Next word of `buf` to hand out (`BUF_WORDS`: empty).
    pos: usize,
    /// A spare standard normal from the last Box–Muller pair.
    spare_normal: Option<f64>,
}

impl SimRng {
    /// The generator for `stream` under `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream);
        SimRng {
            inner,
            buf: [0; BUF_WORDS],
            pos: BUF_WORDS,
            spare_normal: None,
        }
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self) {
        let mut bytes = [0u8; BUF_WORDS * 4];
        self.inner.fill_bytes(&mut bytes);
        for (w, b) in self.buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        self.pos = 0;
    }

    /// The next 32-bit word.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= BUF_WORDS {
            self.refill();
        }
        let w = self.buf[self.pos];
        self.pos += 1;
        w
    }

    /// The word `ahead` draws after the next one (0: the next), if it is already generated:
    /// for computing with a draw before taking it ([`SimRng::skip_u32`]).
    #[inline]
    pub fn peek_u32(&self, ahead: usize) -> Option<u32> {
        self.buf.get(self.pos.saturating_add(ahead)).copied()
    }

    /// Takes the next word without looking at it (after [`SimRng::peek_u32`]).
    #[inline]
    pub fn skip_u32(&mut self) {
        let _ = self.next_u32();
    }

    /// The next two words, the first in the low half.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        if self.pos + 2 <= BUF_WORDS {
            let (lo, hi) = (self.buf[self.pos], self.buf[self.pos + 1]);
            self.pos += 2;
            return u64::from(lo) | u64::from(hi) << 32;
        }
        let lo = self.next_u32();
        let hi = self.next_u32();
        u64::from(lo) | u64::from(hi) << 32
    }

    /// Uniform on [0, 1) with 53 bits of precision.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform on (0, 1]: safe to take the logarithm of.
    pub fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Uniform on [lo, hi).
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// True with probability `p` (p ≤ 0 never, p ≥ 1 always).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.uniform() < p
        }
    }

    /// Standard normal (mean 0, std 1) by Box–Muller, using `libm` for portability.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = self.uniform_open0();
        let u2 = self.uniform();
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let theta = 2.0 * core::f64::consts::PI * u2;
        self.spare_normal = Some(r * libm::sin(theta));
        r * libm::cos(theta)
    }

    /// Normal with the given mean and standard deviation.
    pub fn normal(&mut self, mean: f64, std: f64) -> f64 {
        mean + std * self.standard_normal()
    }

    /// Exponential with the given rate (events per unit); `rate ≤ 0` gives +∞.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        if rate <= 0.0 {
            return f64::INFINITY;
        }
        -libm::log(self.uniform_open0()) / rate
    }

    /// Pareto (type I) with scale `x_m > 0` and shape `alpha > 0`: P(X > x) = (x_m/x)^alpha.
    pub fn pareto(&mut self, x_m: f64, alpha: f64) -> f64 {
        x_m / libm::pow(self.uniform_open0(), 1.0 / alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_streams_differ() {
        let mut a = SimRng::new(42, 1);
        let mut b = SimRng::new(42, 1);
        let mut c = SimRng::new(42, 2);
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn the_buffer_gives_the_generators_own_sequence() {
        // Words and pairs of words, across refills and an odd position at a refill.
        let mut ours = SimRng::new(9, 1_003);
        let mut theirs = ChaCha8Rng::seed_from_u64(9);
        theirs.set_stream(1_003);
        for i in 0..1_000 {
            if i % 7 == 3 {
                assert_eq!(ours.next_u32(), theirs.next_u32(), "word {i}");
            } else {
                assert_eq!(ours.next_u64(), theirs.next_u64(), "pair {i}");
            }
        }
    }

    #[test]
    fn moments_are_right() {
        let mut r = SimRng::new(7, 0);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let z = r.standard_normal();
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");

        let mut u = 0.0;
        for _ in 0..n {
            u += r.uniform();
        }
        assert!((u / n as f64 - 0.5).abs() < 0.005);

        let mut e = 0.0;
        for _ in 0..n {
            e += r.exponential(4.0);
        }
        assert!((e / n as f64 - 0.25).abs() < 0.005);
    }
}
