//! Validation of configuration values, shared by every model's config.
//!
//! A [`Checker`] collects *all* problems with a scenario (not just the first), each tagged with the
//! dotted path of the field (`network.uplink.loss.p`) so the CLI, the web lab and the server can
//! point the user at the exact value.

use serde::Serialize;

/// One bad value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `encoder.keyframe_interval_frames`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl core::fmt::Display for FieldError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects field errors under a path prefix.
#[derive(Debug, Default)]
pub struct Checker {
    prefix: String,
    errors: Vec<FieldError>,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with `section` appended to the path prefix (`a` then `b` gives `a.b.field`).
    pub fn section(&mut self, section: &str, f: impl FnOnce(&mut Checker)) {
        let saved = self.prefix.clone();
        if self.prefix.is_empty() {
            self.prefix = section.to_string();
        } else {
            self.prefix = format!("{}.{}", self.prefix, section);
        }
        f(self);
        self.prefix = saved;
    }

    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{}", self.prefix, field)
        }
    }

    /// Records an error for `field` unless `ok`.
    pub fn ensure(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.errors.push(FieldError {
                path: self.path(field),
                message: message.into(),
            });
        }
    }

    fn finite(&mut self, field: &str, v: f64) -> bool {
        let ok = v.is_finite();
        self.ensure(ok, field, format!("must be a finite number, got {v}"));
        ok
    }

    /// `v > 0`.
    pub fn positive(&mut self, field: &str, v: f64) {
        if self.finite(field, v) {
            self.ensure(v > 0.0, field, format!("must be greater than 0, got {v}"));
        }
    }

    /// `v ≥ 0`.
    pub fn non_negative(&mut self, field: &str, v: f64) {
        if self.finite(field, v) {
            self.ensure(v >= 0.0, field, format!("must be 0 or more, got {v}"));
        }
    }

    /// `lo ≤ v ≤ hi`.
    pub fn range(&mut self, field: &str, v: f64, lo: f64, hi: f64) {
        if self.finite(field, v) {
            self.ensure(
                (lo..=hi).contains(&v),
                field,
                format!("must be between {lo} and {hi}, got {v}"),
            );
        }
    }

    /// A probability, `0 ≤ p ≤ 1`.
    pub fn probability(&mut self, field: &str, p: f64) {
        self.range(field, p, 0.0, 1.0);
    }

    /// Integer `lo ≤ v ≤ hi`.
    pub fn int_range(&mut self, field: &str, v: u64, lo: u64, hi: u64) {
        self.ensure(
            (lo..=hi).contains(&v),
            field,
            format!("must be between {lo} and {hi}, got {v}"),
        );
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error_with_its_path() {
        let mut c = Checker::new();
        c.section("network", |c| {
            c.section("uplink", |c| {
                c.probability("loss", 1.5);
                c.positive("rate_kbps", -1.0);
                c.positive("ok", 3.0);
            })
        });
        c.non_negative("x", f64::NAN);
        let e = c.into_errors();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].path, "network.uplink.loss");
        assert!(e[0].message.contains("between 0 and 1"));
        assert_eq!(e[1].path, "network.uplink.rate_kbps");
        assert_eq!(e[2].path, "x");
        assert!(e[2].message.contains("finite"));
    }
}
