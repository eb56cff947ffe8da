//! Units used across the models.
//!
//! Time is integer microseconds ([`Micros`]) so that event ordering is exact and identical on every
//! platform. Rates are `f64` with their unit in the field name (`_bps`, `_kbps`), sizes are integer
//! bytes (`_bytes`) or bits (`_bits`).

use core::ops::{Add, AddAssign, Sub};
use serde::{Deserialize, Serialize};

/// A point in simulated (or measured) time, or a duration, in microseconds.
///
/// The origin is the start of a run (simulator) or of a connection/stream (server). Arithmetic
/// saturates at zero on subtraction: a negative duration in these models is always a bug upstream,
/// and saturating keeps a hostile or odd real-world timestamp from panicking the server.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const MAX: Micros = Micros(u64::MAX);

    pub const fn from_ms(ms: u64) -> Self {
        Micros(ms * 1_000)
    }
    pub const fn from_secs(s: u64) -> Self {
        Micros(s * 1_000_000)
    }
    /// From fractional milliseconds, rounded to the nearest microsecond; negative and NaN give 0.
    pub fn from_ms_f64(ms: f64) -> Self {
        Self::from_secs_f64(ms / 1e3)
    }
    /// From fractional seconds, rounded to the nearest microsecond; negative and NaN give 0.
    pub fn from_secs_f64(s: f64) -> Self {
        let us = s * 1e6;
        if us.is_nan() || us <= 0.0 {
            Micros(0)
        } else if us >= u64::MAX as f64 {
            Micros(u64::MAX)
        } else {
            Micros(libm::round(us) as u64)
        }
    }
    pub fn as_ms_f64(self) -> f64 {
        self.0 as f64 / 1e3
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_sub(self, earlier: Micros) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }
    /// Signed difference `self - other` in milliseconds.
    pub fn diff_ms(self, other: Micros) -> f64 {
        // Two's-complement difference as i64: exact for any two times within ±292,000 years,
        // and much cheaper than going through i128.
        self.0.wrapping_sub(other.0) as i64 as f64 / 1e3
    }
}

impl Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }
}
impl AddAssign for Micros {
    fn add_assign(&mut self, rhs: Micros) {
        *self = *self + rhs;
    }
}
impl Sub for Micros {
    type Output = Micros;
    fn sub(self, rhs: Micros) -> Micros {
        self.saturating_sub(rhs)
    }
}

/// Time to serialize `bytes` onto a link of `rate_bps` bits per second. A rate of 0 or less means
/// "unlimited" and gives zero.
pub fn transmission_time(bytes: u64, rate_bps: f64) -> Micros {
    if rate_bps <= 0.0 || !rate_bps.is_finite() {
        return Micros::ZERO;
    }
    Micros::from_secs_f64(bytes as f64 * 8.0 / rate_bps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_and_clamp() {
        assert_eq!(Micros::from_ms_f64(1.2345), Micros(1235));
        assert_eq!(Micros::from_ms_f64(-3.0), Micros(0));
        assert_eq!(Micros::from_secs_f64(f64::NAN), Micros(0));
        assert_eq!(Micros::from_ms(40).as_ms_f64(), 40.0);
        assert_eq!(Micros(5) - Micros(9), Micros(0));
        assert_eq!(Micros(5).diff_ms(Micros(2005)), -2.0);
    }

    #[test]
    fn transmission_time_of_a_packet() {
        // 1500 B at 12 Mb/s = 1 ms.
        assert_eq!(transmission_time(1500, 12e6), Micros(1000));
        assert_eq!(transmission_time(1500, 0.0), Micros(0));
    }
}
